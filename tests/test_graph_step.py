"""trainer.cuda_graph on a CPU: refused by name; its pieces checked without a GPU.

The capture itself needs CUDA (tests/test_device.py checks it under ``pytest --device cuda``).
Here ``StandInGraph`` replaces the four CUDA calls of ``GraphedStep`` with what a graph does
(capture records and runs nothing; a replay runs the recorded step on the static inputs and
leaves its results in the static outputs), so the rest is checked against eager training:
static buffers, warm-up, partial batches, re-capture on a new learning rate, the EMA's
device-side count.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from l0repro.config_check import ConfigError
from l0repro.data import DeviceData
from l0repro.ema import EMA
from l0repro.graph_step import WARMUP_STEPS, GraphedStep, check_supported
from l0repro.train import Trainer, run
from tests.conftest import compose_train


class StandInGraph(GraphedStep):
    """``GraphedStep`` with a CPU in place of CUDA: the same decisions and buffers."""

    def _prepare(self) -> None:
        if self.ema is not None:
            self.ema.count_on_device()

    def _on_side_stream(self, x, y):
        return self.step(x, y)

    def _capture(self, x, y) -> None:
        self.static_in = (x.clone(), y.clone())
        self.static_out = None
        self.graph = "captured"

    def _replay(self) -> None:
        out = self.step(*self.static_in)
        if self.static_out is None:
            self.static_out = tuple(t.clone() for t in out)
        for static, t in zip(self.static_out, out, strict=True):
            static.copy_(t)


# --- refusal -------------------------------------------------------------------------------


def test_cuda_graph_is_refused_off_cuda_with_the_option_named():
    with pytest.raises(ConfigError, match=r"trainer\.cuda_graph=true needs a CUDA device.*cpu"):
        check_supported(torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"trainer\.compile"):
        check_supported(torch.device("cuda"), compiled=True)
    with pytest.raises(ConfigError, match=r"one process only, got 2"):
        check_supported(torch.device("cuda"), world_size=2)
    check_supported(torch.device("cuda:0"))  # nothing to refuse


def small_mnist_like(n_train: int = 2100, n_test: int = 200) -> DeviceData:
    """Random MNIST-shaped data: fast, and enough to compare two ways of training."""
    g = torch.Generator().manual_seed(0)
    return DeviceData("mnist", train_x=torch.randint(0, 256, (n_train, 1, 28, 28), dtype=torch.uint8,
                                                     generator=g),
                      train_y=torch.randint(0, 10, (n_train,), generator=g),
                      test_x=torch.randint(0, 256, (n_test, 1, 28, 28), dtype=torch.uint8, generator=g),
                      test_y=torch.randint(0, 10, (n_test,), generator=g), num_classes=10)


@pytest.fixture
def small_data(monkeypatch):
    monkeypatch.setattr("l0repro.train.load_dataset", lambda *args, **kwargs: small_mnist_like())


def test_a_cpu_run_with_cuda_graph_stops_before_training(tmp_path, small_data):
    cfg = compose_train(["experiment=table1/mlp_l0", "trainer.device=cpu", "trainer.cuda_graph=true",
                         "logger.wandb.mode=disabled", "trainer.progress=false"])
    with pytest.raises(ConfigError, match=r"trainer\.cuda_graph=true needs a CUDA device"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.csv").exists()


# --- the EMA's count on the device ----------------------------------------------------------


def bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))


def nudge(model: nn.Module, x: torch.Tensor) -> None:
    """Move every parameter and the BatchNorm statistics (float and integer buffers)."""
    model.train()(x)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))


@pytest.mark.parametrize("switch_after", [0, 2])
def test_ema_with_its_count_on_the_device_equals_the_host_count_exactly(switch_after):
    model = bn_model()
    host, dev = EMA(model, 0.9), EMA(model, 0.9)
    torch.manual_seed(1)
    for k in range(7):
        if k == switch_after:
            dev.count_on_device()
        nudge(model, torch.randn(8, 6))
        host.update_parameters(model)
        dev.update_parameters(model)
        for (name, a), b in zip(host.state_dict().items(), dev.state_dict().values(), strict=True):
            assert torch.equal(a, b), (k, name)
    assert int(dev.n_averaged) == 7
    # the EMA moved away from the model: the updates were averages, not copies
    assert not torch.equal(dev.module[0].weight, model[0].weight)


def test_a_device_count_ema_checkpoint_resumes_with_the_host_count():
    model = bn_model()
    dev, host = EMA(model, 0.99), EMA(model, 0.99)
    dev.count_on_device()
    torch.manual_seed(2)
    for _ in range(3):
        nudge(model, torch.randn(8, 6))
        dev.update_parameters(model)
        host.update_parameters(model)
    resumed = EMA(model, 0.99)
    resumed.load_state_dict(copy.deepcopy(dev.state_dict()))
    assert resumed._updates == 3
    nudge(model, torch.randn(8, 6))
    resumed.update_parameters(model)
    host.update_parameters(model)
    for a, b in zip(host.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


# --- the step's plumbing, with a CPU standing in for the graph ------------------------------


def small_trainer(tmp_path, name: str) -> Trainer:
    # 2100 images in batches of 250: 8 full batches and a partial one of 100 per epoch; the
    # learning rate changes after the first epoch, so the graph is captured twice
    cfg = compose_train(["experiment=table1/mlp_l0", "trainer.device=cpu",
                         "trainer.batch_size=250", "trainer.epochs=2", "trainer.checkpoint=false",
                         "scheduler=multistep", "scheduler.milestones=[1]",
                         "logger.wandb.mode=disabled", "trainer.progress=false"])
    (tmp_path / name).mkdir()
    return Trainer(cfg, tmp_path / name)


def test_graph_step_trains_exactly_as_eager_with_partial_batches_and_a_new_lr(tmp_path, small_data):
    eager = small_trainer(tmp_path, "eager")
    eager_summary = eager.fit()
    graphed = small_trainer(tmp_path, "graph")
    step = StandInGraph(graphed.train_step, graphed.optimizer, graphed.ema, batch_size=250)
    graphed.step_fn = step
    graph_summary = graphed.fit()

    assert graphed.state.step == eager.state.step == 18
    assert step.eager_steps == WARMUP_STEPS + 2  # the warm-up and each epoch's partial batch
    assert step.captures == 2  # the first full batch after the warm-up, and after the lr changed
    assert graphed.optimizer.param_groups[0]["lr"] != eager.cfg.optim.lr  # it did change
    for (key, a), b in zip(eager.model.state_dict().items(), graphed.model.state_dict().values(),
                           strict=True):
        assert torch.equal(a, b), key
    for (key, a), b in zip(eager.ema.state_dict().items(), graphed.ema.state_dict().values(),
                           strict=True):
        assert torch.equal(a.cpu(), b.cpu()), key
    for a, b in zip(eager.state.rows, graphed.state.rows, strict=True):
        assert a["train/loss"] == b["train/loss"] and a["test/error"] == b["test/error"]
    assert eager_summary["test_error_final"] == graph_summary["test_error_final"]
