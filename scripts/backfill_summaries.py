"""Add the best epoch's network and ``git_dirty`` to summaries written before the trainer kept them.

    python scripts/backfill_summaries.py results/runs

For every ``summary.json`` under the folder that lacks ``best_architecture``,
``best_flops_pruned`` or ``git_dirty``, the first two are read from the run's own
``metrics.csv``: the epoch row at ``summary["best_epoch"]`` (its ``kept/<layer>`` columns in
``summary["layer_names"]`` order, and ``flops/pruned``). That row's error (``test/error``, or
``val/error`` for a selection run) must equal the summary's best error, or the script stops with
an error naming the file and writes nothing more. ``git_dirty`` becomes null: not recorded, the
run was trained before the key existed. Keys a summary already has are never changed, so a
second pass changes nothing. Writes are atomic (``l0repro.record.write_summary``).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from l0repro.record import METRICS_FILE, SUMMARY_FILE, write_summary

NEW_KEYS = ("best_architecture", "best_flops_pruned", "git_dirty")


class BackfillError(Exception):
    """A summary whose best epoch cannot be found in its metrics as the summary states it."""


def best_network(summary: dict[str, Any], metrics: pd.DataFrame, where: str) -> dict[str, Any]:
    """``best_architecture`` and ``best_flops_pruned`` from the metrics row at the best epoch.

    Args:
        summary: the run's summary (needs ``best_epoch``, ``layer_names`` and its best error).
        metrics: the run's ``metrics.csv``.
        where: the file named in errors.
    Returns:
        ``{"best_architecture": [int, ...], "best_flops_pruned": float}``.
    Raises:
        BackfillError: no epoch row at ``best_epoch``, a column missing, or the row's error
            differs from the summary's best error.
    """
    selection = bool(summary.get("selection_run"))
    column, key = ("val/error", "val_error_best") if selection else ("test/error", "test_error_best")
    epoch = summary.get("best_epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        raise BackfillError(f"{where}: best_epoch is {epoch!r}, not an epoch number")
    names = summary.get("layer_names")
    if not isinstance(names, list) or not names:
        raise BackfillError(f"{where}: layer_names is {names!r}")
    needed = [column, "flops/pruned", *(f"kept/{n}" for n in names)]
    missing = [c for c in needed if c not in metrics.columns]
    if missing:
        raise BackfillError(f"{where}: metrics.csv has no column(s) {missing}")
    rows = metrics[(metrics["kind"] == "epoch") & ((metrics["epoch"] - epoch).abs() < 1e-9)]
    if rows.empty:
        raise BackfillError(f"{where}: metrics.csv has no epoch row at best_epoch {epoch}")
    row = rows.iloc[-1]  # a resumed run may repeat an epoch; the last row is the one kept
    best = summary.get(key)
    if not isinstance(best, (int, float)) or not math.isclose(float(row[column]), best,
                                                              rel_tol=1e-9, abs_tol=1e-12):
        raise BackfillError(f"{where}: {column} at best_epoch {epoch} is {row[column]!r}, but "
                            f"{key} is {best!r}; refusing to backfill")
    return {"best_architecture": [int(round(float(row[f"kept/{n}"]))) for n in names],
            "best_flops_pruned": float(row["flops/pruned"])}


def backfill(root: Path) -> list[Path]:
    """Backfill every summary under ``root`` that lacks a new key; return those written.

    Raises:
        BackfillError: at the first summary that cannot be backfilled (earlier ones are kept).
    """
    written = []
    for path in sorted(Path(root).rglob(SUMMARY_FILE)):
        summary = json.loads(path.read_text())
        if all(k in summary for k in NEW_KEYS):
            continue
        if "best_architecture" not in summary or "best_flops_pruned" not in summary:
            metrics = pd.read_csv(path.parent / METRICS_FILE)
            for k, v in best_network(summary, metrics, str(path)).items():
                summary.setdefault(k, v)
        summary.setdefault("git_dirty", None)  # not recorded: trained before the key existed
        write_summary(path.parent, summary)
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python scripts/backfill_summaries.py RUNS_DIR", file=sys.stderr)
        return 2
    try:
        written = backfill(Path(argv[0]))
    except BackfillError as e:
        print(f"backfill_summaries: error: {e}", file=sys.stderr)
        return 1
    for p in written:
        print(f"backfilled {p}")
    print(f"{len(written)} summaries backfilled")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
