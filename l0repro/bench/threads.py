"""Training steps per second at 1 and 2 CPU threads, quiet and beside busy cores.

For each model (the real training step, ``Trainer.step_fn``, on real batches: table1/mlp_l0,
table1/lenet5_l0, table2s/wrn16_c10_l0_001) and each load (no busy core, one, all of this
process's CPUs), busy-loop processes are started to make the load, then each thread count is
timed in alternating windows (1, 2, 2, 1, ...: the same machine for both) and the steps per
second of each are printed with their ratio. OpenMP threads that wait for a core held by another
process spin, so a second thread can make a step many times slower: what ``trainer.threads:
auto`` (``l0repro.threads``) is chosen from.

Run it on a quiet machine (the first line says how many CPUs were busy before it started); it
takes about 2 minutes on 2 cores.

example:
  python -m l0repro.bench threads
  python -m l0repro.bench threads --models mlp --loads 0 2 --seconds 3 --json threads.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from l0repro.threads import allowed_cpus, busy_cpus

EXPERIMENTS = {"mlp": "table1/mlp_l0", "lenet5": "table1/lenet5_l0", "wrn": "table2s/wrn16_c10_l0_001"}
BUSY_LOOP = "while True: pass"


@dataclass
class Cell:
    """One model at one load and thread count."""

    model: str
    busy_loops: int
    busy_measured: int  # busy CPUs seen with the loops running, before timing
    threads: int
    steps: int
    seconds: float

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds


@contextmanager
def busy_cores(n: int) -> Iterator[list[subprocess.Popen]]:
    """``n`` busy-loop processes (one core each) for the duration of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(n)]
    try:
        time.sleep(0.5 if n else 0)  # let them start spinning
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=30)


def step_timer(experiment: str, data_root: str, run_dir: Path):
    """A function ``(threads, seconds) -> (steps, elapsed)`` timing the experiment's training step."""
    from l0repro.bench.mnist import make_trainer

    trainer = make_trainer(experiment, data_root, "cpu", run_dir, ("trainer.threads=1",))
    gen = torch.Generator().manual_seed(0)
    batches = []
    for x, y in trainer.data.train_batches(trainer.cfg.trainer.batch_size, gen, trainer.memory_format):
        batches.append((x, y))
        if len(batches) == 8:
            break
    trainer.model.train()

    def timed(threads: int, seconds: float, min_steps: int = 2) -> tuple[int, float]:
        torch.set_num_threads(threads)
        trainer.step_fn(*batches[0])  # the pool at its new size before the clock starts
        steps, start = 0, time.perf_counter()
        while steps < min_steps or time.perf_counter() - start < seconds:
            loss, _ = trainer.step_fn(*batches[steps % len(batches)])
            float(loss)
            steps += 1
        return steps, time.perf_counter() - start

    return timed


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m l0repro.bench threads", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="thread counts to compare")
    p.add_argument("--loads", nargs="+", type=int, default=None,
                   help="busy-loop processes per condition (default: 0, 1 and one per allowed CPU)")
    p.add_argument("--seconds", type=float, default=2.0, help="length of one timed window")
    p.add_argument("--rounds", type=int, default=2, help="windows per thread count (alternating)")
    p.add_argument("--data-root", default=None, help="data directory (default: $L0REPRO_DATA or data)")
    p.add_argument("--json", default=None, help="also write the cells to this file")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[Cell]:
    args = parse_args(argv)
    cpus = allowed_cpus()
    loads = args.loads if args.loads is not None else sorted({0, 1, len(cpus)})
    root = args.data_root or os.environ.get("L0REPRO_DATA") or "data"
    print(f"torch {torch.__version__}, {len(cpus)} allowed CPUs ({os.cpu_count()} online), "
          f"{busy_cpus(cpus, 1.0)} busy before the benchmark; loads {loads} busy loops, "
          f"threads {args.threads}, {args.rounds} x {args.seconds:g} s windows", flush=True)
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory() as tmp:
        timers = {m: step_timer(EXPERIMENTS[m], root, Path(tmp) / m) for m in args.models}
        for load in loads:
            with busy_cores(load):
                seen = busy_cpus(cpus, 0.5)
                for model, timed in timers.items():
                    totals = {t: [0, 0.0] for t in args.threads}
                    for r in range(args.rounds):
                        for t in (args.threads if r % 2 == 0 else args.threads[::-1]):
                            steps, secs = timed(t, args.seconds)
                            totals[t][0] += steps
                            totals[t][1] += secs
                    for t, (steps, secs) in totals.items():
                        cells.append(Cell(model, load, seen, t, steps, secs))
                    print(row(cells[-len(args.threads):]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"torch": torch.__version__, "allowed_cpus": len(cpus),
             "cells": [asdict(c) | {"steps_per_s": c.steps_per_s} for c in cells]}, indent=2))
    return cells


def row(cells: list[Cell]) -> str:
    """One model at one load: steps/s per thread count, and each against the first."""
    first = cells[0]
    speeds = "  ".join(f"{c.threads} thr {c.steps_per_s:8.1f}" for c in cells)
    ratios = "  ".join(f"{c.threads}/{first.threads} thr {c.steps_per_s / first.steps_per_s:5.2f}x"
                       for c in cells[1:])
    return (f"{first.model:7s} {first.busy_loops} busy loops ({first.busy_measured} CPUs busy): "
            f"steps/s {speeds}   speed {ratios}")


if __name__ == "__main__":
    main()
