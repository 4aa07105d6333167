"""Training to a budget: runs asked for a FLOPs target (lambda = 0) instead of given a lambda.

Declared in ``paper.yaml``'s ``budget`` (each with its target and the lambda-penalised row it is
read against). For every run: how far its final expected FLOPs and its pruned test-time FLOPs
miss the target (relative, signed), and the first epoch at whose end ``g = E[FLOPs] / dense`` is
near the target. For every experiment: those per seed, its error and architecture beside the
row's, and how many runs each route took to reach the size (one per seed against the row's
selection sweep and seeds). A declared experiment without complete runs says so. Budget runs
are shown apart and never enter a table row; a run trained to a target that is not declared
here is left out of the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import to_hex
from matplotlib.figure import Figure  # no pyplot: no global backend or figure registry

from l0repro.record import atomic_write_text
from l0repro.report import figures as figs
from l0repro.report.paper import BudgetExperiment, Outside, Paper
from l0repro.report.runs import Excluded, Run
from l0repro.report.tables import _lambdas, _pm, aggregate

FILE = "budget"
RUNS_FILE = "budget_runs.csv"
FIGURE = "budget"
CAPTION = ("no paper figure (the paper trains to no budget): training to a FLOPs target with "
           "lambda = 0, the constraint value and its multiplier over training, and the error "
           "against the pruned FLOPs beside the lambda-penalised rows")
EPS = 1e-9  # a miss of exactly the tolerance passes despite float rounding
COLUMNS = ["experiment", "network", "dataset", "target_flops_pct", "declared_target_pct", "seeds",
           "epochs", "status", "expected_flops_pct", "expected_within", "expected_misses", "pruned_flops_pct",
           "pruned_within", "pruned_misses", "first_within_epochs", "reached_by",
           "error_final_mean", "error_final_std", "architecture", "compare_with", "compare_name",
           "compare_seeds", "compare_error", "compare_architecture", "compare_pruned_flops_pct",
           "error_vs_row", "baseline", "baseline_error", "error_vs_baseline", "runs_to_size",
           "row_runs_to_size", "row_sweep_runs", "row_seeds", "row_reached", "sweep_points_to_come"]
RUN_COLUMNS = ["experiment", "seed", "source", "epochs", "target_flops_pct",
               "expected_flops_pct", "expected_miss_pct", "pruned_flops_pct", "pruned_miss_pct",
               "constraint_met", "first_within_epoch", "within_from_epoch", "multiplier_final",
               "test_error_final", "architecture"]


def miss(fraction: float, target: float) -> float:
    """How far ``fraction`` is from ``target``, relative and signed: 0.1 against 0.095 is
    +0.0526 (5.3 % over); NaN when ``fraction`` is."""
    return fraction / target - 1 if not math.isnan(fraction) else math.nan


def within(rel_miss: float, tolerance: float) -> bool:
    return not math.isnan(rel_miss) and abs(rel_miss) <= tolerance + EPS


def constraint_curve(run: Run, epoch_rows: bool = False) -> pd.Series:
    """``g = E[FLOPs] / dense`` by epoch: the logged ``constraint/flops``, or ``flops/expected``
    over the dense FLOPs for a record without it; only end-of-epoch rows with ``epoch_rows``."""
    m = run.metrics
    if epoch_rows and "kind" in m.columns:
        m = m[m["kind"] == "epoch"]
    if "constraint/flops" in m.columns:
        g = m["constraint/flops"]
    elif "flops/expected" in m.columns:
        g = m["flops/expected"] / run.summary["flops_dense"]
    else:
        return pd.Series(dtype=float)
    keep = g.notna() & m["epoch"].notna()
    return pd.Series(g[keep].to_numpy(dtype=float), index=m["epoch"][keep].to_numpy(dtype=float))


def first_within(g: pd.Series, target: float, tolerance: float) -> int | None:
    """The first epoch at whose end ``g`` is within ``tolerance`` (relative) of ``target``;
    None if it never is."""
    hits = [e for e, v in g.items() if within(miss(v, target), tolerance)]
    return int(round(hits[0])) if hits else None


def within_from(g: pd.Series, target: float, tolerance: float) -> int | None:
    """The epoch from whose end on ``g`` stays within ``tolerance`` of ``target``; None if the
    last epoch is outside."""
    start = None
    for e, v in g.items():
        if within(miss(v, target), tolerance):
            start = e if start is None else start
        else:
            start = None
    return None if start is None else int(round(start))


@dataclass(frozen=True)
class RunCheck:
    """One budget run against its target (fractions of the dense FLOPs; misses relative)."""

    source: str
    seed: str
    epochs: int
    target: float
    expected: float  # E[FLOPs] / dense under the training gates at the end
    pruned: float  # the test-time network's FLOPs / dense; NaN when not recorded
    constraint_met: bool | None  # the trainer's own verdict: expected <= target * 1.05
    first_within: int | None  # first epoch within reach_tolerance
    within_from: int | None  # from this epoch's end on, within reach_tolerance
    multiplier_final: float
    error_final: float  # test error, %
    architecture: str

    @property
    def expected_miss(self) -> float:
        return miss(self.expected, self.target)

    @property
    def pruned_miss(self) -> float:
        return miss(self.pruned, self.target)


def check_run(run: Run, target: float, reach_tolerance: float) -> RunCheck:
    """The run's misses against ``target`` (the one it recorded, else the declared one) and when
    its constraint value first came within ``reach_tolerance`` of it."""
    s = run.summary
    target = float(s.get("target_flops") or target)
    g = constraint_curve(run, epoch_rows=True)
    pruned = s.get("flops_pruned")
    mult = run.metrics.get("constraint/multiplier")
    mult = mult.dropna() if mult is not None else pd.Series(dtype=float)
    return RunCheck(
        source=run.source, seed=str(s["seed"]), epochs=int(s["epochs"]), target=target,
        expected=s["expected_flops_final"] / s["flops_dense"],
        pruned=pruned / s["flops_dense"] if isinstance(pruned, (int, float)) else math.nan,
        constraint_met=s.get("constraint_met"),
        first_within=first_within(g, target, reach_tolerance),
        within_from=within_from(g, target, reach_tolerance),
        multiplier_final=float(mult.iloc[-1]) if len(mult) else math.nan,
        error_final=s["test_error_final"] * 100,
        architecture="-".join(map(str, s["architecture"])))


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class Route:
    """How many runs the lambda route took to reach the size: its selection sweeps' runs and
    the row's seeds; ``reached`` when the row's pruned FLOPs are within the tolerance."""

    sweep_runs: int
    row_seeds: int
    reached: bool
    row_pruned: float  # % of dense, NaN without runs
    to_come: tuple[str, ...]  # declared sweep points not yet run, as ``sweep (lambdas)``

    @property
    def runs(self) -> int:
        return self.sweep_runs + self.row_seeds

    def text(self) -> str:
        if not self.row_seeds:
            return "the row has no complete run yet"
        if not self.reached:
            return (f"not reached: the row's pruned FLOPs are {self.row_pruned:.1f} % "
                    f"({_n(self.sweep_runs, 'sweep run')}, {_n(self.row_seeds, 'seed')})")
        text = f"{self.runs}: {_n(self.sweep_runs, 'sweep run')} + {_n(self.row_seeds, 'row seed')}"
        if self.to_come:
            text += f" (+{len(self.to_come)} declared sweep points not run yet)"
        return text


def _longest(experiment: str, groups: dict[tuple, list[Run]]) -> list[Run]:
    """The runs of the experiment's longest schedule (the row the tables lead with)."""
    keys = sorted((k for k in groups if k[0] == experiment), key=lambda k: (-k[5], k))
    return groups[keys[0]] if keys else []


