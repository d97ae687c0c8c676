"""A local SQLite view of the compacted results topic (and of submitted job ids): the API's result
store and the workers' idempotency cache.

Like a Kafka Streams global table, every API replica reads every partition itself (assign, no
group) and keeps its own copy. The view and the offsets it has applied are written in one SQLite
transaction per batch, so a restart resumes where it stopped; a deleted file is rebuilt from the
topics (results are compacted and keyed by job id, so the topic is the source of truth).

Job ids seen on the jobs topics make "pending" answers possible for jobs not yet finished.

A view mirrors one cluster's topics, not topic names: it records the cluster id and each topic's id
(KIP-516 topic ids) and is dropped and rebuilt when either differs at start (a worker pointed at
another cluster, a results topic deleted and created again) or when an offset it saved is outside
its partition's range (records deleted under it). Otherwise a stale view would answer new jobs
with another cluster's results.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Message, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from sluice.kafka import is_record, position, reader_config, retrying
from sluice.settings import KafkaSettings
from sluice.topics import job_topics

__all__ = ["ResultStore", "StoreFollower"]

log = logging.getLogger("sluice.store")

_SCHEMA_VERSION = 4
_TABLES = ("results", "jobs", "offsets", "identity")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS identity (name TEXT PRIMARY KEY, id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    job_id TEXT PRIMARY KEY, status TEXT NOT NULL, body BLOB NOT NULL, digest TEXT
);
CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, submitted_ms INTEGER NOT NULL, tenant TEXT);
CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs (tenant);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT, partition INTEGER, next INTEGER, PRIMARY KEY (topic, partition)
);
"""


