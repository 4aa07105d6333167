"""Extrapolate short L0 WRN probe runs to their full schedule: do the expected FLOPs visibly fall?

    python scripts/table2s_probes.py experiments/probes/table2s/*_c*/ > results/table2s_probes.md

Each probe is a run of a ``table2s`` L0 config cut short with ``trainer.max_steps`` (lr 0.1
throughout). Per gate, the drift of log_alpha over the probe is carried over the configured
schedule (the learning rate summed over all its steps, multistep drops included) in two ways:

- linear: log_alpha moves in proportion to the summed learning rate (a lower bound on the fall
  while the penalty dominates, since its pull grows as P(z != 0) falls towards 1/2);
- penalty drift: d log_alpha / d(summed lr) = -k * p (1 - p) with p = P(z != 0), the form of the
  penalty's gradient; k is fitted per gate from the probe. Closed form: with a = log_alpha -
  beta log(-gamma/zeta), F(a) = 2a + e^a - e^-a falls by k per unit of summed learning rate.

(Momentum multiplies every step by the same 1/(1 - 0.9), so it cancels between probe and schedule.)
Both ignore what the data gradient will do later, the weights' shrinking L2 and the momentum's
warm-up (the first ~10 steps of a probe move less); they say whether a lambda is in the right
range, not what the run will reach.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from l0repro.checkpoint import load_checkpoint
from l0repro.l0 import flops, gates
from l0repro.l0.layers import gated_layers
from l0repro.models.build import build_model
from l0repro.record import read_run


def summed_lr(cfg, steps_per_epoch: int) -> float:
    """The learning rate summed over every step of the configured schedule (stepped per epoch)."""
    lr, gamma, milestones = cfg.optim.lr, cfg.scheduler.gamma, list(cfg.scheduler.milestones)
    return sum(lr * gamma ** sum(e >= m for m in milestones) for e in range(cfg.trainer.epochs)) \
        * steps_per_epoch


def _f(a: torch.Tensor) -> torch.Tensor:
    return 2 * a + a.exp() - (-a).exp()


def _f_inverse(target: torch.Tensor) -> torch.Tensor:
    lo, hi = torch.full_like(target, -60.0), torch.full_like(target, 60.0)
    for _ in range(100):  # bisection: F is increasing
        mid = (lo + hi) / 2
        below = _f(mid) < target
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (lo + hi) / 2


def flops_pct(model, las: list[torch.Tensor]) -> float:
    with torch.no_grad():
        for p, v in zip([layer.gate.log_alpha for _, layer in gated_layers(model)], las, strict=True):
            p.copy_(v.clamp(gates.LOG_ALPHA_MIN, gates.LOG_ALPHA_MAX))
    return 100 * float(flops.expected_flops(model)) / flops.dense_flops(model)


def probe_row(run_dir: Path) -> dict:
    cfg = OmegaConf.load(run_dir / "config.yaml")
    summary, metrics = read_run(run_dir)
    steps = int(summary["steps"])
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model)
    # the run's init: the same seed
    start = [layer.gate.log_alpha.detach().clone() for _, layer in gated_layers(model)]
    end_state = load_checkpoint(run_dir)["model"]
    names = [n for n, _ in model.named_parameters() if n.endswith("log_alpha")]
    end = [end_state[n].float() for n in names]
    dense = summary["flops_dense"]
    curve = metrics[["step", "flops/expected"]].dropna()
    pct_start, pct_end = flops_pct(model, start), 100 * curve["flops/expected"].iloc[-1] / dense
    first = curve.iloc[0]  # slope from the first logged row on (the momentum has built up)
    slope = 100 * (100 * (curve["flops/expected"].iloc[-1] - first["flops/expected"]) / dense) \
        / max(1, steps - int(first["step"]))
    steps_per_epoch = -(-50000 // cfg.trainer.batch_size)
    tau_probe, tau_all = cfg.optim.lr * steps, summed_lr(cfg, steps_per_epoch)
    linear = [s + (e - s) * tau_all / tau_probe for s, e in zip(start, end, strict=True)]
    shift = gates.LOG_ODDS_SHIFT
    drift = []
    for s, e in zip(start, end, strict=True):
        k = (_f(s - shift) - _f(e - shift)) / tau_probe
        drift.append(_f_inverse(_f(s - shift) - k * tau_all) + shift)
    return {
        "lambda": ", ".join(f"{x:g}" for x in sorted(set(summary["lambdas"]))),
        "mode": "per example" if cfg.model.per_example else "shared",
        "steps": steps, "start": pct_start, "end": pct_end, "slope": slope,
        "linear": flops_pct(model, linear), "drift": flops_pct(model, drift),
        "epochs": cfg.trainer.epochs, "model": summary["model"],
    }


def main(argv: list[str]) -> int:
    rows = sorted((probe_row(Path(d)) for d in argv),
                  key=lambda r: (r["mode"], float(r["lambda"].split(",")[0])))
    if not rows:
        print("usage: python scripts/table2s_probes.py RUN_DIR...", file=sys.stderr)
        return 2
    print(f"| lambda (c in c/N) | gates | probe steps | expected FLOPs % at start | at end of probe "
          f"| slope (pp / 100 steps) | {rows[0]['epochs']} epochs, linear | "
          f"{rows[0]['epochs']} epochs, penalty drift |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['lambda']} | {r['mode']} | {r['steps']} | {r['start']:.1f} | {r['end']:.1f} | "
              f"{r['slope']:+.2f} | {r['linear']:.1f} | {r['drift']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
