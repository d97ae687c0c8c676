"""The gateway's allocator settings take on glibc (these machines and the image are glibc)."""

from __future__ import annotations

import platform

import pytest

from gateway import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's options are glibc's")
def test_tune_applies_every_setting_on_glibc() -> None:
    assert allocator.tune() is True
