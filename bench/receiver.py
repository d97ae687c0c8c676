"""A fast webhook receiver for benchmarks (aiohttp, its own process): answers 204 at once and
records when each webhook-id first arrived. GET /dump returns {id: unix time} as JSON.

Signatures are verified on a 1-in-`--verify-every` sample (every one with 1) so the receiver
measures the sink, not HMAC in the receiver.
"""

from __future__ import annotations

import argparse
import time

import orjson
from aiohttp import web

from results_sink.signing import decode_secret, verify


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--verify-every", type=int, default=100)
    args = ap.parse_args()
    key = decode_secret(args.secret)
    seen: dict[str, float] = {}
    bad = [0]

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        msg_id = request.headers.get("webhook-id", "")
        if msg_id not in seen:
            seen[msg_id] = time.time()
            if len(seen) % args.verify_every == 0:
                try:
                    verify(key, request.headers, body)
                except Exception:
                    bad[0] += 1
        return web.Response(status=204)

    async def dump(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({"seen": seen, "bad_signatures": bad[0]}))

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/dump", dump)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
