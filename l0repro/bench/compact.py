"""Inference speed of compact networks against the gated models they come from (CPU).

For each run directory with ``weights.pt`` (found under ``--runs``, or given with ``--run``)
and each synthetic model (``--synthetic``: a freshly initialised model whose ``log_alpha``s
are preset to reach a given architecture, so speed can be measured without a trained run),
times the gated model in eval mode and ``compact(model)`` in the same process on the CPU, both
in the same memory format (channels_last for conv networks, as the trainer runs them):
latency at batch 1 and throughput at batch 1000 for MNIST models, throughput at batch 256
for WRNs, on random inputs of the dataset's size (speed does not depend on the values).
Each figure is the median over ``--repeats`` interleaved repeats; the speedup is the median
of the paired gated/compact time ratios. With one thread (the default) the clock is the
process's CPU time, so time spent waiting for a core on a shared machine does not count.
Beside the speedup: the FLOP ratio (``FlopCounterMode`` on the gated model, which computes
every unit, over that on the compact one) and the quotient speedup / FLOP ratio. Results go
to ``speedup.json`` in each run directory and, with ``--json``, to one file for all rows.

    python -m l0repro.bench compact [--runs results/runs] [--run DIR ...]
        [--synthetic lenet5=9-18-65-25 mlp=266-88-33 wrn-16-4=0.5] [--threads 1] [--json FILE]

example:
  python -m l0repro.bench compact --runs results/runs --synthetic lenet5=9-18-65-25

A synthetic spec is ``MODEL=ARCH``: MODEL is ``mlp``, ``lenet5`` or ``wrn-D-K``; ARCH lists
the kept units per counted layer in the paper's order (dash-separated), or, for a WRN, one
fraction kept in every gated conv.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from l0repro.compact_run import counted_flops, layer_params, load_run_model
from l0repro.host_allocator import keep_freed_memory
from l0repro.l0 import compact, gates
from l0repro.l0.layers import L0Gate, gated_layers
from l0repro.models import MLP, LeNet5, WideResNet
from l0repro.record import SPEEDUP_FILE, WEIGHTS_FILE, atomic_write_text

# the paper's lambda-sep architectures (Table 1) and a half-width WRN
DEFAULT_SYNTHETIC = ("lenet5=9-18-65-25", "mlp=266-88-33", "wrn-16-4=0.5")
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
TARGET_EFFICIENCY = 0.6  # LeNet-5: throughput speedup >= 60 % of the FLOP ratio


# ------------------------------------------------------------------------ synthetic models

def set_gates_(gate: L0Gate, kept: torch.Tensor, generator: torch.Generator) -> None:
    """Close the gates outside ``kept`` (bool); open the kept ones, half fully (z_hat = 1),
    half part-way (0 < z_hat < 1), in random order."""
    n = gate.n
    with torch.no_grad():
        partial = torch.rand(n, generator=generator) * 4 - 2  # z_hat in (0.04, 0.96)
        full = torch.rand(n, generator=generator) < 0.5
        value = torch.where(full, torch.full((n,), gates.LOG_ALPHA_MAX), partial)
        gate.log_alpha.copy_(torch.where(kept.cpu(), value, torch.full((n,), gates.LOG_ALPHA_MIN)))


def choose(n: int, k: int, generator: torch.Generator, among: torch.Tensor | None = None) -> torch.Tensor:
    """A bool mask of ``k`` of ``n`` units drawn at random (from the ``among`` mask if given)."""
    pool = torch.arange(n) if among is None else torch.nonzero(among).flatten()
    if not 0 <= k <= len(pool):
        raise ValueError(f"cannot keep {k} units of {len(pool)}")
    mask = torch.zeros(n, dtype=torch.bool)
    mask[pool[torch.randperm(len(pool), generator=generator)[:k]]] = True
    return mask


def preset_architecture(model: nn.Module, arch: Sequence[float], generator: torch.Generator) -> None:
    """Set ``log_alpha``s so that ``model.architecture()`` equals ``arch``.

    MLP and LeNet-5: kept units per counted layer (LeNet-5's fc1 count is of inputs whose
    conv2 map is kept too). WRN: one count per gated conv, or one fraction for all.
    """
    layers = gated_layers(model)
    if isinstance(model, WideResNet) and len(arch) == 1 and arch[0] < 1:
        arch = [round(arch[0] * layer.out_channels) for _, layer in layers]
    if len(arch) != len(layers):
        raise ValueError(f"{type(model).__name__} needs {len(layers)} counts, got {list(arch)}")
    masks = [choose(layer.gate.n, int(k), generator) for (_, layer), k in zip(layers, arch, strict=True)]
    if isinstance(model, LeNet5):  # fc1's live inputs lie in the kept conv2 maps
        area = model.s3 * model.s3
        masks[2] = choose(model.fc1.in_features, int(arch[2]), generator,
                          among=masks[1].repeat_interleave(area))
    for (_, layer), mask in zip(layers, masks, strict=True):
        set_gates_(layer.gate, mask, generator)


@torch.no_grad()
def randomize_batchnorm_(model: nn.Module, generator: torch.Generator) -> None:
    """Running statistics and affine parameters as a trained network might have them, so
    that closed WRN maps feed non-zero constants ``relu(bn2(0))``."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
            m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
            m.bias.copy_(torch.rand(n, generator=generator) - 0.5)


