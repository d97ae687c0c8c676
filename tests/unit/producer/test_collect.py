"""The batch manifest: what submit-file writes and collect reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from producer import Manifest, ManifestError


def test_a_manifest_survives_its_round_trip(tmp_path: Path) -> None:
    m = Manifest("jobs.jsonl", "results", {0: 5, 1: 0}, jobs=[(1, "a"), (3, "b")], rejected=[(2, "not JSON")])
    path = tmp_path / "m.json"
    m.save(path)
    assert Manifest.load(path) == m
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the manifest: No such file or directory"),
        (b"not json", "not a Sluice manifest"),
        (b'{"v": 2}', "manifest version 2, expected 1"),
        (b'{"v": 1, "source": "f"}', "not a Sluice manifest (KeyError('results_topic'))"),
        (b"[1, 2]", "not a Sluice manifest"),
    ],
)
def test_a_bad_manifest_is_refused_with_the_reason(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "m.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        Manifest.load(path)
    assert info.value.code == "invalid_manifest" and str(path) in str(info.value)
