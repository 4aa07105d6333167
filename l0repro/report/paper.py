"""The paper's numbers, loaded from ``paper.yaml`` (data, not code)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PAPER_FILE = Path(__file__).with_name("paper.yaml")
OUTSIDE_FILE = Path(__file__).with_name("outside.yaml")
MARKS = ("v", "?")


@dataclass(frozen=True)
class Quote:
    """The same number as quoted elsewhere with another value (shown beside the paper's)."""

    value: Any
    source: str


@dataclass(frozen=True)
class Marked:
    """A number from the paper and whether it was checked (``v``, with its ``source``) or not (``?``)."""

    value: Any
    mark: str
    source: str | None = None
    alt: Quote | None = None

    @property
    def verified(self) -> bool:
        return self.mark == "v"

    def show(self, fmt: str = "{}") -> str:
        text = fmt.format(self.value)
        return text if self.verified else f"{text} ?"


@dataclass(frozen=True)
class Selection:
    """A sweep of selection runs (judged on validation) and the table row it chooses for."""

    sweep: str  # experiment name of the selection runs
    row: str  # experiment name of the row
    error_window: float  # points of validation error within which the architecture decides
    points: tuple[tuple[float, ...], ...] = ()  # the lambdas declared; () when not declared
    # another sweep's records that are points of this one (same config and seed): sweep -> lambdas
    borrowed: tuple[tuple[str, tuple[float, ...]], ...] = ()
    history: tuple[str, ...] = ()  # what changed after the sweep was declared


@dataclass(frozen=True)
class Outside:
    """Another group's published result, cited beside ours and labelled as not ours."""

    source: str
    setting: str
    result: str
    caveat: str

    def text(self) -> str:
        return (f"Outside evidence, not our runs ({self.source}): {self.setting}: {self.result}. "
                f"{self.caveat[0].upper()}{self.caveat[1:]}.")


@dataclass(frozen=True)
class Evidence:
    """Runs that show what one choice changes, compared seed by seed with a table row."""

    experiment: str
    compare_with: str
    label: str


@dataclass(frozen=True)
class BudgetExperiment:
    """Runs trained to a FLOPs target (lambda = 0) instead of a lambda, read against a row."""

    experiment: str
    target_flops: float  # E[FLOPs] / dense asked for, as in its conf/experiment/ file
    compare_with: str  # the lambda-penalised table row the runs are read against
    baseline: str | None = None  # an experiment their error is also read against (points)
    reach_by: int | None = None  # the epoch by which E[FLOPs] must be near the target


@dataclass(frozen=True)
class Budgets:
    """The budget experiments and the tolerances they are judged by (relative to the target)."""

    tolerance: float = 0.05  # final expected and pruned FLOPs within this of the target
    reach_tolerance: float = 0.10  # E[FLOPs] this near the target counts as reached
    experiments: tuple[BudgetExperiment, ...] = ()

    def get(self, experiment: str) -> BudgetExperiment | None:
        return next((b for b in self.experiments if b.experiment == experiment), None)


@dataclass(frozen=True)
class PaperRow:
    network: str
    method: str
    model: str
    dataset: str
    error: Marked
    architecture: Marked | None = None
    experiment: str | None = None
    note: str | None = None

    def arch_units(self) -> list[int] | None:
        """Kept units per layer: ``"20-25-45-462"`` -> ``[20, 25, 45, 462]``."""
        if self.architecture is None:
            return None
        return [int(u) for u in str(self.architecture.value).split("-")]


@dataclass(frozen=True)
class PaperTable:
    key: str
    title: str
    datasets: tuple[str, ...]
    epochs: int
    decimals: int
    error_tolerance: float
    arch_tolerance: float | None
    rows: tuple[PaperRow, ...]
    experiments: str = ""  # prefix of the experiment names the table holds
    per_layer: bool = False  # show kept units per layer even without a paper architecture
    baseline: str | None = None  # experiment every row's error is also read against (table2s)

    def holds(self, experiment: str, dataset: str) -> bool:
        return dataset in self.datasets and experiment.startswith(self.experiments)

    def row_for(self, experiment: str) -> PaperRow | None:
        return next((r for r in self.rows if r.experiment == experiment), None)


@dataclass(frozen=True)
class Paper:
    networks: dict[str, str]
    own: dict[str, str]
    tables: tuple[PaperTable, ...]
    selections: tuple[Selection, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    budget: Budgets = Budgets()

    def table_for(self, dataset: str, experiment: str = "") -> PaperTable | None:
        return next((t for t in self.tables if t.holds(experiment, dataset)), None)

    def table_row(self, experiment: str) -> tuple[PaperTable, PaperRow] | None:
        for t in self.tables:
            row = t.row_for(experiment)
            if row is not None:
                return t, row
        return None

    def set_apart(self, experiment: str) -> bool:
        """Selection, evidence and budget runs: never aggregated into a table row."""
        return any(experiment == s.sweep for s in self.selections) or \
            any(experiment == e.experiment for e in self.evidence) or \
            self.budget.get(experiment) is not None


def _marked(raw: dict[str, Any] | None, where: str) -> Marked | None:
    if raw is None:
        return None
    mark = str(raw.get("mark"))
    if mark not in MARKS or "value" not in raw:
        raise ValueError(f"{where}: expected {{value: ..., mark: v|?}}, got {raw!r}")
    if mark == "v" and not raw.get("source"):
        raise ValueError(f"{where}: a checked (v) number needs its source, got {raw!r}")
    alt = raw.get("alt")
    if alt is not None and not ("value" in alt and alt.get("source")):
        raise ValueError(f"{where}.alt: expected {{value: ..., source: ...}}, got {alt!r}")
    return Marked(raw["value"], mark, raw.get("source"),
                  Quote(alt["value"], alt["source"]) if alt else None)


def _lams(values: list) -> tuple[float, ...]:
    return tuple(float(x) for x in values)


def _selection(sweep: str, raw: dict[str, Any]) -> Selection:
    borrowed = tuple((other, _lams(lams)) for other, points in (raw.get("borrowed") or {}).items()
                     for lams in points)
    return Selection(sweep, raw["row"], float(raw["error_window"]),
                     points=tuple(_lams(p) for p in raw.get("points") or ()), borrowed=borrowed,
                     history=tuple(" ".join(str(h).split()) for h in raw.get("history") or ()))


def _budgets(raw: dict[str, Any] | None) -> Budgets:
    if not raw:
        return Budgets()
    experiments = tuple(
        BudgetExperiment(k, float(v["target_flops"]), v["compare_with"], v.get("baseline"),
                         None if v.get("reach_by") is None else int(v["reach_by"]))
        for k, v in (raw.get("experiments") or {}).items())
    return Budgets(float(raw.get("tolerance", 0.05)), float(raw.get("reach_tolerance", 0.10)),
                   experiments)


def load_outside(path: Path = OUTSIDE_FILE) -> dict[str, tuple[Outside, ...]]:
    """``outside.yaml``: table key -> the outside results cited for it."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    return {key: tuple(Outside(**{k: " ".join(str(e[k]).split())
                                  for k in ("source", "setting", "result", "caveat")})
                       for e in entries) for key, entries in data.items()}


def load_paper(path: Path = PAPER_FILE) -> Paper:
    """Parse ``paper.yaml``; raise ``ValueError`` naming the entry that is malformed."""
    data = yaml.safe_load(Path(path).read_text())
    tables = []
    for key, t in data["tables"].items():
        rows = []
        for i, r in enumerate(t["rows"]):
            where = f"{path}: tables.{key}.rows[{i}]"
            rows.append(PaperRow(
                network=r["network"], method=r["method"], model=r["model"], dataset=r["dataset"],
                error=_marked(r["error"], where + ".error"),
                architecture=_marked(r.get("architecture"), where + ".architecture"),
                experiment=r.get("experiment"), note=r.get("note"),
            ))
        tol = t.get("arch_tolerance")
        tables.append(PaperTable(
            key=key, title=t["title"], datasets=tuple(t["datasets"]), epochs=int(t["epochs"]),
            decimals=int(t["decimals"]),
            error_tolerance=float(t["error_tolerance"]),
            arch_tolerance=None if tol is None else float(tol), rows=tuple(rows),
            experiments=str(t.get("experiments") or ""), per_layer=bool(t.get("per_layer")),
            baseline=t.get("baseline"),
        ))
    selections = tuple(_selection(k, v) for k, v in (data.get("selection") or {}).items())
    evidence = tuple(Evidence(k, v["compare_with"], v["label"])
                     for k, v in (data.get("evidence") or {}).items())
    return Paper(networks=dict(data.get("networks") or {}), own=dict(data.get("own") or {}),
                 tables=tuple(tables), selections=selections, evidence=evidence,
                 budget=_budgets(data.get("budget")))
