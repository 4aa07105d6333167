"""The output folder's README and run listing: what each file is and which runs made it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import yaml

from l0repro.record import atomic_write_text
from l0repro.report.figures import Outcome
from l0repro.report.paper import Outside, PaperTable
from l0repro.report.runs import Excluded, Run, error_keys

RUNS_FILE = "runs.csv"
REASONS_FILE = "reasons.yaml"  # hand-written: experiment -> most likely reason it misses
# hand-written: title -> what the runs show (numbers from them), or {text, figures: [names]} to
# show those figures under it
FINDINGS_FILE = "findings.yaml"
# pages the report writes besides the tables, shown in the README when written
PAGES = {
    "selection.md": ("selection runs on the validation split: every sweep point, the rule "
                     "written down before the sweep, and the point it chooses"),
    "evidence.md": ("evidence runs: one choice changed (the init, the weight decay), seed by seed "
                    "against the row"),
    "budget.md": ("training to a budget: runs asked for a FLOPs target with lambda = 0 instead "
                  "of a lambda, beside the lambda-penalised rows (numbers in `budget.csv`, each "
                  "run in `budget_runs.csv`)"),
}
# pages written by other commands (benchmarks, the GPU lease) that the README links when present
LINKED = {
    "gpu.md": "figures measured on a GPU (the device named in each), by scripts/gpu_lease.sh",
    "budget_probes.md": ("the WRN budget runs' multiplier step (`trainer.dual_lr`), chosen on the "
                         "validation split by two probes (hand-written from their records in "
                         "`probes/`)"),
}


def run_listing(runs: list[Run], excluded: list[Excluded]) -> pd.DataFrame:
    """Every run read, included or left out (with why), sorted by source."""
    rows = []
    for r in runs:
        s = r.summary
        rows.append({
            "source": r.source, "included": True, "reason": "", "experiment": s["experiment"],
            "seed": str(s["seed"]), "epochs": s["epochs"],
            "judged_on": "validation" if r.selection else "test",
            "error_final_pct": s[error_keys(s)[0]] * 100,
            "flops_pct": s["expected_flops_final"] / s["flops_dense"] * 100,
            "git_commit": s["git_commit"], "git_dirty": _dirty(s.get("git_dirty")),
            "device": s["device"],
            "finished_at": s.get("finished_at") or "",
        })
    for e in excluded:
        rows.append({"source": e.source, "included": False, "reason": e.reason,
                     "experiment": e.experiment or "",
                     "seed": "" if e.seed is None else str(e.seed)})
    cols = ["source", "included", "reason", "experiment", "seed", "epochs", "judged_on",
            "error_final_pct", "flops_pct", "git_commit", "git_dirty", "device", "finished_at"]
    df = pd.DataFrame(rows, columns=cols).sort_values("source", kind="stable")
    df["epochs"] = df["epochs"].astype("Int64")
    return df.reset_index(drop=True)


def _dirty(value) -> str:
    """A summary's ``git_dirty`` as text; null (or absent) is ``not recorded``."""
    return "not recorded" if value is None else "dirty" if value else "clean"


def _counted(values: list) -> str:
    counts = Counter(str(v) for v in values)
    return ", ".join(f"`{v}` ({n} run{'s' if n > 1 else ''})" for v, n in sorted(counts.items()))


def _strings(df: pd.DataFrame, column: str) -> pd.Series:
    """A text column with blanks for missing cells (all-NaN when no row has a paper row)."""
    return df[column].map(lambda x: x if isinstance(x, str) else "")


def _missed(df: pd.DataFrame) -> pd.Series:
    """Rows of ours that miss the paper: the mean fails, or most seeds fail alone, against
    any quoted error."""
    ours = df["source"] == "ours"
    return ours & (_strings(df, "verdict").str.startswith("fail")
                   | _strings(df, "reproduced").str.contains("not reproduced"))


def reason_for(row: pd.Series, reasons: dict[str, str], epochs: int | None) -> str:
    """The hand-written reason; else, for a row trained shorter than the paper's schedule,
    ``short schedule: N of M epochs``; else ``no reason recorded yet``."""
    if row["experiment"] in reasons:
        return str(reasons[row["experiment"]]).strip()
    if epochs is not None and not pd.isna(row["epochs"]) and int(row["epochs"]) < epochs:
        return f"short schedule: {int(row['epochs'])} of {epochs} epochs"
    return "no reason recorded yet"


