"""Training entry point: ``python -m l0repro.train experiment=table1/mlp_l0 [overrides]``.

The loop is plain PyTorch in one place (``Trainer.fit``). The data lives on the device;
the only host syncs inside the loop happen at logging intervals and epoch ends. A run
writes its record (see ``l0repro.record``) into Hydra's run directory, checkpoints every
epoch, and resumes from there when the same command is run again.
"""

from __future__ import annotations

import datetime as dt
import math
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import hydra
import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

# as dp: hydra/launcher=slurm pickles this __main__ module's code by value, and cloudpickle reads
# the names `distributed` and `config` as a use of torch.distributed.config, which it cannot pickle
from l0repro import distributed as dp
from l0repro import threads
from l0repro.checkpoint import CheckpointError, config_differences, load_checkpoint, save_checkpoint
from l0repro.config_check import ConfigError, check_config
from l0repro.data import DataError, DeviceData, load_dataset
from l0repro.data.validation import split_for_run
from l0repro.ema import EMA
from l0repro.gate_grads import GateGradLog
from l0repro.graph_step import training_step
from l0repro.host_allocator import keep_freed_memory
from l0repro.l0 import (
    Budget,
    L0Regularizer,
    dense_flops,
    expected_flops,
    expected_params,
    param_counts,
    pruned_flops,
)
from l0repro.models.base import SparseModel
from l0repro.models.build import build_model
from l0repro.record import (
    CONFIG_FILE,
    RecordError,
    atomic_write_text,
    read_summary,
    write_metrics,
    write_summary,
    write_weights,
)
from l0repro.run_lock import RunDirLocked, exclusive_run_dir
from l0repro.runtime import bf16_autocast, resolve_device
from l0repro.wandb_logger import WandbLogger

# SIGUSR2: what submitit (hydra/launcher=slurm) has SLURM send before a timeout or preemption
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)


class TrainingDiverged(Exception):
    """The loss became NaN or infinite."""


class Preempted(Exception):
    """A stop signal arrived; a checkpoint was written and the run can resume."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}; checkpoint written, rerun "
                         "the same command to resume")
        self.signum = signum


def git_commit() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        sha = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        return sha or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def git_dirty() -> bool | None:
    """True when tracked files differ from ``git_commit()``; None when git cannot tell."""
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                             capture_output=True, text=True, timeout=10)
        return bool(out.stdout.strip()) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def make_budget(model: SparseModel, tc: DictConfig) -> Budget | None:
    """``trainer.target_flops`` / ``target_l0`` as a ``Budget`` (None when neither is set)."""
    for kind in ("flops", "l0"):
        target = tc.get(f"target_{kind}")
        if target is not None:
            try:
                return Budget(model, target, kind=kind, dual_lr=tc.dual_lr)
            except ValueError as e:  # below the floor, no gates: a config the run cannot meet
                raise ConfigError(f"trainer.target_{kind}: {e}") from e
    return None


def budget_row(budget: Budget) -> dict[str, float]:
    """The constraint's metrics columns (one host sync, at a logging interval)."""
    value = float(budget.value)
    return {f"constraint/{budget.kind}": value, "constraint/multiplier": float(budget.multiplier),
            "constraint/violation": value - budget.target}


def budget_summary(budget: Budget | None, tc: DictConfig) -> dict[str, Any]:
    """``target_flops``, ``target_l0`` and ``constraint_met`` (the final expected fraction within
    ``MET_TOLERANCE`` above the target; null without a budget)."""
    out: dict[str, Any] = {"target_flops": tc.get("target_flops"), "target_l0": tc.get("target_l0")}
    if budget is None:
        return out | {"constraint_met": None, "constraint_final": None}
    with torch.no_grad():
        final = float(budget.fraction())
    return out | {"constraint_met": budget.met(final), "constraint_final": final}


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def wandb_logger(trainer: Trainer) -> WandbLogger:
    """The default logger: wandb as ``logger.wandb`` configures it (off on ranks other than 0)."""
    w = trainer.cfg.logger.wandb
    return WandbLogger(mode=w.mode if dp.is_main() else "disabled", project=w.project,
                       entity=w.entity, run_dir=trainer.run_dir, config=trainer.config,
                       name=f"{trainer.cfg.name}/seed{trainer.cfg.seed}", group=trainer.cfg.name,
                       run_id=trainer.state.wandb_run_id, init_timeout=w.init_timeout)


