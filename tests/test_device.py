"""Checks that hold on any device, run on the one ``pytest --device`` names (default cpu).

On a GPU: the fused gate bank against per-layer sampling from the same noise (their noise
streams differ there), a short real training run, and the CUDA-graph step against eager.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from l0repro.l0 import gates
from l0repro.l0.gate_bank import GateBank
from l0repro.l0.layers import L0Conv2d, L0Linear, gated_layers
from l0repro.l0.regularizer import L0Penalty
from l0repro.models import MLP, LeNet5
from l0repro.train import Trainer, run
from tests.conftest import compose_train

N_TRAIN = 1000


def small_conv_net() -> nn.Module:
    return nn.Sequential(L0Conv2d(1, 3, 3, lam=0.5), nn.Flatten(), L0Linear(3 * 26 * 26, 5, lam=2.0),
                         nn.ReLU(), L0Linear(5, 10, lam=0.1))


@pytest.mark.parametrize("build", [MLP, LeNet5, small_conv_net], ids=["mlp", "lenet5", "conv"])
def test_bank_equals_per_layer_sampling_from_the_same_noise(build, test_device, monkeypatch):
    torch.manual_seed(0)
    model = build().to(test_device).train()
    x = torch.randn(16, 1, 28, 28, device=test_device)
    bank = GateBank(model, N_TRAIN)
    assert bank.layers == [m for _, m in gated_layers(model)]
    u = torch.empty(sum(bank.sizes), device=test_device).uniform_(gates.EPS, 1 - gates.EPS)

    def step(penalty: torch.Tensor, model: nn.Module) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = model(x)
        model.zero_grad(set_to_none=True)
        (out.square().mean() + penalty).backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    fused_penalty = bank.draw(noise=u)
    fused_out, fused_grads = step(fused_penalty, model)

    slices = list(u.split(bank.sizes))  # per layer, in forward order, each from its own slice

    def sample_from_slices(log_alpha, shape=None):
        return gates._HardConcreteSample.apply(log_alpha, slices.pop(0))

    monkeypatch.setattr(gates, "sample_gate", sample_from_slices)
    penalty = L0Penalty(model, N_TRAIN, 0.0)()
    out, grads = step(penalty, model)
    assert not slices  # every layer drew exactly its own slice
    tol = {"rtol": 1e-4, "atol": 1e-5}  # cuDNN's backward may sum in another order
    torch.testing.assert_close(out, fused_out, **tol)
    torch.testing.assert_close(penalty.detach(), fused_penalty.detach(), **tol)
    for (name, _), got, want in zip(model.named_parameters(), fused_grads, grads, strict=True):
        torch.testing.assert_close(got, want, **tol, msg=name)


def test_a_short_training_run_learns_on_the_device(tmp_path, test_device, mnist_root):
    if test_device.type == "cpu":
        pytest.skip("tests/test_train.py runs this on the CPU")
    cfg = compose_train(["experiment=table1/mlp_l0", f"data.root={mnist_root}",
                         f"trainer.device={test_device}", "trainer.max_steps=600",
                         "trainer.checkpoint=false", "logger.wandb.mode=disabled",
                         "trainer.progress=false"])
    summary = run(cfg, tmp_path / "run")
    assert summary["status"] == "complete" and summary["steps"] == 600
    assert summary["test_error_final"] < 0.10, summary["test_error_final"]
    assert 0 < summary["expected_flops_final"] < summary["flops_dense"]
    if test_device.type == "cuda":
        assert summary["device"] == torch.cuda.get_device_name(test_device)


def graph_trainer(tmp_path, mnist_root, device, graph: bool) -> Trainer:
    # 7000 images a batch: 8 full batches and a partial one of 4000 per epoch; the learning
    # rate changes after the first epoch, so the graph is captured twice; float32 throughout
    cfg = compose_train(["experiment=table1/mlp_l0", f"data.root={mnist_root}",
                         f"trainer.device={device}", f"trainer.cuda_graph={str(graph).lower()}",
                         "trainer.bf16=false", "trainer.batch_size=7000", "trainer.epochs=2",
                         "trainer.checkpoint=false", "scheduler=multistep", "scheduler.milestones=[1]",
                         "logger.wandb.mode=disabled", "trainer.progress=false"])
    (tmp_path / str(graph)).mkdir()
    return Trainer(cfg, tmp_path / str(graph))


def test_cuda_graph_step_trains_as_eager_does(tmp_path, test_device, mnist_root):
    if test_device.type != "cuda":
        pytest.skip("needs --device cuda (tests/test_graph_step.py checks the CPU side)")
    eager = graph_trainer(tmp_path, mnist_root, test_device, graph=False)
    eager.fit()
    graphed = graph_trainer(tmp_path, mnist_root, test_device, graph=True)
    graphed.fit()
    step = graphed.step_fn
    assert (step.eager_steps, step.captures) == (3 + 2, 2)
    assert graphed.state.step == eager.state.step == 18
    tol = {"rtol": 1e-3, "atol": 1e-4}  # cuBLAS may pick other kernels under capture
    for (key, a), b in zip(eager.model.state_dict().items(), graphed.model.state_dict().values(),
                           strict=True):
        torch.testing.assert_close(b, a, **tol, msg=key)
    for (key, a), b in zip(eager.ema.state_dict().items(), graphed.ema.state_dict().values(),
                           strict=True):
        torch.testing.assert_close(b.to(a.device), a, **tol, msg=key)
    for a, b in zip(eager.state.rows, graphed.state.rows, strict=True):
        assert b["train/loss"] == pytest.approx(a["train/loss"], rel=1e-3)
        assert abs(b["test/error"] - a["test/error"]) <= 0.002  # 20 of 10,000 test images
    assert int(graphed.bad_step) == -1 and int(graphed.step_t) == 18
