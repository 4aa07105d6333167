"""Runs the report keeps out of the tables: selection sweeps (validation) and evidence runs."""

from __future__ import annotations

import pandas as pd
import pytest

from l0repro.record import write_metrics, write_summary
from l0repro.report.build import make_report
from l0repro.report.paper import load_paper
from l0repro.report.selection import distance

try:
    import report_fixtures as fx
except ImportError:  # pragma: no cover
    from tests import report_fixtures as fx


def selection_run(root, lambdas, val_error, arch, seed=100):
    name = "_".join(f"{x:g}" for x in lambdas)
    summary = fx.summary_for("sweeps/mlp_l0_sep", seed, lambdas=lambdas, architecture=arch,
                             error_final=0.5)  # metrics rows are built from this, then hidden
    rows = fx.metrics_for(summary)
    for r in rows:
        if "test/error" in r:
            r["val/error"] = r.pop("test/error")
            r["val/loss"] = r.pop("test/loss")
    summary.update(test_error_final=None, test_error_best=None, selection_run=True,
                   val_error_final=val_error, val_error_best=val_error - 0.001,
                   validation={"n": 10000, "seed": 0, "n_train_full": 60000,
                               "indices_sha256": "ab" * 32})
    run_dir = root / f"sweeps/mlp_l0_sep/lam_{name}/seed{seed}"
    run_dir.mkdir(parents=True)
    write_metrics(run_dir, rows)
    write_summary(run_dir, summary)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("apart")
    runs = root / "runs"
    # paper 266-88-33. Best error 1.70; window 0.2 -> 1.90 admits the first three.
    selection_run(runs, [0.1, 0.5, 4.0], 0.0170, [300, 100, 40])  # distance 0.128+0.136+0.212
    selection_run(runs, [0.07, 0.5, 4.0], 0.0185, [270, 90, 33])  # closest within the window
    selection_run(runs, [0.1, 0.5, 6.0], 0.0190, [280, 85, 30])
    selection_run(runs, [0.05, 0.5, 4.0], 0.0195, [266, 88, 33])  # exact, but 0.25 worse
    # the row trained with the chosen lambdas
    for seed in (0, 1):
        fx.make_run(runs, f"table1/mlp_l0_sep/seed{seed}",
                    fx.summary_for("table1/mlp_l0_sep", seed, lambdas=[0.07, 0.5, 4.0],
                                   error_final=0.017 + 0.002 * seed, architecture=[268, 90, 34]))
    # init evidence beside table1/mlp_l0 on seeds 0 and 1 (seed 2 has no pair)
    for seed in (0, 1, 2):
        fx.make_run(runs, f"table1/mlp_l0/seed{seed}",
                    fx.summary_for("table1/mlp_l0", seed, error_final=0.014,
                                   architecture=[220, 210, 100]))
    for seed in (0, 1):
        fx.make_run(runs, f"init/mlp_l0_torch/seed{seed}",
                    fx.summary_for("init/mlp_l0_torch", seed, error_final=0.016,
                                   architecture=[240, 200, 99]))
    out = root / "out"
    make_report(runs, out)
    return out


def test_selection_runs_and_evidence_never_enter_a_table_row(out):
    df = pd.read_csv(out / "table1.csv", keep_default_na=False)
    experiments = set(df["experiment"])
    assert "sweeps/mlp_l0_sep" not in experiments and "init/mlp_l0_torch" not in experiments
    row = df[(df["experiment"] == "table1/mlp_l0_sep") & (df["source"] == "ours")].iloc[0]
    assert row["seeds"] == "2" and float(row["error_final_mean"]) == pytest.approx(1.8)
    assert df[df["experiment"] == "table1/mlp_l0"].iloc[0]["seeds"] == "3"


