"""glibc's thresholds are applied on Linux, without starting a subprocess (the run holds its lock)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from l0repro.host_allocator import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_thresholds_are_applied_without_a_subprocess(monkeypatch):
    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"keep_freed_memory started a subprocess: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    assert keep_freed_memory()
