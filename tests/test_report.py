"""The report: tables, verdicts, runs left out, figures, README, wandb runs and the CLI."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd
import pytest

from l0repro.report.__main__ import main
from l0repro.report.build import make_report, summary_lines
from l0repro.report.paper import load_paper
from l0repro.report.runs import Run, select
from l0repro.report.tables import Stats, aggregate, seeds_passing, verdict

try:  # tests/ as a plain folder (pytest puts it on sys.path) or as a package
    import report_fixtures as fx
except ImportError:  # pragma: no cover
    from tests import report_fixtures as fx

TABLE_FILES = ["table1.md", "table1.csv", "table1.tex", "table2.md", "table2.csv",
               "table2.tex", "runs.csv", "README.md"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The synthetic runs reported twice, into two folders; a stale WRN figure beforehand."""
    root = tmp_path_factory.mktemp("report")
    runs = fx.build_runs(root / "experiments")
    stale = root / "out" / "figures" / "fig4_wrn.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    first = make_report(runs, root / "out")
    make_report(runs, root / "again")
    return {"root": root, "out": root / "out", "again": root / "again", "report": first}


def _row(df: pd.DataFrame, experiment: str) -> pd.Series:
    rows = df[df["experiment"] == experiment]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_table1_aggregates_complete_seeds_only(report):
    df = pd.read_csv(report["out"] / "table1.csv")
    row = _row(df, "table1/mlp_l0")
    errors = [e * 100 for _, e, _, _ in fx.MLP_SEEDS]  # 1.3, 1.4, 1.6: the left-out seeds are 50 %
    assert row["seeds"] == 3 and row["epochs"] == 4
    assert row["error_final_mean"] == pytest.approx(sum(errors) / 3, abs=1e-4)
    assert row["error_final_std"] == pytest.approx(pd.Series(errors).std(), abs=1e-4)
    assert row["error_best_mean"] == pytest.approx(sum(errors) / 3 - 0.1, abs=1e-4)
    # Per-layer means 220, 210.33, 99.67 round to 220-210-100.
    assert row["architecture"] == "220-210-100"
    assert row["expected_flops_pct"] == pytest.approx(32.0)
    assert row["pruned_flops_pct"] == pytest.approx(32.0)
    assert row["params_kept"] == 530_000
    assert row["paper_error"] == pytest.approx(1.4) and row["paper_architecture"] == "219-214-100"

    md = (report["out"] / "table1.md").read_text()
    assert "| 1.43 ± 0.15 " in md and "| 1.33 ± 0.15 " in md
    assert "220-210-100 *" in md and "per-layer mean over seeds, rounded" in md
    assert "| 32.00 " in md


def test_verdicts(report):
    df = pd.read_csv(report["out"] / "table1.csv", keep_default_na=False)
    assert _row(df, "table1/mlp_l0")["verdict"] == \
        "pass (seeds passing alone: 3 of 3; 4 of the paper's 200 epochs)"
    # Error 1.00 vs 0.9 is within 0.2 points; conv2 keeps 10 maps where the paper keeps 25.
    assert _row(df, "table1/lenet5_l0")["verdict"].startswith("fail: conv2 10 vs 25 (-60%)")
    dense = _row(df, "table1/mlp_dense")
    assert dense["verdict"] == "" and dense["paper_error"] == ""
    assert dense["method"] == "dense baseline (ours)" and dense["expected_flops_pct"] == "100.0000"
    assert _row(df, "table1/mlp_l0_sep")["verdict"] == "not run"
    reference = df[(df["source"] == "paper") & (df["method"] == "SBP")].iloc[0]
    assert reference["paper_architecture"] == "3-18-284-283" and reference["verdict"] == ""


