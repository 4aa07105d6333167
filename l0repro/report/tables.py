"""Tables 1 and 2: our runs aggregated over seeds, beside the paper's rows, with a verdict.

Each table is one DataFrame of numbers (written as CSV) and one of formatted text (written
as Markdown and LaTeX). Everything is sorted and formatted with fixed precision, so the same
runs give byte-identical files.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from l0repro.record import atomic_write_text
from l0repro.report.paper import Paper, PaperRow, PaperTable
from l0repro.report.runs import BestNetwork, Excluded, Run, best_network, best_text, error_keys

EPS = 1e-9  # so that a difference of exactly the tolerance passes despite float rounding

CSV_COLUMNS = [
    "source", "network", "method", "experiment", "dataset", "lambdas", "seeds", "epochs",
    "error_final_mean", "error_final_std", "error_best_mean", "error_best_std", "best_networks",
    "architecture", "layers", "kept_units", "total_units", "expected_flops_pct",
    "pruned_flops_pct", "expected_params", "params_kept", "compact_params", "compact_flops_pct",
    "cpu_speedup", "error_vs_baseline",
    "paper_error", "paper_error_mark", "paper_error_alt", "paper_architecture",
    "paper_architecture_mark", "verdict", "units_off", "verdict_alt", "reproduced", "seed_gaps",
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
    expected_flops_pct: float  # live training gates at the end, P(z != 0) (the paper's Fig. 3)
    pruned_flops_pct: float  # the test-time network: units with z_hat == 0 removed
    expected_params: float  # NaN for records written before it was logged
    params_kept: int
    # l0repro.compact_run's network, measured by `bench compact` (NaN unless every seed has it)
    compact_params: float = math.nan
    compact_flops_pct: float = math.nan  # FlopCounterMode on the compact network
    cpu_speedup: float = math.nan  # throughput, compact over gated (eval), one CPU thread
    best: list[BestNetwork | None] = field(default_factory=list)  # per seed, at its best epoch


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


def _std(a: np.ndarray) -> float:
    return float(a.std(ddof=1)) if len(a) > 1 else math.nan


def _mean_of(s: list[dict], key: str) -> float:
    values = [x.get(key) for x in s]
    return float(np.mean(values)) if all(isinstance(v, (int, float)) for v in values) else math.nan


def aggregate(runs: list[Run]) -> Stats:
    """Mean and sample std over seeds of the final and best error (test; validation for
    selection runs); mean of the rest."""
    s = [r.summary for r in runs]
    final_key, best_key = error_keys(s[0])
    final = np.array([x[final_key] * 100 for x in s])
    best = np.array([x[best_key] * 100 for x in s])
    arch = np.array([x["architecture"] for x in s], dtype=float).reshape(len(s), -1)
    flops = np.array([x["expected_flops_final"] / x["flops_dense"] * 100 for x in s])
    pruned = [x.get("flops_pruned") for x in s]
    pruned_pct = float(np.mean([p / x["flops_dense"] * 100 for p, x in zip(pruned, s, strict=True)])) \
        if all(isinstance(p, (int, float)) for p in pruned) else math.nan
    return Stats(
        seeds=len(s), epochs=int(s[0]["epochs"]),
        error_final_mean=float(final.mean()), error_final_std=_std(final),
        error_best_mean=float(best.mean()), error_best_std=_std(best),
        architecture=[_round(u) for u in arch.mean(axis=0)],
        full_architecture=[int(u) for u in s[0]["full_architecture"]],
        layers=runs[0].layer_names, expected_flops_pct=float(flops.mean()),
        pruned_flops_pct=pruned_pct, expected_params=_mean_of(s, "expected_params_final"),
        params_kept=_round(float(np.mean([x["params_kept"] for x in s]))),
        **_compact_stats(runs), best=[best_network(x) for x in s],
    )


def _compact_stats(runs: list[Run]) -> dict[str, float]:
    """Means over seeds of the compact benchmark's figures, when every seed has them."""
    if not runs or any(r.speedup is None for r in runs):
        return {}
    sp = [r.speedup for r in runs]
    return {"compact_params": float(np.mean([x["params_compact"] for x in sp])),
            "compact_flops_pct": float(np.mean([x["flops_compact"] / r.summary["flops_dense"] * 100
                                                for x, r in zip(sp, runs, strict=True)])),
            "cpu_speedup": float(np.mean([x["throughput_speedup"] for x in sp]))}


