"""The result store's SQLite side (no broker): what it holds, long-polling readers, and starting
over when what it mirrors changes."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sluice.store import ResultStore

IDENTITY = {"cluster": "c1", "topic:results": "t1"}


def body(status: str) -> bytes:
    return f'{{"status": "{status}"}}'.encode()


def test_a_batch_and_its_offsets_are_stored_together_and_survive_a_reopen(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "s.db")
    store.reset(IDENTITY)
    store.apply(
        [("a", "succeeded", body("succeeded"), "d-a"), ("b", "failed", body("failed"), None)],
        [("p", 1_700_000_000_000, "acme")],
        {("results", 0): 2, ("jobs", 1): 1},
    )
    store.apply([("a", "succeeded", b"newer", "d-a2")], [], {("results", 0): 3})  # last one wins
    store.close()
    again = ResultStore(tmp_path / "s.db")
    assert again.identity() == IDENTITY
    assert again.offsets() == {("results", 0): 3, ("jobs", 1): 1}
    assert again.result("a") == b"newer" and again.count() == 2
    assert again.digests(["a", "b", "c"]) == {"a": "d-a2", "b": None}
    assert again.submitted("p") and not again.submitted("a")
    assert again.submitted("p", tenant="acme") and not again.submitted("p", tenant="globex")


def test_digests_are_looked_up_in_chunks(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "s.db")
    rows = [(f"j{i}", "succeeded", b"{}", f"d{i}") for i in range(1200)]
    store.apply(rows, [], {("results", 0): 1200})
    found = store.digests([f"j{i}" for i in range(0, 1300, 7)])
    assert found == {f"j{i}": f"d{i}" for i in range(0, 1200, 7)}


def test_reset_forgets_everything_and_records_the_new_identity(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "s.db")
    store.reset(IDENTITY)
    store.note_submitted("p")
    store.apply([("a", "succeeded", b"{}", None)], [], {("results", 0): 1})
    other = {"cluster": "c2", "topic:results": "t9"}
    store.reset(other)
    assert store.identity() == other and store.count() == 0
    assert store.offsets() == {} and not store.submitted("p")


def test_a_file_of_an_older_layout_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE results (job_id TEXT PRIMARY KEY, body BLOB); PRAGMA user_version = 1;")
    db.execute("INSERT INTO results VALUES ('a', x'00')")
    db.commit()
    db.close()
    store = ResultStore(path)
    assert store.count() == 0 and store.identity() == {}


async def test_a_waiting_reader_is_answered_when_the_result_arrives(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "s.db")
    waiting = asyncio.create_task(store.wait_for("a", timeout=10))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    store.apply([("a", "succeeded", body("succeeded"), None)], [], {("results", 0): 1})
    assert await waiting == body("succeeded")
    assert await store.wait_for("missing", timeout=0.05) is None


def test_in_flight_counts_a_tenants_jobs_not_yet_answered(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "s.db")
    store.note_submitted("a1", "acme")
    store.note_submitted("a2", "acme")
    store.note_submitted("g1", "globex")
    store.apply([("a1", "succeeded", b"{}", None)], [("a3", 0, "acme")], {("results", 0): 1})
    assert store.in_flight("acme") == 2 and store.in_flight("globex") == 1 and store.in_flight("x") == 0