def misses(frames: dict[str, pd.DataFrame], reasons: dict[str, str],
           epochs: dict[str, int] | None = None) -> list[str]:
    """One line per reproduced row that misses the paper (on the mean or seed by seed): by how
    much, and the likely reason (hand-written in ``<out>/reasons.yaml``: experiment -> text;
    a row shorter than the paper's ``epochs[table]`` gets ``short schedule`` without one)."""
    lines = []
    for key in sorted(frames):
        df = frames[key]
        for _, row in df[_missed(df)].iterrows():
            reason = reason_for(row, reasons, (epochs or {}).get(key))
            seeds = f"; {row['seed_gaps']}" if row["seed_gaps"] else ""
            lines.append(f"- `{row['experiment']}` (lambdas {row['lambdas']}, {row['seeds']} "
                         f"seed(s), {row['epochs']} epochs): {row['verdict']}; "
                         f"{row['reproduced']}{seeds}. Likely reason: {reason}")
    return lines


def glance(frames: dict[str, pd.DataFrame], tables: list[PaperTable],
           reasons: dict[str, str]) -> list[str]:
    """A short table: each row of ours beside a paper row, whether it reproduces seed by seed,
    the gap, and the likely reason where it misses."""
    lines = []
    for t in tables:
        df = frames.get(t.key)
        if df is None:
            continue
        mine = df[(df["source"] == "ours") & _strings(df, "reproduced").ne("")]
        for idx, row in mine.iterrows():
            gap = [f"error {row['error_final_mean'] - row['paper_error']:+.2f} pp (mean)"]
            if not pd.isna(row["paper_error_alt"]):
                gap[0] += f", {row['error_final_mean'] - row['paper_error_alt']:+.2f} against " \
                          f"{row['paper_error_alt']:g}"
            gap += [x for x in str(row["units_off"] or "").split("; ") if "outside" in x]
            if row["seed_gaps"]:
                gap.append(f"alone: {row['seed_gaps']}")
            why = " ".join(reason_for(row, reasons, t.epochs).split()) if _missed(df).loc[idx] \
                else ""
            name = f"{row['network']} {row['method']} (`{row['experiment']}`)"
            lines.append(f"| {name} | {row['reproduced']} | {'; '.join(gap)} | {why} |")
    if not lines:
        return []
    return ["| row | reproduces (per seed) | gap | why |", "|---|---|---|---|", *lines]


def _figure_lines(f: Outcome) -> list[str]:
    png = next((p for p in f.paths if p.suffix == ".png"), None)
    if png is None:
        return []
    pdf = next((p for p in f.paths if p.suffix == ".pdf"), None)
    tail = f" (PDF: [`figures/{pdf.name}`](figures/{pdf.name}))" if pdf else ""
    return ["", f"![{f.caption}](figures/{png.name})", "", f"*`{f.name}`: {f.caption}.*{tail}"]


def _demoted(markdown: str) -> list[str]:
    """A page's body one heading level down, without its title, to embed in the README."""
    body = markdown.split("\n")[1:]
    return [f"#{line}" if line.startswith("#") else line for line in body]


