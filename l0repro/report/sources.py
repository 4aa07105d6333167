"""Where runs come from: run directories on disk and runs in a wandb project.

Both become ``Run`` (summary dict + metrics DataFrame) or ``Excluded`` (unreadable, with why).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from l0repro.record import SPEEDUP_FILE, STATUSES, SUMMARY_FILE, SUMMARY_KEYS, RecordError, read_run
from l0repro.report.runs import Excluded, Run


def _partial_summary(run_dir: Path) -> dict[str, Any]:
    """Whatever of an unreadable summary can still be parsed, to file the run under a table."""
    try:
        data = json.loads((run_dir / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_local(root: Path) -> tuple[list[Run], list[Excluded]]:
    """Every directory under ``root`` (recursively) that holds a ``summary.json``."""
    root = Path(root)
    runs, excluded = [], []
    for path in sorted(root.rglob(SUMMARY_FILE)):
        run_dir = path.parent
        rel = run_dir.relative_to(root).as_posix()
        source = f"local:{rel}"
        try:
            summary, metrics = read_run(run_dir)
        except (RecordError, OSError, ValueError, TypeError) as e:
            # Messages name the file; keep them relative so the report does not depend on cwd.
            reason = str(e).replace(str(run_dir), rel)
            partial = _partial_summary(run_dir)
            excluded.append(Excluded(source, f"unreadable: {reason}", partial.get("experiment"),
                                     partial.get("dataset"), partial.get("seed")))
            continue
        runs.append(Run(source, summary, metrics, _speedup(run_dir)))
    return runs, excluded


def _speedup(run_dir: Path) -> dict[str, Any] | None:
    """The compact benchmark's figures for this run; None when it was never benchmarked.
    A file that is there but unreadable is reported (a warning naming it) and left out."""
    path = run_dir / SPEEDUP_FILE
    if not path.exists():
        return None
    keys = ("params_compact", "flops_compact", "throughput_speedup", "flop_ratio")
    try:
        data = json.loads(path.read_text())
        if not (isinstance(data, dict) and all(isinstance(data.get(k), (int, float)) for k in keys)):
            raise ValueError(f"needs numbers for {', '.join(keys)}")
    except (OSError, ValueError) as err:
        warnings.warn(f"{path}: ignored, {err}; rerun python -m l0repro.bench compact", stacklevel=2)
        return None
    return data


def check_summary(summary: dict[str, Any], where: str) -> None:
    """The checks ``record.read_summary`` makes, for a summary that is not a file."""
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    if missing:
        raise RecordError(f"{where}: missing keys {missing}")
    if summary["status"] not in STATUSES:
        raise RecordError(f"{where}: unknown status {summary['status']!r}")


def check_metrics(metrics: pd.DataFrame, summary: dict[str, Any], where: str) -> pd.DataFrame:
    """The checks ``record.read_metrics`` makes; fills ``kind`` if the logger dropped it."""
    if "kind" not in metrics.columns and "test/error" in metrics.columns:
        # Only end-of-epoch rows carry a test error.
        metrics = metrics.assign(kind=metrics["test/error"].notna().map(
            {True: "epoch", False: "interval"}))
    for col in ("step", "epoch", "kind"):
        if col not in metrics.columns:
            raise RecordError(f"{where}: history is missing column {col!r}")
    n_epochs = int((metrics["kind"] == "epoch").sum())
    claimed = int(summary.get("epochs_completed") or 0)
    if n_epochs < claimed:
        raise RecordError(f"{where}: {n_epochs} epoch rows but summary claims "
                          f"{claimed} epochs completed")
    return metrics


def _summary_dict(summary: Any) -> dict[str, Any]:
    # wandb's HTTPSummary keeps the raw JSON in _json_dict; stubs and plain dicts do not.
    raw = getattr(summary, "_json_dict", None)
    return dict(raw) if isinstance(raw, dict) else dict(summary)


def _history(run: Any) -> pd.DataFrame:
    # scan_history returns every row; history() samples 500 of them.
    rows = [{k: v for k, v in row.items() if not k.startswith("_")} for row in run.scan_history()]
    df = pd.DataFrame(rows)
    return df.sort_values("step", kind="stable").reset_index(drop=True) if "step" in df else df


class SourceError(Exception):
    """A whole source cannot be read (e.g. the wandb project is unreachable)."""


def load_wandb(path: str, api: Any = None) -> tuple[list[Run], list[Excluded]]:
    """Every run of the wandb project ``entity/project``, read through ``wandb.Api()``."""
    try:
        if api is None:
            import wandb

            api = wandb.Api()
        wruns = list(api.runs(path))
    except Exception as e:  # network, credentials, unknown project: wandb raises many kinds
        raise SourceError(f"cannot read wandb project {path!r}: {e}") from e
    runs, excluded = [], []
    for wrun in wruns:
        source = f"wandb:{path}/{wrun.id}"
        state = getattr(wrun, "state", None)
        summary: dict[str, Any] = {}
        try:
            summary = _summary_dict(wrun.summary)
            summary.setdefault("wandb_run_id", wrun.id)
            check_summary(summary, source)
            metrics = check_metrics(_history(wrun), summary, source)
        except Exception as e:  # one bad or unreachable remote run must not stop the report
            excluded.append(Excluded(source, f"unreadable: {e} (wandb state {state})",
                                     summary.get("experiment"), summary.get("dataset"),
                                     summary.get("seed")))
            continue
        if summary["status"] != "complete" and state:
            summary["error"] = summary.get("error") or f"wandb state {state}"
        runs.append(Run(source, summary, metrics))
    return runs, excluded
