"""One report: read the runs, write the tables, figures and README, and summarise."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from l0repro.report import budget, evidence, index, selection, sources, tables
from l0repro.report import figures as figs
from l0repro.report.paper import Outside, Paper, load_outside, load_paper
from l0repro.report.runs import Excluded, Run, group, select


@dataclass
class Report:
    runs: list[Run]  # complete, one per seed of a row
    excluded: list[Excluded]
    sources: list[str]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: list[figs.Outcome] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    budget: pd.DataFrame | None = None  # one row per declared budget experiment and schedule


def unreported(groups: dict[tuple, list[Run]], paper: Paper) -> list[Excluded]:
    """Runs of an experiment that is in no table, sweep, evidence or budget of ``paper.yaml``
    (e.g. a new group): left out, each with the reason."""
    out = []
    for key, runs in groups.items():
        if paper.set_apart(key[0]) or any(t.holds(key[0], key[2]) for t in paper.tables):
            continue
        for r in runs:
            out.append(Excluded(r.source, f"experiment {key[0]!r} on {key[2]} is in no table, "
                                          "sweep or evidence of paper.yaml: not reported "
                                          "(nor a budget experiment)",
                                key[0], key[2], r.summary.get("seed")))
    return out


def make_report(runs_dir: Path | None, out_dir: Path, wandb_path: str | None = None,
                paper: Paper | None = None, api: Any = None,
                outside: dict[str, tuple[Outside, ...]] | None = None) -> Report:
    """Read runs under ``runs_dir`` and/or from wandb; write every output into ``out_dir``."""
    paper = paper or load_paper()
    outside = load_outside() if outside is None else outside
    out_dir = Path(out_dir)
    read, excluded, names = [], [], []
    if runs_dir is not None:
        r, e = sources.load_local(Path(runs_dir))
        read += r
        excluded += e
        names.append(f"run directories under `{runs_dir}` ({len(r) + len(e)} found)")
    if wandb_path:
        r, e = sources.load_wandb(wandb_path, api=api)
        read += r
        excluded += e
        names.append(f"wandb project `{wandb_path}` ({len(r) + len(e)} runs)")
    runs, excluded = select(read, excluded)
    groups = group(runs)
    # a run trained to a target that paper.yaml does not declare never enters a table row
    unknown = budget.undeclared(runs, paper)
    unknown += unreported(group([r for r in runs if r.source not in {e.source for e in unknown}]),
                          paper)
    if unknown:
        dropped = {e.source for e in unknown}
        runs = [r for r in runs if r.source not in dropped]
        excluded = sorted(excluded + unknown, key=lambda e: e.source)
        groups = group(runs)
    # selection runs (judged on validation) and evidence runs never enter a table row
    apart = {k: v for k, v in groups.items()
             if paper.set_apart(k[0]) or any(r.selection for r in v)}
    table_groups = {k: v for k, v in groups.items() if k not in apart}

    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(runs, excluded, names)
    for table in paper.tables:
        df = tables.build_table(table, paper, table_groups)
        report.tables[table.key] = df
        report.files += tables.write_table(df, table, excluded, out_dir,
                                           outside.get(table.key, ()))
    report.files += selection.write_selection(paper, apart, table_groups, out_dir)
    report.files += evidence.write_evidence(paper, apart, table_groups, out_dir)
    report.figures = figs.draw_all(table_groups, paper, out_dir / "figures")
    written, figure, report.budget = budget.write_budget(paper, apart, table_groups, out_dir,
                                                         excluded, outside)
    report.files += written
    report.figures += [figure] if figure else []
    report.files += [p for f in report.figures for p in f.paths]
    report.files += index.write_index(out_dir, runs, excluded, names, list(paper.tables),
                                      report.figures, report.tables, report.files, outside)
    return report


def summary_lines(report: Report, out_dir: Path) -> list[str]:
    """A short account for the terminal: counts, verdicts, runs left out, figures."""
    lines = [f"read {len(report.runs) + len(report.excluded)} runs from "
             + "; ".join(report.sources)
             + f": {len(report.runs)} complete, {len(report.excluded)} left out"]
    for key, df in report.tables.items():
        ours = df[df["source"] == "ours"]
        verdicts = ours["verdict"].fillna("")
        n_pass = int(verdicts.str.startswith("pass").sum())
        n_fail = int(verdicts.str.startswith("fail").sum())
        reproduced = [x if isinstance(x, str) else "" for x in ours["reproduced"]]
        n_repro = sum(bool(x) and "not reproduced" not in x for x in reproduced)
        not_run = df.loc[df["verdict"] == "not run", "experiment"].tolist()
        lines.append(f"{key}: {len(ours)} rows from our runs ({n_pass} pass, {n_fail} fail, "
                     f"{len(ours) - n_pass - n_fail} without paper row; {n_repro} reproduced "
                     f"seed by seed) -> {out_dir}/{key}.md")
        for (_, row), judged in zip(ours.iterrows(), reproduced, strict=True):
            seeds = f"{row['seeds']} seed" + ("s" if row["seeds"] > 1 else "")
            lines.append(f"  {row['experiment']} ({seeds}, {row['epochs']} ep): "
                         f"error {row['error_final_mean']:.2f}%  {row['verdict'] or '-'}"
                         + (f"; {judged}" if judged else ""))
        if not_run:
            lines.append(f"  not run yet: {', '.join(not_run)}")
    if report.budget is not None and len(report.budget):
        done = report.budget[report.budget["status"] == "complete"]
        lines.append(f"budget: {done['experiment'].nunique()} of "
                     f"{report.budget['experiment'].nunique()} declared experiments have complete "
                     f"runs -> {out_dir}/{budget.FILE}.md")
        for _, row in done.iterrows():
            lines.append(f"  {row['experiment']} ({budget._n(row['seeds'], 'seed')}, "
                         f"{row['epochs']} ep): "
                         f"expected FLOPs {row['expected_flops_pct']:.2f} % (target "
                         f"{row['target_flops_pct']:g} %; within: {row['expected_within']}), "
                         f"error {row['error_final_mean']:.2f}%")
        waiting = report.budget.loc[report.budget["status"] != "complete", "experiment"]
        if len(waiting):
            lines.append(f"  not run yet: {', '.join(waiting)}")
    for e in report.excluded:
        lines.append(f"left out {e.source}: {e.reason}")
    for f in report.figures:
        lines.append(f"figure {f.name}: " + ("written" if f.paths else f"not drawn ({f.reason})"))
    lines.append(f"README: {out_dir}/README.md")
    return lines