def test_the_mean_can_pass_when_no_seed_does():
    """lenet5_l0_sep's two seeds as published: 1.01 % with conv1 12 (> 25 % over 9) and 1.25 %
    (> 0.2 points over 1.0) each fail alone; their mean, 1.13 % and 10-21-61-21, passes."""
    table1 = load_paper().tables[0]
    row = table1.row_for("table1/lenet5_l0_sep")  # 1.0 %, 9-18-65-25
    runs = [Run(f"local:s{seed}", fx.summary_for("table1/lenet5_l0_sep", seed, model="lenet5",
                                                    epochs=200, error_final=err, architecture=arch),
                pd.DataFrame())
            for seed, err, arch in [(0, 0.0101, [12, 20, 56, 19]), (1, 0.0125, [8, 22, 65, 23])]]
    assert seeds_passing(runs, row, table1) == 0
    assert verdict(aggregate(runs), row, table1, 0) == "pass (seeds passing alone: 0 of 2)"
    assert verdict(aggregate(runs[:1]), row, table1).startswith("fail: conv1 12 vs 9 (+33%)")
    assert verdict(aggregate(runs[1:]), row, table1).startswith("fail: error +0.25 pp")


def _stats(error: float, arch: list[int]) -> Stats:
    return Stats(seeds=1, epochs=200, error_final_mean=error, error_final_std=math.nan,
                 error_best_mean=error, error_best_std=math.nan, architecture=arch,
                 full_architecture=[20, 50, 800, 500], layers=["conv1", "conv2", "fc1", "fc2"],
                 expected_flops_pct=10.0, pruned_flops_pct=9.0, expected_params=1.0,
                 params_kept=1)


def test_verdict_tolerances():
    paper = load_paper()
    table1, table2 = paper.tables[:2]
    lenet = table1.row_for("table1/lenet5_l0")  # 0.9 %, 20-25-45-462
    assert verdict(_stats(1.1, [20, 25, 45, 462]), lenet, table1) == "pass"  # exactly 0.2 off
    assert verdict(_stats(1.05, [25, 25, 45, 462]), lenet, table1) == "pass"  # 25 % more units
    assert verdict(_stats(1.05, [26, 25, 45, 462]), lenet, table1) == \
        "fail: conv1 26 vs 20 (+30%)"
    assert verdict(_stats(1.2, [20, 25, 30, 462]), lenet, table1) == \
        "fail: error +0.30 pp (tolerance 0.2); fc1 30 vs 45 (-33%)"
    # Several seeds: how many pass on their own follows the verdict on the mean.
    two = dataclasses.replace(_stats(1.0, [20, 25, 45, 462]), seeds=2)
    assert verdict(two, lenet, table1, 1) == "pass (seeds passing alone: 1 of 2)"
    assert verdict(_stats(1.0, [20, 25, 45, 462]), lenet, table1, 1) == "pass"  # one seed: no count
    # Table 2 judges the error only, within 0.3 points.
    wrn = table2.row_for("table2/wrn_c100_l0_002")  # 19.04 %
    assert verdict(_stats(19.30, [1, 1, 1, 1]), wrn, table2) == "pass"
    assert verdict(_stats(19.40, [1, 1, 1, 1]), wrn, table2).startswith("fail: error +0.36 pp")


def test_runs_left_out_are_listed_with_reasons(report):
    md = (report["out"] / "table1.md").read_text()
    listed = md.split("Runs left out of this table: 6", 1)[1]
    for source, reason in [
        ("table1/mlp_l0/seed3", "status running (2/4 epochs)"),
        ("table1/mlp_l0/seed4", "status failed (1/4 epochs): CUDA out of memory"),
        ("table1/mlp_l0/seed5", "status complete but only 3/4 epochs completed"),
        ("table1/mlp_l0/seed6", "unreadable: table1/mlp_l0/seed6/summary.json: not valid JSON"),
        ("table1/mlp_l0/seed7", "metrics.csv: 2 epoch rows but summary claims 4 epochs"),
        ("table1/lenet5_l0/seed1", "missing keys ['architecture']"),
    ]:
        line = next(x for x in listed.splitlines() if f"`local:{source}`" in x)
        assert reason in line
    # Paths are relative to --runs, so the files do not depend on where the runs live.
    assert str(report["root"]) not in md
    # The corrupt summary names no dataset, so Table 2 lists it too; nothing else.
    md2 = (report["out"] / "table2.md").read_text()
    assert "Runs left out of this table: 1" in md2 and "seed6" in md2

    listing = pd.read_csv(report["out"] / "runs.csv")
    assert listing["included"].sum() == 5 and (~listing["included"]).sum() == 6


