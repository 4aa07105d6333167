"""Tables 1 and 2: our runs aggregated over seeds, beside the paper's rows, with a verdict.

Each table is one DataFrame of numbers (written as CSV) and one of formatted text (written
as Markdown and LaTeX). Everything is sorted and formatted with fixed precision, so the same
runs give byte-identical files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from l0repro.record import atomic_write_text
from l0repro.report.paper import Paper, PaperRow, PaperTable
from l0repro.report.runs import Excluded, Run

EPS = 1e-9  # so that a difference of exactly the tolerance passes despite float rounding

CSV_COLUMNS = [
    "source", "network", "method", "experiment", "dataset", "lambdas", "seeds", "epochs",
    "error_final_mean", "error_final_std", "error_best_mean", "error_best_std",
    "architecture", "layers", "kept_units", "total_units", "flops_pct", "params_kept",
    "paper_error", "paper_error_mark", "paper_architecture", "paper_architecture_mark",
    "verdict",
]


@dataclass
class Stats:
    """One row's runs aggregated over seeds (errors in %)."""

    seeds: int
    epochs: int
    error_final_mean: float
    error_final_std: float  # sample std (ddof=1); NaN with one seed
    error_best_mean: float
    error_best_std: float
    architecture: list[int]  # per-layer mean over seeds, rounded half up
    full_architecture: list[int]
    layers: list[str]
    flops_pct: float
    params_kept: int


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


def _std(a: np.ndarray) -> float:
    return float(a.std(ddof=1)) if len(a) > 1 else math.nan


def aggregate(runs: list[Run]) -> Stats:
    """Mean and sample std over seeds of the final and best test error; mean of the rest."""
    s = [r.summary for r in runs]
    final = np.array([x["test_error_final"] * 100 for x in s])
    best = np.array([x["test_error_best"] * 100 for x in s])
    arch = np.array([x["architecture"] for x in s], dtype=float).reshape(len(s), -1)
    flops = np.array([x["expected_flops_final"] / x["flops_dense"] * 100 for x in s])
    return Stats(
        seeds=len(s), epochs=int(s[0]["epochs"]),
        error_final_mean=float(final.mean()), error_final_std=_std(final),
        error_best_mean=float(best.mean()), error_best_std=_std(best),
        architecture=[_round(u) for u in arch.mean(axis=0)],
        full_architecture=[int(u) for u in s[0]["full_architecture"]],
        layers=runs[0].layer_names, flops_pct=float(flops.mean()),
        params_kept=_round(float(np.mean([x["params_kept"] for x in s]))),
    )


def verdict(stats: Stats, row: PaperRow, table: PaperTable) -> str:
    """``pass``, or ``fail: `` and what is off: the error, and each layer outside tolerance.
    A row trained for fewer epochs than the paper says so after the verdict."""
    problems = []
    diff = stats.error_final_mean - float(row.error.value)
    if abs(diff) > table.error_tolerance + EPS:
        problems.append(f"error {diff:+.2f} pp (tolerance {table.error_tolerance:g})")
    paper_arch = row.arch_units()
    if table.arch_tolerance is not None and paper_arch is not None:
        if len(paper_arch) != len(stats.architecture):
            problems.append(f"{len(stats.architecture)} layers, paper {len(paper_arch)}")
        else:
            for name, ours, theirs in zip(stats.layers, stats.architecture, paper_arch,
                                          strict=True):
                rel = (ours - theirs) / theirs if theirs else (0.0 if ours == 0 else math.inf)
                if abs(rel) > table.arch_tolerance + EPS:
                    problems.append(f"{name} {ours} vs {theirs} ({rel * 100:+.0f}%)")
    text = "pass" if not problems else "fail: " + "; ".join(problems)
    if stats.epochs < table.epochs:
        text += f" ({stats.epochs} of the paper's {table.epochs} epochs)"
    return text


def _lambdas(lams: tuple[float, ...]) -> str:
    return ", ".join(f"{x:g}" for x in lams)


def _compact_lambdas(text) -> str:
    """One value when every layer shares it: ``"0.1, 0.1, 0.1"`` -> ``"0.1"``."""
    parts = _text(text).split(", ")
    return parts[0] if len(set(parts)) == 1 else _text(text)


def _method_label(key: tuple, paper: Paper) -> str:
    experiment, _, _, method, lams, _ = key
    if experiment in paper.own:
        return paper.own[experiment]
    if method == "l0" and lams:
        return f"L0, lambda = {lams[0]:g}/N" if len(set(lams)) == 1 else \
            f"L0, lambdas = ({_lambdas(lams)})/N"
    return method


