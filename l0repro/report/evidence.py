"""Evidence runs: one choice changed (e.g. the init), compared seed by seed with a table row.

Declared in ``paper.yaml``'s ``evidence``. They are shown apart and never enter a table row.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from l0repro.record import atomic_write_text
from l0repro.report.paper import Evidence, Paper
from l0repro.report.runs import Run, best_network, best_text

FILE = "evidence"
COLUMNS = ["evidence", "variant", "experiment", "seed", "test_error_final", "test_error_best",
           "best_network", "architecture", "expected_flops_pct", "pruned_flops_pct"]


def _runs_of(experiment: str, groups: dict[tuple, list[Run]]) -> list[Run]:
    return [r for k, runs in sorted(groups.items()) if k[0] == experiment for r in runs]


def _pruned_pct(s: dict) -> float:
    pruned = s.get("flops_pruned")
    return pruned / s["flops_dense"] * 100 if isinstance(pruned, (int, float)) else float("nan")


def compare(ev: Evidence, apart: dict[tuple, list[Run]],
            table_groups: dict[tuple, list[Run]]) -> pd.DataFrame:
    """The row's and the evidence runs of every seed both have, side by side."""
    mine = {str(r.summary["seed"]): r for r in _runs_of(ev.experiment, apart)}
    row = {str(r.summary["seed"]): r for r in _runs_of(ev.compare_with, table_groups)}
    out = []
    for seed in sorted(set(mine) & set(row)):
        for variant, run in (("table row", row[seed]), (ev.label, mine[seed])):
            s = run.summary
            out.append({"evidence": ev.experiment, "variant": variant, "experiment": s["experiment"],
                        "seed": seed, "test_error_final": s["test_error_final"] * 100,
                        "test_error_best": s["test_error_best"] * 100,
                        "best_network": best_text([best_network(s)]),
                        "architecture": "-".join(map(str, s["architecture"])),
                        "expected_flops_pct": s["expected_flops_final"] / s["flops_dense"] * 100,
                        "pruned_flops_pct": _pruned_pct(s)})
    return pd.DataFrame(out, columns=COLUMNS)


def write_evidence(paper: Paper, apart: dict[tuple, list[Run]],
                   table_groups: dict[tuple, list[Run]], out_dir: Path) -> list[Path]:
    """``evidence.md`` and ``evidence.csv``; nothing (and stale copies removed) without pairs."""
    frames = [(ev, compare(ev, apart, table_groups)) for ev in paper.evidence]
    paths = [Path(out_dir) / f"{FILE}.md", Path(out_dir) / f"{FILE}.csv"]
    if not any(len(df) for _, df in frames):
        for p in paths:
            p.unlink(missing_ok=True)
        return []
    md = ["# Evidence runs (one choice changed, same seeds as the row)", ""]
    for ev, df in frames:
        md += [f"## `{ev.experiment}` against `{ev.compare_with}`: {ev.label}", ""]
        if not len(df):
            md += ["No seed has both runs complete yet.", ""]
            continue
        means = df.groupby("variant", sort=False)[["test_error_final", "test_error_best",
                                                   "expected_flops_pct", "pruned_flops_pct"]].mean()
        shown = pd.DataFrame({
            "variant": df["variant"], "seed": df["seed"],
            "test error % (final)": [f"{x:.2f}" for x in df["test_error_final"]],
            "test error % (best)": [f"{x:.2f}" for x in df["test_error_best"]],
            "best epoch's network (kept units, pruned FLOPs)": df["best_network"],
            "architecture": df["architecture"],
            "expected FLOPs %": [f"{x:.2f}" for x in df["expected_flops_pct"]],
            "pruned FLOPs %": [f"{x:.2f}" for x in df["pruned_flops_pct"]],
        })
        md += [shown.to_markdown(index=False, disable_numparse=True), ""]
        md += [f"- mean of {variant}: final {m['test_error_final']:.2f} %, best "
               f"{m['test_error_best']:.2f} %, expected FLOPs {m['expected_flops_pct']:.2f} %, "
               f"pruned FLOPs {m['pruned_flops_pct']:.2f} %"
               for variant, m in means.iterrows()]
        md.append("")
    atomic_write_text(paths[0], "\n".join(md))
    table = pd.concat([df for _, df in frames], ignore_index=True)
    atomic_write_text(paths[1], table.to_csv(index=False, float_format="%.4f", lineterminator="\n"))
    return paths
