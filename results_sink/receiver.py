"""A small local webhook receiver for the demo and tests: verifies signatures, records deliveries.

GET /stats answers {"received": n, "unique": n, "bad_signature": n, "duplicates": n}.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from results_sink.signing import WebhookVerificationError, verify

__all__ = ["Receiver", "start_receiver"]


@dataclass
class Receiver:
    """What a running receiver has seen; thread-safe."""

    keys: list[bytes]
    server: ThreadingHTTPServer | None = None
    counts: Counter[str] = field(default_factory=Counter)
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    traceparents: dict[str, str] = field(default_factory=dict)
    raw: dict[str, tuple[dict[str, str], bytes]] = field(default_factory=dict)  # last headers, body
    first_received: dict[str, float] = field(default_factory=dict)  # time.time() of the first 2xx
    rejected: int = 0  # requests answered with fail_status (or for fail_first)
    rejected_ids: Counter[str] = field(default_factory=Counter)  # webhook-id -> requests refused
    bad_signatures: int = 0
    fail_status: int | None = None
    fail_first: int = 0  # answer this many requests with 500 before serving any
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def stats(self) -> dict[str, int]:
        with self.lock:
            received = sum(self.counts.values())
            return {
                "received": received,
                "unique": len(self.counts),
                "duplicates": received - len(self.counts),
                "bad_signature": self.bad_signatures,
            }

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._reply(200, orjson.dumps(receiver.stats()))

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with receiver.lock:
                status = receiver.fail_status
                if status is None and receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    status = 500
                if status is not None:
                    receiver.rejected += 1
                    receiver.rejected_ids[self.headers.get("webhook-id", "")] += 1
            if status is not None:
                self._reply(status)
                return
            try:
                verify(receiver.keys, dict(self.headers.items()), body)
            except WebhookVerificationError:
                with receiver.lock:
                    receiver.bad_signatures += 1
                self._reply(400)
                return
            msg_id = self.headers["webhook-id"]
            with receiver.lock:
                receiver.counts[msg_id] += 1
                receiver.raw[msg_id] = (dict(self.headers.items()), body)
                receiver.first_received.setdefault(msg_id, time.time())
                receiver.bodies[msg_id] = orjson.loads(body)
                receiver.traceparents[msg_id] = self.headers.get("traceparent", "")
            self._reply(204)

    return Handler


def start_receiver(keys: bytes | list[bytes], host: str = "127.0.0.1", port: int = 0) -> Receiver:
    """Serve a receiver from a daemon thread; stop() it when done."""
    receiver = Receiver(keys if isinstance(keys, list) else [keys])
    server = ThreadingHTTPServer((host, port), _handler(receiver))
    server.daemon_threads = True
    receiver.server = server
    threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True).start()
    return receiver
