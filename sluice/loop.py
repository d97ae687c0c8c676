"""The event loop Sluice's processes run on: uvloop where it is installed, else asyncio's own.

Measured side by side (bench/plumbing.py, bench/sink.py): uvloop cut the worker's CPU per job by
8-14 % with an instant engine and the sink's CPU per delivery by ~15 %; both are bound by loop
overhead (a task per job, socket callbacks) rather than by their own code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run"]

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on uvloop when it can be imported (it is a dependency on Linux and macOS)."""
    try:
        import uvloop
    except ImportError:  # Windows: uvloop does not exist there
        return asyncio.run(coro)
    return uvloop.run(coro)
