"""A real Kubernetes control plane on 127.0.0.1, without containers, for the chart's live tests and
`make k8s`.

kwokctl starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (which plays
the kubelet: pods on its fake nodes run and finish without a container) from binaries built here;
KEDA's operator and metrics adapter run beside them as host processes, and the external metrics
API reaches the adapter through an ExternalName Service (there is no kube-proxy). A fake node
offers `nvidia.com/gpu`, so GPU workers schedule. Every binary is built once from the Go module
proxy (about 15 minutes on 2 cores) into a cache outside the clone keyed by the three versions, so
fresh clones on the same machine reuse it (SLUICE_TOOLS_CACHE, default ~/.cache/sluice).

    python -m tests.k8s.cluster      start one, print its KUBECONFIG, wait for Ctrl-C (make k8s)
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sluice.broker import free_port
from tests.helm.tools import KEDA_VERSION, ToolError, keda_source, run_tool, tools_cache

K8S_VERSION = "v1.36.3"
KWOK_VERSION = "v0.8.0"
_MODULES = Path(__file__).resolve().parents[2] / "deploy" / "k8s"  # the Go wrapper modules
_BINARIES = (
    "kwok",
    "kwokctl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "etcd",
    "keda-operator",
    "keda-adapter",
)


def binaries() -> Path:
    """The folder of the control plane's binaries, built on first use (see the module docstring)."""
    root = tools_cache() / f"k8s-{K8S_VERSION}-keda-{KEDA_VERSION}-kwok-{KWOK_VERSION}"
    done = root / "bin"
    if all((done / b).exists() for b in _BINARIES):
        return done
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; a second caller waits for it
        if not all((done / b).exists() for b in _BINARIES):
            _build(root / "bin.partial")
            shutil.rmtree(done, ignore_errors=True)
            (root / "bin.partial").rename(done)
    return done


def _build(out: Path) -> None:
    go = shutil.which("go")
    if go is None:
        raise ToolError("the Kubernetes tests build their control plane with Go 1.26+; install Go")
    out.mkdir(parents=True, exist_ok=True)
    minor = K8S_VERSION.split(".")[1]
    stamp = " ".join(
        f"-X {pkg}.gitVersion={K8S_VERSION} -X {pkg}.gitMajor=1 -X {pkg}.gitMinor={minor}"
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
    )
    kube = ["-tags", "selinux,notest", "-ldflags", f"-s -w {stamp}"]
    # kwokctl picks its flags by the Kubernetes version it says it was built for.
    kwokctl = ["-ldflags", f"-s -w -X sigs.k8s.io/kwok/pkg/consts.KubeVersion={K8S_VERSION[1:]}"]
    plain = ["-ldflags", "-s -w"]
    builds = [
        ("kwok", "kwokwrap", "sigs.k8s.io/kwok/cmd/kwok", plain),
        ("kwokctl", "kwokwrap", "sigs.k8s.io/kwok/cmd/kwokctl", kwokctl),
        ("kube-apiserver", "k8s136", "k8s.io/kubernetes/cmd/kube-apiserver", kube),
        ("kube-controller-manager", "k8s136", "k8s.io/kubernetes/cmd/kube-controller-manager", kube),
        ("kube-scheduler", "k8s136", "k8s.io/kubernetes/cmd/kube-scheduler", kube),
        ("etcd", "k8s136", "go.etcd.io/etcd/server/v3", plain),
        ("keda-operator", "kedawrap", "github.com/kedacore/keda/v2/cmd/operator", plain),
        ("keda-adapter", "kedawrap", "github.com/kedacore/keda/v2/cmd/adapter", plain),
    ]
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -modcacherw"}
    for name, module, package, flags in builds:
        if (out / name).exists():
            continue
        print(f"building {name} (the control plane is built once, ~15 min in all)", file=sys.stderr)
        cmd = [go, "build", "-trimpath", "-o", str(out / name), *flags, package]
        run_tool(cmd, f"go build {package}", 3600, env, _MODULES / module)


@dataclass
class Cluster:
    """A running control plane (kwokctl's cluster plus KEDA's two processes)."""

    name: str
    workdir: Path
    kubeconfig: Path
    bin: Path
    keda: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {**os.environ, "KWOK_WORKDIR": str(self.workdir / "kwok"), "KUBECONFIG": str(self.kubeconfig)}

    def api(self) -> Any:
        """A kubernetes ApiClient on this cluster."""
        from kubernetes import config

        new_client: Any = config.new_client_from_config  # untyped in the client
        return new_client(config_file=str(self.kubeconfig))

    def stop(self) -> None:
        for proc in self.keda:
            proc.terminate()
        for proc in self.keda:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run(
            [str(self.bin / "kwokctl"), "--name", self.name, "delete", "cluster"],
            env=self.env(),
            capture_output=True,
            timeout=120,
            check=False,
        )