def test_the_written_rule_picks_the_closest_architecture_within_the_error_window(out):
    sel = pd.read_csv(out / "selection.csv")
    assert sel["within_window"].tolist() == [False, True, True, True]  # sorted by lambdas
    chosen = sel[sel["chosen"]]
    assert chosen["lambdas"].tolist() == ["0.07, 0.5, 4"]
    assert sel.loc[sel["lambdas"] == "0.05, 0.5, 4", "distance"].item() == 0.0  # closest, too slow
    md = (out / "selection.md").read_text()
    assert "within 0.2 points of the best point's" in md and "266-88-33" in md
    assert "The rule chooses (0.07, 0.5, 4); the row `table1/mlp_l0_sep` trains with it." in md
    assert "val error % (final)" in md and "test error" not in md


def test_distance_is_the_sum_of_relative_deviations():
    assert distance([300, 100, 40], [266, 88, 33]) == pytest.approx(
        34 / 266 + 12 / 88 + 7 / 33)


def test_init_evidence_is_side_by_side_in_the_readme(out):
    ev = pd.read_csv(out / "evidence.csv")
    assert ev["seed"].tolist() == [0, 0, 1, 1]  # seed 2 has no torch-init run
    readme = (out / "README.md").read_text()
    assert "`init/mlp_l0_torch` against `table1/mlp_l0`" in readme
    assert "| 240-200-99 " in readme and "| 220-210-100 " in readme
    assert "The rule chooses (0.07, 0.5, 4)" in readme  # the selection page is embedded too


def test_both_quoted_errors_of_the_mlp_sep_row_are_shown(out):
    md = (out / "table1.md").read_text()
    assert "1.8 ? (quoted: 1.6)" in md
    assert "RigL (Evci et al. 2020), App. B quotes 1.6 %; ours 1.80 % is +0.00 points from 1.8 " \
           "and +0.20 from 1.6" in md
    assert "Checked against Tang, Adhikari, Lin 2018 (arXiv:1811.03060)" in md


def test_table2s_is_its_own_table():
    paper = load_paper()
    t2s = next(t for t in paper.tables if t.key == "table2s")
    assert t2s.holds("table2s/wrn16_c10_l0_001", "cifar10")
    assert not t2s.holds("table2/wrn_c10_l0_001", "cifar10")
    assert not paper.table_for("cifar10", "table2s/x").key == "table2"


def test_table2s_runs_get_their_own_table_and_figure(tmp_path):
    runs = tmp_path / "runs"
    arch = [150] * 4 + [300] * 4 + [600] * 4
    for name, method, lams, err in (("wrn16_c10_dropout", "dropout", [], 0.08),
                                    ("wrn16_c10_l0_001", "l0", [0.001] * 12, 0.0925),
                                    ("wrn16_c10_l0_001_pe", "l0", [0.001] * 12, 0.0750)):
        fx.make_run(runs, f"table2s/{name}/seed0",
                    fx.summary_for(f"table2s/{name}", 0, model="wrn-28-10", method=method,
                                   lambdas=lams, epochs=30, architecture=arch, error_final=err))
    make_report(runs, tmp_path / "out")
    md = (tmp_path / "out" / "table2s.md").read_text()
    assert "table2s/wrn16_c10_l0_001_pe" in md and "150-150-150-150-300" in md  # kept per layer
    assert "WRN-dropout 0.3 (ours, CPU scale)" in md
    # no paper row at this scale: no verdict, every run read against the dropout companion
    assert "verdict" not in md.split("\n\n")[1] and "No verdicts" in md
    csv = pd.read_csv(tmp_path / "out" / "table2s.csv").set_index("experiment")
    against = csv["error_vs_baseline"]
    assert against["table2s/wrn16_c10_dropout"] == pytest.approx(0.0)
    assert against["table2s/wrn16_c10_l0_001"] == pytest.approx(1.25)  # more errors: positive
    assert against["table2s/wrn16_c10_l0_001_pe"] == pytest.approx(-0.5)
    assert "| +1.25 " in md and "| -0.50 " in md
    index = (tmp_path / "out" / "README.md").read_text()
    assert "without verdicts (no paper row at this scale), each read against " \
           "`table2s/wrn16_c10_dropout`" in index
    assert pd.isna(pd.read_csv(tmp_path / "out" / "table1.csv")["error_vs_baseline"]).all()
    assert "table2s/" not in (tmp_path / "out" / "table2.md").read_text()
    assert (tmp_path / "out" / "figures" / "fig4_wrn_cpu.png").exists()
    assert not (tmp_path / "out" / "figures" / "fig4_wrn.png").exists()


