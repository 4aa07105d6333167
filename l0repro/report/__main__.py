"""``python -m l0repro.report``: turn the runs into the paper's tables and figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from l0repro.report.build import make_report, summary_lines
from l0repro.report.sources import SourceError

DEFAULT_RUNS = "experiments"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m l0repro.report", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Aggregate run directories (and optionally a wandb project) into the "
                    "paper's tables (Markdown, CSV, LaTeX), figures (PNG, PDF) and a README.\n\n"
                    "example:\n  python -m l0repro.report --runs results/runs --out results")
    p.add_argument("--runs", default=None,
                   help=f"folder searched recursively for run directories (default "
                        f"{DEFAULT_RUNS}; skipped if absent and --wandb is given)")
    p.add_argument("--out", default="results", help="output folder (default results)")
    p.add_argument("--wandb", metavar="ENTITY/PROJECT", default=None,
                   help="also read the runs of this wandb project")
    args = p.parse_args(argv)
    if args.wandb is not None and args.wandb.count("/") != 1:
        p.error(f"--wandb expects ENTITY/PROJECT, got {args.wandb!r}")
    if args.runs is None:
        args.runs = None if args.wandb and not Path(DEFAULT_RUNS).is_dir() else DEFAULT_RUNS
    if args.runs is not None and not Path(args.runs).is_dir():
        p.error(f"runs directory {args.runs!r} does not exist or is not a directory")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = make_report(args.runs, Path(args.out), args.wandb)
    except SourceError as e:
        print(f"python -m l0repro.report: error: {e}", file=sys.stderr)
        return 1
    print("\n".join(summary_lines(report, Path(args.out))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