def start(workdir: Path, name: str = "sluice") -> Cluster:
    """Start a control plane with KEDA in `workdir` (which holds all its state and logs)."""
    bin = binaries()
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(name, workdir, workdir / "kubeconfig.yaml", bin)
    config = workdir / "kwokctl.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "kind": "KwokctlConfiguration",
                "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
                "options": {"bindAddress": "127.0.0.1"},  # only loopback traffic is allowed here
            }
        )
    )
    run_tool(
        [
            str(bin / "kwokctl"),
            "-c",
            str(config),
            "--name",
            name,
            "create",
            "cluster",
            "--runtime",
            "binary",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--timeout",
            "180s",
            *(
                f"--{c}-binary={bin / c}"
                for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
            ),
            f"--kwok-controller-binary={bin / 'kwok'}",
            f"--etcd-binary={bin / 'etcd'}",
        ],
        "kwokctl create cluster",
        300,
        cluster.env(),
    )
    try:
        _gpu_node(cluster)
        _keda(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _gpu_node(cluster: Cluster) -> None:
    from kubernetes import client

    node = yaml.safe_load((_MODULES / "gpu-node.yaml").read_text())
    client.CoreV1Api(cluster.api()).create_node(node)


def _certs(folder: Path) -> None:
    """One CA and one serving certificate (localhost, 127.0.0.1 and the adapter's Service name):
    KEDA's gRPC metrics service, its client, and the external metrics API all use them."""
    if shutil.which("openssl") is None:
        raise ToolError(
            "the Kubernetes tests make KEDA's certificates with openssl (apt-get install openssl)"
        )
    folder.mkdir(parents=True, exist_ok=True)

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, capture_output=True, check=True, timeout=60)

    ssl(
        *["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=sluice-test-ca"],
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    ssl(
        *[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=keda",
            "-keyout",
            "tls.key",
            "-out",
            "tls.csr",
        ]
    )
    names = (
        "DNS:localhost",
        "IP:127.0.0.1",
        "DNS:keda-metrics-apiserver.keda.svc",
        "DNS:keda-operator.keda.svc",
    )
    (folder / "san.ext").write_text(f"subjectAltName={','.join(names)}\n")
    ssl(
        *[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "tls.crt",
        ]
    )


def _keda(cluster: Cluster) -> None:
    """KEDA's CRDs, its operator and metrics adapter as host processes, and the external metrics
    API registered to the adapter; returns once the API is Available."""
    from kubernetes import client, utils

    api = cluster.api()
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="keda")))
    create_from_yaml: Any = utils.create_from_yaml  # untyped in the client
    for crd in sorted((keda_source() / "config" / "crd" / "bases").glob("*.yaml")):
        create_from_yaml(api, str(crd))
    certs = cluster.workdir / "keda-certs"
    _certs(certs)
    (cluster.workdir / "keda-ca").mkdir(exist_ok=True)
    grpc, adapter_port = free_port(), free_port()
    env = {
        **cluster.env(),
        "KEDA_CLUSTER_OBJECT_NAMESPACE": "keda",
        "POD_NAMESPACE": "keda",
        "WATCH_NAMESPACE": "",  # all namespaces; KEDA refuses to start without the variable
    }
    kubeconfig = str(cluster.kubeconfig)
    operator = [
        str(cluster.bin / "keda-operator"),
        f"--kubeconfig={kubeconfig}",
        f"--cert-dir={certs}",
        f"--ca-dir={cluster.workdir / 'keda-ca'}",
        "--enable-cert-rotation=false",
        "--enable-webhook-patching=false",
        "--enable-apiservice-patching=false",
        f"--metrics-bind-address=127.0.0.1:{free_port()}",
        f"--health-probe-bind-address=127.0.0.1:{free_port()}",
        f"--metrics-service-bind-address=127.0.0.1:{grpc}",
    ]
    adapter = [
        str(cluster.bin / "keda-adapter"),
        f"--lister-kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--cert-dir={certs}",
        f"--tls-cert-file={certs / 'tls.crt'}",
        f"--tls-private-key-file={certs / 'tls.key'}",
        f"--secure-port={adapter_port}",
        "--bind-address=127.0.0.1",
        f"--port={free_port()}",  # its own /metrics
        f"--metrics-service-address=127.0.0.1:{grpc}",
    ]
    for name, cmd in (("keda-operator", operator), ("keda-adapter", adapter)):
        with (cluster.workdir / f"{name}.log").open("wb") as log:  # the child keeps its own copy
            cluster.keda.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    ca = (certs / "ca.crt").read_bytes()
    service: Any = {
        "metadata": {"name": "keda-metrics-apiserver"},
        "spec": {"type": "ExternalName", "externalName": "127.0.0.1", "ports": [{"port": adapter_port}]},
    }
    core.create_namespaced_service("keda", service)
    registration: Any = {
        "metadata": {"name": "v1beta1.external.metrics.k8s.io"},
        "spec": {
            "group": "external.metrics.k8s.io",
            "version": "v1beta1",
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
            "caBundle": base64.b64encode(ca).decode(),
            "service": {"namespace": "keda", "name": "keda-metrics-apiserver", "port": adapter_port},
        },
    }
    client.ApiregistrationV1Api(api).create_api_service(registration)
    _until_available(cluster, client.ApiregistrationV1Api(api))


def _until_available(cluster: Cluster, registration: Any, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    conditions: list[Any] = []
    while time.monotonic() < deadline:
        for proc in cluster.keda:
            if proc.poll() is not None:
                raise ToolError(
                    f"a KEDA process exited ({proc.returncode}); see {cluster.workdir}/keda-*.log"
                )
        found = registration.read_api_service("v1beta1.external.metrics.k8s.io")
        conditions = found.status.conditions or [] if found.status else []
        if any(c.type == "Available" and c.status == "True" for c in conditions):
            return
        time.sleep(1)
    raise ToolError(f"KEDA's external metrics API did not become Available: {conditions}")


@contextlib.contextmanager
def running(workdir: Path) -> Iterator[Cluster]:
    cluster = start(workdir)
    try:
        yield cluster
    finally:
        cluster.stop()


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sluice-k8s-") as tmp, running(Path(tmp)) as cluster:
        print(f"export KUBECONFIG={cluster.kubeconfig}", flush=True)
        print(
            "Kubernetes + KEDA on 127.0.0.1 (a fake GPU node, no kubelet); Ctrl-C stops it", file=sys.stderr
        )
        signal.sigwait([signal.SIGINT, signal.SIGTERM])


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT, signal.SIGTERM])  # for sigwait
    main()
