"""Training throughput of the L0 WRN against the dropout WRN on the current device.

Both run the same step: augment a batch of synthetic uint8 images held on the device,
forward, cross-entropy + penalty (gates drawn by the fused ``GateBank`` as in training),
backward, SGD step, gate clamp. No host sync
inside the timed loop; timing uses CUDA events on GPU and ``perf_counter`` on CPU, after
warm-up; on CPU also the process's CPU time (images per CPU-second: with one thread, what an
unshared core would do). Achieved TFLOP/s counts 3 x the dense forward FLOPs per image (forward + two
backward matmuls/convs per layer): the gated convs compute every map, closed or not.

examples:
  python -m l0repro.bench wrn --depth 28 --widen 10 --batch-size 128 --peak-tflops 989
  python -m l0repro.bench wrn --depth 16 --widen 1 --device cpu --repeats 3
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from l0repro.data.augment import random_crop_flip
from l0repro.l0 import L0Regularizer, dense_flops
from l0repro.models.wrn import WideResNet

CIFAR10_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR10_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
N_TRAIN = 50000  # sets lambda / N in the penalty, as for CIFAR


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m l0repro.bench wrn", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=28)
    p.add_argument("--widen", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed steps per method")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compile, autotune)")
    p.add_argument("--repeats", type=int, default=1,
                   help="timed windows of --steps steps; the median is reported (shared CPUs)")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: on for cuda)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format (default: on for cuda)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--methods", default="l0,dropout",
                   help="comma-separated: l0, l0_pe (one gate sample per example), dropout, dense")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the device's peak TFLOP/s in the compute dtype, to print utilisation")
    p.add_argument("--json", default=None, help="also write the results to this file")
    return p.parse_args(argv)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_method(method: str, args: argparse.Namespace, device: torch.device, bf16: bool,
                 channels_last: bool) -> dict:
    """Train ``args.warmup + args.steps`` steps of one WRN variant; returns its figures."""
    torch.manual_seed(0)
    gen = torch.Generator(device).manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    n_data = 4 * args.batch_size
    images = torch.randint(0, 256, (n_data, 3, 32, 32), dtype=torch.uint8, device=device,
                           generator=gen)
    labels = torch.randint(0, 10, (n_data,), device=device, generator=gen)
    mean = torch.tensor(CIFAR10_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD, device=device).view(1, 3, 1, 1)

    per_example = method == "l0_pe"
    model = WideResNet(args.depth, args.widen, method="l0" if per_example else method, num_classes=10,
                       per_example=per_example).to(device)
    model = model.to(memory_format=fmt).train()
    flops_fwd = dense_flops(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    fwd = torch.compile(model) if args.compile else model
    regularizer = L0Regularizer(model, N_TRAIN, 5e-4, fused=not args.compile)  # as train.py
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

    def step() -> None:
        idx = torch.randint(0, n_data, (args.batch_size,), device=device, generator=gen)
        x = random_crop_flip(images[idx].float().div_(255.0), gen)
        x = ((x - mean) / std).contiguous(memory_format=fmt)
        reg = regularizer.penalty()  # before the forward: it draws the gates
        with autocast:
            logits = fwd(x)
        loss = F.cross_entropy(logits.float(), labels[idx]) + reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        regularizer.after_step()

    def window() -> float:
        """Seconds for ``args.steps`` steps."""
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(args.steps):
                step()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            step()
        cpu_seconds.append(time.process_time() - c0)
        return time.perf_counter() - t0

    cpu_seconds: list[float] = []  # this process's CPU time per window (CPU devices)
    for _ in range(args.warmup):
        step()
    _sync(device)
    windows = sorted(window() for _ in range(max(1, args.repeats)))
    seconds = windows[len(windows) // 2]
    ips = args.steps * args.batch_size / seconds
    out = {"method": method, "images_per_s": ips, "ms_per_step": 1e3 * seconds / args.steps,
           "best_images_per_s": args.steps * args.batch_size / windows[0],
           "fwd_gflops_per_image": flops_fwd / 1e9, "tflops": 3 * flops_fwd * ips / 1e12}
    if cpu_seconds:  # on a shared CPU, wall time counts the other processes' turns too
        out["images_per_cpu_s"] = args.steps * args.batch_size / sorted(cpu_seconds)[len(cpu_seconds) // 2]
    if args.peak_tflops:
        out["utilisation_pct"] = 100 * out["tflops"] / args.peak_tflops
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    bf16 = device.type == "cuda" if args.bf16 is None else args.bf16
    channels_last = device.type == "cuda" if args.channels_last is None else args.channels_last
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its kernels
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"cpu ({torch.get_num_threads()} threads)"
    print(f"WRN-{args.depth}-{args.widen} training, batch {args.batch_size}, {args.steps} steps "
          f"after {args.warmup} warm-up, {where}, bf16={bf16}, channels_last={channels_last}, "
          f"compile={args.compile}, torch {torch.__version__}")
    results = []
    for method in args.methods.split(","):
        r = bench_method(method.strip(), args, device, bf16, channels_last)
        results.append(r)
        util = f", {r['utilisation_pct']:.1f} % of peak" if "utilisation_pct" in r else ""
        if "images_per_cpu_s" in r:
            util += f", {r['images_per_cpu_s']:.1f} images per CPU-second"
        print(f"  {r['method']:8s} {r['images_per_s']:9.1f} images/s (best "
              f"{r['best_images_per_s']:.1f})  {r['ms_per_step']:8.1f} ms/step  "
              f"{r['tflops']:7.3f} TFLOP/s achieved "
              f"({r['fwd_gflops_per_image']:.3f} GFLOP fwd/image){util}")
    by = {r["method"]: r for r in results}
    for base in ("dropout", "dense"):
        if "l0" in by and base in by:
            overhead = 100 * (by[base]["images_per_s"] / by["l0"]["images_per_s"] - 1)
            print(f"  gate overhead: an L0 step takes {overhead:+.1f} % time vs {base}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "device": where, "bf16": bf16,
                       "channels_last": channels_last, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