def tqdm_bar(trainer: Trainer) -> tqdm:
    """The default progress bar: tqdm over the run's steps (``trainer.progress``, rank 0 only)."""
    return tqdm(total=trainer.total_steps, initial=trainer.state.step, desc=trainer.cfg.name,
                disable=not trainer.cfg.trainer.progress or not dp.is_main(), dynamic_ncols=True,
                unit="step")


@dataclass
class TrainState:
    """A run's progress: all of it goes into the checkpoint (beside the model, EMA, optimiser
    and scheduler states) and comes back on resume."""

    step: int = 0  # optimiser steps done
    epoch: int = 0  # completed epochs
    batch_in_epoch: int = 0  # batches of the current epoch already done
    epoch_gen_state: torch.Tensor | None = None  # the data RNG at the start of this epoch
    rows: list[dict[str, Any]] = field(default_factory=list)  # metrics rows so far
    acc: dict[str, Any] = field(default_factory=lambda: {"loss": 0.0, "ce": 0.0, "n": 0})
    best_error: float = math.inf
    best_epoch: int = -1
    best_network: dict[str, Any] = field(default_factory=dict)  # arch, pruned FLOPs at best
    elapsed: float = 0.0  # training wall time of earlier sessions of this run
    started_at: str = ""
    wandb_run_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def load(self, saved: dict[str, Any]) -> None:
        for f in fields(self):
            if f.name in saved:  # best_network: absent from checkpoints older than the field
                setattr(self, f.name, saved[f.name])


