from __future__ import annotations

import subprocess
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
    (home / "lib" / f"kafka_2.13-{broker.KAFKA_VERSION}.jar").write_bytes(b"")
    (home / ".complete").write_text(broker.KAFKA_VERSION)
    monkeypatch.setattr("sluice.broker.shutil.which", lambda tool: None)  # Maven would be needed to fetch
    assert broker.fetch_kafka(tmp_path) == home / "lib"


@pytest.fixture
def maven_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The commands fetch_kafka runs, each answered as a successful Maven run."""
    monkeypatch.setattr("sluice.broker.shutil.which", lambda tool: "/usr/bin/" + tool)
    calls: list[list[str]] = []

    def maven(cmd: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr("sluice.broker.subprocess.run", maven)
    return calls


def test_a_relative_cache_dir_fetches_into_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, maven_calls: list[list[str]]
) -> None:
    """Maven reads a relative output directory from the pom's folder: the jars went to
    .cache/kafka-V/.cache/kafka-V/lib and the broker then found no StorageTool."""
    monkeypatch.chdir(tmp_path)
    lib = broker.fetch_kafka(Path(".cache"))
    assert lib == tmp_path / ".cache" / f"kafka-{broker.KAFKA_VERSION}" / "lib"
    assert f"-DoutputDirectory={lib}" in maven_calls[0]


def test_a_marker_without_jars_fetches_again(tmp_path: Path, maven_calls: list[list[str]]) -> None:
    home = tmp_path / f"kafka-{broker.KAFKA_VERSION}"
    home.mkdir()
    (home / ".complete").write_text(broker.KAFKA_VERSION)  # left by the relative-path bug above
    broker.fetch_kafka(tmp_path)
    assert maven_calls and maven_calls[0][0] == "/usr/bin/mvn"


def test_cluster_ids_are_kraft_shaped() -> None:
    for _ in range(200):
        cid = broker._cluster_id()
        assert len(cid) == 22 and not cid.startswith("-") and "=" not in cid