def problems(stats: Stats, row: PaperRow, table: PaperTable) -> list[str]:
    """What is outside tolerance against the paper's row: the error, and each layer's kept
    units; empty when the row passes."""
    found = []
    diff = stats.error_final_mean - float(row.error.value)
    if abs(diff) > table.error_tolerance + EPS:
        found.append(f"error {diff:+.2f} pp (tolerance {table.error_tolerance:g})")
    paper_arch = row.arch_units()
    if table.arch_tolerance is not None and paper_arch is not None:
        if len(paper_arch) != len(stats.architecture):
            found.append(f"{len(stats.architecture)} layers, paper {len(paper_arch)}")
        else:
            for name, ours, theirs in zip(stats.layers, stats.architecture, paper_arch,
                                          strict=True):
                rel = (ours - theirs) / theirs if theirs else (0.0 if ours == 0 else math.inf)
                if abs(rel) > table.arch_tolerance + EPS:
                    found.append(f"{name} {ours} vs {theirs} ({rel * 100:+.0f}%)")
    return found


def allowed(paper_units: int, table: PaperTable) -> int:
    """How many units a layer may be off the paper's count and still pass."""
    return int(math.floor(paper_units * table.arch_tolerance + EPS))


def layer_offsets(stats: Stats, row: PaperRow, table: PaperTable) -> list[str]:
    """Per layer, kept units minus the paper's and (±) how many the tolerance allows, e.g.
    ``conv1 +3 (±2, outside)``: a relative tolerance allows 2 of 9 filters but 115 of 462 units.
    Empty without a paper architecture of the same depth."""
    paper_arch = row.arch_units()
    if table.arch_tolerance is None or paper_arch is None or \
            len(paper_arch) != len(stats.architecture):
        return []
    parts = []
    for name, ours, theirs in zip(stats.layers, stats.architecture, paper_arch, strict=True):
        off, ok = ours - theirs, allowed(theirs, table)
        parts.append(f"{name} {off:+d} (±{ok}{', outside' if abs(off) > ok else ''})")
    return parts


def units_off(stats: Stats, row: PaperRow, table: PaperTable) -> str:
    return "; ".join(layer_offsets(stats, row, table))


@dataclass(frozen=True)
class Judgement:
    """A row judged against one quoted paper error: on the mean, and seed by seed."""

    against: str  # the error judged against, as shown (``1.8 ?``, ``RigL's 1.6``)
    verdict: str  # ``verdict()`` on the mean over seeds
    passing_alone: int
    seeds: int

    @property
    def reproduced(self) -> bool:
        """The mean passes and so do most seeds on their own (2 of 3; the one of 1)."""
        return self.verdict.startswith("pass") and 2 * self.passing_alone > self.seeds

    def text(self) -> str:
        alone = (f"{self.passing_alone} of {self.seeds} seeds pass alone" if self.seeds > 1
                 else "1 seed")
        if self.reproduced:
            return f"reproduced ({alone})"
        if self.verdict.startswith("pass"):
            return f"not reproduced seed by seed ({alone}; the mean passes)"
        return f"not reproduced (the mean fails; {alone})"


def judge(runs: list[Run], row: PaperRow, table: PaperTable) -> list[Judgement]:
    """The row against the paper's error, then against another source's quote of it, if any."""
    stats = aggregate(runs)
    out = [Judgement(f"{row.error.show()} %", verdict(stats, row, table,
                                                      seeds_passing(runs, row, table)),
                     seeds_passing(runs, row, table), stats.seeds)]
    alt = row.error.alt
    if alt is not None:
        other = dataclasses.replace(row, error=dataclasses.replace(row.error, value=alt.value,
                                                                    alt=None))
        passing = seeds_passing(runs, other, table)
        out.append(Judgement(f"{alt.value} % as quoted by {alt.source}",
                             verdict(stats, other, table, passing), passing, stats.seeds))
    return out


def seed_gaps(runs: list[Run], row: PaperRow, table: PaperTable) -> str:
    """Each seed that fails on its own, and where: its error off the paper's and the layers
    outside tolerance (``seed 2: conv1 +3 (±2, outside), fc2 -8 (±6, outside)``)."""
    parts = []
    for run in runs:
        stats = aggregate([run])
        if not problems(stats, row, table):
            continue
        diff = stats.error_final_mean - float(row.error.value)
        what = [f"error {diff:+.2f} pp"] if abs(diff) > table.error_tolerance + EPS else []
        what += [x for x in layer_offsets(stats, row, table) if "outside" in x]
        parts.append(f"seed {run.summary['seed']}: {', '.join(what)}")
    return "; ".join(parts)


