"""JSON-lines logging that never blocks the hot loop.

Records go through a QueueHandler; a writer thread formats them with orjson and writes whatever
has queued up in one write (one syscall per batch, not per line). Job-scoped lines pass
`extra={"job_id": ..., "traceparent": ...}`; those keys (and any other extra keys) become
top-level JSON fields.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
import threading
from datetime import UTC, datetime
from typing import IO, Any

import orjson

__all__ = ["JsonFormatter", "LogWriter", "configure_logging"]

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


class LogWriter:
    """The thread that drains the log queue: formats each record, writes each batch at once."""

    def __init__(
        self,
        log_queue: queue.SimpleQueue[logging.LogRecord | None],
        formatter: logging.Formatter,
        stream: IO[str],
    ) -> None:
        self._queue = log_queue
        self._formatter = formatter
        self._stream = stream
        self._thread = threading.Thread(target=self._run, name="sluice-log-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Write everything queued so far, then end the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < 1000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            lines = [self._formatter.format(r) for r in batch if r is not None]
            if lines:
                try:
                    self._stream.write("\n".join(lines) + "\n")
                    self._stream.flush()
                except (OSError, ValueError):
                    pass  # stderr closed or gone: logging must never take the service down
            if None in batch:
                return


def configure_logging(service: str, level: str = "INFO", stream: IO[str] | None = None) -> LogWriter:
    """Route the root logger through a queue to a JSON writer thread; returns it (stop() it)."""
    # LogRecord fields Sluice never prints: skipping them makes each record cheaper to create.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    log_queue: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
    listener = LogWriter(log_queue, JsonFormatter(service), stream or sys.stderr)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(_NoPrepareQueueHandler(log_queue))
    root.setLevel(level.upper())
    listener.start()
    return listener
