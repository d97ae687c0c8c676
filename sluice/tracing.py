"""W3C Trace Context (`traceparent`) carried in Kafka headers from submit to webhook."""

from __future__ import annotations

import random
import re

__all__ = ["TRACEPARENT", "child_traceparent", "ensure_traceparent", "new_traceparent"]

TRACEPARENT = "traceparent"
_PATTERN = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


# Ids come from `random`, not os.urandom: they need to be unique, not secret (OpenTelemetry's
# RandomIdGenerator does the same), and the getrandom syscall per id was ~20 % of the worker's CPU
# with an instant engine (py-spy). getrandbits can return 0, which the spec forbids: `or 1`.
def _span_id() -> str:
    return f"{random.getrandbits(64) or 1:016x}"


def new_traceparent() -> str:
    """Start a new sampled trace."""
    return f"00-{random.getrandbits(128) or 1:032x}-{_span_id()}-01"


def is_valid(value: str | None) -> bool:
    """True for a version-00 traceparent whose trace and parent ids are not all zeros."""
    if value is None:
        return False
    match = _PATTERN.match(value)
    return match is not None and match.group(1) != _ZERO_TRACE and match.group(2) != _ZERO_SPAN


def ensure_traceparent(value: str | None) -> str:
    """The caller's traceparent when valid, else a new trace (the spec says to restart on garbage)."""
    return value if value is not None and is_valid(value) else new_traceparent()


def child_traceparent(parent: str) -> str:
    """Same trace, new span: the hop this process adds (worker run, webhook delivery)."""
    match = _PATTERN.match(parent)
    if match is None or match.group(1) == _ZERO_TRACE or match.group(2) == _ZERO_SPAN:
        return new_traceparent()
    return f"00-{match.group(1)}-{_span_id()}-{match.group(3)}"


def trace_id(traceparent: str) -> str:
    """The 32-hex trace id of a valid traceparent."""
    return traceparent[3:35]