def unconfirmed(row: PaperRow) -> str:
    """Which of the row's paper numbers are not yet checked (``?``), as a phrase, or ``""``."""
    what = [f"{name} ({m.value})" for name, m in (("error", row.error),
                                                   ("architecture", row.architecture))
            if m is not None and not m.verified]
    return f"the paper's {' and '.join(what)} unconfirmed (?)" if what else ""


def reproduced_text(judged: list[Judgement], row: PaperRow) -> str:
    """Seed by seed, against each quoted error; says when the paper's numbers are unchecked."""
    if len(judged) == 1:
        text = judged[0].text()
    else:
        text = "; ".join(f"against {j.against}: {j.text()}" for j in judged)
    note = unconfirmed(row)
    return f"{text}; {note}" if note else text


def verdict(stats: Stats, row: PaperRow, table: PaperTable, passing_alone: int | None = None) -> str:
    """``pass``, or ``fail: `` and its problems, judged on the mean over seeds. With several
    seeds, ``passing_alone`` (how many pass on their own) follows the verdict, and a row trained
    for fewer epochs than the paper says so."""
    found = problems(stats, row, table)
    text = "pass" if not found else "fail: " + "; ".join(found)
    after = []
    if passing_alone is not None and stats.seeds > 1:
        after.append(f"seeds passing alone: {passing_alone} of {stats.seeds}")
    if stats.epochs < table.epochs:
        after.append(f"{stats.epochs} of the paper's {table.epochs} epochs")
    return text + (f" ({'; '.join(after)})" if after else "")


def seeds_passing(runs: list[Run], row: PaperRow, table: PaperTable) -> int:
    """How many of a row's seeds pass on their own (the mean can pass when no seed does, or
    fail when most do)."""
    return sum(not problems(aggregate([r]), row, table) for r in runs)


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
        "paper_error_alt": None if row.error.alt is None else float(row.error.alt.value),
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
        "best_networks": best_text(stats.best),
        "architecture": "-".join(str(u) for u in stats.architecture),
        "layers": "-".join(stats.layers), "kept_units": sum(stats.architecture),
        "total_units": sum(stats.full_architecture),
        "expected_flops_pct": stats.expected_flops_pct, "pruned_flops_pct": stats.pruned_flops_pct,
        "expected_params": stats.expected_params, "params_kept": stats.params_kept,
        "compact_params": stats.compact_params, "compact_flops_pct": stats.compact_flops_pct,
        "cpu_speedup": stats.cpu_speedup,
    }


def _own_row(key: tuple, network: str, paper: Paper, runs: list[Run]) -> dict:
    """A row of ours with no paper row beside it, hence no verdict."""
    return {"network": network, "method": _method_label(key, paper),
            **_our_cells(key, aggregate(runs)), "verdict": ""}


def build_table(table: PaperTable, paper: Paper, groups: dict[tuple, list[Run]]) -> pd.DataFrame:
    """The table's rows in order: per (model, dataset) section, first our baselines
    (``paper.own``), then the paper's rows in the paper's order (a row that an experiment
    reproduces carries our aggregated runs, or says ``not run``), then our other rows."""
    mine = {k: v for k, v in groups.items() if table.holds(k[0], k[2])}
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
                judged = judge(mine[key], prow, table)
                rows.append({**base, **_our_cells(key, stats), "verdict": judged[0].verdict,
                             "units_off": units_off(stats, prow, table),
                             "verdict_alt": judged[1].verdict if len(judged) > 1 else "",
                             "reproduced": reproduced_text(judged, prow),
                             "seed_gaps": seed_gaps(mine[key], prow, table)})
            if not ours:
                rows.append({**base, "source": "paper", "experiment": prow.experiment or "",
                             "dataset": prow.dataset,
                             "verdict": "not run" if prow.experiment else ""})
        rows += [_own_row(k, network, paper, mine[k]) for k in unmapped if k not in own]
    df = pd.DataFrame(rows, columns=CSV_COLUMNS)
    df["error_vs_baseline"] = _against_baseline(df, table.baseline)
    for col in ("seeds", "epochs", "kept_units", "total_units", "params_kept"):
        df[col] = df[col].astype("Int64")
    return df


