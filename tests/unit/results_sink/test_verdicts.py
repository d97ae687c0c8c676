from __future__ import annotations

import pytest

from results_sink.http import Outcome
from results_sink.verdicts import Verdict, attempt_class, judge


@pytest.mark.parametrize(
    ("outcome", "verdict", "healthy", "label"),
    [
        (Outcome(204), Verdict.DELIVERED, True, "2xx"),
        (Outcome(410), Verdict.GONE, True, "4xx"),
        (Outcome(400), Verdict.RETRY, True, "4xx"),  # about this delivery: the endpoint answers
        (Outcome(429), Verdict.RETRY, False, "4xx"),
        (Outcome(503), Verdict.RETRY, False, "5xx"),
        (Outcome(None, error="timeout"), Verdict.RETRY, False, "error"),
        (Outcome(None, error="private address", forbidden=True), Verdict.FORBIDDEN, None, "forbidden"),
    ],
)
def test_each_outcome_has_one_verdict_and_one_word_for_the_breaker(
    outcome: Outcome, verdict: Verdict, healthy: bool | None, label: str
) -> None:
    assert judge(outcome) == (verdict, healthy)
    assert attempt_class(outcome) == label
