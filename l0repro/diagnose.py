"""Diagnostics of a configured model on real data: ``python -m l0repro.diagnose gates [...]``.

``gates`` prints, per gated layer, |d(cross-entropy)/d log_alpha| (mean and median over the
(batch, gate) draws) and |d(penalty)/d log_alpha| on K real training batches (train mode,
augmented, as training draws them): with one gate sample per minibatch a gated conv that feeds
a training-mode batch norm gets almost no data gradient, bar a heavy tail from samples near
z = 0 (docs/paper.md section 3b, ``l0repro.gate_grads``).

examples:
    python -m l0repro.diagnose gates experiment=table2s/wrn16_c10_l0_001 [hydra overrides]
    python -m l0repro.diagnose gates --run experiments/table2s/wrn16_c10_l0_001/seed0

With ``--run`` the config is the run's ``config.yaml`` (overrides are merged into it) and the
weights its ``weights.pt`` (the evaluation weights, written at completion), else the model of
its last ``checkpoint.pt``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from l0repro.checkpoint import load_checkpoint
from l0repro.config_check import ConfigError
from l0repro.data import DataError, DeviceData, load_dataset
from l0repro.gate_grads import GateGrad, gate_gradients
from l0repro.l0.layers import gated_layers
from l0repro.l0.regularizer import L0Regularizer
from l0repro.models.build import build_model
from l0repro.record import CONFIG_FILE, WEIGHTS_FILE
from l0repro.runtime import bf16_autocast, resolve_device

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m l0repro.diagnose", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["gates"], help="what to measure")
    p.add_argument("overrides", nargs="*", help="hydra overrides, e.g. experiment=table2s/... "
                                                "model.per_example=true")
    p.add_argument("--batches", type=int, default=8, help="real training batches to average over")
    p.add_argument("--batch-size", type=int, default=None, help="default: trainer.batch_size")
    p.add_argument("--run", type=Path, default=None,
                   help="a run directory: its config and its weights (weights.pt, else checkpoint.pt)")
    p.add_argument("--seed", type=int, default=None, help="init, gate noise and batches (default: seed)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p.parse_intermixed_args(argv)  # overrides may follow the options


def load_config(overrides: list[str], run: Path | None) -> DictConfig:
    """The composed train config, or a run's saved one with ``overrides`` merged in."""
    if run is None:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            return compose("train", overrides=overrides)
    path = run / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"{path}: missing; --run needs a run directory")
    return OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(overrides))


def run_weights(run: Path) -> tuple[dict, str]:
    """The run's evaluation weights, else its last checkpoint's training weights; and which."""
    path = run / WEIGHTS_FILE
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=True), str(path)
    state = load_checkpoint(run)
    if state is None:
        raise ConfigError(f"{run}: neither {WEIGHTS_FILE} nor a checkpoint to load weights from")
    return state["model"], f"{run}/checkpoint.pt (step {state['step']}, training weights)"


def measure_gates(cfg: DictConfig, batches: int, batch_size: int | None = None,
                  weights: dict | None = None, data: DeviceData | None = None,
                  ) -> tuple[list[GateGrad], str]:
    """The gate gradients of every gated layer on ``batches`` real training batches (train
    mode: sampled and augmented as configured), and a line describing the set-up. ``data``:
    the configured dataset, already loaded (else it is loaded here)."""
    tc = cfg.trainer
    device = resolve_device(tc.device) if data is None else data.device
    torch.manual_seed(cfg.seed)
    if data is None:
        data = load_dataset(cfg.data.name, cfg.data.root, device, download=cfg.data.download,
                            **(cfg.data.get("options") or {}))
    model = build_model(cfg.model).to(device)
    if weights is not None:
        try:
            model.load_state_dict(weights)
        except RuntimeError as e:  # another architecture than the config's
            raise ConfigError(f"the weights do not fit {cfg.model.name}: {e}") from e
    layers = gated_layers(model)
    if not layers:
        raise ConfigError(f"model {cfg.model.name} ({cfg.model.method}) has no gated layers")
    penalty = L0Regularizer(model, data.n_train, tc.weight_decay, fused=False)  # the full N
    autocast = bf16_autocast(tc.bf16, device)
    bs = batch_size or tc.batch_size
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    model.train()
    rows = gate_gradients(model, penalty, itertools.islice(data.train_batches(bs, gen), batches),
                          autocast)
    sampling = ("per example (one gate sample per example)" if layers[0][1].per_example
                else "shared (one gate sample per minibatch)")
    lams = sorted({layer.lam for _, layer in layers})
    setup = (f"{cfg.get('name', '?')}: {cfg.model.name} on {cfg.data.name}, sampling: {sampling}; "
             f"lambda = {'/'.join(f'{v:g}' for v in lams)}/N, N = {data.n_train}, "
             f"wd = {tc.weight_decay:g}, bf16 = {autocast is not nullcontext}; "
             f"{rows[0].data.shape[0]} training batches of {bs}")
    return rows, setup


def format_table(rows: list[GateGrad]) -> str:
    """One line per gated layer, then all gates pooled: mean and median over (batch, gate) draws."""
    cols = ("layer", "gates", "mean|dCE|", "median|dCE|", "mean|dpen|", "mean ratio", "share dCE>dpen")
    lines = ["{:<20}{:>6}{:>12}{:>13}{:>12}{:>12}{:>16}".format(*cols)]
    pooled = GateGrad("all gates", torch.cat([r.data for r in rows], 1),
                      torch.cat([r.penalty for r in rows]))
    for r in [*rows, pooled]:
        lines.append(f"{r.layer:<20}{r.gates:>6}{r.data_mean:>12.2e}{r.data_median:>13.2e}"
                     f"{r.penalty_mean:>12.2e}{r.data_mean / r.penalty_mean:>12.3g}{r.share_above:>16.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        cfg = load_config(list(args.overrides), args.run)
        if args.seed is not None:
            cfg.seed = args.seed
        weights, source = run_weights(args.run) if args.run else (None, f"fresh init (seed {cfg.seed})")
        rows, setup = measure_gates(cfg, args.batches, args.batch_size, weights)
    except (ConfigError, DataError, OSError, ValueError, HydraException) as e:
        print(f"l0repro.diagnose: error ({type(e).__name__}): {e}", file=sys.stderr)
        return 2
    print(setup)
    print(f"weights: {source}")
    print(format_table(rows))
    print("d = d/dlog_alpha; mean and median of |d| over (batch, gate) draws; share: draws whose "
          "|dCE| exceeds that gate's |dpen|")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