def _against_baseline(df: pd.DataFrame, baseline: str | None) -> pd.Series:
    """Each row's final error minus the baseline experiment's on the same dataset, in points
    (NaN without a baseline run; the longest baseline run when it has several lengths)."""
    out = pd.Series(math.nan, index=df.index, dtype=float)
    if baseline is None:
        return out
    base = df[(df["experiment"] == baseline) & (df["source"] == "ours")]
    for dataset, rows in base.groupby("dataset"):
        ref = rows.sort_values("epochs", ascending=False)["error_final_mean"].iloc[0]
        mine = (df["dataset"] == dataset) & (df["source"] == "ours")
        out[mine] = df.loc[mine, "error_final_mean"] - ref
    return out


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


def _pct(x) -> str:
    return "" if x is None or pd.isna(x) else f"{x:.2f}"


def _marked(value, mark, fmt: str, alt=None) -> str:
    if value is None or pd.isna(value):
        return ""
    text = fmt.format(value)
    text = text if mark == "v" else f"{text} ?"
    return text if alt is None or pd.isna(alt) else f"{text} (quoted: {fmt.format(alt)})"


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
        "best epoch's network (per seed: kept units, pruned FLOPs)":
            [_text(x) for x in df["best_networks"]],
        "architecture": arch,
        "kept maps": [("" if pd.isna(k) else f"{k}/{t}" + (" *" if m else ""))
                      for k, t, m in zip(df["kept_units"], df["total_units"], many, strict=True)],
        "expected FLOPs % (end of training)": [_pct(x) for x in df["expected_flops_pct"]],
        "FLOPs % (pruned test-time net)": [_pct(x) for x in df["pruned_flops_pct"]],
        "expected params (end of training)": [_count(x) for x in df["expected_params"]],
        "params (pruned test-time net)": [_count(x) for x in df["params_kept"]],
        "compact params": [_count(x) for x in df["compact_params"]],
        "compact FLOPs %": [_pct(x) for x in df["compact_flops_pct"]],
        "CPU speedup (compact)": [("" if pd.isna(x) else f"{x:.2f}x") for x in df["cpu_speedup"]],
        "error vs baseline (points)": [("" if pd.isna(x) else f"{x:+.2f}")
                                       for x in df["error_vs_baseline"]],
        "seeds": [_text(x) for x in df["seeds"]],
        "epochs": [_text(x) for x in df["epochs"]],
        "paper error %": [_marked(v, m, f"{{:.{table.decimals}f}}", alt) for v, m, alt in
                          zip(df["paper_error"], df["paper_error_mark"], df["paper_error_alt"],
                              strict=True)],
        "paper architecture": [_marked(v, m, "{}") for v, m in
                               zip(df["paper_architecture"], df["paper_architecture_mark"],
                                   strict=True)],
        "units off the paper (± allowed)": [_text(x) for x in df["units_off"]],
        "verdict": [_text(x) for x in df["verdict"]],
        "verdict against the other quoted error": [_text(x) for x in df["verdict_alt"]],
        "reproduced (seed by seed)": [_text(x) for x in df["reproduced"]],
    }
    if table.arch_tolerance is None and table.per_layer:  # kept maps per gated layer too
        drop = ["network", "paper architecture", "units off the paper (± allowed)"]
    elif table.arch_tolerance is None:  # Table 2: no architecture in the paper
        drop = ["network", "architecture", "paper architecture",
                "units off the paper (± allowed)"]
    else:
        drop = ["dataset", "kept maps"]
    if not any(r.error.alt for r in table.rows):
        drop.append("verdict against the other quoted error")
    if table.baseline is None:
        drop.append("error vs baseline (points)")
    if not table.rows:  # nothing of the paper's to stand beside
        drop += ["paper error %", "paper architecture", "verdict", "reproduced (seed by seed)",
                 "verdict against the other quoted error"]
    return pd.DataFrame({k: v for k, v in cols.items() if k not in drop})


def _units_note(table: PaperTable) -> str:
    units = sorted({u for r in table.rows if r.experiment and r.arch_units()
                    for u in r.arch_units()})
    if table.arch_tolerance is None or not units:
        return ""
    lo, hi = units[0], units[-1]
    return (" Units off the paper: per layer, our (mean) kept units minus the paper's, and (±) "
            f"how many the {table.arch_tolerance * 100:g}% tolerance allows; it is relative, so "
            f"it allows {allowed(lo, table)} of {lo} but {allowed(hi, table)} of {hi}.")


