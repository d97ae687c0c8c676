from __future__ import annotations

from pathlib import Path

import pytest

from sluice import broker
from sluice.errors import ConfigError


def test_missing_maven_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "sluice.broker.shutil.which", lambda tool: None if tool == "mvn" else "/usr/bin/" + tool
    )
    with pytest.raises(ConfigError, match=r"'mvn' was not found on PATH.*Maven"):
        broker.fetch_kafka(tmp_path)


def test_missing_java_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "sluice.broker.shutil.which", lambda tool: None if tool == "java" else "/usr/bin/" + tool
    )
    with pytest.raises(ConfigError, match=r"'java' was not found on PATH.*Java 17"):
        broker.start_broker(tmp_path)


def test_cached_jars_are_reused_without_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / f"kafka-{broker.KAFKA_VERSION}"
    (home / "lib").mkdir(parents=True)
    (home / ".complete").write_text(broker.KAFKA_VERSION)
    monkeypatch.setattr("sluice.broker.shutil.which", lambda tool: None)  # Maven would be needed to fetch
    assert broker.fetch_kafka(tmp_path) == home / "lib"


def test_cluster_ids_are_kraft_shaped() -> None:
    for _ in range(200):
        cid = broker._cluster_id()
        assert len(cid) == 22 and not cid.startswith("-") and "=" not in cid
