"""trainer.threads: auto never takes more threads than the process may use, nor the busy cores;
an explicit count or OMP_NUM_THREADS wins; the run prints what it chose."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from l0repro import threads
from tests.conftest import REPO

# what threads.configure prints as the chosen count, in a process pinned to its first allowed CPU
PINNED = """
import os, torch
from omegaconf import OmegaConf
from l0repro import threads
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
cfg = OmegaConf.create({"trainer": {"threads": "auto"}, "model": {"name": "wrn-16-1"}})
threads.configure(cfg)
print(torch.get_num_threads(), len(os.sched_getaffinity(0)))
"""


def fake_machine(monkeypatch, allowed: int, busy: int) -> None:
    monkeypatch.setattr(threads, "allowed_cpus", lambda: set(range(allowed)))
    monkeypatch.setattr(threads, "busy_cpus", lambda cpus, sample_s=0: busy)
    for key in (threads.ENV, "LOCAL_WORLD_SIZE", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)


def test_auto_never_exceeds_the_allowed_cpus():
    env = {k: v for k, v in os.environ.items() if k != threads.ENV}
    proc = subprocess.run([sys.executable, "-c", PINNED], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    chosen, allowed = map(int, proc.stdout.split())
    assert allowed == 1 and chosen == 1
    assert "l0repro: 1 CPU thread (auto: the free cores (1 allowed CPUs, " in proc.stderr
    # and here, whatever this machine's mask and load
    choice = threads.choose("auto", "wrn-16-1", environ={})
    assert 1 <= choice.threads <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize("allowed, busy, local, want", [(4, 0, 1, 4), (4, 1, 1, 3), (4, 3, 1, 1),
                                                        (2, 2, 1, 1), (2, 5, 1, 1), (8, 0, 2, 4)])
def test_auto_takes_the_free_cores_shared_by_the_local_ranks(monkeypatch, allowed, busy, local, want):
    fake_machine(monkeypatch, allowed, busy)
    if local > 1:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local))
    choice = threads.choose("auto", "wrn-28-10")
    assert choice.threads == want
    assert f"{allowed} allowed CPUs, {busy} busy" in choice.reason


def test_the_mlp_takes_one_thread_and_lenet5_the_free_cores(monkeypatch):
    fake_machine(monkeypatch, allowed=4, busy=1)
    assert threads.choose("auto", "mlp").threads == 1
    assert threads.choose("auto", "lenet5").threads == 3


def test_an_explicit_count_wins_over_auto_and_the_environment(monkeypatch):
    fake_machine(monkeypatch, allowed=2, busy=2)
    assert threads.choose(3, "mlp", environ={threads.ENV: "2"}) == threads.ThreadChoice(3, "trainer.threads")
    assert threads.choose("auto", "mlp", environ={threads.ENV: "2"}).threads == 2  # the user's, not 1
    assert threads.choose("auto", "wrn-16-1", environ={threads.ENV: "4"}) == \
        threads.ThreadChoice(4, f"{threads.ENV} from the environment")
    assert threads.choose("auto", "wrn-16-1", environ={threads.ENV: ""}).threads == 1  # unset: auto


@pytest.mark.parametrize("setting", [0, -1, "two", 1.5, True])
def test_a_bad_setting_is_refused_with_its_value(setting):
    with pytest.raises(ValueError, match=r"trainer.threads=.*expected auto or a positive integer"):
        threads.choose(setting, "mlp", environ={})


def test_busy_cpus_sums_the_busy_shares(monkeypatch):
    # (busy, total) jiffies: CPU 0 busy 100 % of the window, CPU 1 and 2 each 40 % (one process moving)
    samples = iter([{0: (0, 0), 1: (0, 0), 2: (0, 0)}, {0: (10, 10), 1: (4, 10), 2: (4, 10)}])
    monkeypatch.setattr(threads, "_cpu_times", lambda cpus: next(samples))
    assert threads.busy_cpus({0, 1, 2}, sample_s=0) == 2


def test_configure_sets_and_prints_the_choice(monkeypatch, capsys):
    import torch

    fake_machine(monkeypatch, allowed=2, busy=0)
    before = torch.get_num_threads()
    try:
        cfg = OmegaConf.create({"trainer": {"threads": 2}, "model": {"name": "mlp"}})
        assert threads.configure(cfg).threads == 2 and torch.get_num_threads() == 2
        assert "l0repro: 2 CPU threads (trainer.threads)" in capsys.readouterr().err
        threads.configure(OmegaConf.create({"trainer": {}, "model": {"name": "mlp"}}), quiet=True)
        assert torch.get_num_threads() == 1 and capsys.readouterr().err == ""  # no key: auto
    finally:
        torch.set_num_threads(before)
