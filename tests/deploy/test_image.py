"""deploy/Dockerfile's image, built with podman and run as the non-root user (65534) against the
local broker: a worker (fake engine), the sink and the gateway, each from the image; jobs in
through the gateway's HTTP API, results out, webhooks delivered and signed."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator

import httpx
import pytest

from results_sink import decode_secret, start_receiver
from sluice.broker import free_port
from tests.deploy.image import build, podman
from tests.integration.conftest import SECRET, Env, api_key, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which("podman") is None:
        if os.environ.get("SLUICE_REQUIRE_PODMAN") == "1":
            pytest.fail("podman is required here (SLUICE_REQUIRE_PODMAN=1) but not installed")
        pytest.skip("podman is not installed (apt-get install podman runc debootstrap)")
    return build("localhost/sluice:test")


class Containers:
    def __init__(self, image: str) -> None:
        self.image = image
        self.names: list[str] = []
        self.prefix = f"sluice-test-{uuid.uuid4().hex[:6]}"

    def start(self, name: str, args: list[str], env: dict[str, str]) -> str:
        full = f"{self.prefix}-{name}"
        flags = [f"--env={k}={v}" for k, v in env.items()]
        done = podman(
            "run",
            "-d",
            "--rm",
            "--name",
            full,
            "--network",
            "host",
            "--user",
            "65534",
            *flags,
            self.image,
            *args,
        )
        assert done.returncode == 0, done.stderr
        self.names.append(full)
        return full

    def logs(self) -> str:
        return "\n".join(
            f"== {n}\n{podman('logs', n).stdout[-3000:]}{podman('logs', n).stderr[-3000:]}"
            for n in self.names
        )

    def stop(self) -> None:
        for name in self.names:
            podman("rm", "-f", "-t", "5", name)


@pytest.fixture
def containers(image: str) -> Iterator[Containers]:
    running = Containers(image)
    yield running
    running.stop()


def test_the_image_runs_worker_sink_and_gateway_as_nobody(env: Env, containers: Containers) -> None:
    key = api_key(env)
    receiver = start_receiver(decode_secret(SECRET))
    port = free_port()
    # Only Sluice's own settings go in: the host's environment is not the container's.
    environ = {k: v for k, v in env.environ().items() if k.startswith(("SLUICE_", "KAFKA_"))}
    environ |= {"SLUICE_WORKER_IDEMPOTENCY_DIR": "/tmp/sluice"}  # the chart's writable volume
    try:
        worker = containers.start("worker", ["worker", "--engine", "fake"], environ)
        containers.start("sink", ["sink"], environ)
        containers.start(
            "api",
            ["api", "--host", "127.0.0.1", "--port", str(port), "--store-path", "/tmp/store.db"],
            environ,
        )
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 120, f"the gateway container to answer\n{containers.logs()}")
        auth = {"Authorization": f"Bearer {key}"}
        for i in range(5):
            job = {
                "job_id": f"img-{i}",
                "model": "m",
                "prompt": f"words of job {i}",
                "webhook_url": receiver.url,
            }
            posted = httpx.post(f"{base}/v1/jobs", json=job, headers=auth)
            assert posted.status_code == 202, posted.text
        wait_until(lambda: receiver.stats()["unique"] >= 5, 120, f"5 webhooks\n{containers.logs()}")
        assert receiver.stats()["bad_signature"] == 0 and set(receiver.counts) == {
            f"img-{i}" for i in range(5)
        }
        answered = httpx.get(f"{base}/v1/jobs/img-3", headers=auth).json()
        assert answered["status"] == "succeeded" and answered["result"]["output"]
        uid = podman("exec", worker, "id", "-u")
        assert uid.stdout.strip() == "65534", uid.stderr
    finally:
        receiver.stop()