def test_figures_written_only_with_runs_behind_them(report):
    figures = report["out"] / "figures"
    for name in ("fig3_flops_mnist", "kept_units", "error_vs_flops"):
        for fmt in ("png", "pdf"):
            assert (figures / f"{name}.{fmt}").stat().st_size > 1000
    # No CIFAR runs: no WRN figure, and the stale one from before is gone.
    assert not (figures / "fig4_wrn.png").exists() and not (figures / "fig4_wrn.pdf").exists()
    lines = summary_lines(report["report"], report["out"])
    assert "figure fig4_wrn: not drawn (no complete table2/ runs on CIFAR)" in lines
    assert "figure fig3_flops_mnist: written" in lines


def test_same_runs_give_byte_identical_files(report):
    for name in TABLE_FILES:
        assert (report["out"] / name).read_bytes() == (report["again"] / name).read_bytes(), name


def test_readme_says_which_runs_made_the_files(report):
    text = (report["out"] / "README.md").read_text()
    assert "Complete runs used: 5; runs left out: 6" in text
    # The latest finished_at of the runs, not the time of the report.
    assert "Latest run finished at: 2024-05-02T08:30:00+00:00." in text
    assert "Git commits: `abc1234` (5 runs)" in text and "Devices: `cpu` (5 runs)" in text
    assert "Epochs: `4` (5 runs)" in text
    for name in ("`table1.md`", "`table2.csv`", "`runs.csv`", "`figures/kept_units.pdf`"):
        assert name in text
    assert "## Figures not drawn" in text and "`fig4_wrn`" in text


def test_paper_numbers_and_marks():
    paper = load_paper()
    table1, table2 = paper.tables[:2]
    assert all(r.error.mark in ("v", "?") for t in paper.tables for r in t.rows)
    sep = table1.row_for("table1/mlp_l0_sep")
    assert (sep.architecture.value, sep.architecture.mark, sep.error.value, sep.error.mark) == \
        ("266-88-33", "v", 1.8, "?")
    assert sep.error.alt.value == 1.6 and "RigL" in sep.error.alt.source
    lenet = table1.row_for("table1/lenet5_l0")
    assert lenet.arch_units() == [20, 25, 45, 462] and lenet.error.verified
    assert lenet.architecture.verified and "1811.03060" in lenet.architecture.source
    # every checked number names its source (docs/paper.md's confirmations)
    assert all(m.source for t in paper.tables for r in t.rows for m in (r.error, r.architecture)
               if m is not None and m.verified)
    marks = {r.experiment: r.error.mark for r in table2.rows}
    assert marks == {"table2/wrn_c10_plain": "v", "table2/wrn_c10_dropout": "v",
                     "table2/wrn_c10_l0_001": "v", "table2/wrn_c10_l0_002": "?",
                     "table2/wrn_c100_plain": "v", "table2/wrn_c100_dropout": "v",
                     "table2/wrn_c100_l0_001": "?", "table2/wrn_c100_l0_002": "?"}
    assert table1.row_for("table1/mlp_l0").error.mark == "?"
    assert table1.row_for("table1/mlp_dense") is None
    expected = {"table2/wrn_c10_plain": 4.00, "table2/wrn_c100_plain": 19.25,
                "table2/wrn_c10_dropout": 3.89, "table2/wrn_c100_dropout": 18.85,
                "table2/wrn_c10_l0_001": 3.83, "table2/wrn_c100_l0_001": 18.75,
                "table2/wrn_c10_l0_002": 3.93, "table2/wrn_c100_l0_002": 19.04}
    assert {e: table2.row_for(e).error.value for e in expected} == expected
    assert len(table1.rows) == 13 and len(table2.rows) == 8
    assert table1.error_tolerance == 0.2 and table2.error_tolerance == 0.3


def test_uncertain_paper_numbers_are_marked(report):
    md = (report["out"] / "table1.md").read_text()
    mlp = next(x for x in md.splitlines() if "table1/mlp_l0 " in x)
    assert "| 1.4 ?" in mlp
    lenet = next(x for x in md.splitlines() if "table1/lenet5_l0 " in x)
    assert "| 0.9 " in lenet and "0.9 ?" not in lenet