def route(b: BudgetExperiment, paper: Paper, apart: dict[tuple, list[Run]],
          table_groups: dict[tuple, list[Run]]) -> Route:
    """The lambda route to the row's size, counted from the records and the declarations."""
    sweeps = [s for s in paper.selections if s.row == b.compare_with]
    names = {s.sweep for s in sweeps}
    sweep_runs = sum(len(runs) for k, runs in apart.items() if k[0] in names)
    to_come = []
    for sel in sweeps:
        have = {k[4] for k in apart if k[0] == sel.sweep}
        have |= {lams for other, lams in sel.borrowed
                 if any(k[0] == other and k[4] == lams for k in apart)}
        to_come += [f"{sel.sweep} ({_lambdas(p)})" for p in sel.points if p not in have]
    row_runs = [r for k, runs in table_groups.items() if k[0] == b.compare_with for r in runs]
    longest = _longest(b.compare_with, table_groups)
    pruned = aggregate(longest).pruned_flops_pct if longest else math.nan
    reached = within(miss(pruned / 100, b.target_flops), paper.budget.tolerance)
    return Route(sweep_runs, len(row_runs), reached, pruned, tuple(to_come))


def _name(experiment: str, paper: Paper) -> str:
    """The row's name in the paper (``L0, λ sep.``), else our label for it."""
    found = paper.table_row(experiment)
    name = found[1].method if found else paper.own.get(experiment, experiment)
    return name.replace("lambda", "λ")


