"""Batch files, the other way: collect the results of a submitted file into JSONL files.

`submit_file(..., manifest=path)` records which job id each line became and where the results
topic ended before the first job went out (results of these jobs can only come after that).
`collect` reads the results topic from there, keeps the first result of each of the file's jobs
(at-least-once delivery may repeat one; repeats carry the same bytes), and writes successes to
one file and everything else (failed, expired, and the lines never submitted, as `rejected`) to
another, each line the Result's JSON plus the input `line` number, in arrival order.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from confluent_kafka import Consumer, TopicPartition
from tqdm import tqdm

from sluice.errors import PermanentError
from sluice.kafka import reader_config, retrying
from sluice.settings import KafkaSettings

__all__ = ["CollectSummary", "Manifest", "ManifestError", "collect", "results_end_offsets"]

_MANIFEST_VERSION = 1


class ManifestError(PermanentError):
    """A manifest file that cannot be read."""

    code = "invalid_manifest"


@dataclass
class Manifest:
    """What `collect` needs to know about a submitted file."""

    source: str
    results_topic: str
    start_offsets: dict[int, int]
    jobs: list[tuple[int, str]] = field(default_factory=list)  # (line, job id)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)

    def save(self, path: Path) -> None:
        data = {
            "v": _MANIFEST_VERSION,
            "source": self.source,
            "results_topic": self.results_topic,
            "start_offsets": {str(p): o for p, o in self.start_offsets.items()},
            "jobs": self.jobs,
            "rejected": self.rejected,
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(orjson.dumps(data))
        tmp.replace(path)  # never a half-written manifest

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            data = orjson.loads(path.read_bytes())
            if data.get("v") != _MANIFEST_VERSION:
                raise ManifestError(
                    f"{path}: manifest version {data.get('v')!r}, expected {_MANIFEST_VERSION}"
                )
            return cls(
                source=data["source"],
                results_topic=data["results_topic"],
                start_offsets={int(p): int(o) for p, o in data["start_offsets"].items()},
                jobs=[(int(n), str(j)) for n, j in data["jobs"]],
                rejected=[(int(n), str(r)) for n, r in data["rejected"]],
            )
        except OSError as exc:
            raise ManifestError(f"{path}: cannot read the manifest: {exc.strerror}") from exc
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ManifestError(f"{path}: not a Sluice manifest ({exc!r})") from exc


@dataclass
class CollectSummary:
    """What collect wrote, and which jobs it is still waiting for."""

    counts: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    missing: list[tuple[int, str]] = field(default_factory=list)

    def describe(self) -> str:
        parts = ", ".join(f"{n:,} {status}" for status, n in sorted(self.counts.items()))
        head = f"collected: {parts or 'nothing'}; {self.duplicates:,} repeated results skipped"
        if not self.missing:
            return head
        rows = [f"  line {n}: {job_id}" for n, job_id in self.missing[:50]]
        if len(self.missing) > 50:
            rows.append(f"  ... and {len(self.missing) - 50:,} more")
        return "\n".join([head, f"still waiting for {len(self.missing):,} results:", *rows])


def results_end_offsets(settings: KafkaSettings, topic: str) -> dict[int, int]:
    """The next offset of every partition of the results topic (where new results will go)."""
    consumer = Consumer(reader_config(settings, f"sluice-collect-{uuid.uuid4().hex}"))
    try:
        meta = retrying(lambda: consumer.list_topics(topic, timeout=10), f"partitions of {topic}")
        ends = {}
        for p in sorted(meta.topics[topic].partitions):
            part = TopicPartition(topic, p)
            _, high = retrying(
                lambda part=part: consumer.get_watermark_offsets(part, timeout=10),  # type: ignore[misc]
                f"offsets of {topic}",
            )
            ends[p] = int(high)
        return ends
    finally:
        consumer.close()


def collect(
    settings: KafkaSettings,
    manifest: Manifest,
    out: IO[bytes],
    errors: IO[bytes],
    *,
    timeout_s: float | None = None,
    progress: bool = True,
) -> CollectSummary:
    """Write the results of the manifest's jobs as they arrive; stop when all are in or at timeout."""
    summary = CollectSummary()
    for line, reason in manifest.rejected:
        _write(errors, {"line": line, "status": "rejected", "error": {"code": "rejected", "message": reason}})
        summary.counts["rejected"] = summary.counts.get("rejected", 0) + 1
    pending = {job_id.encode(): line for line, job_id in manifest.jobs}
    answered: set[bytes] = set()
    consumer = Consumer(
        reader_config(settings, f"sluice-collect-{uuid.uuid4().hex}", **{"isolation.level": "read_committed"})
    )
    topic = manifest.results_topic
    consumer.assign([TopicPartition(topic, p, o) for p, o in manifest.start_offsets.items()])
    bar = tqdm(total=len(pending), desc="collect", unit="result", disable=not progress)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while pending and (deadline is None or time.monotonic() < deadline):
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    continue  # partition EOF and transient errors: librdkafka recovers on its own
                key = msg.key() or b""
                line = pending.pop(key, 0)  # input lines count from 1
                if not line:  # another file's job, or a repeat of one already written
                    summary.duplicates += key in answered
                    continue
                result: dict[str, Any] = orjson.loads(msg.value() or b"{}")
                status = str(result.get("status"))
                _write(out if status == "succeeded" else errors, {"line": line, **result})
                summary.counts[status] = summary.counts.get(status, 0) + 1
                answered.add(key)
                bar.update(1)
    finally:
        bar.close()
        consumer.close()
    summary.missing = sorted((line, job_id.decode()) for job_id, line in pending.items())
    return summary


def _write(stream: IO[bytes], entry: dict[str, Any]) -> None:
    stream.write(orjson.dumps(entry) + b"\n")
