"""Where the gates' gradient comes from (docs/paper.md 3b): ``l0repro.gate_grads`` and the
diagnose command."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from l0repro.data import load_dataset
from l0repro.diagnose import main as diagnose_main
from l0repro.diagnose import measure_gates
from l0repro.gate_grads import GateGradLog
from l0repro.l0.layers import gated_layers
from l0repro.models import WideResNet
from l0repro.record import read_run
from tests.conftest import compose_train
from tests.test_train import train

# the paper's Table 2 penalty (lambda = 0.001/N, N = 50000, wd 5e-4) on a fresh WRN-10-1
WRN10 = ["experiment=table2/wrn_c10_l0_001", "model.depth=10", "model.widen_factor=1"]


@pytest.fixture(scope="module")
def wrn10_gate_grads(cifar10_root):
    """Fresh WRN-10-1, two real CIFAR-10 training batches of 128, shared and per-example gates."""
    data = load_dataset("cifar10", cifar10_root, torch.device("cpu"), download=False)
    out = {}
    for per_example in (False, True):
        cfg = compose_train([*WRN10, f"data.root={cifar10_root}", f"model.per_example={per_example}",
                             "trainer.device=cpu", "trainer.bf16=false"])
        assert (cfg.model.lambdas, cfg.trainer.weight_decay, cfg.trainer.batch_size) == (0.001, 5e-4, 128)
        out[per_example], _ = measure_gates(cfg, batches=2, data=data)
    return out


def test_shared_gate_samples_before_batch_norm_learn_from_the_penalty(wrn10_gate_grads):
    # bn2 divides a shared sample's scale of a whole map back out: for the typical draw the data
    # gradient is ~1e-8 against the penalty's ~3e-5, in every layer. Only draws with z near 0
    # (where bn's eps stops the cancellation, a few per cent) carry a large one, so the *mean*
    # |dCE| is tail-driven and of either order; the median and the share are the robust facts.
    rows = wrn10_gate_grads[False]
    assert [r.layer for r in rows] == ["group1.0.conv1", "group2.0.conv1", "group3.0.conv1"]
    for r in rows:
        assert r.penalty_mean > 0 and r.data_median < 0.01 * r.penalty_mean, r
        assert r.share_above < 0.2, r


def test_per_example_gate_samples_get_a_data_gradient(wrn10_gate_grads):
    # one sample per example: batch norm cannot cancel it (measured ~5e-4, 10-20x the penalty's)
    for shared, pe in zip(wrn10_gate_grads[False], wrn10_gate_grads[True], strict=True):
        assert pe.data_median > 3 * pe.penalty_mean, pe
        assert pe.share_above > 0.8, pe
        assert pe.data_median > 1000 * shared.data_median, (shared, pe)
        torch.testing.assert_close(pe.penalty, shared.penalty)  # same init: the same penalty


def test_diagnose_command_prints_one_row_per_gated_layer(capsys, mnist_root):
    rc = diagnose_main(["gates", "experiment=table1/lenet5_l0", f"data.root={mnist_root}",
                        "--batches", "1", "--batch-size", "32"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "sampling: shared (one gate sample per minibatch)" in out
    for layer in ("conv1", "conv2", "fc1", "fc2"):
        assert any(line.startswith(layer + " ") for line in out.splitlines()), out
    assert "all gates" in out


def test_diagnose_command_rejects_a_dense_model(capsys, mnist_root):
    rc = diagnose_main(["gates", "experiment=table1/mlp_dense", f"data.root={mnist_root}",
                        "--batches", "1"])
    assert rc == 2 and "no gated layers" in capsys.readouterr().err


def test_gate_grad_log_leaves_training_state_alone():
    torch.manual_seed(0)
    model = WideResNet(10, 1, method="l0").train()
    log = GateGradLog(model, 50000, 5e-4)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    row = log.row(x, y)
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in model.state_dict().items():
        assert torch.equal(v, buffers[k]), k
    assert all(p.grad is None for p in model.parameters())
    names = [name for name, _ in gated_layers(model)]
    assert sorted(row) == sorted(f"gates/{what}/{n}" for n in names
                                 for what in ("grad_data", "grad_data_median", "grad_penalty"))
    assert all(v > 0 for v in row.values())


def test_logging_gate_grads_does_not_change_the_run(tmp_path, mnist_root):
    common = ["experiment=table1/mlp_l0", "trainer.max_steps=4", "trainer.log_every=2",
              "trainer.eval_batch_size=10000", "logger.wandb.mode=disabled",
              f"data.root={mnist_root}"]
    train(tmp_path / "off", *common)
    train(tmp_path / "on", *common, "trainer.log_gate_grads=true")
    (s_off, m_off), (s_on, m_on) = read_run(tmp_path / "off"), read_run(tmp_path / "on")
    grad_cols = [c for c in m_on.columns if c.startswith("gates/")]
    assert len(grad_cols) == 9 and not any(c.startswith("gates/") for c in m_off.columns)
    interval = m_on[m_on["kind"] == "interval"]
    means = [c for c in grad_cols if "median" not in c]
    assert len(interval) == 1 and (interval[means] > 0).all(axis=None)
    assert interval[grad_cols].notna().all(axis=None)
    for col in ("train/loss", "train/ce", "flops/expected", "test/error"):
        assert m_on[col].equals(m_off[col]), col
    assert s_on["test_error_final"] == s_off["test_error_final"]
    assert OmegaConf.load(tmp_path / "on" / "config.yaml").trainer.log_gate_grads is True