def test_compact_benchmark_figures_reach_the_table_and_the_speedup_figure(tmp_path):
    import json

    runs = tmp_path / "runs"
    for seed, speed in ((0, 3.0), (1, 4.0)):
        d = fx.make_run(runs, f"table1/lenet5_l0_sep/seed{seed}",
                        fx.summary_for("table1/lenet5_l0_sep", seed, model="lenet5",
                                       lambdas=[10, 0.5, 0.1, 10], architecture=[9, 18, 65, 25]))
        (d / "speedup.json").write_text(json.dumps({
            "params_compact": 10_000 + seed, "flops_compact": 0.17 * 4_586_000,
            "throughput_speedup": speed, "flop_ratio": 5.9}))
    make_report(runs, tmp_path / "out")
    df = pd.read_csv(tmp_path / "out" / "table1.csv")
    row = df[(df["experiment"] == "table1/lenet5_l0_sep") & (df["source"] == "ours")].iloc[0]
    assert row["compact_params"] == pytest.approx(10_000.5)
    assert row["compact_flops_pct"] == pytest.approx(17.0) and row["cpu_speedup"] == pytest.approx(3.5)
    assert "| 3.50x " in (tmp_path / "out" / "table1.md").read_text()
    assert (tmp_path / "out" / "figures" / "compact_speedup.png").stat().st_size > 1000


def test_an_unreadable_speedup_file_is_named_and_left_out(tmp_path):
    runs = tmp_path / "runs"
    d = fx.make_run(runs, "table1/lenet5_l0_sep/seed0",
                    fx.summary_for("table1/lenet5_l0_sep", 0, model="lenet5",
                                   lambdas=[10, 0.5, 0.1, 10], architecture=[9, 18, 65, 25]))
    (d / "speedup.json").write_text('{"params_compact": 10')
    with pytest.warns(UserWarning, match="speedup.json: ignored"):
        make_report(runs, tmp_path / "out")
    df = pd.read_csv(tmp_path / "out" / "table1.csv")
    assert df[df["source"] == "ours"]["cpu_speedup"].isna().all()


def test_gate_gradients_over_training_are_drawn_for_table2s_l0_runs(tmp_path):
    runs = tmp_path / "runs"
    layers = ["group1.0.conv1", "group2.0.conv1"]
    for name, data_median in (("wrn16_c10_l0_c1", 1e-9), ("wrn16_c10_l0_c1_pe", 3e-4)):
        d = fx.make_run(runs, f"table2s/{name}/seed0",
                        fx.summary_for(f"table2s/{name}", 0, model="wrn-28-10", method="l0",
                                       lambdas=[1.0] * 12, epochs=30, architecture=[150] * 12,
                                       error_final=0.1))
        m = pd.read_csv(d / "metrics.csv")
        for layer in layers:
            m[f"gates/grad_data_median/{layer}"] = data_median
            m[f"gates/grad_data/{layer}"] = data_median * 10
            m[f"gates/grad_penalty/{layer}"] = 3e-5
        m.to_csv(d / "metrics.csv", index=False)
    make_report(runs, tmp_path / "out")
    assert (tmp_path / "out" / "figures" / "gate_grads_wrn_cpu.png").stat().st_size > 1000
    assert "gate_grads_wrn_cpu" in (tmp_path / "out" / "README.md").read_text()


def test_no_gate_gradient_figure_without_logged_gradients(tmp_path):
    runs = tmp_path / "runs"
    fx.make_run(runs, "table2s/wrn16_c10_l0_c1/seed0",
                fx.summary_for("table2s/wrn16_c10_l0_c1", 0, model="wrn-28-10", method="l0",
                               lambdas=[1.0] * 12, epochs=30, architecture=[150] * 12))
    make_report(runs, tmp_path / "out")
    assert not (tmp_path / "out" / "figures" / "gate_grads_wrn_cpu.png").exists()
