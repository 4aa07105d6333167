"""The library on a model the suite never built, on a device: compaction exact, and how fast.

torchvision's resnet18 (10 classes), each residual block's first conv swapped for
``L0Conv2d.from_conv`` as a user would, a share ``--closed`` of each gated conv's maps closed
at random and the rest open fully or part-way, batch-norm statistics set as a trained network
might have them (so closed maps feed non-zero constants). The model goes to ``--device``,
``compact(model, x)`` runs there, and the script prints:

- the largest difference between the gated model's and the compact model's eval outputs on a
  random batch, relative to the output scale (the promise: at most 1e-5); exit code 1 if not;
- pruned against dense FLOPs (``pruned_flops`` / ``dense_flops``) and kept/dense parameters;
- images/s of both models at ``--batch-size`` and the median paired speedup, timed as
  ``bench compact`` times them (``time_pair``: interleaved repeats), with the clock read after a
  device synchronisation.

    python -m l0repro.bench library [--device cuda] [--closed 0.5] [--batch-size 256]
        [--image-size 32] [--repeats 20] [--seed 0] [--json FILE]

The GPU lease (scripts/gpu_lease.sh, step 1e) runs it with ``--device cuda``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from l0repro.bench.compact import Clock, choose, randomize_batchnorm_, set_gates_, time_pair
from l0repro.l0 import L0Conv2d, compact, dense_flops, param_counts, pruned_flops
from l0repro.l0.compact import RELATIVE_TOLERANCE as EXACT  # compact's own promise
from l0repro.l0.layers import L0Layer, gated_layers

MIN_S = 0.05  # each timed repeat runs a model at least this long (several calls if need be)


def gated_resnet18(closed: float, seed: int) -> nn.Module:
    """resnet18 with every block's conv1 gated and ``closed`` of its maps closed (eval mode)."""
    import torchvision  # a suite dependency; the method itself never needs it

    if not 0 <= closed <= 1:
        raise ValueError(f"--closed {closed}: a share of the maps, in [0, 1]")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=10)
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            block.conv1 = L0Conv2d.from_conv(block.conv1, lam=0.1)
    randomize_batchnorm_(model, gen)
    for _, layer in gated_layers(model):
        n = layer.gate.n
        set_gates_(layer.gate, choose(n, n - round(closed * n), gen), gen)
    return model.eval()


def device_clock(device: torch.device) -> Clock:
    """``time.perf_counter`` read once the device's queued work is done (CUDA runs ahead of the
    host, so an unsynchronised clock would time the launches only)."""
    if device.type != "cuda":
        return time.perf_counter

    def clock() -> float:
        torch.cuda.synchronize(device)
        return time.perf_counter()

    return clock


def measure(device: str, closed: float, batch_size: int, image_size: int, repeats: int,
            seed: int) -> dict[str, Any]:
    dev = torch.device(device)
    model = gated_resnet18(closed, seed).to(dev)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch_size, 3, image_size, image_size, generator=gen).to(dev)
    one = x[:1]
    t0 = time.perf_counter()
    small = compact(model, one)
    compact_s = time.perf_counter() - t0
    with torch.no_grad():
        want, got = model(x), small(x)
    scale = float(want.abs().max())
    rel = float((want - got).abs().max()) / scale
    kept, dense = param_counts(model, one)
    speed = time_pair(model, small, x, repeats, MIN_S, device_clock(dev))
    return {
        "model": "torchvision resnet18, every block's conv1 gated", "device": device,
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "closed": closed, "batch_size": batch_size, "image_size": image_size, "seed": seed,
        "repeats": repeats, "compact_s": compact_s,
        "max_rel_diff": rel, "exact": rel <= EXACT, "exact_bound": EXACT,
        "gated_layers_left": sum(isinstance(m, L0Layer) for m in small.modules()),
        "flops_pruned": pruned_flops(model, one), "flops_dense": dense_flops(model, one),
        "params_kept": kept, "params_dense": dense,
        "gated_images_per_s": batch_size / speed["gated_s"],
        "compact_images_per_s": batch_size / speed["compact_s"], "speedup": speed["speedup"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m l0repro.bench library", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--closed", type=float, default=0.5, help="share of each gated conv's maps closed")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.repeats < 1:
        p.error(f"--batch-size {args.batch_size} and --repeats {args.repeats} must be >= 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"--device {args.device}: torch sees no CUDA device", flush=True)
        return 2
    r = measure(args.device, args.closed, args.batch_size, args.image_size, args.repeats, args.seed)
    print(f"{r['model']} on {r['gpu'] or r['device']}, {100 * args.closed:.0f} % of the gated maps closed")
    print(f"  compact: {r['compact_s']:.2f} s; outputs differ by {r['max_rel_diff']:.2e} of their scale "
          f"(bound {EXACT:.0e}): {'exact' if r['exact'] else 'NOT EXACT'}")
    print(f"  FLOPs {r['flops_pruned']:.4g} of {r['flops_dense']:.4g} "
          f"({100 * r['flops_pruned'] / r['flops_dense']:.1f} %), parameters {r['params_kept']} "
          f"of {r['params_dense']}")
    print(f"  batch {args.batch_size}: gated {r['gated_images_per_s']:.0f} images/s, compact "
          f"{r['compact_images_per_s']:.0f} images/s, {r['speedup']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "results": [r]}, indent=2))
    return 0 if r["exact"] and r["gated_layers_left"] == 0 else 1
