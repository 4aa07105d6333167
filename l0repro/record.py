"""The run directory: the contract between training and reporting.

A run directory holds
  ``config.yaml``   the resolved Hydra config,
  ``metrics.csv``   one row per logging interval and one per epoch end (columns below),
  ``summary.json``  the run's outcome (``SUMMARY_KEYS``), status ``running``/``complete``/``failed``,
  ``checkpoint.pt`` the last end-of-epoch checkpoint and ``checkpoint.prev.pt`` the one before
                    it (``l0repro.checkpoint``; not needed by the report),
  ``weights.pt``    written when the run completes: the state dict evaluation used (the EMA
                    weights when EMA is on), fp32 on the CPU, for ``l0repro.compact_run``.
Every file is replaced atomically (write a temp file, fsync, rename), so a reader sees
the old version or the new one, never half of one. ``summary.json`` says ``complete``
only after the final evaluation's metrics are on disk.

Metrics columns: ``step`` (optimiser steps done), ``epoch`` (float, steps / steps per epoch),
``kind`` (``interval`` or ``epoch``), ``train/loss`` (mean total loss over the interval or
epoch), ``train/ce``, ``flops/expected`` (expected FLOPs per example), ``l0/expected``
(expected number of open gates), ``lr``; epoch rows add ``test/error`` (fraction, test-time
gates, EMA weights), ``test/loss``, ``flops/pruned`` and ``kept/<layer>`` (units with
z_hat != 0 for each counted layer).
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch

SUMMARY_KEYS = (
    "experiment", "model", "dataset", "method", "lambdas", "seed", "epochs", "epochs_completed",
    "status", "test_error_final", "test_error_best", "architecture", "full_architecture",
    "expected_flops_final", "flops_dense", "params_kept", "params_dense", "wall_time_s",
    "device", "torch_version", "git_commit",
)
STATUSES = ("running", "complete", "failed")
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "weights.pt"
SPEEDUP_FILE = "speedup.json"  # written by `python -m l0repro.bench compact`, read by the report


class RecordError(Exception):
    """A run directory whose record cannot be trusted (missing, truncated, inconsistent)."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that no reader ever sees a partial file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    if summary.get("status") not in STATUSES:
        raise ValueError(f"summary status must be one of {STATUSES}, got {summary.get('status')!r}")
    text = json.dumps(_json_safe(summary), indent=2, sort_keys=True)
    atomic_write_text(Path(run_dir) / SUMMARY_FILE, text + "\n")


def write_weights(run_dir: Path, state_dict: dict[str, Any]) -> None:
    """``weights.pt``: ``state_dict`` as fp32 CPU tensors (loads with ``weights_only=True``)."""
    plain = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype)
             for k, v in state_dict.items()}
    buf = io.BytesIO()
    torch.save(plain, buf)
    atomic_write_bytes(Path(run_dir) / WEIGHTS_FILE, buf.getvalue())


def write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    text = pd.DataFrame(rows).to_csv(index=False)
    atomic_write_text(Path(run_dir) / METRICS_FILE, text)


def read_summary(run_dir: Path) -> dict[str, Any]:
    """Load and check ``summary.json``; raise ``RecordError`` saying what is wrong."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise RecordError(f"{path}: missing") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(summary, dict):
        raise RecordError(f"{path}: expected a JSON object")
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    if missing:
        raise RecordError(f"{path}: missing keys {missing}")
    if summary["status"] not in STATUSES:
        raise RecordError(f"{path}: unknown status {summary['status']!r}")
    return summary


def read_metrics(run_dir: Path, summary: dict[str, Any] | None = None) -> pd.DataFrame:
    """Load ``metrics.csv``; with a summary, check it holds every epoch the summary claims."""
    path = Path(run_dir) / METRICS_FILE
    try:
        metrics = pd.read_csv(path)
    except FileNotFoundError as e:
        raise RecordError(f"{path}: missing") from e
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise RecordError(f"{path}: unreadable ({e})") from e
    for col in ("step", "epoch", "kind"):
        if col not in metrics.columns:
            raise RecordError(f"{path}: missing column {col!r}")
    if summary is not None:
        n_epochs = int((metrics["kind"] == "epoch").sum())
        claimed = int(summary.get("epochs_completed") or 0)
        if n_epochs < claimed:
            raise RecordError(f"{path}: {n_epochs} epoch rows but summary claims "
                              f"{claimed} epochs completed")
    return metrics


def read_run(run_dir: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """A run's checked summary and metrics; raises ``RecordError`` if either is unusable."""
    summary = read_summary(run_dir)
    return summary, read_metrics(run_dir, summary)