def _wrn(experiment: str, seed: int, **kw) -> dict:
    return fx.summary_for(experiment, seed, model="wrn-28-10", **{"lambdas": [0.001] * 12, **kw})


def test_wandb_runs_and_cli(tmp_path, monkeypatch, capsys):
    import wandb

    arch = [150] * 4 + [300] * 4 + [600] * 4
    l0 = [_wrn("table2/wrn_c10_l0_001", s, error_final=e, architecture=arch, flops_frac=0.8)
          for s, e in ((0, 0.0380), (1, 0.0390))]
    dropout = _wrn("table2/wrn_c10_dropout", 0, method="dropout", lambdas=[],
                   error_final=0.0450, flops_frac=1.0)
    crashed = _wrn("table2/wrn_c10_l0_001", 2)
    del crashed["status"]
    running = _wrn("table2/wrn_c10_l0_001", 3, status="running", epochs_completed=1)
    sweep = _wrn("table2/wrn_c10_l0_sweep/lam0.01", 0, lambdas=[0.01] * 12, error_final=0.041,
                 architecture=[100] * 12, flops_frac=0.5)
    # wandb may drop the string column `kind`; end-of-epoch rows are those with a test error.
    no_kind = [{k: v for k, v in r.items() if k != "kind"} for r in fx.metrics_for(l0[1])]
    stubs = [fx.StubRun("a1", l0[0], fx.metrics_for(l0[0])), fx.StubRun("a2", l0[1], no_kind),
             fx.StubRun("d1", dropout, fx.metrics_for(dropout)),
             fx.StubRun("c1", crashed, fx.metrics_for(crashed), state="crashed"),
             fx.StubRun("r1", running, fx.metrics_for(running), state="running"),
             fx.StubRun("s1", sweep, fx.metrics_for(sweep))]
    monkeypatch.setattr(wandb, "Api", lambda *a, **k: fx.StubApi({"ent/proj": stubs}))
    # A local copy of a wandb run: the local record wins, the copy is reported as a duplicate.
    local = tmp_path / "experiments"
    fx.make_run(local, "table2/wrn_c10_l0_001/seed0", l0[0])

    out = tmp_path / "results"
    assert main(["--runs", str(local), "--out", str(out), "--wandb", "ent/proj"]) == 0
    printed = capsys.readouterr().out
    assert "1 pass, 1 fail" in printed and "figure fig4_wrn: written" in printed

    df = pd.read_csv(out / "table2.csv", keep_default_na=False)
    row = _row(df, "table2/wrn_c10_l0_001")
    assert row["seeds"] == "2" and float(row["error_final_mean"]) == pytest.approx(3.85)
    assert (row["kept_units"], row["total_units"]) == ("4200", "4480")
    assert row["verdict"].startswith("pass")  # 3.85 vs 3.83
    assert _row(df, "table2/wrn_c10_dropout")["verdict"].startswith("fail: error +0.61 pp")
    md = (out / "table2.md").read_text()
    assert "| 4200/4480 * " in md and "| 80.00 " in md
    assert "`wandb:ent/proj/c1`" in md and "missing keys ['status'] (wandb state crashed)" in md
    assert "`wandb:ent/proj/r1`" in md and "status running (1/4 epochs): wandb state running" in md
    assert "`wandb:ent/proj/a1` (table2/wrn_c10_l0_001, seed 0): duplicate of " \
           "local:table2/wrn_c10_l0_001/seed0" in md
    for name in ("fig4_wrn", "kept_units", "error_vs_flops"):
        assert (out / "figures" / f"{name}.png").exists()
    assert not (out / "figures" / "fig3_flops_mnist.png").exists()
    # A sweep run has no paper row: no verdict, after the paper's CIFAR-10 rows.
    swept = _row(df, "table2/wrn_c10_l0_sweep/lam0.01")
    assert (swept["method"], swept["verdict"]) == ("L0, lambda = 0.01/N", "")
    order = df["experiment"].tolist()
    assert order.index("table2/wrn_c10_l0_002") < swept.name < order.index("table2/wrn_c100_plain")
    assert "wandb project `ent/proj` (6 runs)" in (out / "README.md").read_text()


