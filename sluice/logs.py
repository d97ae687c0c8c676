"""JSON-lines logging that never blocks the hot loop.

Records go through a QueueHandler; a writer thread formats them with orjson and writes whatever
has queued up in one write (one syscall per batch, not per line). Job-scoped lines pass
`extra={"job_id": ..., "traceparent": ...}`; those keys (and any other extra keys) become
top-level JSON fields.

Per-job lines on the hot path (the worker's "job done" access line) skip LogRecord altogether:
JobLog queues a loop turn's rows as one item and the writer thread formats them. Creating a
LogRecord alone takes ~3 µs, several per cent of a job's whole cost with an instant engine.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import orjson

__all__ = ["JobLog", "JsonFormatter", "LogWriter", "configure_logging"]

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


@dataclass(slots=True)
class _JobLines:
    logger: str
    msg: str
    created: float
    rows: list[dict[str, Any]]


class JobLog:
    """INFO lines, one per job, batched per loop turn: append each job's fields (a dict) to `rows`,
    call flush().

    Through configure_logging's writer the batch is one queue item formatted off the hot path;
    without it (tests, embedding apps) each row becomes an ordinary log record.
    """

    def __init__(self, logger: str, msg: str) -> None:
        self.logger = logging.getLogger(logger)
        self.msg = msg
        self.enabled = self.logger.isEnabledFor(logging.INFO)
        self.rows: list[dict[str, Any]] = []
        self.batch = 1000
        self.max_delay_s = 0.2
        self._last = time.monotonic()
        handler = next(
            (h for h in logging.getLogger().handlers if isinstance(h, _NoPrepareQueueHandler)), None
        )
        self._queue: queue.SimpleQueue[Any] | None = None if handler is None else handler.log_queue

    def flush(self, force: bool = False) -> None:
        """Hand the rows over; unless forced, only once enough have gathered (or enough time has
        passed): each handover wakes the writer thread, which then takes the GIL from the loop."""
        if not self.rows:
            return
        now = time.monotonic()
        if not force and len(self.rows) < self.batch and now - self._last < self.max_delay_s:
            return
        self._last = now
        rows, self.rows = self.rows, []
        if self._queue is not None:
            self._queue.put(_JobLines(self.logger.name, self.msg, time.time(), rows))
            return
        for row in rows:
            self.logger.info(self.msg, extra=row)


class _NoPrepareQueueHandler(logging.handlers.QueueHandler):
    def __init__(self, log_queue: queue.SimpleQueue[Any]) -> None:
        super().__init__(log_queue)
        self.log_queue = log_queue

    # The stock prepare() formats in the caller's thread; defer all formatting to the listener.
    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class LogWriter:
    """The thread that drains the log queue: formats each record, writes each batch at once."""

    def __init__(
        self,
        log_queue: queue.SimpleQueue[Any],
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
            lines: list[bytes] = []
            for item in batch:
                try:
                    if isinstance(item, _JobLines):
                        lines += self._job_lines(item)
                    elif item is not None:
                        lines.append(self._formatter.format(item).encode())
                except Exception as exc:  # one bad record must not end the writer (and all logging)
                    lines.append(
                        orjson.dumps({"level": "error", "msg": f"log record not formatted: {exc!r}"})
                    )
            if lines:
                self._write(b"\n".join(lines) + b"\n")
            if None in batch:
                return

    def _write(self, data: bytes) -> None:
        try:
            binary = getattr(self._stream, "buffer", None)
            if binary is not None:  # skip the text layer: the lines are UTF-8 bytes already
                self._stream.flush()
                binary.write(data)
                binary.flush()
            else:
                self._stream.write(data.decode())
                self._stream.flush()
        except (OSError, ValueError):
            pass  # stderr closed or gone: logging must never take the service down

    def _job_lines(self, item: _JobLines) -> list[bytes]:
        service = getattr(self._formatter, "service", "sluice")
        head = {
            "ts": datetime.fromtimestamp(item.created, UTC).isoformat(timespec="milliseconds"),
            "level": "info",
            "service": service,
            "logger": item.logger,
            "msg": item.msg,
        }
        # The shared fields are serialised once per batch and spliced in front of each row's.
        prefix = orjson.dumps(head)[:-1] + b","
        return [prefix + orjson.dumps(row, default=str)[1:] for row in item.rows]


def configure_logging(service: str, level: str = "INFO", stream: IO[str] | None = None) -> LogWriter:
    """Route the root logger through a queue to a JSON writer thread; returns it (stop() it)."""
    # LogRecord fields Sluice never prints: skipping them makes each record cheaper to create.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    log_queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
    listener = LogWriter(log_queue, JsonFormatter(service), stream or sys.stderr)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(_NoPrepareQueueHandler(log_queue))
    root.setLevel(level.upper())
    listener.start()
    return listener
