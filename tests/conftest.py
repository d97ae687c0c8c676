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
