"""Sluice's image, built and run with podman on these machines (no Docker, no registry).

The base is made here: a debootstrap of Debian bookworm with python3 (~45 s, once, cached outside
the clone as a rootfs tarball, keyed by suite), imported into podman and substituted for the
Dockerfile's FROM with `podman build --from`. Podman runs with runc and the cgroupfs manager and no
default ulimits (crun refuses this machine's hybrid cgroups), from a containers.conf of our own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.helm.tools import ToolError, run_tool, tools_cache

ROOT = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
BASE = f"localhost/sluice-base:{SUITE}"
_CONF = """[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def podman_env() -> dict[str, str]:
    """The environment podman runs with here (our containers.conf)."""
    conf = tools_cache() / "podman" / "containers.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    if not conf.exists() or conf.read_text() != _CONF:
        conf.write_text(_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise ToolError(
            f"{', '.join(missing)} not found: apt-get install podman runc debootstrap (make test does)"
        )


def base_image() -> str:
    """The bookworm + python3 base, imported into podman (made once; see the module docstring)."""
    _need("podman", "runc", "debootstrap")
    if podman("image", "exists", BASE).returncode == 0:
        return BASE
    tarball = tools_cache() / "images" / f"{SUITE}-python3.tar"
    if not tarball.exists():
        rootfs = tarball.with_suffix(".rootfs")
        shutil.rmtree(rootfs, ignore_errors=True)
        run_tool(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                SUITE,
                str(rootfs),
                "http://deb.debian.org/debian",
            ],
            f"debootstrap {SUITE}",
            900,
        )
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=600)
        partial.rename(tarball)
        shutil.rmtree(rootfs)
    imported = podman("import", str(tarball), BASE)
    if imported.returncode != 0:
        raise ToolError(f"podman import failed: {imported.stderr[-2000:]}")
    return BASE


def build(tag: str) -> str:
    """deploy/Dockerfile built on the local base; the host's CA bundle (a TLS-inspecting proxy's
    here) goes to pip as a build secret."""
    base = base_image()
    args = ["build", "--network", "host", "--from", base, "-t", tag, "-f", "deploy/Dockerfile"]
    ca = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    if ca and Path(ca).is_file():
        args += ["--secret", f"id=ca,src={ca}"]
    run_tool(["podman", *args, str(ROOT)], "podman build", 1800, podman_env())
    return tag
