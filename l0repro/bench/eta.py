"""How long training runs would take on this machine, from a short timing: ``make reproduce-cifar``
asks it first (``--gpu-job``), so that a CPU user learns at once that Table 2 is a GPU job.

Each experiment's model takes a few training steps (forward, cross-entropy, backward, SGD) on
synthetic images at a small batch, on the device and thread count a run would use; the time per
image, scaled to the experiment's batch, steps per epoch and epochs, gives its estimate. Small
batches use a CPU better per image than large ones, so the estimate errs short.

With ``--gpu-job`` and no CUDA device it also says how to go on anyway and what to run at CPU
scale instead (table2s), and exits 1; with CUDA it exits 0 at once, timing nothing.

example:
  python -m l0repro.bench eta table2/wrn_c10_l0_001 table2s/wrn16_c10_l0_001
  python -m l0repro.bench eta --gpu-job --seeds 0 table2/wrn_c10_dropout,table2/wrn_c10_l0_001
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from l0repro import threads
from l0repro.models.build import build_model
from l0repro.runtime import resolve_device

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
CPU_SCALE = "table2s/wrn16_c10_l0_001"  # what a CPU runs instead of Table 2
TRAIN_IMAGES = {"cifar10": 50000, "cifar100": 50000, "mnist": 60000}


def compose_experiment(experiment: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("train", overrides=[f"experiment={experiment}"])


def seconds_per_image(cfg, device: torch.device, batch: int, steps: int) -> float:
    """Training seconds per image of ``cfg``'s model at batch ``batch`` (after one warm-up step)."""
    torch.manual_seed(0)
    model = build_model(cfg.model).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    shape = (batch, 1, 28, 28) if cfg.data.name == "mnist" else (batch, 3, 32, 32)
    x = torch.randn(shape, device=device)
    y = torch.randint(0, int(cfg.data.num_classes), (batch,), device=device)

    def step() -> None:
        loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        float(loss.detach())  # waits for the device

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / (steps * batch)


def human(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds / 60:.0f} min"


def estimate(experiment: str, device: torch.device, batch: int, steps: int) -> tuple[str, float, float]:
    """(what it trains, seconds per step at its batch, seconds for the whole run)."""
    cfg = compose_experiment(experiment)
    previous = torch.get_num_threads()
    n_threads = threads.choose(cfg.trainer.get("threads", "auto"), str(cfg.model.name)).threads
    torch.set_num_threads(n_threads)
    try:
        per_image = seconds_per_image(cfg, device, batch, steps)
    finally:
        torch.set_num_threads(previous)
    tc = cfg.trainer
    per_epoch = math.ceil(TRAIN_IMAGES[cfg.data.name] / tc.batch_size)
    run_steps = per_epoch * tc.epochs if tc.max_steps is None else min(per_epoch * tc.epochs, tc.max_steps)
    what = (f"{cfg.model.name} {cfg.model.method}, {tc.epochs} epochs x {per_epoch} steps of "
            f"{tc.batch_size}, {n_threads} thread{'s' * (n_threads > 1)}")
    return what, per_image * tc.batch_size, per_image * tc.batch_size * run_steps


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m l0repro.bench eta", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiments", nargs="+", help="experiment names (space- or comma-separated)")
    p.add_argument("--gpu-job", action="store_true",
                   help="without CUDA: say so, what to run instead, and exit 1 (make reproduce-cifar)")
    p.add_argument("--seeds", default="0", help="the seeds each experiment runs with, comma-separated")
    p.add_argument("--batch", type=int, default=4, help="the batch the timing uses (scaled up after)")
    p.add_argument("--steps", type=int, default=1, help="timed steps per model, after one warm-up")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    experiments = [e for arg in args.experiments for e in arg.split(",") if e]
    seeds = len([s for s in str(args.seeds).split(",") if s.strip()])
    device = resolve_device(args.device)
    if args.gpu_job and device.type == "cuda":
        return 0
    where = f"{device.type}, {torch.cuda.get_device_name(device)}" if device.type == "cuda" else \
        f"cpu, {len(threads.allowed_cpus())} allowed CPUs"
    print(f"estimated on this machine ({where}) from {args.steps} step(s) at batch {args.batch}, per image "
          "scaled to each run:", flush=True)
    timed: dict[tuple, tuple[str, float, float]] = {}

    def cached(experiment: str) -> tuple[str, float, float]:
        cfg = compose_experiment(experiment)
        key = (str(cfg.model.name), str(cfg.model.method), cfg.trainer.epochs, cfg.trainer.batch_size)
        if key not in timed:  # CIFAR-100's 100 logits take the same time as CIFAR-10's 10
            timed[key] = estimate(experiment, device, args.batch, args.steps)
        return timed[key]

    total = 0.0
    for experiment in experiments:
        what, per_step, run_s = cached(experiment)
        total += seeds * run_s
        print(f"  {experiment}: {what}: {per_step:.2f} s a step, {human(run_s)} a run", flush=True)
    runs = len(experiments) * seeds
    print(f"all {runs} run(s): about {human(total)}")
    if not args.gpu_job:
        return 0
    _, _, small_s = cached(CPU_SCALE)
    print(f"\nThis is a GPU job (no CUDA device here). To train anyway: make reproduce-cifar FORCE=1\n"
          f"At CPU scale instead (Table 2's WRN at table2s scale, about {human(small_s)} a run here):\n"
          f"  python -m l0repro.train experiment={CPU_SCALE}\n"
          f"  (the other table2s rows: ls conf/experiment/table2s)")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
