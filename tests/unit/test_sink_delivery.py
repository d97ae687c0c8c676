"""Webhook delivery on httpx.MockTransport (no broker, no network)."""

from __future__ import annotations

import asyncio

import httpx

from results_sink.signing import decode_secret, verify
from results_sink.sink import Sink
from sluice.metrics import SinkMetrics
from sluice.settings import SinkSettings

SECRET = "whsec_c2x1aWNlLXVuaXQtdGVzdA=="


def run_delivery(statuses: list[int], max_attempts: int = 4) -> tuple[list[httpx.Request], dict[str, int]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(statuses[min(len(seen) - 1, len(statuses) - 1)])

    async def main() -> dict[str, int]:
        settings = SinkSettings(webhook_secret=SECRET, max_attempts=max_attempts, backoff_s=0.0)
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        sink = Sink(settings, consumer=None, client=client, metrics=SinkMetrics())  # type: ignore[arg-type]
        await sink._deliver(
            "https://hooks.example/a", "job-7", b'{"x":1}', "00-" + "a" * 32 + "-" + "b" * 16 + "-01", 0.0
        )
        await client.aclose()
        return sink.stats

    return seen, asyncio.run(main())


def test_retries_server_errors_then_succeeds_with_the_same_webhook_id() -> None:
    seen, stats = run_delivery([500, 503, 204])
    assert len(seen) == 3
    assert stats["delivered"] == 1 and stats["failed"] == 0
    assert {r.headers["webhook-id"] for r in seen} == {"job-7"}
    for r in seen:
        verify(decode_secret(SECRET), dict(r.headers), r.content)
        assert r.headers["content-type"] == "application/json"
        assert r.headers["traceparent"].startswith("00-" + "a" * 32)


def test_client_errors_are_not_retried() -> None:
    seen, stats = run_delivery([400])
    assert len(seen) == 1
    assert stats["failed"] == 1


def test_gives_up_after_max_attempts_and_counts_it() -> None:
    seen, stats = run_delivery([500], max_attempts=3)
    assert len(seen) == 3
    assert stats == {"delivered": 0, "failed": 1, "skipped": 0, "invalid": 0}