class ResultStore:
    """The SQLite file and the futures of long-polling readers."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        if self.db.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA_VERSION:
            # Only a cache of the topics: an older layout is dropped and rebuilt from Kafka.
            self.db.executescript("".join(f"DROP TABLE IF EXISTS {t};" for t in _TABLES))
            self.db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        self.db.executescript(_SCHEMA)
        self._waiters: dict[str, list[asyncio.Future[bytes]]] = defaultdict(list)

    def close(self) -> None:
        self.db.close()

    def identity(self) -> dict[str, str]:
        """What this view mirrors: the cluster id and the id of each topic, by name."""
        return dict(self.db.execute("SELECT name, id FROM identity").fetchall())

    def reset(self, identity: dict[str, str]) -> None:
        """Forget everything, and mirror `identity` from the start of its topics."""
        with self.db:
            self.db.execute("BEGIN")
            for table in _TABLES:
                self.db.execute(f"DELETE FROM {table}")
            self.db.executemany("INSERT INTO identity VALUES (?, ?)", list(identity.items()))

    def offsets(self) -> dict[tuple[str, int], int]:
        rows = self.db.execute("SELECT topic, partition, next FROM offsets").fetchall()
        return {(t, p): n for t, p, n in rows}

    def result(self, job_id: str) -> bytes | None:
        row = self.db.execute("SELECT body FROM results WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def results(self, job_ids: list[str]) -> dict[str, bytes]:
        """The results of those job ids that have one, in one query per 500 ids."""
        found: dict[str, bytes] = {}
        for i in range(0, len(job_ids), 500):
            chunk = job_ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT job_id, body FROM results WHERE job_id IN ({marks})", chunk)
            found.update((job_id, bytes(body)) for job_id, body in rows.fetchall())
        return found

    def digests(self, job_ids: list[str]) -> dict[str, str | None]:
        """Which of these job ids have a result (-> its job_digest), in one query per 500 ids."""
        found: dict[str, str | None] = {}
        for i in range(0, len(job_ids), 500):
            chunk = job_ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT job_id, digest FROM results WHERE job_id IN ({marks})", chunk)
            found.update(rows.fetchall())
        return found

    def note_submitted(self, job_id: str, tenant: str | None = None) -> None:
        """Record a job this process submitted itself, before the jobs topic brings it back."""
        with self.db:
            self.db.execute(
                "INSERT OR IGNORE INTO jobs VALUES (?, ?, ?)", (job_id, int(time.time() * 1000), tenant)
            )

    def submitted(self, job_id: str, tenant: str | None = None) -> bool:
        """Whether `job_id` was submitted (by `tenant`, when one is given)."""
        row = self.db.execute("SELECT tenant FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return row is not None and (tenant is None or row[0] == tenant)

    def counts(self, prefix: str) -> dict[str, int]:
        """Results by status of the job ids starting with `prefix` (a batch's rows)."""
        rows = self.db.execute(
            "SELECT status, count(*) FROM results WHERE job_id >= ? AND job_id < ? GROUP BY status",
            (prefix, prefix + "\uffff"),
        )
        return {status: int(n) for status, n in rows.fetchall()}

    def bodies(self, prefix: str) -> Iterator[bytes]:
        """The results of the job ids starting with `prefix`, read as iterated (memory stays flat)."""
        rows = self.db.execute(
            "SELECT body FROM results WHERE job_id >= ? AND job_id < ?", (prefix, prefix + "\uffff")
        )
        for (body,) in rows:
            yield bytes(body)

    def in_flight(self, tenant: str) -> int:
        """Jobs of `tenant` submitted and not yet answered."""
        row = self.db.execute(
            "SELECT count(*) FROM jobs j WHERE j.tenant = ? "
            "AND NOT EXISTS (SELECT 1 FROM results r WHERE r.job_id = j.job_id)",
            (tenant,),
        ).fetchone()
        return int(row[0])

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM results").fetchone()[0])

    def apply(
        self,
        results: Sequence[tuple[str, str, bytes, str | None]],
        jobs: Sequence[tuple[str, int, str | None]],
        offsets: dict[tuple[str, int], int],
    ) -> None:
        """Write one batch and the offsets after it atomically; wake readers waiting on those ids."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO results VALUES (?, ?, ?, ?) ON CONFLICT(job_id) DO UPDATE "
                "SET status = excluded.status, body = excluded.body, digest = excluded.digest",
                results,
            )
            self.db.executemany("INSERT OR IGNORE INTO jobs VALUES (?, ?, ?)", jobs)
            self.db.executemany(
                "INSERT OR REPLACE INTO offsets VALUES (?, ?, ?)",
                [(t, p, n) for (t, p), n in offsets.items()],
            )
        for job_id, _, body, _ in results:
            for future in self._waiters.pop(job_id, []):
                if not future.done():
                    future.set_result(body)

    async def wait_for(self, job_id: str, timeout: float) -> bytes | None:
        """The result once it is stored, or None after `timeout` seconds."""
        found = self.result(job_id)
        if found is not None or timeout <= 0:
            return found
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiters[job_id].append(future)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return self.result(job_id)
        finally:
            waiting = self._waiters.get(job_id)
            if waiting is not None and future in waiting:
                waiting.remove(future)
                if not waiting:
                    del self._waiters[job_id]


class StoreFollower:
    """Reads the results and jobs topics into a ResultStore, from where it last stopped."""

    def __init__(
        self, settings: KafkaSettings, store: ResultStore, with_jobs: bool = True, bulk: bool = False
    ) -> None:
        self.settings = settings
        self.store = store
        self.with_jobs = with_jobs  # also record job ids seen on the jobs topics (for "pending")
        # Never commits: the offsets live in SQLite, beside the view they produced.
        # Prefetch is bounded (librdkafka's default is 64 MiB): a follower behind a burst would
        # otherwise hold the burst in memory, growing with a batch's size.
        config = reader_config(
            settings,
            f"sluice-store-{uuid.uuid4().hex[:8]}",
            **{"enable.partition.eof": False, "queued.max.messages.kbytes": 4 * 1024},
        )
        if bulk:
            # A follower that may lag a little (the workers' idempotency cache) fetches in large
            # batches: with the defaults it sent a fetch per trickle of results, which cost the
            # worker and the broker more CPU than storing the results did.
            config |= {"fetch.min.bytes": 256 * 1024, "fetch.wait.max.ms": 200}
        self.consumer = Consumer(config)
        self.caught_up = False
        self._targets: dict[tuple[str, int], int] = {}

    def start(self) -> None:
        """Check the view still mirrors these topics (else rebuild it), then follow them."""
        names = [self.settings.results_topic]
        if self.with_jobs:
            names += job_topics(self.settings)
        identity, ranges = self._describe(names)
        if self.store.identity() != identity:
            if self.store.identity():
                log.warning("store mirrors another cluster or topic; rebuilding it", extra=identity)
            self.store.reset(identity)
        saved = self.store.offsets()
        outside = [tp for tp, n in saved.items() if tp in ranges and not ranges[tp][0] <= n <= ranges[tp][1]]
        if outside or any(tp not in ranges for tp in saved):
            log.warning("store offsets out of range; rebuilding it", extra={"partitions": str(outside)})
            self.store.reset(identity)
            saved = {}
        for tp, (low, high) in ranges.items():
            if tp[0] == self.settings.results_topic and high > max(low, saved.get(tp, 0)):
                self._targets[tp] = high
        self.consumer.assign([TopicPartition(t, p, saved.get((t, p), 0)) for t, p in ranges])
        self.caught_up = not self._targets
        log.info("store following", extra={"partitions": len(ranges), "resumed": bool(saved)})

    def _describe(self, names: list[str]) -> tuple[dict[str, str], dict[tuple[str, int], tuple[int, int]]]:
        """The cluster's and the topics' ids, and each partition's (low, high) watermarks."""
        listing = retrying(partial(self.consumer.list_topics, timeout=10), "cluster metadata")
        identity = {"cluster": str(listing.cluster_id)}
        found = [n for n in names if n in listing.topics and listing.topics[n].error is None]
        for name in set(names) - set(found):
            log.warning("topic %s not found; not following it", name)
        admin = AdminClient(self.settings.client_config())

        def topic_ids() -> dict[str, str]:
            futures = admin.describe_topics(TopicCollection(found), request_timeout=10)
            return {f"topic:{name}": str(f.result(10).topic_id) for name, f in futures.items()}

        if found:
            identity |= retrying(topic_ids, "topic ids")
        ranges = {}
        for name in found:
            for p in listing.topics[name].partitions:
                read = partial(self.consumer.get_watermark_offsets, TopicPartition(name, p), timeout=10)
                ranges[(name, p)] = retrying(read, f"offsets of {name}[{p}]")
        return identity, ranges

    def step(self, max_messages: int = 1000) -> int:
        """Apply what the consumer has now; returns how many records it read."""
        messages = self.consumer.consume(max_messages, 0)
        results: list[tuple[str, str, bytes, str | None]] = []
        jobs: list[tuple[str, int, str | None]] = []
        offsets: dict[tuple[str, int], int] = {}
        for msg in messages:
            if not is_record(msg, log):
                continue
            tp, offset = position(msg)
            offsets[tp] = offset + 1
            key = msg.key()
            if key is None:
                continue
            job_id = key.decode("utf-8", "replace")
            if tp[0] == self.settings.results_topic:
                self._result(msg, job_id, results)
            else:
                _, ts = msg.timestamp()
                jobs.append((job_id, ts, _tenant(msg.value())))
        if offsets:
            self.store.apply(results, jobs, offsets)
        if not self.caught_up:
            self._progress()
        return len(messages)

    def _result(self, msg: Message, job_id: str, out: list[tuple[str, str, bytes, str | None]]) -> None:
        body = msg.value()
        if body is None:  # a tombstone: compaction will drop the key; so do we
            self.store.db.execute("DELETE FROM results WHERE job_id = ?", (job_id,))
            return
        try:
            fields = orjson.loads(body)
            status, digest = str(fields.get("status", "unknown")), fields.get("job_digest")
        except (orjson.JSONDecodeError, AttributeError):
            log.error("undecodable result for %s at %s", job_id, position(msg))
            return
        out.append((job_id, status, body, digest if isinstance(digest, str) else None))

    def _progress(self) -> None:
        # The consumer's position, not the last record's offset: a transactional producer (an
        # exactly-once worker) ends each partition with a commit marker that is never delivered as
        # a record, so the last record's offset + 1 stays one short of the end.
        remaining = [TopicPartition(t, p) for t, p in self._targets]
        for tp in self.consumer.position(remaining):
            if tp.offset >= self._targets[(tp.topic, tp.partition)]:
                del self._targets[(tp.topic, tp.partition)]
        if not self._targets:
            self.caught_up = True
            log.info("store caught up", extra={"results": self.store.count()})

    def catch_up(self, timeout_s: float) -> bool:
        """Apply records until caught up with the results topic as of start(); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while not self.caught_up and time.monotonic() < deadline:
            if self.step() == 0:
                time.sleep(0.01)
        return self.caught_up

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.step() == 0:
                await asyncio.sleep(0.02)
            else:
                await asyncio.sleep(0)

    def close(self) -> None:
        self.consumer.close()


def _tenant(job: bytes | None) -> str | None:
    """The tenant a job record names, if it is readable JSON that names one."""
    try:
        tenant = orjson.loads(job or b"{}").get("tenant")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return tenant if isinstance(tenant, str) else None
