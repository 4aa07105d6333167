"""Selection runs: every sweep point judged on validation, and the point the written rule picks.

The rule (``paper.yaml``'s ``selection``, written down before the sweeps ran): among the points
whose final validation error is within ``error_window`` points of the best point's, the one whose
validation architecture is closest to the paper's, measured as the sum over layers of
``|kept - paper| / paper``. Selection runs never evaluate the test set and are never aggregated
into a table row; this page only shows them and checks that the row trains the chosen point.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from l0repro.record import atomic_write_text
from l0repro.report.paper import Paper, Selection
from l0repro.report.runs import Run
from l0repro.report.tables import _lambdas, aggregate

FILE = "selection"
COLUMNS = ["sweep", "row", "lambdas", "seeds", "epochs", "val_error_final", "val_error_best",
           "architecture", "distance", "within_window", "chosen", "expected_flops_pct",
           "pruned_flops_pct"]


def distance(arch: list[int], paper_arch: list[int]) -> float:
    """Sum over layers of |kept - paper| / paper."""
    return sum(abs(a - p) / p for a, p in zip(arch, paper_arch, strict=True))


def rule_text(sel: Selection, paper_arch: str) -> str:
    return (f"among the points whose final validation error is within {sel.error_window:g} points "
            f"of the best point's, the one whose validation architecture is closest to the "
            f"paper's {paper_arch} (sum over layers of |kept - paper| / paper); ties go to the "
            f"lower error")


def sweep_table(sel: Selection, paper: Paper, groups: dict[tuple, list[Run]]) -> pd.DataFrame:
    """One row per sweep point (mean over its seeds), with the rule's choice marked."""
    found = paper.table_row(sel.row)
    if found is None or found[1].arch_units() is None:
        raise ValueError(f"paper.yaml: selection {sel.sweep!r} names row {sel.row!r}, which has "
                         "no paper architecture to select towards")
    paper_arch = found[1].arch_units()
    rows = []
    for key, runs in sorted(groups.items()):
        if key[0] != sel.sweep:
            continue
        st = aggregate(runs)
        rows.append({"sweep": sel.sweep, "row": sel.row, "lambdas": _lambdas(key[4]),
                     "seeds": st.seeds, "epochs": st.epochs, "val_error_final": st.error_final_mean,
                     "val_error_best": st.error_best_mean,
                     "architecture": "-".join(map(str, st.architecture)),
                     "distance": distance(st.architecture, paper_arch),
                     "expected_flops_pct": st.expected_flops_pct,
                     "pruned_flops_pct": st.pruned_flops_pct})
    df = pd.DataFrame(rows, columns=COLUMNS)
    if len(df):
        best = df["val_error_final"].min()
        df["within_window"] = df["val_error_final"] <= best + sel.error_window + 1e-9
        ranked = df[df["within_window"]].sort_values(["distance", "val_error_final", "lambdas"])
        df["chosen"] = df.index == ranked.index[0]
    return df


def row_lambdas(sel: Selection, groups: dict[tuple, list[Run]]) -> list[str]:
    """The lambdas the table row's runs were trained with (one entry per distinct setting)."""
    return sorted({_lambdas(k[4]) for k in groups if k[0] == sel.row})


def splits(runs: list[Run]) -> list[str]:
    """The validation splits the runs used, as text: held out, of how many, seed, checksum."""
    seen = {(v["n"], v["n_train_full"], v["seed"], v["indices_sha256"][:12])
            for r in runs if isinstance(v := r.summary.get("validation"), dict)}
    return [f"{n:,} of {full:,} training images held out (split seed {seed}, indices sha256 "
            f"{sha}...)" for n, full, seed, sha in sorted(seen)]


def _markdown(frames: list[tuple[Selection, pd.DataFrame]], paper: Paper,
              table_groups: dict[tuple, list[Run]], other: list[str], used: list[str]) -> str:
    out = ["# Selection runs (validation split, never the test set)", "",
           "Each point trains on the training images left after the split and is judged on the "
           "held-out ones; the test set is never evaluated. Splits: " + ("; ".join(used) or "-")
           + ". Published under `runs/sweeps/`, never averaged into a table row.", ""]
    for sel, df in frames:
        paper_arch = paper.table_row(sel.row)[1].architecture.value
        out += [f"## `{sel.sweep}` -> `{sel.row}`", "", f"Rule: {rule_text(sel, paper_arch)}.", ""]
        if not len(df):
            out += ["No complete selection run yet.", ""]
            continue
        shown = pd.DataFrame({
            "lambdas (c/N)": df["lambdas"], "seeds": df["seeds"].astype(str),
            "val error % (final)": [f"{x:.2f}" for x in df["val_error_final"]],
            "val error % (best)": [f"{x:.2f}" for x in df["val_error_best"]],
            "architecture (val)": df["architecture"],
            f"distance to {paper_arch}": [f"{x:.3f}" for x in df["distance"]],
            f"within {sel.error_window:g} of best": ["yes" if w else "no" for w in df["within_window"]],
            "expected FLOPs %": [f"{x:.2f}" for x in df["expected_flops_pct"]],
            "chosen": ["**chosen**" if c else "" for c in df["chosen"]],
        })
        out += [shown.to_markdown(index=False, disable_numparse=True), ""]
        chosen = df[df["chosen"]].iloc[0]["lambdas"]
        used = row_lambdas(sel, table_groups)
        if not used:
            out.append(f"The rule chooses ({chosen}); the row has no complete run yet.")
        elif used == [chosen]:
            out.append(f"The rule chooses ({chosen}); the row `{sel.row}` trains with it.")
        else:
            out.append(f"The rule chooses ({chosen}), but the row `{sel.row}` was trained with "
                       f"{', '.join(f'({u})' for u in used)}.")
        out.append("")
    if other:
        out += ["## Other selection runs (no declared sweep)", "", *[f"- `{o}`" for o in other], ""]
    return "\n".join(out)


def write_selection(paper: Paper, apart: dict[tuple, list[Run]],
                    table_groups: dict[tuple, list[Run]], out_dir: Path) -> list[Path]:
    """``selection.md`` and ``selection.csv``; nothing (and stale copies removed) without runs."""
    frames = [(sel, sweep_table(sel, paper, apart)) for sel in paper.selections]
    declared = {sel.sweep for sel in paper.selections}
    other = sorted(f"{r.source} ({k[0]}, lambdas {_lambdas(k[4])})" for k, runs in apart.items()
                   for r in runs if r.selection and k[0] not in declared)
    paths = [Path(out_dir) / f"{FILE}.md", Path(out_dir) / f"{FILE}.csv"]
    if not any(len(df) for _, df in frames) and not other:
        for p in paths:
            p.unlink(missing_ok=True)
        return []
    used = splits([r for runs in apart.values() for r in runs if r.selection])
    atomic_write_text(paths[0], _markdown(frames, paper, table_groups, other, used))
    table = pd.concat([df for _, df in frames], ignore_index=True) if frames else pd.DataFrame()
    atomic_write_text(paths[1], table.to_csv(index=False, float_format="%.4f", lineterminator="\n"))
    return paths
