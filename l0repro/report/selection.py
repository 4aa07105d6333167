"""Selection runs: every sweep point judged on validation, and the point the written rule picks.

The rule (``paper.yaml``'s ``selection``, written down before the sweeps ran): among the points
whose final validation error is within ``error_window`` points of the best point's, the one whose
validation architecture is closest to the paper's, measured as the sum over layers of
``|kept - paper| / paper``. Selection runs never evaluate the test set and are never aggregated
into a table row; this page only shows them and checks that the row trains the chosen point.
A sweep may count another sweep's record as one of its points (``borrowed``: the same config
and seed, not trained twice); until every declared point is in, its choice is provisional.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from l0repro.record import atomic_write_text
from l0repro.report.paper import Paper, Selection
from l0repro.report.runs import Run, best_text
from l0repro.report.tables import _lambdas, aggregate

FILE = "selection"
COLUMNS = ["sweep", "row", "record_of", "lambdas", "seeds", "epochs", "val_error_final",
           "val_error_best", "best_network", "architecture", "distance", "within_window", "chosen",
           "expected_flops_pct", "pruned_flops_pct"]


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
    borrowed = set(sel.borrowed)
    rows = []
    for key, runs in sorted(groups.items()):
        if key[0] != sel.sweep and (key[0], key[4]) not in borrowed:
            continue
        st = aggregate(runs)
        rows.append({"sweep": sel.sweep, "row": sel.row, "record_of": key[0],
                     "lambdas": _lambdas(key[4]), "seeds": st.seeds, "epochs": st.epochs,
                     "val_error_final": st.error_final_mean, "val_error_best": st.error_best_mean,
                     "best_network": best_text(st.best),
                     "architecture": "-".join(map(str, st.architecture)),
                     "distance": distance(st.architecture, paper_arch),
                     "expected_flops_pct": st.expected_flops_pct,
                     "pruned_flops_pct": st.pruned_flops_pct})
    df = pd.DataFrame(rows, columns=COLUMNS)
    # points sorted by their lambdas as numbers (10 before 15), the borrowed ones among them
    df = df.iloc[sorted(range(len(df)), key=lambda i: [float(x) for x in
                                                        df["lambdas"].iloc[i].split(", ")])]
    df = df.reset_index(drop=True)
    if len(df):
        best = df["val_error_final"].min()
        df["within_window"] = df["val_error_final"] <= best + sel.error_window + 1e-9
        ranked = df[df["within_window"]].sort_values(["distance", "val_error_final", "lambdas"])
        df["chosen"] = df.index == ranked.index[0]
    return df


def swept(lambdas: list[str], layers: list[str]) -> str:
    """The one layer whose lambda the points vary (``conv1``), or ``""`` when several vary."""
    values = [[float(x) for x in lam.split(", ")] for lam in lambdas]
    varying = [i for i in range(len(values[0])) if len({v[i] for v in values}) > 1] \
        if values else []
    return layers[varying[0]] if len(varying) == 1 and varying[0] < len(layers) else ""


def declared_missing(sel: Selection, df: pd.DataFrame) -> list[str]:
    """The declared points with no complete run yet."""
    have = {tuple(float(x) for x in lam.split(", ")) for lam in df["lambdas"]}
    return [_lambdas(p) for p in sel.points if p not in have]


def row_lambdas(sel: Selection, groups: dict[tuple, list[Run]]) -> list[str]:
    """The lambdas the table row's runs were trained with (one entry per distinct setting)."""
    return sorted({_lambdas(k[4]) for k in groups if k[0] == sel.row})


def revised_by(sel: Selection, later: list[tuple[Selection, pd.DataFrame]],
               choices: dict[str, str], used: list[str]) -> str:
    """The last later sweep for the same row whose choice the row trains with, or ``""``."""
    found = [s.sweep for s, _ in later if s.row == sel.row and [choices.get(s.sweep)] == used]
    return found[-1] if found else ""


def splits(runs: list[Run]) -> list[str]:
    """The validation splits the runs used, as text: held out, of how many, seed, checksum."""
    seen = {(v["n"], v["n_train_full"], v["seed"], v["indices_sha256"][:12])
            for r in runs if isinstance(v := r.summary.get("validation"), dict)}
    return [f"{n:,} of {full:,} training images held out (split seed {seed}, indices sha256 "
            f"{sha}...)" for n, full, seed, sha in sorted(seen)]


