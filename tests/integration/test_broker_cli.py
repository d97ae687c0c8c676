"""`sluice broker` stops its JVM however it is asked to stop, so no broker outlives it; with
`--nodes 3` it is a replicated cluster."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource

from sluice.broker import free_port
from sluice.kafka import create_topics
from sluice.settings import KafkaSettings
from sluice.topics import TopicSpec
from tests.conftest import cache_dir


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def sluice_broker(
    args: list[str], until: bytes, timeout: float
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Run `sluice broker ARGS` until its output shows `until`; yields it and that output; stopped
    on the way out if a test left it running."""
    env = {**os.environ, "SLUICE_CACHE_DIR": str(cache_dir())}
    cmd = [sys.executable, "-m", "sluice.cli", "broker", *args]
    # SIGINT at its default in the child whoever started the tests: a non-interactive shell starts
    # background jobs with SIGINT ignored, and Python then never turns it into KeyboardInterrupt.
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    try:
        deadline, seen = time.monotonic() + timeout, b""
        while until not in seen and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 1.0)[0]:
                seen += os.read(proc.stdout.fileno(), 4096)
        assert until in seen, seen.decode(errors="replace")
        yield proc, seen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            # SIGTERM first: SIGKILL would leave its JVMs (in sessions of their own) running.
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_to_sluice_broker_stops_the_jvm(sig: signal.Signals) -> None:
    port = free_port()
    with sluice_broker(["--port", str(port)], b"ready", 120) as (proc, _):
        assert _listening(port)
        proc.send_signal(sig)
        assert proc.wait(60) == 0
        # The JVM is in a session of its own: only `sluice broker` stopping it frees the port.
        deadline = time.monotonic() + 10
        while _listening(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _listening(port), f"a broker still listens on {port} after {sig.name}"


def test_sluice_broker_nodes_3_is_a_replicated_cluster_that_stops_whole() -> None:
    port = free_port()
    args = ["--nodes", "3", "--port", str(port)]
    with sluice_broker(args, b"SLUICE_REPLICATION_FACTOR", 180) as (proc, text):
        assert "export SLUICE_REPLICATION_FACTOR=3" in text, text
        bootstrap = text.split("export KAFKA_BOOTSTRAP_SERVERS=")[1].split()[0]
        ports = [int(a.rsplit(":", 1)[1]) for a in bootstrap.split(",")]
        assert len(ports) == 3 and ports[0] == port and all(_listening(p) for p in ports)

        # A topic made as Sluice makes them is on all three nodes, all in sync, and refuses
        # acks=all writes below two in-sync replicas.
        settings = KafkaSettings(bootstrap_servers=bootstrap, replication_factor=3)
        create_topics(settings, [TopicSpec("replicated", 3, {"cleanup.policy": "delete"})])
        admin = AdminClient({"bootstrap.servers": bootstrap})
        deadline = time.monotonic() + 60
        while True:  # a new topic's metadata reaches every node within moments, not at once
            meta = admin.list_topics("replicated", timeout=30)
            parts = meta.topics["replicated"].partitions.values()
            if len(parts) == 3 and all(sorted(p.isrs) == [1, 2, 3] for p in parts):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(meta.brokers) == 3
        for p in meta.topics["replicated"].partitions.values():
            assert sorted(p.replicas) == [1, 2, 3] and sorted(p.isrs) == [1, 2, 3], (p.replicas, p.isrs)
        resource = ConfigResource(ConfigResource.Type.TOPIC, "replicated")
        deadline, config = time.monotonic() + 60, None
        while config is None:
            try:
                config = admin.describe_configs([resource])[resource].result(30)
            except KafkaException:  # the node asked may not know the new topic yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert config["min.insync.replicas"].value == "2"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
        deadline = time.monotonic() + 10
        while any(_listening(p) for p in ports) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_listening(p) for p in ports), "a node still listens after SIGTERM"
