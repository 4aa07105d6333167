"""A newcomer's `make test`: no data, no network, ``CI`` unset. The tests that need real data
skip with the reason (they do not fail), and docs/testing.md names them and their count."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import REPO
from tests.offline import offline_env


@pytest.mark.timeout(1000)  # past the subprocess's own 900 s, so that one names the hang
def test_real_data_tests_skip_with_the_reason_without_data_or_network(tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    report = tmp_path / "report.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "real_data and not slow",
           f"--junitxml={report}", "tests"]
    proc = subprocess.run(cmd, cwd=REPO, env=offline_env(L0REPRO_DATA=str(empty)),
                          capture_output=True, text=True, timeout=900)  # ~20 s when idle
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    cases = list(ET.parse(report).getroot().iter("testcase"))
    names, by_file = set(), {}
    for case in cases:
        test = f"{case.get('classname')}::{case.get('name')}"
        skipped = case.find("skipped")
        assert skipped is not None, f"{test} was not skipped:\n{ET.tostring(case, encoding='unicode')}"
        reason = skipped.get("message", "")
        if not reason.startswith("no real data: "):
            continue  # skipped earlier for a reason of its own (e.g. needs a GPU)
        assert str(empty) in reason and "could not be downloaded" in reason, (test, reason)
        assert "make data" in reason, (test, reason)
        names.add(case.get("name").split("[")[0])
        by_file.setdefault(case.get("classname").replace(".", "/") + ".py", []).append(case.get("name"))
    count = sum(len(tests) for tests in by_file.values())
    assert {"test_smoke_run_learns_and_writes_a_complete_record",
            "test_fused_and_per_layer_training_agree",
            "test_per_layer_lambdas_of_the_wrong_length_are_refused",
            "test_real_cifar10_loads_with_official_checks",
            "test_tiny_l0_wrn_trains_on_the_real_cifar10_copy"} <= names
    assert f"{count} tests skipped: they need real data" in proc.stdout
    assert not any(empty.iterdir())  # the failed downloads left nothing behind
    # docs/testing.md says how many and which ("Tests that need data")
    page = (REPO / "docs" / "testing.md").read_text()
    listing = "\n".join(f"{f}: {', '.join(tests)}" for f, tests in sorted(by_file.items()))
    assert re.search(rf"skips\s+the\s+{count}\s+tests", page), \
        f"docs/testing.md should say that make test skips the {count} tests:\n{listing}"
    unnamed = [n for n in sorted(names) if f"`{n}`" not in page]
    assert not unnamed, f"docs/testing.md does not name {unnamed}; all of them:\n{listing}"


def test_the_tests_that_need_a_gpu_are_named_among_the_skips():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the GPU tests run instead of skipping")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
                           "tests/test_augment.py", "-k", "cuda"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:]
    summary = proc.stdout.split("tests skipped: they need a GPU", 1)
    assert len(summary) == 2, proc.stdout[-2000:]
    assert "needs a GPU" in summary[1] and "skipped tests/test_augment.py::test_runs_on_cuda" in summary[1]
