"""Tiny WRNs through the real training entry point, on CIFAR-10 and synthetic CIFAR-100."""

from __future__ import annotations

import pytest

from l0repro.data.cifar_synthetic import write_cifar_binary
from l0repro.record import read_run
from tests.test_train import train

TINY = ["model.depth=10", "model.widen_factor=1", "trainer.max_steps=3", "trainer.batch_size=32",
        "trainer.eval_batch_size=500", "logger.wandb.mode=disabled"]


def test_tiny_l0_wrn_trains_on_the_real_cifar10_copy(tmp_path, cifar10_root):
    train(tmp_path / "run", "experiment=table2/wrn_c10_l0_001", *TINY, f"data.root={cifar10_root}")
    summary, metrics = read_run(tmp_path / "run")
    assert summary["status"] == "complete" and summary["dataset"] == "cifar10"
    assert summary["model"] == "wrn-10-1" and summary["steps"] == 3
    assert len(summary["architecture"]) == len(summary["layer_names"]) == 3  # one per gated conv
    assert summary["full_architecture"] == [16, 32, 64]
    assert 0 < summary["expected_flops_final"] < summary["flops_dense"]
    assert 0.0 <= summary["test_error_final"] <= 1.0
    assert metrics["kind"].tolist() == ["epoch"]


@pytest.mark.parametrize("experiment, method", [("table2/wrn_c100_l0_002", "l0"),
                                                ("table2/wrn_c100_dropout", "dropout")])
def test_tiny_wrn_trains_on_synthetic_cifar100_files(tmp_path, experiment, method):
    root = tmp_path / "data"
    write_cifar_binary(root, "cifar100", n_train=96, n_test=40)
    train(tmp_path / "run", f"experiment={experiment}", *TINY, f"data.root={root}",
          "data.options.verify=size", "data.download=false")
    summary, _ = read_run(tmp_path / "run")
    assert summary["status"] == "complete" and summary["dataset"] == "cifar100"
    assert summary["method"] == method