def notes(df: pd.DataFrame, table: PaperTable, outside: tuple = ()) -> list[str]:
    """How to read the table, and the paper's footnotes."""
    arch = "architecture" if table.arch_tolerance is not None else "kept maps"
    if table.rows:
        judged = (f"Verdict, on the mean over seeds: error within {table.error_tolerance:g} "
                  "points of the paper's"
                  + (f", kept units per layer within {table.arch_tolerance * 100:g}% of the "
                     "paper's." if table.arch_tolerance is not None
                     else " (the paper gives no architecture).")
                  + " With several seeds, how many pass the same test on their own follows it."
                  + _units_note(table)
                  + " Reproduced (seed by seed): the mean passes and so do most seeds on their "
                  "own (at least 2 of 3); a row whose mean passes while most seeds fail is "
                  "`not reproduced seed by seed`. A row with another quoted error is judged "
                  "against both.")
    else:
        judged = "No verdicts: the paper has no row at this scale."
    if table.baseline is not None:
        judged += (f" Error vs baseline: a row's final error minus that of `{table.baseline}` "
                   "on the same dataset, in points (negative: fewer errors than the baseline).")
    unchecked = ["`?`: paper number not yet checked against the paper (see paper.yaml); "
                 "numbers without it were checked against the sources listed below."]
    lines = [
        "Errors: test error in % after the last epoch (primary) and at the best epoch, "
        "mean ± sample std over seeds. The best epoch's network (each seed's kept units and "
        "pruned test-time FLOPs at that epoch) stands beside its error: early in training it "
        "is near dense, not the final architecture.",
        judged,
        *(unchecked if table.rows else []),
        "Expected FLOPs/params: under the training gates' P(z != 0) at the end of training (the "
        "live model, what the paper's Fig. 3 plots; a gate at the clamp floor still counts "
        "4.7%). Pruned test-time net: the evaluated (EMA) weights with every unit of z_hat == 0 "
        "removed from the layer that makes it and the layer that reads it. FLOPs per example, "
        "% of the dense network's.",
        "Compact: the plain network `l0repro.compact_run` builds from the evaluated weights; its "
        "parameters and FLOPs (`FlopCounterMode` on it, equal to the pruned count) and its measured "
        "throughput speedup over the gated model in eval mode, one CPU thread (`python -m "
        "l0repro.bench compact`; batch 1000 for MNIST, 256 for WRNs; mean over seeds). Blank: "
        "not benchmarked.",
        f"The paper trains for {table.epochs} epochs; `epochs` is ours.",
    ]
    if (df["seeds"].fillna(0) > 1).any():
        lines.append(f"`*`: {arch} is the per-layer mean over seeds, rounded.")
    lines += [f"{r.network}, {r.method}: {r.note}." for r in table.rows if r.note]
    lines += _alt_notes(df, table)
    sources: dict[str, list[str]] = {}
    for r in table.rows:
        for what, m in (("error", r.error), ("architecture", r.architecture)):
            if m is not None and m.verified:
                sources.setdefault(m.source, []).append(f"{r.network} {r.method} ({what})")
    lines += [f"Checked against {src}: {', '.join(rows)}." for src, rows in sources.items()]
    lines += [o.text() for o in outside]
    return lines


def _alt_notes(df: pd.DataFrame, table: PaperTable) -> list[str]:
    """Where another source quotes a different error for a row: both, and ours against both."""
    lines = []
    for r in table.rows:
        alt = r.error.alt
        if alt is None:
            continue
        text = (f"{r.network}, {r.method}: the paper's error is {r.error.show()} %, "
                f"{alt.source} quotes {alt.value} %")
        ours = df[(df["experiment"] == r.experiment) & (df["source"] == "ours")]
        for mean in ours["error_final_mean"]:
            text += (f"; ours {mean:.2f} % is {mean - r.error.value:+.2f} points from "
                     f"{r.error.value} and {mean - alt.value:+.2f} from {alt.value}")
        lines.append(text + ".")
    return lines


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
                out_dir: Path, outside: tuple = ()) -> list[Path]:
    """Write ``<key>.csv``, ``<key>.md`` and ``<key>.tex``; return their paths."""
    out_dir = Path(out_dir)
    shown = display(df, table)
    info, out = notes(df, table, outside), left_out(table, excluded)
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
