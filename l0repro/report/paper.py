"""The paper's numbers, loaded from ``paper.yaml`` (data, not code)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PAPER_FILE = Path(__file__).with_name("paper.yaml")
MARKS = ("v", "?")


@dataclass(frozen=True)
class Marked:
    """A number from the paper and whether it was checked (``v``) or not (``?``)."""

    value: Any
    mark: str

    @property
    def verified(self) -> bool:
        return self.mark == "v"

    def show(self, fmt: str = "{}") -> str:
        text = fmt.format(self.value)
        return text if self.verified else f"{text} ?"


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

    def row_for(self, experiment: str) -> PaperRow | None:
        return next((r for r in self.rows if r.experiment == experiment), None)


@dataclass(frozen=True)
class Paper:
    networks: dict[str, str]
    own: dict[str, str]
    tables: tuple[PaperTable, ...]

    def table_for(self, dataset: str) -> PaperTable | None:
        return next((t for t in self.tables if dataset in t.datasets), None)


def _marked(raw: dict[str, Any] | None, where: str) -> Marked | None:
    if raw is None:
        return None
    mark = str(raw.get("mark"))
    if mark not in MARKS or "value" not in raw:
        raise ValueError(f"{where}: expected {{value: ..., mark: v|?}}, got {raw!r}")
    return Marked(raw["value"], mark)


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
        ))
    return Paper(networks=dict(data.get("networks") or {}), own=dict(data.get("own") or {}),
                 tables=tuple(tables))