def readme(runs: list[Run], excluded: list[Excluded], sources: list[str],
           tables: list[PaperTable], figures: list[Outcome],
           frames: dict[str, pd.DataFrame] | None = None,
           reasons: dict[str, str] | None = None,
           pages: dict[str, str] | None = None,
           findings: dict[str, str] | None = None,
           linked: list[str] | None = None,
           outside: dict[str, tuple[Outside, ...]] | None = None) -> str:
    """README.md for the output folder; depends only on the runs, never on the clock."""
    s = [r.summary for r in runs]
    finished = max((x.get("finished_at") or "" for x in s), default="")
    lines = [
        "# Results",
        "",
        "Written by `python -m l0repro.report` from the run records; do not edit by hand,",
        "rerun the report. The paper's numbers come from `l0repro/report/paper.yaml`;",
        "a `?` beside one means it is not yet checked against the paper.",
        "",
        "## Runs behind these files",
        "",
        f"- Read from: {', '.join(sources)}.",
        f"- Complete runs used: {len(runs)}; runs left out: {len(excluded)} "
        f"(listed under each table and in `{RUNS_FILE}`).",
    ]
    if runs:
        lines += [
            f"- Latest run finished at: {finished or 'unknown'}.",
            f"- Git commits: {_counted([x['git_commit'] for x in s])}.",
            f"- Working tree at training (git_dirty): {_counted([_dirty(x.get('git_dirty')) for x in s])}"
            + (" (not recorded: trained before the record kept it)."
               if any(x.get("git_dirty") is None for x in s) else "."),
            f"- Devices: {_counted([x['device'] for x in s])}.",
            f"- Epochs: {_counted([x['epochs'] for x in s])}.",
            f"- PyTorch: {_counted([x['torch_version'] for x in s])}.",
        ]
    at_a_glance = glance(frames or {}, tables, reasons or {})
    if at_a_glance:
        lines += ["", "## At a glance", "",
                  "Each row of ours beside a paper row. It reproduces when its mean passes and "
                  "so do most of its seeds on their own (2 of 3); the tolerances (per table, in "
                  "its notes) were written before any run.", "", *at_a_glance]
    lines += ["", "## Files", "", "| file | what it is |", "|---|---|"]
    for t in tables:
        against = ("beside the paper's rows, with verdicts" if t.rows else
                   "without verdicts (no paper row at this scale)")
        if t.baseline:
            against += f", each read against `{t.baseline}`"
        lines.append(f"| `{t.key}.md`, `{t.key}.csv`, `{t.key}.tex` | {t.title}: our runs "
                     f"aggregated over seeds {against} "
                     "(Markdown, CSV with full precision, LaTeX with booktabs) |")
    lines.append(f"| `{RUNS_FILE}` | every run read: included or left out, and why |")
    pages = pages or {}
    for name in pages:
        lines.append(f"| `{name}` | {PAGES[name]} |")
    for name in linked or []:
        lines.append(f"| [`{name}`]({name}) | {LINKED[name]} |")
    for f in figures:
        if f.paths:
            names = ", ".join(f"`figures/{p.name}`" for p in f.paths)
            lines.append(f"| {names} | {f.caption} |")
    missed = misses(frames or {}, reasons or {}, {t.key: t.epochs for t in tables})
    if missed:
        lines += ["", "## Rows that miss the paper", "", *missed]
    drawn = {f.name: f for f in figures if f.paths}
    # a figure a page embeds is shown with that page, not again under Figures
    shown = {name for name, f in drawn.items() for p in f.paths
             if any(f"](figures/{p.name})" in text for text in pages.values())}
    for title, entry in (findings or {}).items():
        text, names = (entry.get("text", ""), entry.get("figures") or []) \
            if isinstance(entry, dict) else (entry, [])
        lines += ["", f"## {title}", "", str(text).strip()]
        for name in names:
            if name in drawn:
                lines += _figure_lines(drawn[name])
                shown.add(name)
    cited = [o for entries in (outside or {}).values() for o in entries]
    if cited:
        lines += ["", "## Outside evidence (not our runs)", ""]
        lines += [f"- {o.text()}" for o in cited]
    for name, text in pages.items():
        lines += ["", f"## {PAGES[name].split(':')[0].capitalize()} (`{name}`)", *_demoted(text)]
    rest = [f for n, f in drawn.items() if n not in shown]
    if rest:
        lines += ["", "## Figures"]
        for f in rest:
            lines += _figure_lines(f)
    missing = [f for f in figures if not f.paths]
    if missing:
        lines += ["", "## Figures not drawn", ""]
        lines += [f"- `{f.name}` ({f.caption}): {f.reason}." for f in missing]
    return "\n".join(lines) + "\n"


def write_index(out_dir: Path, runs: list[Run], excluded: list[Excluded], sources: list[str],
                tables: list[PaperTable], figures: list[Outcome],
                frames: dict[str, pd.DataFrame] | None = None,
                written: list[Path] | None = None,
                outside: dict[str, tuple[Outside, ...]] | None = None) -> list[Path]:
    """Write ``README.md`` and ``runs.csv`` into ``out_dir``."""
    out_dir = Path(out_dir)
    listing = out_dir / RUNS_FILE
    atomic_write_text(listing, run_listing(runs, excluded).to_csv(index=False, float_format="%.4f",
                                                          lineterminator="\n"))
    path = out_dir / "README.md"
    reasons_file = out_dir / REASONS_FILE
    reasons = yaml.safe_load(reasons_file.read_text()) if reasons_file.exists() else {}
    findings_file = out_dir / FINDINGS_FILE
    findings = yaml.safe_load(findings_file.read_text()) if findings_file.exists() else {}
    names = {Path(p).name for p in written or []}
    pages = {n: (out_dir / n).read_text() for n in PAGES if n in names}
    linked = [n for n in LINKED if (out_dir / n).exists()]
    atomic_write_text(path, readme(runs, excluded, sources, tables, figures, frames, reasons or {},
                                   pages, findings or {}, linked, outside))
    return [path, listing]