def _paper_cells(row: PaperRow | None) -> dict:
    if row is None:
        return {}
    arch = row.architecture
    return {
        "paper_error": float(row.error.value), "paper_error_mark": row.error.mark,
        "paper_architecture": None if arch is None else str(arch.value),
        "paper_architecture_mark": None if arch is None else arch.mark,
    }


def _our_cells(key: tuple, stats: Stats) -> dict:
    experiment, _, dataset, _, lams, _ = key
    return {
        "source": "ours", "experiment": experiment, "dataset": dataset, "lambdas": _lambdas(lams),
        "seeds": stats.seeds, "epochs": stats.epochs,
        "error_final_mean": stats.error_final_mean, "error_final_std": stats.error_final_std,
        "error_best_mean": stats.error_best_mean, "error_best_std": stats.error_best_std,
        "architecture": "-".join(str(u) for u in stats.architecture),
        "layers": "-".join(stats.layers), "kept_units": sum(stats.architecture),
        "total_units": sum(stats.full_architecture), "flops_pct": stats.flops_pct,
        "params_kept": stats.params_kept,
    }


def _own_row(key: tuple, network: str, paper: Paper, runs: list[Run]) -> dict:
    """A row of ours with no paper row beside it, hence no verdict."""
    return {"network": network, "method": _method_label(key, paper),
            **_our_cells(key, aggregate(runs)), "verdict": ""}


def build_table(table: PaperTable, paper: Paper, groups: dict[tuple, list[Run]]) -> pd.DataFrame:
    """The table's rows in order: per (model, dataset) section, first our baselines
    (``paper.own``), then the paper's rows in the paper's order (a row that an experiment
    reproduces carries our aggregated runs, or says ``not run``), then our other rows."""
    mine = {k: v for k, v in groups.items() if k[2] in table.datasets}
    sections = list(dict.fromkeys((r.model, r.dataset) for r in table.rows))
    sections += sorted({(k[1], k[2]) for k in mine} - set(sections))
    rows = []
    for model, dataset in sections:
        network = paper.networks.get(model, model)
        prows = [r for r in table.rows if (r.model, r.dataset) == (model, dataset)]
        mapped = {r.experiment for r in prows if r.experiment}
        # Longest runs first within an experiment: a short smoke run never hides the real one.
        keys = sorted((k for k in mine if k[1] == model and k[2] == dataset),
                      key=lambda k: (k[0], k[4], -k[5], k[3]))
        unmapped = [k for k in keys if k[0] not in mapped]
        own = [k for k in unmapped if k[0] in paper.own]
        for key in own:
            rows.append(_own_row(key, network, paper, mine[key]))
        for prow in prows:
            base = {"network": prow.network, "method": prow.method, **_paper_cells(prow)}
            ours = [k for k in keys if prow.experiment and k[0] == prow.experiment]
            for key in ours:
                stats = aggregate(mine[key])
                rows.append({**base, **_our_cells(key, stats),
                             "verdict": verdict(stats, prow, table)})
            if not ours:
                rows.append({**base, "source": "paper", "experiment": prow.experiment or "",
                             "dataset": prow.dataset,
                             "verdict": "not run" if prow.experiment else ""})
        rows += [_own_row(k, network, paper, mine[k]) for k in unmapped if k not in own]
    df = pd.DataFrame(rows, columns=CSV_COLUMNS)
    for col in ("seeds", "epochs", "kept_units", "total_units", "params_kept"):
        df[col] = df[col].astype("Int64")
    return df


def _text(x) -> str:
    return "" if x is None or pd.isna(x) else str(x)


def _pm(mean: float, std: float) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} ± {std:.2f}"


def _count(n) -> str:
    if pd.isna(n):
        return ""
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(int(n))


def _marked(value, mark, fmt: str) -> str:
    if value is None or pd.isna(value):
        return ""
    text = fmt.format(value)
    return text if mark == "v" else f"{text} ?"


