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
    # the generic compaction keeps batch norm as it is (no shift folded into a conv's bias), so
    # every model's compact conv/linear parameters are exactly the pruned count
    assert speed["params_compact"] == summary["params_kept"]
    assert speed["architecture"] == summary["architecture"]


SUMMARIES = sorted((RESULTS / "runs").rglob("summary.json"))


def _backfill_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("backfill_summaries",
                                                  REPO / "scripts" / "backfill_summaries.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", SUMMARIES, ids=lambda p: str(p.parent.relative_to(RESULTS)))
def test_each_published_summary_holds_the_network_of_its_best_epoch(path):
    summary = json.loads(path.read_text())
    assert "git_dirty" in summary and summary["git_dirty"] in (None, True, False)
    metrics = pd.read_csv(path.parent / "metrics.csv")
    row = metrics[(metrics["kind"] == "epoch") & (metrics["epoch"] == summary["best_epoch"])].iloc[-1]
    split = "val" if summary.get("selection_run") else "test"
    assert row[f"{split}/error"] == pytest.approx(summary[f"{split}_error_best"], rel=1e-9)
    assert summary["best_architecture"] == [int(row[f"kept/{n}"]) for n in summary["layer_names"]]
    assert summary["best_flops_pruned"] == pytest.approx(row["flops/pruned"])


def test_backfill_refuses_a_best_epoch_that_its_metrics_do_not_show(tmp_path):
    from tests import report_fixtures as fx

    backfill = _backfill_module()
    summary = fx.summary_for("table1/mlp_l0", 0, error_final=0.014, error_best=0.020,
                             architecture=[200, 100, 50], best_epoch=3)
    run = fx.make_run(tmp_path / "runs", "table1/mlp_l0/seed0", summary)
    before = (run / "summary.json").read_text()
    with pytest.raises(backfill.BackfillError, match=r"table1/mlp_l0/seed0/summary.json.*refusing"):
        backfill.backfill(tmp_path / "runs")
    assert (run / "summary.json").read_text() == before  # nothing written


def test_backfill_adds_the_best_network_once_and_marks_git_dirty_not_recorded(tmp_path):
    from tests import report_fixtures as fx

    backfill = _backfill_module()
    # metrics_for gives epoch e the error error_final + 0.01 * (4 - e) and the final kept units
    summary = fx.summary_for("table1/mlp_l0", 0, error_final=0.014, error_best=0.014,
                             architecture=[200, 100, 50], best_epoch=4)
    run = fx.make_run(tmp_path / "runs", "table1/mlp_l0/seed0", summary)
    assert backfill.backfill(tmp_path / "runs") == [run / "summary.json"]
    done = json.loads((run / "summary.json").read_text())
    assert done["best_architecture"] == [200, 100, 50] and done["git_dirty"] is None
    assert done["best_flops_pruned"] == pytest.approx(summary["expected_flops_final"])
    assert backfill.backfill(tmp_path / "runs") == []  # a second pass changes nothing


def test_the_published_readme_reads_lenet5_sep_at_conv1_20_as_not_reproduced():
    # the row trained again at conv1 lambda 20: conv1 keeps 6, 5 and 5 filters against 9 +- 2
    readme = (RESULTS / "README.md").read_text()
    glance = readme.split("## At a glance")[1].split("\n## ")[0]
    line = next(x for x in glance.splitlines() if "`table1/lenet5_l0_sep`" in x)
    assert "not reproduced (the mean fails; 0 of 3 seeds pass alone)" in line
    assert "conv1 -4 (±2, outside)" in line and "seed 2: conv1 -4 (±2, outside)" in line
    assert "not reproduced (the mean fails" in (RESULTS / "table1.md").read_text()
    mlp_sep = next(x for x in glance.splitlines() if "`table1/mlp_l0_sep`" in x)
    assert "against 1.8 ? %: reproduced" in mlp_sep and "against 1.6 %" in mlp_sep


def test_the_published_readme_shows_every_figure_inline():
    readme = (RESULTS / "README.md").read_text()
    for png in sorted((RESULTS / "figures").glob("*.png")):
        assert f"](figures/{png.name})" in readme, png.name
