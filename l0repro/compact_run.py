"""``python -m l0repro.compact_run RUN_DIR``: the small dense network a finished run stands for.

Loads the run's evaluation weights (``weights.pt``) into the model its config builds,
compacts it with the library (``l0repro.l0.compact``: the same code as for any user model),
writes ``compact.pt`` (plain data: loads with ``l0repro.load_compact``, no code unpickled) and
prints the compact architecture, its parameters, the FLOPs ``FlopCounterMode`` counts on it
(equal to the run's pruned FLOPs), the largest output difference against the gated model and
both models' test errors (equal, or exit 1). A selection run (``data.validation``) is judged on
its held-out split instead, the test set staying unseen.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from l0repro.data import load_dataset
from l0repro.data.validation import split_for_run
from l0repro.l0 import compact, dense_flops, param_counts, pruned_flops, save_compact
from l0repro.models.build import build_model
from l0repro.record import CONFIG_FILE, WEIGHTS_FILE

COMPACT_FILE = "compact.pt"


def load_run_model(run_dir: Path | str) -> tuple[Any, nn.Module]:
    """(config, gated model with the run's evaluation weights) from a run directory, on the CPU."""
    run_dir = Path(run_dir)
    weights = run_dir / WEIGHTS_FILE
    if not weights.exists():
        raise FileNotFoundError(f"{weights} not found: a run writes it when it completes")
    cfg = OmegaConf.load(run_dir / CONFIG_FILE)
    model = build_model(cfg.model)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return cfg, model.eval()


def counted_flops(model: nn.Module, example: torch.Tensor) -> int:
    """``FlopCounterMode`` FLOPs of one eval forward on ``example`` (one example)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(example)
    return counter.get_total_flops()


def layer_params(model: nn.Module) -> int:
    """Weights + biases of the linear and conv layers (``param_counts``' convention)."""
    return sum(p.numel() for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))
               for p in m.parameters(recurse=False))


def layer_summary(model: nn.Module) -> str:
    """``name in->out`` for every linear/conv layer, in definition order."""
    parts = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            parts.append(f"{name} {m.in_features}->{m.out_features}")
        elif isinstance(m, nn.Conv2d):
            parts.append(f"{name} {m.in_channels}->{m.out_channels}")
    return ", ".join(parts)


@torch.no_grad()
def compare_outputs(gated: nn.Module, small: nn.Module, batches) -> dict[str, float]:
    """Error of both models on ``batches`` of (x, y) and the largest |difference| of their outputs."""
    wrong_g = wrong_c = n = 0
    max_diff = max_abs = 0.0
    for x, y in batches:
        a, b = gated(x), small(x)
        max_diff = max(max_diff, float((a - b).abs().max()))
        max_abs = max(max_abs, float(a.abs().max()))
        wrong_g += int((a.argmax(1) != y).sum())
        wrong_c += int((b.argmax(1) != y).sum())
        n += len(y)
    return {"error_gated": wrong_g / n, "error_compact": wrong_c / n, "max_abs_diff": max_diff,
            "max_abs_output": max_abs, "n": n}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m l0repro.compact_run", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0] + "\n\nexample:\n  python -m l0repro.compact_run "
        "results/runs/table1/mlp_l0_sep/seed0 --data-root data")
    parser.add_argument("run_dir", type=Path,
                        help="a complete run directory (config.yaml and weights.pt)")
    parser.add_argument("--out", type=Path, default=None, help=f"default RUN_DIR/{COMPACT_FILE}")
    parser.add_argument("--data-root", default=None,
                        help="dataset directory (default: $L0REPRO_DATA, else the run's data.root)")
    parser.add_argument("--batch-size", type=int, default=1000,
                        help="images per evaluation batch when comparing the two models (default 1000)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    cfg, gated = load_run_model(args.run_dir)
    small = compact(gated)
    out_path = args.out or args.run_dir / COMPACT_FILE
    kept, dense = param_counts(gated)
    report = {
        "architecture": gated.architecture(), "full_architecture": gated.full_architecture(),
        "layers": layer_summary(small), "params_compact": layer_params(small),
        "params_kept": kept, "params_dense": dense,
        "flops_compact": counted_flops(small, gated.example_input()),
        "flops_pruned": pruned_flops(gated), "flops_dense": dense_flops(gated),
    }
    root = args.data_root or os.environ.get("L0REPRO_DATA") or cfg.data.root
    data = load_dataset(cfg.data.name, root, torch.device("cpu"), download=False,
                        **(cfg.data.get("options") or {}))
    data, validation = split_for_run(data, cfg.data.get("validation"),
                                     cfg.data.get("validation_seed", 0))
    report["split"] = "val" if validation else "test"
    report |= compare_outputs(gated, small, data.test_batches(args.batch_size))
    save_compact(small, out_path, run_dir=str(args.run_dir), **{
        k: report[k] for k in ("architecture", "flops_compact", "error_compact")})

    arch = "-".join(map(str, report["architecture"]))
    full = "-".join(map(str, report["full_architecture"]))
    print(f"{args.run_dir}: {cfg.model.name} -> compact network, written to {out_path}")
    print(f"  architecture  {arch} (of {full}); layers: {report['layers']}")
    print(f"  parameters    {sum(v.numel() for v in small.state_dict().values())} in the file, "
          f"{report['params_compact']} in linear/conv layers (params_kept {report['params_kept']}, "
          f"dense {report['params_dense']})")
    print(f"  FLOPs         {report['flops_compact']} counted on the compact model (pruned_flops "
          f"{report['flops_pruned']:.0f}, dense {report['flops_dense']:.0f}: "
          f"{100 * report['flops_compact'] / report['flops_dense']:.1f} %)")
    print(f"  outputs       max |compact - gated| = {report['max_abs_diff']:.3g} over "
          f"{report['n']} {report['split']} images (outputs up to {report['max_abs_output']:.3g}: "
          f"float32 sums in another order)")
    print(f"  {report['split'] + ' error':13} gated {100 * report['error_gated']:.2f} %, compact "
          f"{100 * report['error_compact']:.2f} %"
          + ("" if report["error_gated"] == report["error_compact"] else "  (DIFFERENT)"))
    return report


if __name__ == "__main__":
    result = main(sys.argv[1:])
    sys.exit(0 if result["error_gated"] == result["error_compact"] else 1)