def _markdown(frames: list[tuple[Selection, pd.DataFrame]], paper: Paper,
              table_groups: dict[tuple, list[Run]], other: list[str], used: list[str],
              layers: dict[str, list[str]]) -> str:
    out = ["# Selection runs (validation split, never the test set)", "",
           "Each point trains on the training images left after the split and is judged on the "
           "held-out ones; the test set is never evaluated. Splits: " + ("; ".join(used) or "-")
           + ". Published under `runs/sweeps/`, never averaged into a table row.", ""]
    choices = {sel.sweep: df[df["chosen"]].iloc[0]["lambdas"] for sel, df in frames if len(df)}
    for i, (sel, df) in enumerate(frames):
        paper_arch = paper.table_row(sel.row)[1].architecture.value
        out += [f"## `{sel.sweep}` -> `{sel.row}`", "", f"Rule: {rule_text(sel, paper_arch)}.", ""]
        out += [f"History: {h}" for h in sel.history] + ([""] if sel.history else [])
        for other_sweep, lams in sel.borrowed:
            out += [f"The point ({_lambdas(lams)}) is the record of `{other_sweep}` at these "
                    f"lambdas (the same config and seed, listed here, not trained twice).", ""]
        if not len(df):
            out += ["No complete selection run yet.", ""]
            continue
        shown = pd.DataFrame({
            "lambdas (c/N)": df["lambdas"],
            "record of": [f"`{r}`" for r in df["record_of"]],
            "seeds": df["seeds"].astype(str),
            "val error % (final)": [f"{x:.2f}" for x in df["val_error_final"]],
            "val error % (best)": [f"{x:.2f}" for x in df["val_error_best"]],
            "best epoch's network (kept units, pruned FLOPs)": df["best_network"],
            "architecture (val)": df["architecture"],
            f"distance to {paper_arch}": [f"{x:.3f}" for x in df["distance"]],
            f"within {sel.error_window:g} of best": ["yes" if w else "no" for w in df["within_window"]],
            "expected FLOPs %": [f"{x:.2f}" for x in df["expected_flops_pct"]],
            "chosen": ["**chosen**" if c else "" for c in df["chosen"]],
        })
        if (df["record_of"] == sel.sweep).all():
            shown = shown.drop(columns="record of")
        out += [shown.to_markdown(index=False, disable_numparse=True), ""]
        chosen = df[df["chosen"]].iloc[0]["lambdas"]
        missing = declared_missing(sel, df)
        grid = [_lambdas(p) for p in sel.points] or df["lambdas"].tolist()
        layer = swept(grid, layers.get(sel.sweep, []))
        if layer:
            value = chosen.split(", ")[layers[sel.sweep].index(layer)]
            out.append(f"The rule picks {layer} lambda {value}{' so far' if missing else ''}.")
        if missing:
            out.append(f"Provisional: {len(sel.points) - len(missing)} of {len(sel.points)} "
                       f"declared points are complete; still to come: "
                       f"{', '.join(f'({m})' for m in missing)}.")
        used = row_lambdas(sel, table_groups)
        if not used:
            out.append(f"The rule chooses ({chosen}); the row has no complete run yet.")
        elif used == [chosen]:
            out.append(f"The rule chooses ({chosen}); the row `{sel.row}` trains with it.")
        elif (later := revised_by(sel, frames[i + 1:], choices, used)):
            out.append(f"The rule chooses ({chosen}); the later sweep `{later}` for the same row "
                       f"started from this choice and moved it to ({choices[later]}), which the "
                       f"row `{sel.row}` trains with.")
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
    layers = {sel.sweep: runs[0].layer_names for sel in paper.selections
              for k, runs in apart.items() if k[0] == sel.sweep or (k[0], k[4]) in sel.borrowed}
    atomic_write_text(paths[0], _markdown(frames, paper, table_groups, other, used, layers))
    table = pd.concat([df for _, df in frames], ignore_index=True) if frames else pd.DataFrame()
    atomic_write_text(paths[1], table.to_csv(index=False, float_format="%.4f", lineterminator="\n"))
    return paths