def _misses(checks: list[RunCheck], attr: str, tolerance: float) -> tuple[str, str]:
    """(``yes``/``no``, with how many seeds are within), and each seed's signed miss in %."""
    values = [getattr(c, attr) for c in checks]
    known = [v for v in values if not math.isnan(v)]
    if not known:
        return "not recorded", ""
    n_in = sum(within(v, tolerance) for v in known)
    verdict = f"{'yes' if n_in == len(values) else 'no'}: {n_in} of {len(values)}"
    seeds = ", ".join(f"seed {c.seed} " + ("not recorded" if math.isnan(v) else f"{v * 100:+.1f} %")
                      for c, v in zip(checks, values, strict=True))
    return verdict, seeds


def _reached(checks: list[RunCheck], by: int | None) -> str:
    """``by epoch 20: yes`` when every seed came within the reach tolerance by epoch ``by``,
    else ``no`` and how many did; blank without a ``by``."""
    if by is None:
        return ""
    n_in = sum(c.first_within is not None and c.first_within <= by for c in checks)
    return f"by epoch {by}: {'yes' if n_in == len(checks) else 'no'} ({n_in} of {len(checks)})"


def _network(runs: list[Run], paper: Paper) -> str:
    return figs._network(runs[0].summary["model"], paper) if runs else ""


