"""MNIST training-speed benchmark: seconds per epoch of the real training loop.

Times ``Trainer.train_epoch`` (600 steps: sampling gates, penalty, Adam, log-alpha clamp,
EMA, and a metrics row with expected FLOPs every ``log_every`` steps) for each L0
experiment beside the same loop on the dense model, and prints the gates' overhead as the
median of paired epoch-time ratios (epochs alternate L0/dense, so both see the same machine
load). Evaluation is not timed. ``--unfused`` times the L0 model with each layer sampling
its own gates (``trainer.fused_gates=false``) instead of the fused ``GateBank``.
``--floor`` adds a third loop, the L0 model with its gates frozen at one fixed sample (never
redrawn, no gradient, no penalty): what is left is the gating multiply and the gates' share
of the EMA and clamp, a lower bound on the overhead of any sampler.
``--cuda-graph`` runs every loop with ``trainer.cuda_graph=true`` (CUDA only; l0repro.graph_step).
Usage: ``python -m l0repro.bench mnist [--epochs 5] [--models mlp lenet5] [--unfused] [--floor]
[--cuda-graph] [--json FILE]``.

example:
  python -m l0repro.bench mnist --epochs 3 --models mlp --floor
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from tqdm.auto import tqdm

from l0repro.l0 import gates
from l0repro.l0.layers import gated_layers
from l0repro.train import Trainer
from l0repro.wandb_logger import WandbLogger

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
TARGET_S = {"mlp": 2.0, "lenet5": 11.0}  # issue 2: s/epoch on the 2-core dev machine


def make_trainer(experiment: str, data_root: str, device: str, run_dir: Path,
                 extra: tuple[str, ...] = ()) -> Trainer:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("train", overrides=[
            f"experiment={experiment}", f"data.root={data_root}", f"trainer.device={device}",
            "logger.wandb.mode=disabled", "trainer.progress=false", *extra])
    trainer = Trainer(cfg, run_dir, logger=lambda t: WandbLogger("disabled", "", None, run_dir, {}, "", ""),
                      progress=lambda t: tqdm(disable=True))
    trainer.logger, trainer.bar = trainer.make_logger(trainer), trainer.make_progress(trainer)
    trainer.total_steps = 10**12  # never stop inside the epoch
    return trainer


class FrozenGates:
    """Stands in for a trainer's regulariser: presets one fixed sample per gate, adds nothing.

    The gates' ``log_alpha`` stop requiring gradients, so no gate gradient is computed.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.samples = []
        for _, layer in gated_layers(model):
            layer.gate.log_alpha.requires_grad_(False)
            self.samples.append((layer.gate, gates.sample_gate(layer.gate.log_alpha)))

    active = False  # the loss is the cross-entropy alone

    def penalty(self) -> torch.Tensor:
        for gate, z in self.samples:
            gate.preset(z)
        return torch.zeros(())

    def after_step(self) -> None:
        pass  # nothing to clamp: the gates are frozen


def time_epoch(trainer: Trainer) -> float:
    trainer.state.batch_in_epoch = 0
    trainer.state.epoch_gen_state = trainer.data_gen.get_state()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.train_epoch()
    float(trainer.state.acc["loss"])  # wait for the last step
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m l0repro.bench mnist", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mlp", "lenet5"], choices=["mlp", "lenet5"])
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per model (median)")
    parser.add_argument("--data-root", default=None, help="MNIST directory (default: $L0REPRO_DATA or data)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--unfused", action="store_true", help="L0 layers sample their own gates")
    parser.add_argument("--floor", action="store_true",
                        help="also time the L0 loop with its gates frozen (no sampling, no gate gradient)")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="every loop with trainer.cuda_graph=true (the whole step as one CUDA graph)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import os
    root = args.data_root or os.environ.get("L0REPRO_DATA", "data")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, "
          f"gates {'per layer' if args.unfused else 'fused (GateBank)'}, "
          f"step {'cuda graph' if args.cuda_graph else 'eager'}")
    graph = ("trainer.cuda_graph=true",) if args.cuda_graph else ()
    results = []
    print(f"{'model':8} {'loop':7} {'s/epoch':>8} {'dense s/epoch':>14} {'overhead':>9} {'range':>12} "
          f"{'target':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            loops = {"dense": ("dense", ()),
                     "L0": ("l0", ("trainer.fused_gates=false",) if args.unfused else ())}
            if args.floor:
                loops["frozen"] = ("l0", ())
            trainers = {k: make_trainer(f"table1/{model}_{m}", root, args.device, Path(tmp), extra + graph)
                        for k, (m, extra) in loops.items()}
            if args.floor:
                trainers["frozen"].regularizer = FrozenGates(trainers["frozen"].model)
            for t in trainers.values():  # warm-up epoch
                time_epoch(t)
            times = {k: [] for k in trainers}
            for r in range(args.epochs):  # interleaved, order reversed every round: same load for all
                for k in (list(trainers) if r % 2 == 0 else list(trainers)[::-1]):
                    times[k].append(time_epoch(trainers[k]))
            dense = statistics.median(times["dense"])
            for k in trainers:
                if k == "dense":
                    continue
                ratios = [a / b for a, b in zip(times[k], times["dense"], strict=True)]
                secs = statistics.median(times[k])
                overhead = 100 * (statistics.median(ratios) - 1)  # median of paired ratios
                spread = f"{100 * (min(ratios) - 1):.0f}..{100 * (max(ratios) - 1):.0f}%"
                target = "-"  # the targets are the L0 loop's; the frozen loop is a lower bound
                if k == "L0":
                    target = f"{TARGET_S[model]:.1f}s " + ("ok" if secs <= TARGET_S[model] else "MISSED")
                    target += ", overhead ok" if overhead < 15 else ", overhead MISSED"
                print(f"{model:8} {k:7} {secs:8.2f} {dense:14.2f} {overhead:8.1f}% {spread:>12} {target:>7}")
                results.append({"model": model, "loop": k, "s_per_epoch": secs, "dense_s_per_epoch": dense,
                                "overhead_pct": overhead, "epochs_timed": args.epochs})
    if args.json:
        device = trainers["dense"].device
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                       "torch": torch.__version__, "step": "cuda_graph" if args.cuda_graph else "eager",
                       "gates": "per layer" if args.unfused else "fused", "results": results}, f, indent=2)
