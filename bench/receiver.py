"""A lean webhook receiver for benchmarks (its own process): answers 204 at once and records when
each webhook-id first arrived. GET /dump returns {"seen": {id: unix time}, "bad_signatures": n};
GET /count returns how many ids arrived.

It speaks just enough HTTP/1.1 (keep-alive, content-length bodies) on a bare asyncio Protocol, so
that on 2 shared cores the CPU goes to the sink being measured, not to the receiver (aiohttp's
server took ~107 us per request here). Signatures are verified on a 1-in-`--verify-every` sample.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import ClassVar

import orjson

from results_sink.signing import decode_secret, verify

_NO_CONTENT = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"


class _Receiver(asyncio.Protocol):
    seen: ClassVar[dict[str, float]] = {}
    bad: ClassVar[int] = 0
    key: ClassVar[bytes] = b""
    verify_every: ClassVar[int] = 100

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buf[:end].split(b"\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower().decode()] = value.strip().decode()
            total = end + 4 + int(headers.get("content-length", "0"))
            if len(self.buf) < total:
                return
            body, self.buf = self.buf[end + 4 : total], self.buf[total:]
            if lines[0].startswith(b"GET /count"):  # cheap progress polls: the receiver should not
                out = orjson.dumps(len(_Receiver.seen))  # spend the sink's CPU on the observer
                self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(out) + out)
                continue
            if lines[0].startswith(b"GET"):
                out = orjson.dumps({"seen": _Receiver.seen, "bad_signatures": _Receiver.bad})
                self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(out) + out)
                continue
            self._record(headers, body)
            self.transport.write(_NO_CONTENT)

    def _record(self, headers: dict[str, str], body: bytes) -> None:
        msg_id = headers.get("webhook-id", "")
        if msg_id in _Receiver.seen:
            return
        _Receiver.seen[msg_id] = time.time()
        if len(_Receiver.seen) % _Receiver.verify_every == 0:
            try:
                verify(_Receiver.key, headers, body)
            except Exception:
                _Receiver.bad += 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--verify-every", type=int, default=100)
    args = ap.parse_args()
    _Receiver.key = decode_secret(args.secret)
    _Receiver.verify_every = args.verify_every

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(_Receiver, "127.0.0.1", args.port)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
