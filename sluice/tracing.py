"""W3C Trace Context (`traceparent`) carried in Kafka headers from submit to webhook."""

from __future__ import annotations

import os
import re

__all__ = ["TRACEPARENT", "child_traceparent", "ensure_traceparent", "new_traceparent"]

TRACEPARENT = "traceparent"
_PATTERN = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def new_traceparent() -> str:
    """Start a new sampled trace."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def is_valid(value: str | None) -> bool:
    """True for a version-00 traceparent whose trace and parent ids are not all zeros."""
    if value is None:
        return False
    match = _PATTERN.match(value)
    return bool(match) and set(match.group(1)) != {"0"} and set(match.group(2)) != {"0"}  # type: ignore[union-attr]


def ensure_traceparent(value: str | None) -> str:
    """The caller's traceparent when valid, else a new trace (the spec says to restart on garbage)."""
    return value if value is not None and is_valid(value) else new_traceparent()


def child_traceparent(parent: str) -> str:
    """Same trace, new span: the hop this process adds (worker run, webhook delivery)."""
    match = _PATTERN.match(parent)
    if match is None or not is_valid(parent):
        return new_traceparent()
    return f"00-{match.group(1)}-{os.urandom(8).hex()}-{match.group(3)}"


def trace_id(traceparent: str) -> str:
    """The 32-hex trace id of a valid traceparent."""
    return traceparent[3:35]
