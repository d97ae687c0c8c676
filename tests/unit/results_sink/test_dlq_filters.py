from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from results_sink.dlq import DlqEntry, DlqFilter, parse_filter
from sluice.errors import ConfigError

AT = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)


def entry(job_id: str = "j1", endpoint: str | None = "https://a.example/h", at: datetime = AT) -> DlqEntry:
    return DlqEntry("deliveries", 0, 0, at, job_id, "attempts_exhausted", "HTTP 500", endpoint=endpoint)


def test_an_empty_filter_matches_everything() -> None:
    flt = parse_filter(None, None, None, None)
    assert flt.empty() and flt.matches(entry()) and flt.matches(entry(endpoint=None))


def test_every_given_condition_must_hold() -> None:
    flt = parse_filter(["j1", "j2"], "https://a.example/h", "2026-11-23T08:00", "2026-11-23T09:00")
    assert not flt.empty() and flt.matches(entry())
    assert not flt.matches(entry(job_id="j3"))
    assert not flt.matches(entry(endpoint="https://b.example/h"))
    assert not flt.matches(entry(at=AT + timedelta(hours=1)))
    assert not flt.matches(entry(at=AT - timedelta(hours=1)))


def test_times_are_utc_unless_an_offset_is_given() -> None:
    assert parse_filter(None, None, "2026-11-23T08:00", None).since == datetime(
        2026, 11, 23, 8, 0, tzinfo=UTC
    )
    shifted = parse_filter(None, None, "2026-11-23T08:00+02:00", None).since
    assert shifted == datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def test_a_bad_time_is_refused_naming_its_flag() -> None:
    with pytest.raises(ConfigError, match=r"--since: expected an ISO time .* got 'yesterday'"):
        parse_filter(None, None, "yesterday", None)


def test_job_filters_ignore_the_endpoint_it_does_not_have() -> None:
    job_entry = DlqEntry("jobs", 0, 3, AT, "j9", "invalid_json", "bad")
    assert DlqFilter(job_ids=frozenset({"j9"})).matches(job_entry)
    assert not DlqFilter(endpoint="https://a.example/h").matches(job_entry)
