"""How many CPU threads torch uses: ``trainer.threads`` (``auto`` or a number).

OpenMP threads that wait for a core another process holds spin instead of working: on the
2-core dev machine with both cores busy elsewhere, the MLP ran 45x slower with 2 threads than
with 1 (issue 25; ``python -m l0repro.bench threads`` measures it). So ``auto`` takes at most
the cores that are free now, and 1 for the models that gain nothing from a second thread.
Measured on the 2-core dev machine (steps/s at 2 threads over 1): quiet, MLP 0.88x, LeNet-5
1.62x, WRN-16-1 1.80x; one core busy, 0.23x, 0.09x, 0.87x; both busy, 0.07x, 0.39x, 0.44x.

An explicit choice wins: ``trainer.threads=N``, else ``OMP_NUM_THREADS`` from the environment
(what torchrun sets for its ranks), else ``auto``.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import torch

ENV = "OMP_NUM_THREADS"
# `python -m l0repro.bench threads`: at 1 thread no slower than at 2 on a quiet machine (the MLP's
# small matmuls), and far faster on a busy one
ONE_THREAD_MODELS = frozenset({"mlp"})
SAMPLE_S = 0.1  # how long the CPUs' idle counters are watched to count the busy ones


@dataclass(frozen=True)
class ThreadChoice:
    """The intra-op thread count for this process and why it was chosen."""

    threads: int
    reason: str


def allowed_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity mask, e.g. a cgroup's or ``taskset``'s)."""
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def _cpu_times(cpus: set[int]) -> dict[int, tuple[int, int]] | None:
    """(busy, total) jiffies per CPU in ``cpus`` from /proc/stat; None where it is unreadable."""
    try:
        lines = open("/proc/stat").read().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        ticks = [int(f) for f in fields]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
        out[int(name[3:])] = (sum(ticks[:8]) - idle, sum(ticks[:8]))
    return out


def busy_cpus(cpus: set[int], sample_s: float = SAMPLE_S) -> int:
    """How many of ``cpus`` other processes keep busy: their busy share over ``sample_s``, summed
    and rounded (a process that moves between two CPUs counts once). 0 where /proc is unreadable."""
    before = _cpu_times(cpus)
    if not before:
        return 0
    time.sleep(sample_s)  # this process sleeps meanwhile: what is busy is someone else's
    after = _cpu_times(cpus) or {}
    share = 0.0
    for cpu, (busy0, total0) in before.items():
        busy1, total1 = after.get(cpu, (busy0, total0))
        if total1 > total0:
            share += (busy1 - busy0) / (total1 - total0)
    return round(share)


def local_processes(environ: dict[str, str]) -> int:
    """The processes of this run on this machine (torchrun's ranks share its cores)."""
    return max(1, int(environ.get("LOCAL_WORLD_SIZE") or environ.get("WORLD_SIZE") or 1))


def choose(setting: int | str, model: str, environ: dict[str, str] | None = None) -> ThreadChoice:
    """The thread count for ``trainer.threads=setting`` and model family ``model`` (cfg.model.name).

    Raises:
        ValueError: ``setting`` is neither ``auto`` nor a positive integer.
    """
    environ = os.environ if environ is None else environ
    if setting != "auto":
        if isinstance(setting, bool) or not str(setting).isdigit() or int(setting) < 1:
            raise ValueError(f"trainer.threads={setting!r}: expected auto or a positive integer")
        return ThreadChoice(int(setting), "trainer.threads")
    if environ.get(ENV, "").strip().isdigit() and int(environ[ENV]) >= 1:
        return ThreadChoice(int(environ[ENV]), f"{ENV} from the environment")
    cpus = allowed_cpus()
    busy = busy_cpus(cpus)
    free = max(1, (len(cpus) - busy) // local_processes(environ))
    where = f"{len(cpus)} allowed CPUs, {busy} busy"
    if local_processes(environ) > 1:
        where += f", shared by {local_processes(environ)} processes"
    if model in ONE_THREAD_MODELS:
        return ThreadChoice(1, f"auto: {model} is no faster with more ({where})")
    return ThreadChoice(free, f"auto: the free cores ({where})")


def configure(cfg, quiet: bool = False) -> ThreadChoice:
    """Set torch's intra-op threads from the train config (``cfg.trainer.threads``, default
    ``auto``) and print the choice on stderr unless ``quiet``."""
    choice = choose(cfg.trainer.get("threads", "auto"), str(cfg.model.name))
    torch.set_num_threads(choice.threads)
    if not quiet:
        print(f"l0repro: {choice.threads} CPU thread{'s' * (choice.threads > 1)} ({choice.reason})",
              file=sys.stderr)
    return choice
