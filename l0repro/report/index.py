"""The output folder's README and run listing: what each file is and which runs made it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import yaml

from l0repro.record import atomic_write_text
from l0repro.report.figures import Outcome
from l0repro.report.paper import PaperTable
from l0repro.report.runs import Excluded, Run, error_keys

RUNS_FILE = "runs.csv"
REASONS_FILE = "reasons.yaml"  # hand-written: experiment -> most likely reason it misses
FINDINGS_FILE = "findings.yaml"  # hand-written: title -> what the runs show (numbers from them)
# pages the report writes besides the tables, shown in the README when written
PAGES = {
    "selection.md": ("selection runs on the validation split: every sweep point, the rule "
                     "written down before the sweep, and the point it chooses"),
    "evidence.md": "evidence runs: one choice changed (the init), seed by seed against the row",
}
# pages written by other commands (benchmarks, the GPU lease) that the README links when present
LINKED = {
    "gpu.md": "figures measured on a GPU (the device named in each), by scripts/gpu_lease.sh",
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
            "git_commit": s["git_commit"], "device": s["device"],
            "finished_at": s.get("finished_at") or "",
        })
    for e in excluded:
        rows.append({"source": e.source, "included": False, "reason": e.reason,
                     "experiment": e.experiment or "",
                     "seed": "" if e.seed is None else str(e.seed)})
    cols = ["source", "included", "reason", "experiment", "seed", "epochs", "judged_on",
            "error_final_pct", "flops_pct", "git_commit", "device", "finished_at"]
    df = pd.DataFrame(rows, columns=cols).sort_values("source", kind="stable")
    df["epochs"] = df["epochs"].astype("Int64")
    return df.reset_index(drop=True)


def _counted(values: list) -> str:
    counts = Counter(str(v) for v in values)
    return ", ".join(f"`{v}` ({n} run{'s' if n > 1 else ''})" for v, n in sorted(counts.items()))


def misses(frames: dict[str, pd.DataFrame], reasons: dict[str, str]) -> list[str]:
    """One line per reproduced row whose verdict fails: by how much, and the likely reason
    (hand-written in ``<out>/reasons.yaml``: experiment -> text)."""
    lines = []
    for key in sorted(frames):
        df = frames[key]
        failed = df[(df["source"] == "ours") & df["verdict"].fillna("").str.startswith("fail")]
        for _, row in failed.iterrows():
            reason = reasons.get(row["experiment"], "no reason recorded yet")
            lines.append(f"- `{row['experiment']}` (lambdas {row['lambdas']}, {row['seeds']} "
                         f"seed(s), {row['epochs']} epochs): {row['verdict']}. "
                         f"Likely reason: {reason}")
    return lines


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
           linked: list[str] | None = None) -> str:
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
            f"- Devices: {_counted([x['device'] for x in s])}.",
            f"- Epochs: {_counted([x['epochs'] for x in s])}.",
            f"- PyTorch: {_counted([x['torch_version'] for x in s])}.",
        ]
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
    missed = misses(frames or {}, reasons or {})
    if missed:
        lines += ["", "## Rows that miss the paper", "", *missed]
    for title, text in (findings or {}).items():
        lines += ["", f"## {title}", "", str(text).strip()]
    for name, text in pages.items():
        lines += ["", f"## {PAGES[name].split(':')[0].capitalize()} (`{name}`)", *_demoted(text)]
    missing = [f for f in figures if not f.paths]
    if missing:
        lines += ["", "## Figures not drawn", ""]
        lines += [f"- `{f.name}` ({f.caption}): {f.reason}." for f in missing]
    return "\n".join(lines) + "\n"


def write_index(out_dir: Path, runs: list[Run], excluded: list[Excluded], sources: list[str],
                tables: list[PaperTable], figures: list[Outcome],
                frames: dict[str, pd.DataFrame] | None = None,
                written: list[Path] | None = None) -> list[Path]:
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
                                   pages, findings or {}, linked))
    return [path, listing]
