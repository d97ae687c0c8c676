"""The chaos suite in CI: the full scenario of tests/chaos/harness.py (20,000 jobs with webhooks,
12 worker SIGKILLs, two workers frozen past their session timeout, a rebalance storm, a broker SIGKILL + restart, two sink SIGKILLs, a flapping
receiver), at-least-once and exactly-once on one broker, at-least-once on a 3-node KRaft
cluster (replication 3, min.insync.replicas 2) whose node leading most jobs partitions is killed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import Plan, run
from tests.conftest import cache_dir


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("exactly_once", "nodes", "protocol"),
    # Not yet with SLUICE_GROUP_PROTOCOL=consumer: its one CI run of two left a process running at
    # the end (a Popen ResourceWarning), though nothing was lost; `harness --group-protocol consumer`.
    [(False, 1, "classic"), (True, 1, "classic"), (False, 3, "classic")],
    ids=["at-least-once", "exactly-once", "at-least-once-3-nodes"],
)
def test_nothing_is_lost_under_faults(exactly_once: bool, nodes: int, protocol: str, tmp_path: Path) -> None:
    plan = Plan(exactly_once=exactly_once, nodes=nodes, group_protocol=protocol)
    report = run(plan, log_dir=tmp_path / "logs")
    table = report.table()
    suffix = ("" if nodes == 1 else f"-{nodes}n") + ("" if protocol == "classic" else f"-{protocol}")
    name = f"chaos-{'eos' if exactly_once else 'alo'}{suffix}.md"
    (cache_dir() / name).write_text(table + "\n")
    print("\n".join(sorted(report.events)) + "\n" + table)
    # The faults happened (a run without them proves nothing) ...
    assert report.worker_kills >= 10 and report.broker_restarts == 1 and report.sink_kills >= 1, table
    assert report.worker_pauses == len(plan.pauses_at), table
    assert report.worker_joins >= 3 and report.worker_leaves >= 3, table
    assert report.webhook_refusals > 0 and len(report.receiver_outages) == 3, table
    # ... and every promise held, judged from the topics and the receiver, not Sluice's counters.
    assert report.failures() == [], table
    assert report.jobs_with_result == plan.jobs and report.webhooks_delivered == plan.jobs, table
