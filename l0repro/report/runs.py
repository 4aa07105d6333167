"""Runs as the report sees them: which count, which are left out (and why), how they group."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

# Summary fields the tables need from a complete run, with the type each must have.
NUMBERS = ("expected_flops_final", "flops_dense", "params_kept", "params_dense")
LISTS = ("lambdas", "architecture", "full_architecture")
# A selection run (data.validation) is judged on held-out training images and never on test.
ERRORS = {False: ("test_error_final", "test_error_best"),
          True: ("val_error_final", "val_error_best")}


def is_selection(summary: dict[str, Any]) -> bool:
    return bool(summary.get("selection_run"))


def error_keys(summary: dict[str, Any]) -> tuple[str, str]:
    """(final, best) error fields of this run: validation for a selection run, else test."""
    return ERRORS[is_selection(summary)]


@dataclass(frozen=True)
class BestNetwork:
    """The network the best-epoch error came from (early in training it is near dense)."""

    epoch: int
    architecture: list[int]
    pruned_flops_pct: float  # the test-time network at that epoch, % of the dense FLOPs

    def text(self) -> str:
        return (f"epoch {self.epoch}: {'-'.join(map(str, self.architecture))}, "
                f"{self.pruned_flops_pct:.1f} % FLOPs")


def best_network(summary: dict[str, Any]) -> BestNetwork | None:
    """The summary's best-epoch network; None for a record that does not hold it."""
    arch, pruned, epoch = (summary.get(k) for k in ("best_architecture", "best_flops_pruned",
                                                     "best_epoch"))
    if not (isinstance(arch, list) and _is_number(pruned) and _is_number(epoch)
            and _is_number(summary.get("flops_dense"))):
        return None
    return BestNetwork(int(epoch), [int(u) for u in arch], pruned / summary["flops_dense"] * 100)


def best_text(networks: list[BestNetwork | None]) -> str:
    """Each seed's best-epoch network, or ``not recorded``."""
    return "; ".join("not recorded" if b is None else b.text() for b in networks)


@dataclass
class Run:
    """One readable run: where it came from, its summary and its metrics."""

    source: str  # "local:<dir relative to --runs>" or "wandb:<entity/project/id>"
    summary: dict[str, Any]
    metrics: pd.DataFrame = field(repr=False)
    # what `python -m l0repro.bench compact` measured on this run's weights (speedup.json), if run
    speedup: dict[str, Any] | None = None

    @property
    def key(self) -> tuple:
        """Runs with the same key are seeds of one table row."""
        s = self.summary
        return (s["experiment"], s["model"], s["dataset"], s["method"],
                tuple(float(x) for x in s["lambdas"]), int(s["epochs"]))

    @property
    def selection(self) -> bool:
        return is_selection(self.summary)

    @property
    def layer_names(self) -> list[str]:
        names = self.summary.get("layer_names")
        n = len(self.summary["architecture"])
        return list(names) if isinstance(names, list) and len(names) == n else [
            f"layer{i + 1}" for i in range(n)]


@dataclass(frozen=True)
class Excluded:
    """A run left out of every aggregate, and why."""

    source: str
    reason: str
    experiment: str | None = None  # when the summary could be read far enough
    dataset: str | None = None
    seed: Any = None


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def summary_problem(summary: dict[str, Any]) -> str | None:
    """Why a summary that claims ``complete`` cannot be aggregated, or None if it can."""
    for k in (*error_keys(summary), *NUMBERS):
        if not _is_number(summary.get(k)):
            return f"summary field {k!r} is not a finite number ({summary.get(k)!r})"
    for k in LISTS:
        v = summary.get(k)
        if not isinstance(v, list) or not all(_is_number(x) for x in v):
            return f"summary field {k!r} is not a list of numbers ({v!r})"
    if len(summary["architecture"]) != len(summary["full_architecture"]):
        return "summary fields 'architecture' and 'full_architecture' differ in length"
    if summary["flops_dense"] <= 0:
        return "summary field 'flops_dense' is not positive"
    return None


def incomplete_reason(summary: dict[str, Any]) -> str | None:
    """Why a readable run does not count as complete, or None if it does."""
    status, done, epochs = summary["status"], summary["epochs_completed"], summary["epochs"]
    if status != "complete":
        reason = f"status {status} ({done}/{epochs} epochs)"
        if summary.get("error"):
            reason += f": {summary['error']}"
        return reason
    if not _is_number(done) or not _is_number(epochs) or done < epochs:
        return f"status complete but only {done}/{epochs} epochs completed"
    problem = summary_problem(summary)
    return f"unreadable: {problem}" if problem else None


def _priority(run: Run) -> tuple:
    # The newest run of a seed wins; on a tie, a local record beats a wandb copy of it.
    return (run.summary.get("finished_at") or "", run.source.startswith("local:"), run.source)


def select(runs: list[Run], excluded: list[Excluded]) -> tuple[list[Run], list[Excluded]]:
    """Split readable runs into complete ones (one per seed of a row) and the excluded rest."""
    excluded = list(excluded)
    complete: dict[tuple, Run] = {}
    for run in sorted(runs, key=lambda r: r.source):
        s = run.summary
        reason = incomplete_reason(s)
        if reason is None:
            seed_key = (*run.key, str(s["seed"]))
            other = complete.get(seed_key)
            if other is None:
                complete[seed_key] = run
                continue
            keep, drop = (run, other) if _priority(run) > _priority(other) else (other, run)
            complete[seed_key] = keep
            run, reason = drop, f"duplicate of {keep.source} (same experiment and seed)"
            s = run.summary
        excluded.append(Excluded(run.source, reason, s.get("experiment"), s.get("dataset"),
                                 s.get("seed")))
    kept = sorted(complete.values(), key=lambda r: (r.key, str(r.summary["seed"]), r.source))
    return kept, sorted(excluded, key=lambda e: e.source)


def group(runs: list[Run]) -> dict[tuple, list[Run]]:
    """Complete runs by row key (experiment, model, dataset, method, lambdas, epochs)."""
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.key].append(run)
    return dict(sorted(groups.items()))
