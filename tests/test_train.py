"""End-to-end runs of ``python -m l0repro.train`` on the real MNIST copy."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from l0repro.l0 import flops
from l0repro.models.build import build_model
from l0repro.record import SUMMARY_KEYS, read_run
from tests.conftest import CONF_DIR, REPO, compose_train, data_root
from tests.wandb_offline import config as wandb_config
from tests.wandb_offline import history as wandb_history
from tests.wandb_offline import summary as wandb_summary

EXPERIMENTS = sorted(str(p.relative_to(CONF_DIR / "experiment").with_suffix(""))
                     for p in (CONF_DIR / "experiment").rglob("*.yaml"))


def train(run_dir: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "l0repro.train", f"hydra.run.dir={run_dir}",
           f"data.root={data_root()}", "trainer.progress=false", *overrides]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_instantiates(experiment):
    overrides = [f"experiment={experiment}"]
    if experiment.startswith("table2/"):  # a tiny WRN keeps this fast
        overrides += ["model.depth=10", "model.widen_factor=1"]
    cfg = compose_train(overrides)
    assert cfg.name.startswith(experiment.split("/")[0] + "/")
    model = build_model(cfg.model)
    assert flops.dense_flops(model) > 0
    opt = instantiate(cfg.optim)(model.parameters())
    instantiate(cfg.scheduler)(opt)
    OmegaConf.to_container(cfg, resolve=True)


def test_experiment_names_are_unique():
    names = [compose_train([f"experiment={e}"]).name for e in EXPERIMENTS if "sweep" not in e]
    assert len(names) == len(set(names))


@pytest.fixture(scope="module")
def mlp_smoke(tmp_path_factory, mnist_root) -> Path:
    """A real few-hundred-step L0 MLP run, logged to an offline wandb run."""
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    train(run_dir, "experiment=table1/mlp_l0", "trainer.max_steps=600", "trainer.log_every=100",
          "trainer.ema_decay=0.99", "logger.wandb.mode=offline")
    return run_dir


def test_smoke_run_learns_and_writes_a_complete_record(mlp_smoke):
    summary, metrics = read_run(mlp_smoke)
    assert set(SUMMARY_KEYS) <= set(summary)
    assert summary["status"] == "complete"
    assert summary["test_error_final"] < 0.10, summary["test_error_final"]
    assert summary["experiment"] == "table1/mlp_l0" and summary["model"] == "mlp"
    assert summary["lambdas"] == [0.1, 0.1, 0.1]
    assert summary["full_architecture"] == [784, 300, 100]
    assert summary["flops_dense"] == 532400
    assert 0 < summary["expected_flops_final"] < summary["flops_dense"]
    assert summary["params_dense"] == 266610
    assert summary["steps"] == 600 and summary["epochs_completed"] == 1
    epoch_rows = metrics[metrics["kind"] == "epoch"]
    assert len(epoch_rows) == 1 and len(metrics[metrics["kind"] == "interval"]) == 5
    assert metrics["step"].tolist() == [100, 200, 300, 400, 500, 600]
    last = epoch_rows.iloc[-1]
    assert last["test/error"] == summary["test_error_final"]
    assert [last[f"kept/{n}"] for n in ("fc1", "fc2", "fc3")] == summary["architecture"]
    assert metrics["flops/expected"].notna().all() and metrics["train/loss"].notna().all()
    cfg = OmegaConf.load(mlp_smoke / "config.yaml")
    assert cfg.model.lambdas == [0.1, 0.1, 0.1] and cfg.trainer.max_steps == 600


def test_wandb_offline_run_holds_the_same_curves(mlp_smoke):
    files = glob.glob(str(mlp_smoke / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(files) == 1
    rows = wandb_history(files[0])
    local = pd.read_csv(mlp_smoke / "metrics.csv")
    logged = {r["step"]: r for r in rows}
    assert sorted(logged) == local["step"].tolist()
    for _, row in local.iterrows():
        for key in ("train/loss", "flops/expected", "l0/expected"):
            assert logged[row["step"]][key] == pytest.approx(row[key])
    assert logged[600]["test/error"] == pytest.approx(local["test/error"].dropna().iloc[-1])
    cfg = wandb_config(files[0])
    assert cfg["model"]["lambdas"] == [0.1, 0.1, 0.1] and cfg["name"] == "table1/mlp_l0"
    summary = json.loads((mlp_smoke / "summary.json").read_text())
    assert wandb_summary(files[0])["test_error_final"] == pytest.approx(summary["test_error_final"])
    assert summary["wandb_run_id"] and summary["wandb_run_id"] in files[0]


def test_lenet_and_dense_runs_write_their_architecture(tmp_path, mnist_root):
    train(tmp_path / "lenet", "experiment=table1/lenet5_l0_sep", "trainer.max_steps=20",
          "trainer.batch_size=50", "logger.wandb.mode=disabled")
    summary, metrics = read_run(tmp_path / "lenet")
    assert summary["layer_names"] == ["conv1", "conv2", "fc1", "fc2"]
    assert summary["full_architecture"] == [20, 50, 800, 500]
    assert summary["lambdas"] == [20.0, 0.5, 0.1, 7.5] and summary["flops_dense"] == 4586000
    train(tmp_path / "dense", "experiment=table1/mlp_dense", "trainer.max_steps=20",
          "logger.wandb.mode=disabled")
    summary, _ = read_run(tmp_path / "dense")
    assert summary["method"] == "dense" and summary["lambdas"] == []
    assert summary["expected_flops_final"] == summary["flops_dense"] == 532400
    assert summary["architecture"] == [784, 300, 100]
