"""JSON-lines logging that never blocks the hot loop.

Records go through a QueueHandler; a QueueListener thread formats them with orjson and writes
them out. Job-scoped lines pass `extra={"job_id": ..., "traceparent": ...}`; those keys (and any
other extra keys) become top-level JSON fields.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson

__all__ = ["JsonFormatter", "configure_logging"]

_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, service, logger, msg, then any extra fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class _NoPrepareQueueHandler(logging.handlers.QueueHandler):
    # The stock prepare() formats in the caller's thread; defer all formatting to the listener.
    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def configure_logging(
    service: str, level: str = "INFO", stream: IO[str] | None = None
) -> logging.handlers.QueueListener:
    """Route the root logger through a queue to a JSON writer; returns the listener (stop() it)."""
    log_queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    writer = logging.StreamHandler(stream or sys.stderr)
    writer.setFormatter(JsonFormatter(service))
    listener = logging.handlers.QueueListener(log_queue, writer, respect_handler_level=False)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(_NoPrepareQueueHandler(log_queue))
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request is noise
    listener.start()
    return listener