class Trainer:
    """Owns one run: model, EMA, optimiser, data, record, logger, checkpoints.

    ``logger`` and ``progress`` build the metrics logger and the progress bar from the
    trainer (defaults: wandb and tqdm); a benchmark passes silent ones.
    """

    def __init__(self, cfg: DictConfig, run_dir: Path,
                 logger: Callable[[Trainer], WandbLogger] = wandb_logger,
                 progress: Callable[[Trainer], tqdm] = tqdm_bar) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.config = OmegaConf.to_container(cfg, resolve=True)
        self.make_logger, self.make_progress = logger, progress
        tc = cfg.trainer
        self.device = dp.local_device(resolve_device(tc.device))
        self.rank, self.world = dp.rank(), dp.world_size()
        threads.configure(cfg, quiet=not dp.is_main())  # trainer.threads: prints the count it chose
        if self.device.type == "cpu":
            keep_freed_memory()
        torch.manual_seed(cfg.seed)
        self.data: DeviceData = load_dataset(cfg.data.name, cfg.data.root, self.device,
                                             download=cfg.data.download,
                                             **(cfg.data.get("options") or {}))
        n_penalty = self.data.n_train  # the full training set's N, also in a selection run
        # data.validation=n: train on the rest, evaluate on n held-out images, never on test
        self.data, self.validation = split_for_run(self.data, cfg.data.get("validation"),
                                                   cfg.data.get("validation_seed", 0))
        self.eval_split = "val" if self.validation else "test"
        self.model: SparseModel = build_model(cfg.model).to(self.device)
        if self.world > 1:  # same init on every rank (above); its own gate noise from here on
            torch.manual_seed(dp.rank_seed(cfg.seed, self.rank))
        self.is_conv = any(isinstance(m, torch.nn.Conv2d) for m in self.model.modules())
        use_cl = self.is_conv if tc.channels_last == "auto" else bool(tc.channels_last)
        self.memory_format = torch.channels_last if use_cl else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        self.autocast = bf16_autocast(tc.bf16, self.device)
        net = self.model
        if self.world > 1:  # averages gradients, so the penalty every rank adds counts once
            net = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.forward = torch.compile(net) if tc.compile else net
        self.ema = EMA(self.model, tc.ema_decay) if tc.ema_decay else None
        # the fused sampler hands the gates their samples outside the model's forward, which a
        # compiled forward would not see: with trainer.compile each layer samples itself
        self.regularizer = L0Regularizer(self.model, n_penalty, tc.weight_decay,
                                         fused=tc.fused_gates and not tc.compile)
        # trainer.target_flops / target_l0: a size as a constraint, with its Lagrange multiplier
        self.budget = make_budget(self.model, tc)
        # trainer.log_gate_grads: data vs penalty gradient of the gates at logging intervals
        self.gate_grads = GateGradLog(self.model, n_penalty, tc.weight_decay, self.autocast) \
            if tc.log_gate_grads else None
        self.optimizer = instantiate(cfg.optim)(self.model.parameters())
        self.scheduler = instantiate(cfg.scheduler)(self.optimizer)
        # train_step, or its CUDA graph (trainer.cuda_graph)
        self.step_fn = training_step(self.train_step, self.optimizer, self.ema, tc, self.device,
                                     self.world)
        self.data_gen = torch.Generator(device=self.device)
        self.data_gen.manual_seed(cfg.seed)
        self.steps_per_epoch = self.data.steps_per_epoch(tc.batch_size, self.world)
        self.total_steps = self.steps_per_epoch * tc.epochs
        if tc.max_steps is not None:
            self.total_steps = min(self.total_steps, tc.max_steps)
        self.flops_dense = dense_flops(self.model)
        self.state = TrainState(epoch_gen_state=self.data_gen.get_state(), started_at=now_iso())
        # device-side step counter and first step with a non-finite loss (-1: none), so
        # divergence is pinned to its exact step without a per-step host sync
        self.step_t = torch.zeros((), dtype=torch.long, device=self.device)
        self.bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        self.git_commit = git_commit()  # the code this session of the run started with
        self.git_dirty = git_dirty()
        self.stop_signal: int | None = None

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        progress = self.state.as_dict()
        progress["elapsed"] = self.state.elapsed + (time.perf_counter() - self.t_start)
        state = {
            "config": self.config,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "budget": self.budget.state_dict() if self.budget else None,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" and self.world == 1
            else [],
            **progress,
        }
        if self.world > 1:  # a collective: every rank's gate-noise RNG, so resume is exact
            state["rank_rng"] = dp.gather_objects(
                (torch.get_rng_state(),
                 torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        diffs = config_differences(state["config"], self.config)
        if diffs:
            raise CheckpointError(f"checkpoint in {self.run_dir} was written with another config; "
                                  "differing keys:\n  " + "\n  ".join(diffs)
                                  + "\nuse another hydra.run.dir or delete checkpoint.pt and "
                                  "checkpoint.prev.pt")
        self.model.load_state_dict(state["model"])
        if self.ema:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.budget:
            self.budget.load_state_dict(state["budget"])
        self.state.load(state)
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and self.device.type == "cuda" and self.world == 1:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if self.world > 1:
            self._load_rank_rng(state.get("rank_rng"))

    def _load_rank_rng(self, rank_rng: list | None) -> None:
        if rank_rng is None or len(rank_rng) != self.world:  # saved by another number of ranks
            torch.manual_seed(dp.rank_seed(self.cfg.seed, self.rank, self.state.step))
            return
        cpu, cuda = rank_rng[self.rank]
        torch.set_rng_state(cpu)
        if cuda is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(cuda, self.device)

    # ---------------------------------------------------------------- pieces
    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema else self.model

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        penalty = self.regularizer.penalty()  # before the forward: it may draw the gates
        if self.budget:
            penalty = penalty + self.budget.penalty()  # multiplier * (E[FLOPs] / dense - target)
        with self.autocast():
            logits = self.forward(x)
        ce = F.cross_entropy(logits.float(), y)
        loss = ce + penalty if self.regularizer.active or self.budget else ce
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.regularizer.after_step()  # the log_alpha clamp
        if self.budget:
            self.budget.dual_step()  # the multiplier's ascent on this step's violation
        if self.ema:
            self.ema.update_parameters(self.model)
        loss = loss.detach()
        self.step_t += 1
        ok = torch.isfinite(loss) | (self.bad_step >= 0)
        self.bad_step.copy_(torch.where(ok, self.bad_step, self.step_t))  # in place: a graph reads it
        return loss, ce.detach()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        model = self.eval_model
        model.eval()
        errors = torch.zeros((), device=self.device)
        loss = torch.zeros((), device=self.device)
        for x, y in self.data.test_batches(self.cfg.trainer.eval_batch_size, self.memory_format):
            with self.autocast():
                logits = model(x).float()
            errors += (logits.argmax(1) != y).sum()
            loss += F.cross_entropy(logits, y, reduction="sum")
        n = len(self.data.test_y)  # the validation set in a selection run
        split = self.eval_split
        out = {f"{split}/error": float(errors) / n, f"{split}/loss": float(loss) / n,
               "flops/pruned": pruned_flops(model)}
        for name, kept in zip(self.model.unit_layers, model.architecture(), strict=True):
            out[f"kept/{name}"] = kept
        return out

    def interval_row(self, kind: str) -> dict[str, Any]:
        """Sync the interval accumulators (one host sync) into a metrics row."""
        st = self.state
        if self.world > 1:  # every rank logs, and stops on a NaN, alike
            st.acc["loss"], st.acc["ce"] = dp.mean([st.acc["loss"], st.acc["ce"]], self.device)
        n = st.acc["n"] or math.nan  # an epoch row right after a resume may cover no step
        with torch.no_grad():
            expected = float(expected_flops(self.model))
        row = {
            "step": st.step, "epoch": st.step / self.steps_per_epoch, "kind": kind,
            "train/loss": float(st.acc["loss"]) / n, "train/ce": float(st.acc["ce"]) / n,
            "flops/expected": expected, "l0/expected": float(self.regularizer.expected_l0()),
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        if self.budget:
            row |= budget_row(self.budget)
        if st.acc["n"] and not math.isfinite(row["train/loss"] + row["train/ce"]):
            bad = int(self.bad_step)
            last = st.rows[-1] if st.rows else "none (diverged before the first log)"
            raise TrainingDiverged(f"loss became {row['train/loss']} at step {bad} (epoch "
                                   f"{st.epoch + 1}); last good metrics: {last}")
        st.acc = {"loss": 0.0, "ce": 0.0, "n": 0}
        return row

    def log_row(self, row: dict[str, Any]) -> None:
        self.state.rows.append(row)
        self.logger.log({k: v for k, v in row.items() if k != "kind"}, step=row["step"])

    def summary(self, status: str, error: str | None = None) -> dict[str, Any]:
        st = self.state
        epoch_rows = [r for r in st.rows if r["kind"] == "epoch"]
        last = epoch_rows[-1] if epoch_rows else {}
        kept, dense = param_counts(self.eval_model)
        model_cfg = self.cfg.model
        best = st.best_error if epoch_rows else None
        selection = self.validation is not None
        return {
            "experiment": self.cfg.name, "model": model_cfg.name, "dataset": self.cfg.data.name,
            "method": model_cfg.method, "lambdas": list(self.model.lambdas),
            "seed": self.cfg.seed, "epochs": self.cfg.trainer.epochs,
            "epochs_completed": st.epoch, "steps": st.step,
            "max_steps": self.cfg.trainer.max_steps, "status": status,
            "test_error_final": last.get("test/error"),
            "test_error_best": None if selection else best,
            "best_epoch": st.best_epoch if epoch_rows else None,
            # the network the best-epoch error came from: not the final one
            "best_architecture": st.best_network.get("architecture"),
            "best_flops_pruned": st.best_network.get("flops_pruned"),
            # a selection run: judged on data.validation held-out training images, test never seen
            "selection_run": selection,
            "validation": self.validation.record() if selection else None,
            "val_error_final": last.get("val/error"), "val_error_best": best if selection else None,
            "layer_names": list(self.model.unit_layers),
            "architecture": self.eval_model.architecture(),
            "full_architecture": self.model.full_architecture(),
            # expected: the live training model's gates (what Fig. 3 plots); pruned/kept: the
            # test-time network (EMA weights, units with z_hat == 0 removed)
            "expected_flops_final": float(expected_flops(self.model).detach()),
            "expected_params_final": float(expected_params(self.model)),
            "flops_pruned": pruned_flops(self.eval_model),
            "flops_dense": self.flops_dense, "params_kept": kept, "params_dense": dense,
            **budget_summary(self.budget, self.cfg.trainer),
            "wall_time_s": round(st.elapsed + time.perf_counter() - self.t_start, 2),
            "device": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            "torch_version": torch.__version__, "git_commit": self.git_commit,
            "git_dirty": self.git_dirty,
            "started_at": st.started_at,
            "finished_at": now_iso() if status != "running" else None,
            "error": error, "wandb_run_id": st.wandb_run_id,
        }

    def save(self, status: str = "running") -> dict[str, Any]:
        """Checkpoint first, then metrics, then summary: the summary never runs ahead.

        Every rank calls it (the state gathers their RNG states); only rank 0 writes.
        """
        state = self.state_dict() if self.cfg.trainer.checkpoint else None
        if dp.is_main():
            if state is not None:
                save_checkpoint(self.run_dir, state)
            write_metrics(self.run_dir, self.state.rows)
            if status == "complete":  # the weights evaluation used, for l0repro.compact_run
                write_weights(self.run_dir, self.eval_model.state_dict())
        summary = self.summary(status)
        if dp.is_main():
            write_summary(self.run_dir, summary)
        return summary

    # ---------------------------------------------------------------- loop
    def fit(self) -> dict[str, Any]:
        tc = self.cfg.trainer
        self.t_start = time.perf_counter()
        state = load_checkpoint(self.run_dir) if tc.checkpoint else None
        if state is not None:
            self.load_state_dict(state)
        self.logger = self.make_logger(self)
        self.state.wandb_run_id = self.logger.run_id
        self.bar = self.make_progress(self)
        previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        try:
            while self.state.epoch < tc.epochs and self.state.step < self.total_steps:
                self.train_epoch()
                self.end_epoch()
                if self.state.epoch < tc.epochs and self.state.step < self.total_steps:
                    self.save()
            self.state.elapsed += time.perf_counter() - self.t_start
            self.t_start = time.perf_counter()
            summary = self.save("complete")
            self.logger.summary(summary)
            self.logger.finish(0)
            return summary
        except Preempted:
            self.logger.finish(1)
            raise
        except BaseException as e:
            if dp.is_main():
                write_metrics(self.run_dir, self.state.rows)
                write_summary(self.run_dir, self.summary("failed", error=f"{type(e).__name__}: {e}"))
            self.logger.finish(1)
            raise
        finally:
            self.bar.close()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def train_epoch(self) -> None:
        """One epoch, top to bottom: the rest of it after a resume, or until ``total_steps``."""
        tc, st = self.cfg.trainer, self.state
        self.data_gen.set_state(st.epoch_gen_state)
        batches = self.data.train_batches(tc.batch_size, self.data_gen, self.memory_format)
        self.model.train()
        for b, (x, y) in enumerate(batches):
            if b < st.batch_in_epoch:
                continue  # resumed mid-epoch: batches drawn again to replay the data RNG
            # the step: penalty (drawing the gates), forward, backward, optimiser, clamp, EMA
            loss, ce = self.step_fn(x, y)
            st.acc["loss"] = st.acc["loss"] + loss  # device tensors: no host sync here
            st.acc["ce"] = st.acc["ce"] + ce
            st.acc["n"] += 1
            st.step += 1
            st.batch_in_epoch = b + 1
            # a metrics row every log_every steps (the loop's only host sync); the epoch's
            # last interval is covered by the epoch row
            ends_epoch = st.batch_in_epoch == self.steps_per_epoch or st.step >= self.total_steps
            if st.step % tc.log_every == 0 and not ends_epoch:
                self.log_row(self.interval_row("interval")
                             | (self.gate_grads.row(x, y) if self.gate_grads else {}))
                self.bar.update(st.step - self.bar.n)
            # a stop signal (preemption): checkpoint and leave, to resume at this very batch
            if self._stop_requested(st.step % tc.log_every == 0 or ends_epoch):
                self._preempt()
            if st.step >= self.total_steps:
                break
        self.bar.update(st.step - self.bar.n)

    def end_epoch(self) -> None:
        """The epoch row: training means, evaluation (test-time gates, EMA weights), best so far."""
        st = self.state
        row = self.interval_row("epoch") | self.evaluate()
        if st.batch_in_epoch == self.steps_per_epoch:  # a whole epoch (not a max_steps stop)
            st.epoch += 1
            st.batch_in_epoch = 0
            st.epoch_gen_state = self.data_gen.get_state()
            self.scheduler.step()
        error = row[f"{self.eval_split}/error"]
        if error < st.best_error:
            st.best_error, st.best_epoch = error, st.epoch
            st.best_network = {"architecture": [row[f"kept/{n}"] for n in self.model.unit_layers],
                               "flops_pruned": row["flops/pruned"]}
        self.log_row(row)
        self.bar.set_postfix(epoch=f"{st.epoch}/{self.cfg.trainer.epochs}",
                             **{f"{self.eval_split}_err": f"{100 * error:.2f}%"},
                             flops=f"{100 * row['flops/expected'] / self.flops_dense:.1f}%")

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop_signal = signum  # acted on after the current step

    def _stop_requested(self, sync_point: bool) -> bool:
        """A stop signal arrived; across ranks, agreed on at sync points only (one all-reduce)."""
        if self.world == 1:
            return self.stop_signal is not None
        if not sync_point:
            return False
        agreed = dp.max_int(self.stop_signal or 0, self.device)
        if agreed:
            self.stop_signal = agreed  # ranks that got no signal stop with the same code
        return bool(agreed)

    def _preempt(self) -> None:
        # rank 0's accumulators go into the checkpoint that every rank resumes from
        acc = self.state.acc
        acc["loss"], acc["ce"] = (float(v) for v in dp.mean([acc["loss"], acc["ce"]], self.device))
        self.save()
        raise Preempted(self.stop_signal)


def already_complete(run_dir: Path, config: dict[str, Any]) -> bool:
    """True when ``run_dir`` holds a complete run of this same config (it is not retrained)."""
    try:
        summary = read_summary(run_dir)
    except RecordError:
        return False
    if summary["status"] != "complete":
        return False
    state = load_checkpoint(run_dir)
    if state is not None:
        diffs = config_differences(state["config"], config)
        if diffs:
            raise CheckpointError(f"{run_dir} holds a complete run of another config; differing "
                                  "keys:\n  " + "\n  ".join(diffs))
    return True


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train (or resume, or skip) the run configured by ``cfg`` in ``run_dir``."""
    check_config(cfg)
    dp.init(resolve_device(cfg.trainer.device))
    if cfg.trainer.batch_size % dp.world_size():
        raise ConfigError(f"trainer.batch_size={cfg.trainer.batch_size} (the global batch) must be "
                          f"divisible by the number of processes, {dp.world_size()}")
    run_dir.mkdir(parents=True, exist_ok=True)
    config = OmegaConf.to_container(cfg, resolve=True)
    with exclusive_run_dir(run_dir):  # before the record is read or written: one writer per run
        if already_complete(run_dir, config):
            if dp.is_main():
                print(f"{run_dir}: already complete, not retrained", file=sys.stderr)
            return read_summary(run_dir)
        if dp.is_main():
            atomic_write_text(run_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
        return Trainer(cfg, run_dir).fit()


USER_ERRORS = (ConfigError, DataError, CheckpointError, ValueError, TrainingDiverged, OSError,
               RunDirLocked)


@hydra.main(config_path="../conf", config_name="train", version_base=None)
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = run(cfg, run_dir)
    except Preempted as e:
        print(f"l0repro.train: {e} ({run_dir})", file=sys.stderr)
        dp.finish()
        handler = signal.getsignal(e.signum)  # the one fit() displaced, now back
        if callable(handler) and handler is not signal.default_int_handler:
            handler(e.signum, None)  # e.g. submitit's on SIGUSR2: requeue the job, which resumes
        sys.exit(128 + e.signum)
    except USER_ERRORS as e:
        print(f"l0repro.train: error ({type(e).__name__}): {e}", file=sys.stderr)
        sys.exit(2)
    main_process = dp.is_main()
    dp.finish()
    if not main_process:
        return
    split = "val" if summary["selection_run"] else "test"
    print(f"{run_dir}: {summary['status']}, {split} error {100 * summary[f'{split}_error_final']:.2f}% "
          f"(best {100 * summary[f'{split}_error_best']:.2f}%), architecture "
          f"{'-'.join(map(str, summary['architecture']))}, expected FLOPs "
          f"{100 * summary['expected_flops_final'] / summary['flops_dense']:.1f}% of dense",
          file=sys.stderr)


if __name__ == "__main__":
    main()
