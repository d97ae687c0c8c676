"""`sluice broker` stops its JVM however it is asked to stop, so no broker outlives it."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

from sluice.broker import free_port
from tests.conftest import cache_dir


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_to_sluice_broker_stops_the_jvm(sig: signal.Signals) -> None:
    port = free_port()
    env = {**os.environ, "SLUICE_CACHE_DIR": str(cache_dir())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", "broker", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        deadline, seen = time.monotonic() + 120, b""
        while b"ready" not in seen and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 1.0)[0]:
                seen += os.read(proc.stdout.fileno(), 4096)
        assert b"ready" in seen, seen.decode(errors="replace")
        assert _listening(port)
        proc.send_signal(sig)
        assert proc.wait(60) == 0
        # The JVM is in a session of its own: only `sluice broker` stopping it frees the port.
        deadline = time.monotonic() + 10
        while _listening(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _listening(port), f"a broker still listens on {port} after {sig.name}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
