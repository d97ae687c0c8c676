"""The real tools the chart tests run: helm, built from the Go module proxy, KEDA's source (its
CRDs, its Kafka scaler, its metrics) and the Prometheus Operator's CRDs, fetched the same way.
All are pinned and cached."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "sluice"
HELM_VERSION = "v3.22.0"
KEDA_VERSION = "v2.21.0"  # the one deploy/k8s/kedawrap builds for the live tests
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
# A helm built by `go install` lacks the release's version stamps and assumes Kubernetes 1.20.
KUBE_VERSION = "1.31.0"


def tools_cache() -> Path:
    """Where built tools live, outside any clone and keyed by version, so fresh clones reuse them."""
    return Path(os.environ.get("SLUICE_TOOLS_CACHE", Path.home() / ".cache" / "sluice"))


class ToolError(RuntimeError):
    """A tool could not be had (no Go toolchain, or the module proxy refused)."""


def run_tool(
    cmd: list[str], what: str, timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a build or setup tool; ToolError with the ends of its output if it fails."""
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise ToolError(f"{what} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise ToolError("the chart tests build helm with Go; install Go 1.22+ (apt-get install golang)")
    return go


def helm() -> Path:
    """The pinned helm binary, built once with `go install` (~2 minutes on 2 cores)."""
    path = tools_cache() / "bin" / f"helm-{HELM_VERSION}"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as gobin:
        env = {**os.environ, "GOBIN": gobin, "CGO_ENABLED": "0", "GOFLAGS": "-modcacherw"}
        run_tool(
            [_go(), "install", f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"],
            f"go install helm {HELM_VERSION}",
            1800,
            env,
        )
        shutil.move(Path(gobin) / "helm", path)
    return path


def keda_source() -> Path:
    """The KEDA module's source tree at the pinned version (read only)."""
    return _module("github.com/kedacore/keda/v2", KEDA_VERSION)


def prometheus_operator_source() -> Path:
    """The Prometheus Operator module's tree at the pinned version: its CRDs (read only)."""
    return _module("github.com/prometheus-operator/prometheus-operator", PROMETHEUS_OPERATOR_VERSION)


def _module(path: str, version: str) -> Path:
    done = subprocess.run(
        [_go(), "mod", "download", "-json", f"{path}@{version}"],
        env={**os.environ, "GOFLAGS": "-modcacherw"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tempfile.gettempdir(),  # outside any Go module
    )
    if done.returncode != 0:
        raise ToolError(f"go mod download {path}@{version} failed:\n{done.stdout}{done.stderr}")
    return Path(json.loads(done.stdout)["Dir"])


def render(*sets: str, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """`helm template` of the chart with `--set` pairs and/or a values file; the documents."""
    result = template(*sets, values=values)
    if result.returncode != 0:
        raise AssertionError(f"helm template failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def template(*sets: str, values: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    args = [str(helm()), "template", "rel", str(CHART), "--namespace", "ml", "--kube-version", KUBE_VERSION]
    for pair in sets:
        args += ["--set", pair]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        if values is not None:
            yaml.safe_dump(values, f)
            f.flush()
            args += ["--values", f.name]
        return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