def display(df: pd.DataFrame, table: PaperTable) -> pd.DataFrame:
    """The table as text: errors as mean ± std in %, paper numbers with ``?`` if unchecked."""
    many = (df["seeds"].fillna(0) > 1).tolist()
    arch = [("" if pd.isna(a) else f"{a} *" if m else str(a))
            for a, m in zip(df["architecture"], many, strict=True)]
    cols = {
        "network": [_text(x) for x in df["network"]],
        "dataset": [_text(x) for x in df["dataset"]],
        "method": [_text(x) for x in df["method"]],
        "experiment": [_text(x) for x in df["experiment"]],
        "lambda (c/N)": [_compact_lambdas(x) for x in df["lambdas"]],
        "error % (final)": [_pm(m, s) for m, s in
                            zip(df["error_final_mean"], df["error_final_std"], strict=True)],
        "error % (best epoch)": [_pm(m, s) for m, s in
                                 zip(df["error_best_mean"], df["error_best_std"], strict=True)],
        "architecture": arch,
        "kept maps": [("" if pd.isna(k) else f"{k}/{t}" + (" *" if m else ""))
                      for k, t, m in zip(df["kept_units"], df["total_units"], many, strict=True)],
        "FLOPs %": [("" if pd.isna(x) else f"{x:.2f}") for x in df["flops_pct"]],
        "params kept": [_count(x) for x in df["params_kept"]],
        "seeds": [_text(x) for x in df["seeds"]],
        "epochs": [_text(x) for x in df["epochs"]],
        "paper error %": [_marked(v, m, f"{{:.{table.decimals}f}}") for v, m in
                          zip(df["paper_error"], df["paper_error_mark"], strict=True)],
        "paper architecture": [_marked(v, m, "{}") for v, m in
                               zip(df["paper_architecture"], df["paper_architecture_mark"],
                                   strict=True)],
        "verdict": [_text(x) for x in df["verdict"]],
    }
    if table.arch_tolerance is None:  # Table 2: no architecture in the paper
        drop = ["network", "architecture", "paper architecture"]
    else:
        drop = ["dataset", "kept maps"]
    return pd.DataFrame({k: v for k, v in cols.items() if k not in drop})


def notes(df: pd.DataFrame, table: PaperTable) -> list[str]:
    """How to read the table, and the paper's footnotes."""
    arch = "architecture" if table.arch_tolerance is not None else "kept maps"
    lines = [
        "Errors: test error in % after the last epoch (primary) and at the best epoch, "
        "mean ± sample std over seeds.",
        f"Verdict: error within {table.error_tolerance:g} points of the paper's"
        + (f", kept units per layer within {table.arch_tolerance * 100:g}% of the paper's."
           if table.arch_tolerance is not None else " (the paper gives no architecture)."),
        "`?`: paper number not yet checked against the paper (see paper.yaml).",
        "FLOPs %: expected FLOPs per example after training, as % of the dense network.",
        f"The paper trains for {table.epochs} epochs; `epochs` is ours.",
    ]
    if (df["seeds"].fillna(0) > 1).any():
        lines.append(f"`*`: {arch} is the per-layer mean over seeds, rounded.")
    return lines + [f"{r.network}, {r.method}: {r.note}." for r in table.rows if r.note]


def left_out(table: PaperTable, excluded: list[Excluded]) -> list[str]:
    """One line per run left out of this table (runs of unknown dataset go under every table)."""
    mine = [e for e in excluded if e.dataset in table.datasets or e.dataset is None]
    lines = []
    for e in mine:
        what = f"{e.experiment}, seed {e.seed}" if e.experiment else "experiment unknown"
        lines.append(f"`{e.source}` ({what}): {e.reason}")
    return lines


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"),
                 ("#", r"\#"), ("_", r"\_")):
        text = text.replace(a, b)
    return text


def write_table(df: pd.DataFrame, table: PaperTable, excluded: list[Excluded],
                out_dir: Path) -> list[Path]:
    """Write ``<key>.csv``, ``<key>.md`` and ``<key>.tex``; return their paths."""
    out_dir = Path(out_dir)
    shown = display(df, table)
    info, out = notes(df, table), left_out(table, excluded)
    csv = out_dir / f"{table.key}.csv"
    atomic_write_text(csv, df.to_csv(index=False, float_format="%.4f", lineterminator="\n"))
    md = out_dir / f"{table.key}.md"
    atomic_write_text(
        md, f"# {table.title}\n\n" + shown.to_markdown(index=False, disable_numparse=True) + "\n\n"
        + "".join(f"- {x}\n" for x in info)
        + f"\nRuns left out of this table: {len(out) or 'none'}\n"
        + ("\n" + "".join(f"- {x}\n" for x in out) if out else ""))
    tex = out_dir / f"{table.key}.tex"
    latex = shown.to_latex(index=False, escape=True, caption=_latex_escape(table.title),
                           label=f"tab:{table.key}")
    latex = latex.replace("±", r"$\pm$")
    atomic_write_text(tex, latex + "".join(f"% {x}\n" for x in info)
                   + "".join(f"% left out: {x}\n" for x in out))
    return [md, csv, tex]