def synthetic_model(spec: str, seed: int = 0) -> nn.Module:
    """A gated model built from ``MODEL=ARCH`` (see the module docstring), in eval mode."""
    name, _, arch_text = spec.partition("=")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if name == "mlp":
        model = MLP()
    elif name == "lenet5":
        model = LeNet5()
    elif name.startswith("wrn-"):
        depth, widen = (int(v) for v in name.split("-")[1:])
        model = WideResNet(depth, widen)
        randomize_batchnorm_(model, gen)
    else:
        raise ValueError(f"unknown synthetic model {name!r}; expected mlp, lenet5 or wrn-D-K")
    preset_architecture(model, [float(v) for v in arch_text.split("-")], gen)
    return model.eval()


# ------------------------------------------------------------------------ timing

Clock = Callable[[], float]


def _inner_count(fn: Callable[[], Any], min_s: float, clock: Clock) -> int:
    """Calls per timed repeat so that one repeat takes at least ``min_s``."""
    t0 = clock()
    fn()
    once = clock() - t0
    return max(1, int(min_s / max(once, 1e-6)))


def time_pair(gated: nn.Module, small: nn.Module, x: torch.Tensor, repeats: int,
              min_s: float, clock: Clock = time.perf_counter) -> dict[str, float]:
    """Median seconds per call of both models on ``x`` and the median paired ratio."""
    calls = {"gated": lambda: gated(x), "compact": lambda: small(x)}
    with torch.inference_mode():
        for fn in calls.values():  # warm-up: allocator, oneDNN primitive caches
            fn()
            fn()
        inner = {k: _inner_count(fn, min_s, clock) for k, fn in calls.items()}
        times: dict[str, list[float]] = {k: [] for k in calls}
        for r in range(repeats):  # interleaved, order alternating: both see the same load
            for k in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
                t0 = clock()
                for _ in range(inner[k]):
                    calls[k]()
                times[k].append((clock() - t0) / inner[k])
    ratios = [a / b for a, b in zip(times["gated"], times["compact"], strict=True)]
    return {"gated_s": statistics.median(times["gated"]),
            "compact_s": statistics.median(times["compact"]), "speedup": statistics.median(ratios)}


def memory_format(model: nn.Module, choice: str) -> torch.memory_format:
    """``auto``: channels_last for conv networks, as the trainer runs them."""
    if choice == "auto":
        choice = "channels_last" if any(isinstance(m, nn.Conv2d) for m in model.modules()) \
            else "contiguous"
    return torch.channels_last if choice == "channels_last" else torch.contiguous_format


def bench_model(label: str, gated: nn.Module, args: argparse.Namespace) -> dict[str, Any]:
    gated = gated.eval()
    small = compact(gated)
    sample = tuple(gated.input_shape)  # one example's (C, H, W)
    fmt = memory_format(gated, args.memory_format)
    gated, small = gated.to(memory_format=fmt), small.to(memory_format=fmt)
    row: dict[str, Any] = {
        "source": label, "model": getattr(gated, "name", type(gated).__name__),
        "architecture": gated.architecture(), "full_architecture": gated.full_architecture(),
        "flops_gated": counted_flops(gated, gated.example_input()),
        "flops_compact": counted_flops(small, gated.example_input()),
        "params_compact": layer_params(small),
        "threads": torch.get_num_threads(), "torch_version": torch.__version__,
        "memory_format": "channels_last" if fmt == torch.channels_last else "contiguous",
        "clock": args.clock}
    row["flop_ratio"] = row["flops_gated"] / row["flops_compact"]
    gen = torch.Generator().manual_seed(0)
    if isinstance(gated, WideResNet):
        batches = {"throughput": args.wrn_batch}
        repeats = args.wrn_repeats
    else:
        batches = {"latency": 1, "throughput": args.batch}
        repeats = args.repeats
    for kind, batch in batches.items():
        x = torch.rand(batch, *sample, generator=gen).contiguous(memory_format=fmt)
        t = time_pair(gated, small, x, repeats, args.min_time, CLOCKS[row["clock"]])
        row[f"{kind}_batch"] = batch
        if kind == "latency":
            row |= {"latency_gated_ms": 1e3 * t["gated_s"], "latency_compact_ms": 1e3 * t["compact_s"]}
        else:
            row |= {"throughput_gated": batch / t["gated_s"], "throughput_compact": batch / t["compact_s"]}
        row[f"{kind}_speedup"] = t["speedup"]
    row["throughput_speedup_per_flop_ratio"] = row["throughput_speedup"] / row["flop_ratio"]
    return row