def experiment_rows(paper: Paper, apart: dict[tuple, list[Run]],
                    table_groups: dict[tuple, list[Run]],
                    excluded: list[Excluded] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per declared budget experiment and schedule (``not run yet`` without complete
    runs), and one row per run; numbers in % of the dense FLOPs and % error."""
    rules = paper.budget
    rows, per_run = [], []
    for b in rules.experiments:
        compare = _longest(b.compare_with, table_groups)
        cst = aggregate(compare) if compare else None
        base = _longest(b.baseline, table_groups) if b.baseline else []
        base_err = aggregate(base).error_final_mean if base else math.nan
        way = route(b, paper, apart, table_groups)
        common = {
            "experiment": b.experiment, "target_flops_pct": b.target_flops * 100,
            "declared_target_pct": b.target_flops * 100,
            "compare_with": b.compare_with, "compare_name": _name(b.compare_with, paper),
            "compare_seeds": cst.seeds if cst else 0,
            "compare_error": cst.error_final_mean if cst else math.nan,
            "compare_architecture": "-".join(map(str, cst.architecture)) if cst else "",
            "compare_pruned_flops_pct": cst.pruned_flops_pct if cst else math.nan,
            "baseline": b.baseline or "", "baseline_error": base_err,
            "row_runs_to_size": way.text(), "row_sweep_runs": way.sweep_runs,
            "row_seeds": way.row_seeds, "row_reached": way.reached,
            "sweep_points_to_come": "; ".join(way.to_come),
        }
        keys = sorted((k for k in apart if k[0] == b.experiment), key=lambda k: (-k[5], k))
        if not keys:
            left = [e for e in excluded if e.experiment == b.experiment]
            status = "not run yet" if not left else (
                f"no complete run yet ({len(left)} left out, see runs.csv)")
            rows.append({**common, "status": status, "seeds": 0,
                         "network": _network(compare, paper),
                         "dataset": compare[0].summary["dataset"] if compare else ""})
            continue
        for key in keys:
            runs = apart[key]
            st = aggregate(runs)
            checks = [check_run(r, b.target_flops, rules.reach_tolerance) for r in runs]
            exp_in, exp_seeds = _misses(checks, "expected_miss", rules.tolerance)
            pr_in, pr_seeds = _misses(checks, "pruned_miss", rules.tolerance)
            targets = sorted({c.target for c in checks})
            rows.append({
                **common, "status": "complete", "network": _network(runs, paper),
                "dataset": key[2], "seeds": st.seeds, "epochs": st.epochs,
                "target_flops_pct": targets[0] * 100 if len(targets) == 1 else math.nan,
                "expected_flops_pct": st.expected_flops_pct, "expected_within": exp_in,
                "expected_misses": exp_seeds, "pruned_flops_pct": st.pruned_flops_pct,
                "pruned_within": pr_in, "pruned_misses": pr_seeds,
                "first_within_epochs": ", ".join("never" if c.first_within is None
                                                 else str(c.first_within) for c in checks),
                "reached_by": _reached(checks, b.reach_by),
                "error_final_mean": st.error_final_mean, "error_final_std": st.error_final_std,
                "architecture": "-".join(map(str, st.architecture)),
                "error_vs_row": st.error_final_mean - cst.error_final_mean if cst else math.nan,
                "error_vs_baseline": st.error_final_mean - base_err,
                "runs_to_size": f"1 per seed ({st.seeds} in all), no sweep",
            })
            per_run += [{"experiment": b.experiment, "seed": c.seed, "source": c.source,
                         "epochs": c.epochs, "target_flops_pct": c.target * 100,
                         "expected_flops_pct": c.expected * 100,
                         "expected_miss_pct": c.expected_miss * 100,
                         "pruned_flops_pct": c.pruned * 100, "pruned_miss_pct": c.pruned_miss * 100,
                         "constraint_met": c.constraint_met, "first_within_epoch": c.first_within,
                         "within_from_epoch": c.within_from,
                         "multiplier_final": c.multiplier_final,
                         "test_error_final": c.error_final, "architecture": c.architecture}
                        for c in checks]
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("seeds", "epochs", "compare_seeds", "row_sweep_runs", "row_seeds"):
        df[col] = df[col].astype("Int64")
    runs_df = pd.DataFrame(per_run, columns=RUN_COLUMNS)
    for col in ("first_within_epoch", "within_from_epoch", "epochs"):
        runs_df[col] = runs_df[col].astype("Int64")
    return df, runs_df


def _f(x, fmt: str = "{:.2f}") -> str:
    return "" if x is None or pd.isna(x) else fmt.format(x)


def display(df: pd.DataFrame, paper: Paper) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The experiments as text: their sizes against the target, and their error and runs
    against the λ route's row."""
    tol, reach = paper.budget.tolerance * 100, paper.budget.reach_tolerance * 100
    sizes, against = [], []
    for _, r in df.iterrows():
        done = r["status"] == "complete"
        sizes.append({
            "experiment": f"`{r['experiment']}`", "network": r["network"],
            "target % of dense FLOPs": _f(r["target_flops_pct"], "{:.1f}"),
            "seeds, epochs": f"{r['seeds']}, {r['epochs']}" if done else r["status"],
            "expected FLOPs % (end)": _f(r["expected_flops_pct"]),
            f"within {tol:g} %? (each seed's miss)":
                f"{r['expected_within']} ({r['expected_misses']})" if done else "",
            "pruned FLOPs % (test-time net)": _f(r["pruned_flops_pct"]),
            f"pruned within {tol:g} %? (each seed's miss)":
                f"{r['pruned_within']} ({r['pruned_misses']})" if done else "",
            f"first epoch within {reach:g} % (per seed)":
                "; ".join(x for x in (r["first_within_epochs"], r["reached_by"]) if x)
                if done else "",
        })
        against.append({
            "experiment": f"`{r['experiment']}`",
            "error % (final)": _pm(r["error_final_mean"], r["error_final_std"]) or r["status"],
            "architecture": r["architecture"] if done else "",
            "λ-penalised row": f"`{r['compare_with']}` ({r['compare_name']})",
            "row: error %, architecture, pruned FLOPs %":
                (f"{r['compare_error']:.2f}, {r['compare_architecture']}, "
                 f"{r['compare_pruned_flops_pct']:.2f}" if r["compare_seeds"] else "not run yet"),
            "error vs row (points)": _f(r["error_vs_row"], "{:+.2f}"),
            "error vs baseline (points)": (_f(r["error_vs_baseline"], "{:+.2f}")
                                           + (f" (`{r['baseline']}`)" if r["baseline"] and done
                                              else "")),
            "runs to reach the size: budget": r["runs_to_size"] if done else "1 per seed, no sweep",
            "runs to reach the size: λ route": r["row_runs_to_size"],
        })
    against = pd.DataFrame(against)
    if not df["baseline"].astype(bool).any():
        against = against.drop(columns="error vs baseline (points)")
    return pd.DataFrame(sizes), against


def findings(df: pd.DataFrame, paper: Paper) -> list[str]:
    """One sentence per experiment with runs: its sizes against the target, its error against
    the row (and the baseline), and the runs each route took; then those not run yet."""
    tol = f"{paper.budget.tolerance * 100:g} %"
    lines = []
    for _, r in df[df["status"] == "complete"].iterrows():
        text = (f"- `{r['experiment']}` ({r['network']}, {_n(r['seeds'], 'seed')}, {r['epochs']} "
                f"epochs): expected FLOPs {r['expected_flops_pct']:.2f} % of dense against the "
                f"target {r['target_flops_pct']:g} % ({r['expected_within']} seeds within "
                f"{tol}), pruned test-time FLOPs {_f(r['pruned_flops_pct']) or 'not recorded'} % "
                f"({r['pruned_within']} within {tol}; {r['pruned_misses']}); error "
                f"{_pm(r['error_final_mean'], r['error_final_std'])} %")
        if pd.isna(r["target_flops_pct"]) or \
                abs(r["target_flops_pct"] - r["declared_target_pct"]) > EPS:
            text += (f" (the runs' recorded targets differ from the declared "
                     f"{r['declared_target_pct']:g} %: each run is judged against its own, "
                     f"`{RUNS_FILE}`)")
        if r["compare_seeds"]:
            text += (f", {r['error_vs_row']:+.2f} points against `{r['compare_with']}` "
                     f"({r['compare_name']}: {r['compare_error']:.2f} %, "
                     f"{r['compare_architecture']}, pruned FLOPs "
                     f"{r['compare_pruned_flops_pct']:.2f} %)")
        if r["baseline"] and not pd.isna(r["error_vs_baseline"]):
            text += f", {r['error_vs_baseline']:+.2f} points against `{r['baseline']}`"
        text += (f". Runs to reach the size: {r['runs_to_size']}; the λ route: "
                 f"{r['row_runs_to_size']}.")
        lines.append(text)
    waiting = df[df["status"] != "complete"]
    if len(waiting):
        lines.append("- Declared and configured (`conf/experiment/budget/`), no complete run yet: "
                     + ", ".join(f"`{e}` ({s})" for e, s in
                                 zip(waiting["experiment"], waiting["status"], strict=True))
                     + ".")
    return lines


def _run_display(runs_df: pd.DataFrame, paper: Paper) -> pd.DataFrame:
    reach = f"{paper.budget.reach_tolerance * 100:g} %"
    met = {True: "yes", False: "no"}
    return pd.DataFrame({
        "experiment": [f"`{x}`" for x in runs_df["experiment"]],
        "seed": runs_df["seed"], "epochs": runs_df["epochs"].astype(str),
        "target %": [_f(x, "{:.1f}") for x in runs_df["target_flops_pct"]],
        "expected FLOPs %": [_f(x) for x in runs_df["expected_flops_pct"]],
        "miss": [_f(x, "{:+.1f} %") for x in runs_df["expected_miss_pct"]],
        "pruned FLOPs %": [_f(x) or "not recorded" for x in runs_df["pruned_flops_pct"]],
        "pruned miss": [_f(x, "{:+.1f} %") for x in runs_df["pruned_miss_pct"]],
        "met (trainer: expected <= target x 1.05)": [met.get(x, "not recorded")
                                                     for x in runs_df["constraint_met"]],
        f"first epoch within {reach}": ["never" if pd.isna(x) else str(x)
                                        for x in runs_df["first_within_epoch"]],
        f"within {reach} from epoch": ["not at the end" if pd.isna(x) else str(x)
                                       for x in runs_df["within_from_epoch"]],
        "multiplier (end)": [_f(x, "{:.3g}") for x in runs_df["multiplier_final"]],
        "test error % (final)": [_f(x) for x in runs_df["test_error_final"]],
        "architecture": runs_df["architecture"],
    })


def notes(paper: Paper) -> list[str]:
    """How to read the section."""
    tol, reach = paper.budget.tolerance * 100, paper.budget.reach_tolerance * 100
    return [
        "Each budget run trains with lambda = 0 and the constraint E[FLOPs] / dense <= target "
        "(`trainer.target_flops`, `l0repro.l0.budget`), the multiplier found by gradient ascent; "
        "no lambda is chosen and no sweep is run. Budget runs are shown here only, never in a "
        "table row.",
        f"Misses are relative and signed: (value / target - 1); + is larger than asked, - "
        f"smaller. Within: |miss| <= {tol:g} %, for the expected FLOPs under the training gates "
        "at the end and for the pruned test-time network (units with z_hat == 0 removed). The "
        "trainer's own `constraint_met` is one-sided (expected <= target x 1.05).",
        f"First epoch within {reach:g} %: the first epoch at whose end g = E[FLOPs] / dense "
        f"(`constraint/flops`) is within {reach:g} % of the target; `within from`: from that "
        "epoch's end on it stays there.",
        "Runs to reach the size: the budget takes one run per seed. The λ route takes every "
        "complete run of the selection sweeps declared for its row (paper.yaml `selection`, "
        "validation split) plus the row's seeds; `not reached` when the row's pruned FLOPs are "
        f"more than {tol:g} % from the target.",
        "The λ-penalised row's numbers are its mean over seeds (Tables 1 and 2s); error vs row "
        "and vs baseline: the budget row's mean final error minus theirs, in points.",
    ]


def _outside_for(paper: Paper, outside: dict[str, tuple[Outside, ...]]) -> list[Outside]:
    """Outside evidence cited for this section and for the tables of its comparison rows."""
    keys = [FILE]
    for b in paper.budget.experiments:
        for exp in filter(None, (b.compare_with, b.baseline)):
            found = paper.table_row(exp)
            key = found[0].key if found else next(
                (t.key for t in paper.tables if t.experiments and exp.startswith(t.experiments)),
                None)
            if key and key not in keys:
                keys.append(key)
    return [o for k in keys for o in outside.get(k, ())]


def markdown(df: pd.DataFrame, runs_df: pd.DataFrame, paper: Paper, figure: figs.Outcome,
             outside: list[Outside]) -> str:
    md = ["# Training to a budget (no paper table: the paper trains to no budget)", "",
          "A size asked for directly instead of a lambda: each experiment's target is the "
          "pruned FLOPs of the λ-penalised row beside it (MLP, LeNet-5), or a size the CPU-scale "
          "WRN did not reach with the paper's λ (WRN-16-1, table2s). Does one run per seed reach "
          "it, and at what error against the row?", "",
          "## Sizes against the target", "",
          display(df, paper)[0].to_markdown(index=False, disable_numparse=True), "",
          "## Error and runs against the λ-penalised row", "",
          display(df, paper)[1].to_markdown(index=False, disable_numparse=True), ""]
    md += [f"- {x}" for x in notes(paper)]
    md += ["", "## What the runs show", "", *findings(df, paper)]
    if len(runs_df):
        md += ["", "## Each run", "",
               _run_display(runs_df, paper).to_markdown(index=False, disable_numparse=True)]
    if figure.paths:
        png = next(p for p in figure.paths if p.suffix == ".png")
        md += ["", f"![{figure.caption}](figures/{png.name})", "",
               f"*`{figure.name}`: {figure.caption}.* (PDF: "
               f"[`figures/{FIGURE}.pdf`](figures/{FIGURE}.pdf))"]
    else:
        md += ["", f"Figure `{figure.name}` not drawn: {figure.reason}."]
    if outside:
        md += ["", "## Outside evidence (not our runs)", "",
               "Read the WRN rows beside these; they are other groups' numbers at full scale "
               "(WRN-28-10, 200 epochs), never judged or plotted with ours.", ""]
        md += [f"- {o.text()}" for o in outside]
    return "\n".join(md) + "\n"


def _budget_label(key: tuple, runs: list[Run], paper: Paper) -> str:
    target = runs[0].summary.get("target_flops") or paper.budget.get(key[0]).target_flops
    return (f"{figs._network(key[1], paper)} to {target * 100:g} % FLOPs, λ = 0 "
            f"({key[0].removeprefix('budget/')})")


def _target(run: Run, paper: Paper) -> float:
    return float(run.summary.get("target_flops") or paper.budget.get(run.summary["experiment"])
                 .target_flops)


def _constraint_panels(ax_g, ax_m, keys: list[tuple], apart: dict[tuple, list[Run]],
                       paper: Paper, styles: dict[tuple, tuple[str, str]]) -> None:
    """g / target (log) and the multiplier over epochs, one line per run (style: seed)."""
    tol, reach = paper.budget.tolerance, paper.budget.reach_tolerance
    ax_g.axhspan(1 - tol, 1 + tol, color="0.85", lw=0, label=f"target ± {tol * 100:g} %")
    ax_g.axhline(1, color="k", lw=1, label="target")
    for y in (1 - reach, 1 + reach):
        ax_g.axhline(y, color="k", lw=0.8, ls="--")
    ax_g.plot([], [], color="k", lw=0.8, ls="--", label=f"target ± {reach * 100:g} %")
    dashes = ("-", "--", ":", "-.")
    for key in keys:
        label = _budget_label(key, apart[key], paper)
        for j, run in enumerate(apart[key]):
            g = constraint_curve(run)
            style = {"color": styles[key][0], "lw": 1, "ls": dashes[j % len(dashes)]}
            ax_g.plot(g.index, g.to_numpy() / _target(run, paper), **style,
                      label=label if j == 0 else None)
            if "constraint/multiplier" in run.metrics.columns:
                m = run.metrics[["epoch", "constraint/multiplier"]].dropna()
                ax_m.plot(m["epoch"], m["constraint/multiplier"], **style)
    for e in sorted({b.reach_by for k in keys if (b := paper.budget.get(k[0])).reach_by}):
        ax_g.axvline(e, color="0.4", lw=0.8, ls=":", label=f"epoch {e}")
    top = max((g.max() / _target(r, paper) for k in keys for r in apart[k]
               if len(g := constraint_curve(r))), default=1.0)
    if top >= 3:  # from dense to a small target: a log axis keeps the approach readable
        ax_g.set_yscale("log")
        figs._plain_log(ax_g.yaxis)
    ax_g.set_ylabel("g / target  (g = E[FLOPs] / dense)")
    ax_m.set_ylabel("multiplier (0 while the constraint holds)")
    for ax in (ax_g, ax_m):
        ax.set_xlabel("epoch")


# a budget run's point: a filled circle in its curves' colour; no λ-penalised row uses a circle
BUDGET_MARKER = "o"
ROW_MARKERS = tuple(m for m in figs.MARKERS if m != BUDGET_MARKER)


def _budget_colour(i: int) -> str:
    """Ci for the first ten budget runs, then tab20's light shades of those (20 in all)."""
    return f"C{i}" if i < 10 else to_hex(colormaps["tab20"]((2 * (i - 10) + 1) % 20))


def series_styles(budget_keys: list[tuple], row_keys: list[tuple]) -> dict[tuple, tuple[str, str]]:
    """(colour, marker) of every series in the figure, each pair different. Budget run i gets
    the circle and colour Ci (the 11th to 20th tab20's light shades). The λ-penalised rows take
    the colour cycle's colours no budget run uses (grey shades when none is left) and a marker
    that changes each time those colours come round again."""
    styles = {k: (_budget_colour(i), BUDGET_MARKER) for i, k in enumerate(budget_keys)}
    free = [f"C{c}" for c in range(len(budget_keys), 10)] or ["0.25", "0.55"]
    for j, key in enumerate(row_keys):
        styles[key] = (free[j % len(free)], ROW_MARKERS[(j // len(free)) % len(ROW_MARKERS)])
    return styles


def _error_panel(ax, keys: list[tuple], rows: list[tuple], apart: dict[tuple, list[Run]],
                 table_groups: dict[tuple, list[Run]], paper: Paper,
                 styles: dict[tuple, tuple[str, str]]) -> None:
    """Final test error against pruned FLOPs: each budget run a filled circle in its curves'
    colour (its target dotted), each seed of the λ-penalised rows a hollow marker (never a
    circle), so that a point's kind reads from its shape."""
    xs = []
    for key in keys:
        checks = [check_run(r, paper.budget.get(key[0]).target_flops,
                            paper.budget.reach_tolerance) for r in apart[key]]
        color, marker = styles[key]
        xs += [c.pruned * 100 for c in checks]
        ax.scatter([c.pruned * 100 for c in checks], [c.error_final for c in checks], s=40,
                   color=color, marker=marker, edgecolors="black",
                   linewidths=0.6, zorder=3,
                   label=_budget_label(key, apart[key], paper))
        ax.axvline(checks[0].target * 100, color=color, lw=0.8, ls=":")
    for key in rows:
        color, marker = styles[key]
        s = [r.summary for r in table_groups[key]]
        x = [v["flops_pruned"] / v["flops_dense"] * 100
             if isinstance(v.get("flops_pruned"), (int, float)) else math.nan for v in s]
        xs += x
        ax.scatter(x, [v["test_error_final"] * 100 for v in s], s=30, facecolors="none",
                   edgecolors=color, marker=marker,
                   label=figs._label(key, table_groups, paper, network=True))
    xs = [x for x in xs if not math.isnan(x)]
    if xs and max(xs) / max(min(xs), 1e-9) >= 3:
        ax.set_xscale("log")
        figs._plain_log(ax.xaxis)
    ax.set_xlabel("pruned test-time FLOPs, % of dense")
    ax.set_ylabel("test error % (final)")


def draw(paper: Paper, apart: dict[tuple, list[Run]], table_groups: dict[tuple, list[Run]],
         out_dir: Path) -> list[Path] | str:
    """``budget.png`` and ``.pdf``, one row of panels per dataset: g / target and the
    multiplier over epochs per run, and the final test error against the pruned FLOPs beside
    the λ-penalised rows of the same networks (and the rows each budget is read against)."""
    keys = sorted((k for k in apart if paper.budget.get(k[0]) is not None),
                  key=lambda k: figs._model_order(paper, k))
    if not keys:
        return "no complete budget run"
    datasets = sorted({k[2] for k in keys},
                      key=lambda d: ((figs.MNIST + figs.CIFAR + (d,)).index(d), d))
    rows = {}
    for dataset in datasets:
        mine = [k for k in keys if k[2] == dataset]
        named = {e for k in mine for e in (paper.budget.get(k[0]).compare_with,
                                           paper.budget.get(k[0]).baseline) if e}
        rows[dataset] = sorted((k for k in table_groups if k[2] == dataset and (
            (k[3] == "l0" and k[1] in {m[1] for m in mine}) or k[0] in named)),
            key=lambda k: figs._model_order(paper, k))
    # one colour and marker per series across the whole figure
    styles = series_styles(keys, [k for d in datasets for k in rows[d]])
    fig = Figure(figsize=(14, 3.9 * len(datasets)))
    axes = fig.subplots(len(datasets), 3, squeeze=False)
    for (ax_g, ax_m, ax_err), dataset in zip(axes, datasets, strict=True):
        mine = [k for k in keys if k[2] == dataset]
        name = figs.DATASETS.get(dataset, dataset)
        _constraint_panels(ax_g, ax_m, mine, apart, paper, styles)
        _error_panel(ax_err, mine, rows[dataset], apart, table_groups, paper, styles)
        ax_g.set_title(f"{name}: constraint value relative to the target\n(line style: seed)",
                       fontsize=8)
        ax_m.set_title(f"{name}: Lagrange multiplier", fontsize=8)
        ax_err.set_title(f"{name}: budget runs (filled circles in their curve's colour;\n"
                         "dotted: target) beside the λ-penalised rows (hollow, other colours)",
                         fontsize=8)
    figs._title(fig, "No paper figure (the paper trains to no budget): training to a FLOPs "
                     "target with λ = 0", keys, apart, paper)
    figs._layout(fig)
    figs._figure_legend(fig, axes.flat)
    return figs._save(fig, out_dir, FIGURE)


def undeclared(runs: list[Run], paper: Paper) -> list[Excluded]:
    """Runs trained to a target whose experiment is not a declared budget experiment (they
    must never enter a table row), and declared budget runs that recorded no target."""
    out = []
    for r in runs:
        s, declared = r.summary, paper.budget.get(r.summary["experiment"])
        targets = {k: s.get(k) for k in ("target_flops", "target_l0") if s.get(k) is not None}
        if targets and declared is None:
            what = ", ".join(f"{k} {v:g}" for k, v in targets.items())
            reason = (f"trained to a budget ({what}) but experiment {s['experiment']!r} is not "
                      "a budget experiment of paper.yaml: in no table or section")
        elif declared is not None and s.get("target_flops") is None:
            reason = (f"experiment {s['experiment']!r} is a budget experiment of paper.yaml but "
                      "the run recorded no target_flops")
        else:
            continue
        out.append(Excluded(r.source, reason, s["experiment"], s["dataset"], s.get("seed")))
    return out


def write_budget(paper: Paper, apart: dict[tuple, list[Run]],
                 table_groups: dict[tuple, list[Run]], out_dir: Path,
                 excluded: list[Excluded] = (),
                 outside: dict[str, tuple[Outside, ...]] | None = None,
                 ) -> tuple[list[Path], figs.Outcome | None, pd.DataFrame]:
    """``budget.md``, ``budget.csv`` (one row per experiment and schedule), ``budget_runs.csv``
    (one per run) and ``figures/budget.png``/``.pdf``; nothing (stale copies removed) when
    paper.yaml declares no budget experiment. Returns the paths, the figure's outcome and the
    experiments' numbers."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"{FILE}.md", out_dir / f"{FILE}.csv", out_dir / RUNS_FILE]
    fig_dir = out_dir / "figures"
    if not paper.budget.experiments:
        for p in paths + [fig_dir / f"{FIGURE}.{fmt}" for fmt in figs.FORMATS]:
            p.unlink(missing_ok=True)
        return [], None, pd.DataFrame(columns=COLUMNS)
    df, runs_df = experiment_rows(paper, apart, table_groups, list(excluded))
    fig_dir.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(figs.RC):
        drawn = draw(paper, apart, table_groups, fig_dir)
    if isinstance(drawn, str):
        for fmt in figs.FORMATS:
            (fig_dir / f"{FIGURE}.{fmt}").unlink(missing_ok=True)
        figure = figs.Outcome(FIGURE, CAPTION, [], drawn)
    else:
        figure = figs.Outcome(FIGURE, CAPTION, drawn)
    atomic_write_text(paths[0], markdown(df, runs_df, paper, figure,
                                         _outside_for(paper, outside or {})))
    atomic_write_text(paths[1], df.to_csv(index=False, float_format="%.4f", lineterminator="\n"))
    atomic_write_text(paths[2], runs_df.to_csv(index=False, float_format="%.4f",
                                               lineterminator="\n"))
    return paths, figure, df
