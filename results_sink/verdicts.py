"""What one webhook attempt's outcome means for the delivery and for its endpoint, decided without
I/O (Standard Webhooks and Svix semantics)."""

from __future__ import annotations

import enum

from results_sink.http import Outcome

__all__ = ["Verdict", "attempt_class", "judge"]


class Verdict(enum.Enum):
    DELIVERED = "delivered"  # 2xx: done
    FORBIDDEN = "forbidden"  # the URL policy refuses it: no retry can help, dead-letter it
    GONE = "gone"  # 410: the endpoint will never accept one again; disable it, dead-letter this
    RETRY = "retry"  # anything else: try again later (or dead-letter after the last attempt)


def judge(outcome: Outcome) -> tuple[Verdict, bool | None]:
    """The verdict, and what it says of the endpoint's health for its circuit breaker: True (it
    answers), False (it fails: no answer, 5xx, 429) or None (no request was made)."""
    status = outcome.status
    if status is not None and 200 <= status < 300:
        return Verdict.DELIVERED, True
    if outcome.forbidden:
        return Verdict.FORBIDDEN, None
    if status == 410:
        return Verdict.GONE, True
    # A 4xx other than 429 is about this delivery; the endpoint itself answers.
    healthy = status is not None and status < 500 and status != 429
    return Verdict.RETRY, healthy


def attempt_class(outcome: Outcome) -> str:
    """The label of sluice_sink_attempts_total: 2xx, 4xx, 5xx, error or forbidden."""
    if outcome.status is None:
        return "forbidden" if outcome.forbidden else "error"
    return f"{outcome.status // 100}xx"