def test_cli_rejects_missing_runs_dir(tmp_path, capsys):
    missing = tmp_path / "no_such_runs"
    with pytest.raises(SystemExit) as e:
        main(["--runs", str(missing), "--out", str(tmp_path / "out")])
    assert e.value.code != 0
    assert str(missing) in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_select_keeps_newest_duplicate_seed():
    old = Run("local:a", fx.summary_for("table1/mlp_l0", 0, finished_at="2024-01-01T00:00:00"),
              pd.DataFrame())
    new = Run("local:b", fx.summary_for("table1/mlp_l0", 0, finished_at="2024-02-01T00:00:00"),
              pd.DataFrame())
    kept, excluded = select([new, old], [])
    assert [r.source for r in kept] == ["local:b"]
    assert [(e.source, e.reason) for e in excluded] == [
        ("local:a", "duplicate of local:b (same experiment and seed)")]


def test_latex_table_is_escaped(report):
    tex = Path(report["out"], "table1.tex").read_text()
    assert tex.startswith("\\begin{table}") and "\\label{tab:table1}" in tex
    assert "table1/mlp\\_l0 & 0.1 & 1.43 $\\pm$ 0.15" in tex and "error \\% (final)" in tex


def test_cli_reports_unreachable_wandb(tmp_path, monkeypatch, capsys):
    import wandb

    def no_network(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(wandb, "Api", no_network)
    (tmp_path / "runs").mkdir()
    assert main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
                 "--wandb", "ent/proj"]) == 1
    assert "cannot read wandb project 'ent/proj': no route to host" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_readme_lists_rows_that_miss_the_paper_with_reasons(tmp_path):
    runs = fx.build_runs(tmp_path / "experiments")
    out = tmp_path / "out"
    out.mkdir()
    (out / "reasons.yaml").write_text("table1/lenet5_l0: too few epochs in this synthetic run\n")
    make_report(runs, out)
    text = (out / "README.md").read_text()
    section = text.split("## Rows that miss the paper")[1]
    assert "`table1/lenet5_l0`" in section and "conv2 10 vs 25 (-60%)" in section
    assert "Likely reason: too few epochs in this synthetic run" in section
    assert "`table1/mlp_l0`" not in section  # it passes


@pytest.fixture(scope="module")
def lenet_sep(tmp_path_factory):
    """The lenet5_l0_sep row's three published seeds, reported."""
    root = tmp_path_factory.mktemp("lenet_sep")
    runs = fx.build_lenet_sep(root / "runs")
    make_report(runs, root / "out")
    return root / "out"


def test_a_row_whose_mean_passes_while_no_seed_does_is_not_reproduced_seed_by_seed(lenet_sep):
    df = pd.read_csv(lenet_sep / "table1.csv", keep_default_na=False)
    row = df[(df["experiment"] == "table1/lenet5_l0_sep") & (df["source"] == "ours")].iloc[0]
    assert row["verdict"] == "pass (seeds passing alone: 0 of 3)"
    assert row["reproduced"] == \
        "not reproduced seed by seed (0 of 3 seeds pass alone; the mean passes)"
    # the seeds miss in opposite directions, each named with the units it is off
    assert row["seed_gaps"] == ("seed 0: conv1 +3 (±2, outside); seed 1: error +0.25 pp; "
                                "seed 2: conv1 +3 (±2, outside), fc2 -8 (±6, outside)")
    md = (lenet_sep / "table1.md").read_text()
    assert "not reproduced seed by seed" in md
    readme = (lenet_sep / "README.md").read_text()
    glance = readme.split("## At a glance")[1].split("\n## ")[0]
    line = next(x for x in glance.splitlines() if "`table1/lenet5_l0_sep`" in x)
    assert "not reproduced seed by seed" in line and "seed 1: error +0.25 pp" in line
    assert "no reason recorded yet" in line  # no reasons.yaml here, and a full schedule
    assert "`table1/lenet5_l0_sep`" in readme.split("## Rows that miss the paper")[1]


