"""submit_file on a fake Kafka producer: good lines sent, bad lines reported with their number."""

from __future__ import annotations

from pathlib import Path

from producer.bulk import submit_file
from producer.client import JobProducer
from sluice.contract import decode_job
from sluice.settings import ProducerSettings
from tests.unit.fakes import FakeProducer


def test_good_lines_are_sent_and_bad_ones_reported_by_line(tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text(
        "\n".join(
            [
                '{"job_id": "a", "prompt": "one"}',
                "",  # blank lines are skipped, not counted as bad
                "{not json",
                '{"job_id": "b", "prompt": "two", "model": "other"}',
                '{"prompt": "three", "sampling": {"temperature": -1}}',
                '{"prompt": "four", "webhook_url": "http://10.0.0.1/h"}',
                "[1, 2]",
            ]
        )
    )
    kafka = FakeProducer()
    with JobProducer(ProducerSettings(), client=kafka) as producer:
        summary = submit_file(producer, path, default_model="m", progress=False)
    assert (summary.submitted, summary.acknowledged) == (2, 2)
    assert summary.job_ids == ["a", "b"]
    assert [b.line for b in summary.bad_lines] == [3, 5, 6, 7]
    reasons = [b.reason for b in summary.bad_lines]
    assert reasons[0].startswith("not valid JSON") and "sampling.temperature" in reasons[1]
    assert "forbidden" in reasons[2].lower() and "not_an_object" in reasons[3]
    assert [decode_job(r.value).model for r in kafka.acked] == ["m", "other"]
    assert "2/2 jobs acknowledged by Kafka, 4 bad lines" in summary.describe()
