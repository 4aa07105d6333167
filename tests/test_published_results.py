"""The published results hold together: what the bench measured on a compact network agrees
with what the report counts on the gated one (results/ is rebuilt by make publish / make compact)."""

import json

import pandas as pd
import pytest

from tests.conftest import REPO

RESULTS = REPO / "results"
TABLES = sorted(RESULTS.glob("table*.csv"))
SPEEDUPS = sorted((RESULTS / "runs").rglob("speedup.json"))


@pytest.mark.parametrize("table", TABLES, ids=lambda p: p.name)
def test_compact_flops_equal_the_pruned_flops_in_every_published_row(table):
    df = pd.read_csv(table)
    measured = df[df["compact_flops_pct"].notna()]
    assert ((measured["compact_flops_pct"] - measured["pruned_flops_pct"]).abs() < 1e-9).all()
    # params_kept is the rounded mean over seeds, compact_params the exact one; a compact WRN's
    # conv1 also carries bn2's folded shift as a bias (checked per run below)
    plain = measured[~measured["network"].str.lower().str.startswith("wrn")]
    assert ((plain["compact_params"] - plain["params_kept"]).abs() <= 0.5).all()


@pytest.mark.parametrize("path", SPEEDUPS, ids=lambda p: str(p.parent.relative_to(RESULTS)))
def test_each_benchmarked_run_matches_its_record(path):
    speed = json.loads(path.read_text())
    summary = json.loads((path.parent / "summary.json").read_text())
    assert speed["flops_compact"] == summary["flops_pruned"]
    # a compact WRN's gated conv1 carries bn2's folded shift: one bias per kept map
    folded = sum(summary["architecture"]) if summary["model"].startswith("wrn") else 0
    assert speed["params_compact"] == summary["params_kept"] + folded
    assert speed["architecture"] == summary["architecture"]
