"""``data.validation``: a fixed held-out split of the training set for selection runs."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch

from l0repro.data import DataError, DeviceData
from l0repro.data.validation import hold_out, indices_checksum, validation_indices
from l0repro.record import read_run
from tests.conftest import REPO


def toy_data(n_train: int = 100) -> DeviceData:
    x = torch.arange(n_train, dtype=torch.uint8).view(n_train, 1, 1, 1).repeat(1, 1, 2, 2)
    return DeviceData("toy", x, torch.arange(n_train), x[:7].clone() + 200,
                      torch.full((7,), -1), num_classes=100)


def test_held_out_images_are_disjoint_from_training_and_leave_the_test_set_out():
    data = toy_data()
    split, record = hold_out(data, 30, seed=0)
    train_ids, val_ids = set(split.train_y.tolist()), set(split.test_y.tolist())
    assert len(train_ids) == 70 and len(val_ids) == 30 and not train_ids & val_ids
    assert train_ids | val_ids == set(range(100))
    assert (split.test_x[:, 0, 0, 0].long() == split.test_y).all()  # images travel with labels
    assert -1 not in val_ids  # the real test set is not in the selection run's data at all
    assert record.n == 30 and record.n_train_full == 100 and record.seed == 0
    assert record.indices_sha256 == indices_checksum(validation_indices(100, 30, 0))


def test_the_split_depends_on_its_seed_only():
    a = validation_indices(60000, 10000, 0)
    assert torch.equal(a, validation_indices(60000, 10000, 0))
    assert not torch.equal(a, validation_indices(60000, 10000, 1))
    torch.manual_seed(123)  # the global RNG (the run's seed) does not move it
    assert torch.equal(a, validation_indices(60000, 10000, 0))


@pytest.mark.parametrize("n", [0, -5, 100, 250, 1.5, True])
def test_impossible_sizes_are_refused_with_the_value(n):
    with pytest.raises(DataError, match="data.validation="):
        hold_out(toy_data(), n, seed=0)


def test_a_selection_run_reports_validation_error_and_never_evaluates_test(tmp_path, mnist_root):
    cmd = [sys.executable, "-m", "l0repro.train", "experiment=table1/mlp_l0", "trainer.max_steps=60",
           "trainer.log_every=20", "data.validation=10000", f"data.root={mnist_root}",
           f"hydra.run.dir={tmp_path}", "trainer.progress=false", "logger.wandb.mode=disabled"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "val error" in proc.stderr
    summary, metrics = read_run(tmp_path)
    assert summary["status"] == "complete" and summary["selection_run"] is True
    assert summary["test_error_final"] is None and summary["test_error_best"] is None
    assert 0 < summary["val_error_final"] < 0.9
    assert summary["validation"] == {
        "n": 10000, "seed": 0, "n_train_full": 60000,
        "indices_sha256": indices_checksum(validation_indices(60000, 10000, 0))}
    assert not [c for c in metrics.columns if c.startswith("test/")]
    epoch = metrics[metrics["kind"] == "epoch"].iloc[-1]
    assert epoch["val/error"] == summary["val_error_final"]
    # 50,000 images trained on: an epoch is 500 steps of 100
    assert metrics["epoch"].iloc[0] == pytest.approx(20 / 500)
    weights = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert all(v.dtype != torch.float64 for v in weights.values()) and "fc1.gate.log_alpha" in weights
    assert isinstance(pd.read_csv(tmp_path / "metrics.csv"), pd.DataFrame)
