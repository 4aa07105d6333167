"""Training to a size: the FLOPs constraint's gradient, its multiplier, the refusals, a short
run that moves towards its target, and an exact resume of the multiplier."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from torch import nn

from l0repro import Budget, L0Linear
from l0repro.checkpoint import load_checkpoint
from l0repro.config_check import ConfigError, check_config
from l0repro.l0 import gates
from l0repro.models import MLP, WideResNet
from tests.conftest import REPO, compose_train, data_root
from tests.test_train import train


def two_gates(la: tuple[float, float]) -> nn.Module:
    model = nn.Sequential(L0Linear(2, 1, lam=0.0))
    with torch.no_grad():
        model[0].gate.log_alpha.copy_(torch.tensor(la))
    return model


def test_the_constraint_gradient_by_hand_for_two_gates():
    """One linear layer 2 -> 1: E[FLOPs] = 2 * (p1 + p2) * 1 of a dense 4, so g = (p1 + p2) / 2 and
    d(multiplier * (g - t)) / d log_alpha_i = multiplier * p_i (1 - p_i) / 2 > 0: descent closes."""
    model = two_gates((0.5, -1.0))
    budget = Budget(model, 0.3, example_input=torch.zeros(1, 2))
    budget.multiplier.fill_(2.0)
    penalty = budget.penalty()
    la = model[0].gate.log_alpha
    p = gates.prob_nonzero(la.detach()).double()
    assert float(budget.value) == pytest.approx(float(p.sum() / 2), rel=1e-12)
    assert penalty.dtype == la.dtype  # the loss keeps the gates' dtype; the sums run in float64
    assert float(penalty.detach()) == pytest.approx(2.0 * (float(p.sum() / 2) - 0.3), rel=1e-6)
    penalty.backward()
    want = 2.0 * p * (1 - p) / 2
    torch.testing.assert_close(la.grad.double(), want, rtol=1e-6, atol=0)
    assert bool((la.grad > 0).all())


def test_the_multiplier_rises_while_violated_and_restarts_at_zero_when_met():
    model = two_gates((2.0, 2.0))  # g ~ 0.97 against a target of 0.5
    budget = Budget(model, 0.5, dual_lr=0.1, example_input=torch.zeros(1, 2))
    seen = []
    for _ in range(3):
        budget.penalty()
        budget.dual_step()
        seen.append(float(budget.multiplier))
    violation = float(budget.value) - 0.5
    assert seen == pytest.approx([0.1 * violation * k for k in (1, 2, 3)], rel=1e-9)
    with torch.no_grad():
        model[0].gate.log_alpha.fill_(-3.0)  # now well below the target
    budget.penalty()
    budget.dual_step()
    assert float(budget.multiplier) == 0.0 and budget.met()


def test_budget_refusals_name_the_value():
    with pytest.raises(ValueError, match=r"below what the gates can reach.*0\.0265"):
        Budget(WideResNet(16, 1), 0.01)  # stem, shortcuts and classifier: 2.65 % of the dense FLOPs
    with pytest.raises(ValueError, match=r"\(0, 1\], got 1\.5"):
        Budget(MLP(), 1.5)
    with pytest.raises(ValueError, match="no L0 gates"):
        Budget(MLP(method="dense"), 0.5)


@pytest.mark.parametrize("overrides,match", [
    (["experiment=table1/mlp_l0", "trainer.target_flops=0"],
     r"trainer\.target_flops must be a fraction in \(0, 1\]"),
    (["experiment=table1/mlp_l0", "trainer.target_flops=1.2"], r"got 1\.2"),
    (["experiment=table1/mlp_dense", "trainer.target_flops=0.5"], r"model\.method='dense' has none"),
    (["experiment=table2s/wrn16_c10_dropout", "trainer.target_l0=0.5"], r"model\.method='dropout'"),
    (["experiment=table1/mlp_l0", "trainer.target_flops=0.5", "trainer.target_l0=0.5"], "not both"),
])
def test_bad_targets_are_config_errors_at_start(overrides, match):
    with pytest.raises(ConfigError, match=match):
        check_config(compose_train(overrides))


def test_a_target_below_the_floor_stops_the_run_naming_the_floor(tmp_path, cifar10_root):
    proc = train(tmp_path / "run", "experiment=budget/wrn16_c10_flops50", "trainer.target_flops=0.01",
                 f"data.root={cifar10_root}", "logger.wandb.mode=disabled", check=False)
    assert proc.returncode == 2
    assert "trainer.target_flops" in proc.stderr and "0.0265" in proc.stderr


SHORT = ["experiment=table1/mlp_l0", "model.lambdas=0", "trainer.target_flops=0.3",
         "trainer.epochs=2", "trainer.batch_size=500", "trainer.log_every=20",
         "trainer.dual_lr=0.05", "optim.lr=0.01", "logger.wandb.mode=disabled", "seed=5"]


def test_a_short_run_moves_towards_its_target_and_records_the_constraint(tmp_path, mnist_root):
    run_dir = tmp_path / "run"
    train(run_dir, *SHORT)
    rows = pd.read_csv(run_dir / "metrics.csv")
    g, mult = rows["constraint/flops"], rows["constraint/multiplier"]
    assert (rows["constraint/violation"] - (g - 0.3)).abs().max() < 1e-12
    assert g.iloc[-1] < g.iloc[0] - 0.05  # the expected FLOPs fall towards 0.3
    violated = g.iloc[:-1].to_numpy() > 0.3
    rising = mult.diff().iloc[1:].to_numpy() > 0
    assert violated.any() and bool(rising[violated].all())  # the multiplier rises while violated
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["target_flops"] == 0.3 and summary["target_l0"] is None
    final = summary["expected_flops_final"] / summary["flops_dense"]
    assert summary["constraint_final"] == pytest.approx(final)
    assert summary["constraint_met"] == (summary["constraint_final"] <= 0.3 * 1.05)


def test_a_stopped_budget_run_resumes_to_the_same_multiplier_and_metrics(tmp_path, mnist_root):
    reference = tmp_path / "reference"
    train(reference, *SHORT)
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "l0repro.train", f"hydra.run.dir={run_dir}",
           f"data.root={data_root()}", "trainer.progress=false", *SHORT]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (run_dir / "summary.json").exists():  # the first checkpoint: now in epoch 2
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert float(load_checkpoint(run_dir)["budget"]["multiplier"]) > 0
    train(run_dir, *SHORT)
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "metrics.csv"),
                                  pd.read_csv(reference / "metrics.csv"))
    a, b = (json.loads((d / "summary.json").read_text()) for d in (run_dir, reference))
    for key in ("constraint_final", "constraint_met", "expected_flops_final", "test_error_final",
                "architecture"):
        assert a[key] == b[key]


def test_summary_and_metrics_without_a_budget_say_so(tmp_path, mnist_root):
    run_dir = tmp_path / "run"
    train(run_dir, "experiment=table1/mlp_l0", "trainer.max_steps=20", "logger.wandb.mode=disabled")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["target_flops"] is None and summary["constraint_met"] is None
    assert not any(c.startswith("constraint/") for c in pd.read_csv(run_dir / "metrics.csv").columns)
    # provenance and the best epoch's network (issue: the best error with the network it came from)
    assert isinstance(summary["git_dirty"], bool)
    assert summary["best_architecture"] == [int(x) for x in summary["architecture"]]
    assert summary["best_flops_pruned"] == summary["flops_pruned"]


def test_the_dual_lr_probe_is_the_wrn_budget_run_on_validation_cut_at_the_first_lr_drop():
    from omegaconf import OmegaConf

    probe = OmegaConf.to_container(compose_train(["experiment=probes/wrn16_c10_flops70_dual"]), resolve=True)
    run = OmegaConf.to_container(compose_train(["experiment=budget/wrn16_c10_flops70"]), resolve=True)
    assert (probe.pop("name"), probe.pop("seed")) == ("probes/wrn16_c10_flops70_dual", 100)
    run.pop("name"), run.pop("seed")
    assert probe["data"].pop("validation") == 10000 and run["data"].pop("validation") == 0
    steps = -(-40000 // run["trainer"]["batch_size"]) * run["scheduler"]["milestones"][0]
    assert probe["trainer"].pop("max_steps") == steps and run["trainer"].pop("max_steps") is None
    assert probe == run