def test_each_layer_shows_how_many_units_it_is_off_and_how_many_the_tolerance_allows(lenet_sep):
    df = pd.read_csv(lenet_sep / "table1.csv", keep_default_na=False)
    row = df[(df["experiment"] == "table1/lenet5_l0_sep") & (df["source"] == "ours")].iloc[0]
    # mean 11-21-62-20 against 9-18-65-25: 25 % of 9 allows 2 filters, of 65 allows 16 units
    assert row["units_off"] == "conv1 +2 (±2); conv2 +3 (±4); fc1 -3 (±16); fc2 -5 (±6)"
    table1 = load_paper().tables[0]
    from l0repro.report.tables import units_off
    lenet = table1.row_for("table1/lenet5_l0")  # 20-25-45-462
    assert units_off(_stats(0.9, [23, 25, 45, 347]), lenet, table1) == \
        "conv1 +3 (±5); conv2 +0 (±6); fc1 +0 (±11); fc2 -115 (±115)"
    sep = table1.row_for("table1/lenet5_l0_sep")  # 9-18-65-25
    assert units_off(_stats(1.0, [12, 18, 65, 25]), sep, table1).startswith(
        "conv1 +3 (±2, outside);")
    assert "allows 2 of 9 but 115 of 462" in (lenet_sep / "table1.md").read_text()


def test_the_best_epoch_error_stands_beside_the_network_it_came_from(lenet_sep):
    df = pd.read_csv(lenet_sep / "table1.csv", keep_default_na=False)
    row = df[(df["experiment"] == "table1/lenet5_l0_sep") & (df["source"] == "ours")].iloc[0]
    assert row["best_networks"].split("; ") == [
        "epoch 2: 20-49-666-378, 92.1 % FLOPs", "epoch 2: 8-25-107-30, 19.1 % FLOPs",
        "epoch 2: 20-49-716-399, 93.6 % FLOPs"]
    md = (lenet_sep / "table1.md").read_text()
    assert "best epoch's network" in md and "epoch 2: 20-49-666-378, 92.1 % FLOPs" in md


def test_a_record_without_the_best_network_says_not_recorded(report):
    df = pd.read_csv(report["out"] / "table1.csv", keep_default_na=False)
    assert _row(df, "table1/mlp_l0")["best_networks"] == "; ".join(["not recorded"] * 3)


def test_git_dirty_null_reads_not_recorded(lenet_sep, report):
    listing = pd.read_csv(lenet_sep / "runs.csv", keep_default_na=False)
    assert set(listing["git_dirty"]) == {"not recorded"}
    assert "Working tree at training (git_dirty): `not recorded` (3 runs)" in \
        (lenet_sep / "README.md").read_text()


def test_a_row_shorter_than_the_papers_schedule_gets_the_short_schedule_reason(report):
    text = (report["out"] / "README.md").read_text()
    section = text.split("## Rows that miss the paper")[1]
    line = next(x for x in section.splitlines() if "`table1/lenet5_l0`" in x)
    assert line.endswith("Likely reason: short schedule: 4 of 200 epochs")
    assert "no reason recorded yet" not in section


def test_a_full_schedule_row_without_a_reason_says_so(tmp_path):
    runs = tmp_path / "runs"
    fx.make_run(runs, "table1/lenet5_l0/seed0",
                fx.summary_for("table1/lenet5_l0", 0, model="lenet5", epochs=200,
                               error_final=0.010, architecture=[20, 10, 45, 462]))
    make_report(runs, tmp_path / "out")
    section = (tmp_path / "out" / "README.md").read_text().split("## Rows that miss the paper")[1]
    assert "Likely reason: no reason recorded yet" in section and "short schedule" not in section


def test_the_readme_starts_with_a_short_table_and_shows_its_figures_inline(report):
    text = (report["out"] / "README.md").read_text()
    glance = text.split("## At a glance")[1].split("\n## ")[0]
    assert "| row | reproduces (per seed) | gap | why |" in glance
    mlp = next(x for x in glance.splitlines() if "`table1/mlp_l0`" in x)
    assert "reproduced (3 of 3 seeds pass alone)" in mlp
    assert "the paper's error (1.4) and architecture (219-214-100) unconfirmed (?)" in mlp
    assert text.index("## At a glance") < text.index("## Files")
    for name in ("fig3_flops_mnist", "kept_units", "error_vs_flops"):
        assert f"](figures/{name}.png)" in text
    assert "](figures/fig4_wrn.png)" not in text  # not drawn: listed, not shown