# ------------------------------------------------------------------------ CLI

def find_runs(root: Path) -> list[Path]:
    """Run directories under ``root`` that hold evaluation weights, sorted."""
    return sorted(p.parent for p in root.rglob(WEIGHTS_FILE)) if root.exists() else []


def print_row(row: dict[str, Any]) -> None:
    arch = "-".join(map(str, row["architecture"]))
    lat = (f"{row['latency_gated_ms']:8.3f} {row['latency_compact_ms']:8.3f} "
           f"{row['latency_speedup']:6.2f}x") if "latency_speedup" in row else f"{'-':>8} {'-':>8} {'-':>7}"
    eff = row["throughput_speedup_per_flop_ratio"]
    target = ""
    if row["model"] == "lenet5":
        target = "ok" if eff >= TARGET_EFFICIENCY else "MISSED"
    print(f"{row['model']:9} {row['source'][-38:]:38} {arch:>17} "
          f"{100 / row['flop_ratio']:6.1f}% {row['flop_ratio']:6.2f}x | {lat} | "
          f"{row['throughput_batch']:5d} {row['throughput_gated']:9.0f} "
          f"{row['throughput_compact']:9.0f} {row['throughput_speedup']:6.2f}x | {eff:5.2f} {target}")


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(prog="python -m l0repro.bench compact", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, default=Path("results/runs"),
                   help="find run directories with weights.pt under this folder")
    p.add_argument("--run", type=Path, nargs="*", default=None,
                   help="these run directories instead of searching --runs")
    p.add_argument("--synthetic", nargs="*", default=list(DEFAULT_SYNTHETIC),
                   help="synthetic MODEL=ARCH specs (none: --synthetic with no value)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (1: steadiest on a shared machine)")
    p.add_argument("--memory-format", default="auto", choices=["auto", "contiguous", "channels_last"],
                   help="layout of both models and the input (auto: channels_last for convs)")
    p.add_argument("--clock", default="auto", choices=["auto", *CLOCKS],
                   help="cpu: the process's CPU time (blind to waiting for a core on a shared "
                        "machine); wall: perf_counter. auto: cpu with one thread, else wall")
    p.add_argument("--repeats", type=int, default=11, help="timed repeats per figure (median)")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds per repeat, at least")
    p.add_argument("--batch", type=int, default=1000, help="MNIST throughput batch")
    p.add_argument("--wrn-batch", type=int, default=256, help="WRN throughput batch")
    p.add_argument("--wrn-repeats", type=int, default=3, help="timed repeats for WRNs")
    p.add_argument("--json", type=Path, default=None, help="also write every row to this file")
    p.add_argument("--no-write", action="store_true", help=f"do not write {SPEEDUP_FILE} into runs")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.clock == "auto":  # CPU time sums all threads: a wall-clock figure needs the wall
        args.clock = "cpu" if args.threads == 1 else "wall"
    kept_heap = keep_freed_memory()  # as the trainer on CPU: no fresh page faults per call

    runs = args.run if args.run is not None else find_runs(args.runs)
    print(f"compact vs gated (eval), CPU, torch {torch.__version__}, {torch.get_num_threads()} "
          f"thread(s), {args.clock} clock, memory format {args.memory_format}, median of "
          f"{args.repeats} repeats ({args.wrn_repeats} for WRNs) of >= {args.min_time}s, freed "
          f"memory kept on the heap: {kept_heap}; {len(runs)} run(s) with {WEIGHTS_FILE}, "
          f"{len(args.synthetic)} synthetic")
    print(f"{'model':9} {'source':38} {'architecture':>17} {'FLOPs':>7} {'ratio':>7} | "
          f"{'b1 ms':>8} {'compact':>8} {'speedup':>7} | {'batch':>5} {'img/s':>9} {'compact':>9} "
          f"{'speedup':>7} | speedup/FLOP ratio (LeNet-5 target >= {TARGET_EFFICIENCY})")
    rows = []
    for run_dir in runs:
        _, model = load_run_model(run_dir)
        row = bench_model(str(run_dir), model, args)
        print_row(row)
        rows.append(row)
        if not args.no_write:
            atomic_write_text(Path(run_dir) / SPEEDUP_FILE, json.dumps(row, indent=2) + "\n")
    for spec in args.synthetic:
        row = bench_model(f"synthetic {spec}", synthetic_model(spec), args)
        print_row(row)
        rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return rows