def test_findings_can_place_figures_under_their_section(tmp_path):
    runs = fx.build_runs(tmp_path / "experiments")
    out = tmp_path / "out"
    out.mkdir()
    (out / "findings.yaml").write_text('"What we see":\n  text: Kept units.\n'
                                       "  figures: [kept_units]\n")
    make_report(runs, out)
    text = (out / "README.md").read_text()
    section = text.split("## What we see")[1].split("\n## ")[0]
    assert "Kept units." in section and "](figures/kept_units.png)" in section
    assert text.count("](figures/kept_units.png)") == 1  # not again under ## Figures
    assert "](figures/fig3_flops_mnist.png)" in text.split("## Figures\n")[1]


def test_unknown_experiment_groups_are_left_out_with_a_reason(tmp_path):
    runs = fx.build_runs(tmp_path / "experiments")
    fx.make_run(runs, "budget/lenet5_flops25/seed0",
                fx.summary_for("budget/lenet5_flops25", 0, model="lenet5", lambdas=[1.0] * 4))
    out = tmp_path / "out"
    report = make_report(runs, out)
    assert all(r.summary["experiment"] != "budget/lenet5_flops25" for r in report.runs)
    listing = pd.read_csv(out / "runs.csv", keep_default_na=False, dtype=str)
    row = listing[listing["source"] == "local:budget/lenet5_flops25/seed0"].iloc[0]
    assert row["included"] == "False"
    assert "is in no table, sweep or evidence of paper.yaml: not reported" in row["reason"]
    assert "budget/lenet5_flops25" in (out / "table1.md").read_text()  # listed as left out
    assert "budget/" not in pd.read_csv(out / "table1.csv")["experiment"].fillna("").str.cat()


def test_figure_legends_use_the_papers_row_names_and_titles_name_the_setting():
    from l0repro.report.figures import _label, _setting

    paper = load_paper()
    runs = {}
    for experiment, model, lams, epochs in (("table1/mlp_l0", "mlp", (0.1,) * 3, 200),
                                            ("table1/lenet5_l0_sep", "lenet5",
                                             (10.0, 0.5, 0.1, 7.5), 200),
                                            ("table2s/wrn16_c10_l0_001_pe", "wrn-16-1",
                                             (0.001,) * 6, 20)):
        dataset = "cifar10" if model.startswith("wrn") else "mnist"
        key = (experiment, model, dataset, "l0", lams, epochs)
        runs[key] = [Run("local:x", {"device": "cpu"}, pd.DataFrame())]
    keys = list(runs)
    assert _label(keys[0], runs, paper) == "L0, λ = 0.1/N"
    assert _label(keys[1], runs, paper, network=True) == "LeNet-5 L0, λ sep."
    assert _label(keys[2], runs, paper) == "L0, λ = 0.001/N, one gate sample per example"
    assert _setting(keys[2:], runs, paper) == \
        "WRN-16-1 on CIFAR-10, 20 epochs; CPU companion (not the paper's setting)"
    assert _setting(keys[:2], runs, paper) == "MLP, LeNet-5 on MNIST, 200 epochs; CPU"


def test_every_cpu_scale_table2_experiment_has_its_own_row_name():
    """A table2s/ experiment without a name in paper.yaml `own` falls back to "L0, lambda = c/N",
    which the shared and per-example rows share: the tables and figure legends would merge them."""
    own = load_paper().own
    conf = Path(__file__).resolve().parents[1] / "conf" / "experiment" / "table2s"
    experiments = sorted(f"table2s/{p.stem}" for p in conf.glob("*.yaml"))
    assert len(experiments) >= 7
    assert [e for e in experiments if e not in own] == []
    names = [own[e] for e in experiments]
    assert len(set(names)) == len(names)
