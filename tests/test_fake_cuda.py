"""Every device-side piece of a training step, run on a fake CUDA device (no GPU needed).

Inside torch's ``FakeTensorMode`` a tensor has a device, a shape and a dtype but no data, and
an op refuses to mix a CUDA tensor with a CPU one (``FakeTensorDeviceMismatchError``), as a GPU
does. A tensor made on the CPU in the step's path (a factory call without ``device=``) is the
commonest bug of code that never met a GPU, and these tests catch it on this CPU-only torch.

The models are built under ``torch.device("cuda")``; everything else runs outside it, so a
factory call without ``device=`` makes a CPU tensor here exactly as it would on a GPU (under
that default device it would silently land on CUDA and hide the bug).

What runs on the fake device, for the suite's MLP, LeNet-5 and WRN-10-1 (shared and
per-example gates, each with its experiment's config: optimiser, EMA, FLOPs budget) and for a
small user model through the public API (``L0Regularizer`` fused and per-layer, ``Budget`` of
both kinds, ``expected_flops``, the ``compact`` network):

- the data: ``DeviceData`` training batches (gather, [0, 1] scaling, crop + flip augmentation,
  normalisation, channels-last, a rank's rows), evaluation batches, and ``load_cifar``'s move of
  the images to the device;
- ``Trainer.train_step`` itself: the penalty (``GateBank``'s fused draw, or per-example sampling),
  the ``Budget`` penalty (expected FLOPs traced with torch.fx), the forward under bf16 autocast,
  the optimiser (fused Adam, SGD with Nesterov momentum), the log_alpha clamp, the dual step,
  the EMA update, the step counter and the divergence marker;
- the written-out backwards of the gates (the fused bank's and the per-example sample's);
- ``Trainer.evaluate``'s whole device loop (eval forward with the EMA weights under autocast);
- expected FLOPs and parameters, and the FLOPs of the pruned and dense networks as tensors;
- ``GraphedStep._prepare`` (capturable optimiser, the EMA's count on the device) and the eager
  warm-up step it prepares.

What it cannot fake, and why:

- the backward: the autograd engine asks for a CUDA context ("hasPrimaryContext expects a valid
  device index"), so ``Tensor.backward`` is replaced by a stand-in that sets every parameter's
  gradient by hand (``HandBackward``); the gates' own backward code is called directly;
- bf16 autocast: ``torch.autocast("cuda")`` switches itself off when
  ``torch.cuda.is_available()`` is False, so the two availability checks it makes are stood in
  for (``cuda_autocast``); the autocast dispatch itself then runs on the fake tensors;
- every host read (``float``, ``bool``, ``.item()``, ``.numpy()``): a fake tensor has no value
  (``DataDependentOutputException``). So ``pruned_flops`` and ``dense_flops`` (floats) are tested
  as the tensors they read; ``Budget``'s constructor reads the dense and all-closed FLOPs once, so
  those two numbers come from a CPU twin of the model (``host_flops_from``); ``Trainer.evaluate``
  and the metrics rows end in host reads; nothing checks values (the clamp's range, the EMA's
  average): those are what tests/test_train.py and tests/test_device.py check on real tensors;
  ``compact`` decides which channels to cut from the gate values and checks its outputs with
  ``float``: it runs on the device up to its first host read, and the network it makes runs on
  the device;
- the validation split: ``hold_out`` selects with a boolean mask, whose output size depends on
  the data (``DynamicOutputShapeException``);
- ``torch.Generator(device="cuda")`` and ``torch.cuda.Stream`` need the CUDA driver: batches
  are drawn from the default generator, ``_prepare``'s side stream is a stand-in; CUDA-graph
  capture and replay cannot run at all;
- ``Module.to`` on a fake module (swapping a parameter the fake mode holds a weak reference to
  fails), hence models built on the device and contiguous parameters (channels-last inputs);
- ``copy.deepcopy`` of fake tensors makes a second fake mode, which cannot mix with the first:
  the EMA's copy and ``compact``'s are made under ``FakeCopyMode`` (the same mode);
- ``Trainer``'s constructor (reads the dataset files, makes a CUDA generator, reads the dense
  FLOPs): ``fake_trainer`` assembles one from the same parts;
- ``trainer.compile`` and DDP (a compiler backend, a process group): not covered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import torch
import torch.cuda.amp.common as amp_common
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeCopyMode,
    FakeTensor,
    FakeTensorMode,
    unset_fake_temporarily,
)
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from l0repro import Budget, L0Conv2d, L0Linear, L0Regularizer, compact, expected_flops, pruned_flops
from l0repro.data import DeviceData
from l0repro.data.augment import random_crop_flip
from l0repro.data.cifar import STATS_255, load_cifar
from l0repro.data.cifar_synthetic import write_cifar_binary
from l0repro.data.validation import split_for_run
from l0repro.ema import EMA
from l0repro.graph_step import GraphedStep, training_step
from l0repro.l0 import budget as budget_module
from l0repro.l0 import gates
from l0repro.l0.flops import closed_measure, dense_measure, expected_params, flops_under, pruned_measure
from l0repro.l0.gate_bank import GateBank
from l0repro.models.build import build_model
from l0repro.runtime import bf16_autocast, resolve_device
from l0repro.train import Trainer, make_budget
from tests.conftest import compose_train

pytestmark = pytest.mark.timeout(120)  # fake tensors hold no data: each test takes seconds

CUDA = torch.device("cuda", 0)
BATCH = 8


@dataclass(frozen=True)
class Suite:
    """A suite model as its budget experiment trains it (optimiser, EMA, FLOPs target)."""

    experiment: str
    overrides: tuple[str, ...]  # WRN-10-1: the smallest WRN the suite's builder makes
    dataset: str  # mnist or cifar10


SUITE = {
    "mlp": Suite("budget/mlp_l0_flops", (), "mnist"),
    "lenet5": Suite("budget/lenet5_l0_flops", (), "mnist"),
    "wrn10-1": Suite("budget/wrn16_c10_flops50", ("model.depth=10", "model.widen_factor=1"), "cifar10"),
}


def suite_config(name: str, per_example: bool, *extra: str):
    suite = SUITE[name]
    # bf16=auto (on for CUDA), as on a GPU: the table2s configs turn it off for this CPU
    return compose_train([f"experiment={suite.experiment}", *suite.overrides, "trainer.bf16=auto",
                          f"model.per_example={str(per_example).lower()}",
                          f"trainer.batch_size={BATCH}", f"trainer.eval_batch_size={BATCH}", *extra])


# ------------------------------------------------------------------------ stand-ins

@pytest.fixture
def fake() -> Iterator[FakeTensorMode]:
    """The fake mode every test runs in (strict: a real tensor from outside it is refused)."""
    mode = FakeTensorMode()
    with mode:
        yield mode


@pytest.fixture
def cuda_autocast(monkeypatch) -> None:
    """Let ``torch.autocast("cuda")`` switch on without a driver: the two checks it makes."""
    monkeypatch.setattr(amp_common, "amp_definitely_not_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)


class HandBackward:
    """Stands in for ``Tensor.backward``: records the loss and sets every gradient by hand."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = params
        self.losses: list[torch.Tensor] = []

    def __call__(self, loss: torch.Tensor) -> None:
        self.losses.append(loss)
        for p in self.params:
            p.grad = torch.ones_like(p)


def hand_backward(monkeypatch, model: nn.Module) -> HandBackward:
    stand_in = HandBackward([p for p in model.parameters() if p.requires_grad])
    # a function, not the instance: only a function binds as a method (loss.backward())
    monkeypatch.setattr(torch.Tensor, "backward", lambda loss, *args, **kwargs: stand_in(loss))
    return stand_in


def host_flops_from(build: Callable[[], nn.Module], monkeypatch,
                    input_shape: tuple[int, ...] | None = None) -> None:
    """``Budget``'s constructor reads the dense and all-closed FLOPs to the host once; a fake
    tensor has no value, so those two come from a real CPU twin, ``build()``, of the same
    architecture. Every other FLOPs count is the real one, on the fake device."""
    real = budget_module.flops_under
    with unset_fake_temporarily():
        x = None if input_shape is None else torch.zeros(input_shape)
        twin = build()
        host = {m: float(real(twin, m, x)) for m in (dense_measure, closed_measure)}

    def stand_in(model, measure, example_input=None):
        return host[measure] if measure in host else real(model, measure, example_input)

    monkeypatch.setattr(budget_module, "flops_under", stand_in)


class Recorder(nn.Module):
    """The trainer's forward, keeping each output (to look at its device and dtype)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.outputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.outputs.append(self.model(x))
        return self.outputs[-1]


def synthetic_data(dataset: str, n_train: int = 20, n_test: int = 12) -> DeviceData:
    """Random images on the fake device, with the loaders' normalisation and augmentation."""
    c, side = (1, 28) if dataset == "mnist" else (3, 32)
    cifar = dataset != "mnist"
    mean, std = STATS_255["cifar10"] if cifar else (None, None)
    return DeviceData(
        name=dataset,
        train_x=torch.randint(0, 256, (n_train, c, side, side), dtype=torch.uint8, device=CUDA),
        train_y=torch.randint(0, 10, (n_train,), device=CUDA),
        test_x=torch.randint(0, 256, (n_test, c, side, side), dtype=torch.uint8, device=CUDA),
        test_y=torch.randint(0, 10, (n_test,), device=CUDA), num_classes=10,
        mean=tuple(m / 255.0 for m in mean) if cifar else None,
        std=tuple(s / 255.0 for s in std) if cifar else None,
        augment=random_crop_flip if cifar else None)


@dataclass
class FakeRun:
    trainer: Trainer
    forward: Recorder
    backward: HandBackward


def fake_trainer(name: str, per_example: bool, mode: FakeTensorMode, monkeypatch, *extra: str) -> FakeRun:
    """A ``Trainer`` on the fake device holding what ``train_step`` and ``evaluate`` use, each part
    made as ``Trainer.__init__`` makes it (which itself cannot run here: see the docstring)."""
    cfg = suite_config(name, per_example, *extra)
    tc = cfg.trainer
    host_flops_from(lambda: build_model(cfg.model), monkeypatch)
    t = object.__new__(Trainer)
    t.cfg, t.device = cfg, resolve_device("cuda")
    t.validation, t.eval_split = None, "test"
    with torch.device("cuda"):
        t.model = build_model(cfg.model)
    t.data = synthetic_data(SUITE[name].dataset)
    t.is_conv = any(isinstance(m, nn.Conv2d) for m in t.model.modules())
    t.memory_format = torch.channels_last if t.is_conv else torch.contiguous_format
    t.autocast = bf16_autocast(tc.bf16, t.device)
    forward = Recorder(t.model)
    t.forward = forward
    with FakeCopyMode(mode):  # AveragedModel's deepcopy, in this same fake mode
        t.ema = EMA(t.model, tc.ema_decay) if tc.ema_decay else None
    t.regularizer = L0Regularizer(t.model, t.data.n_train, tc.weight_decay,
                                  fused=tc.fused_gates and not tc.compile)
    t.budget = make_budget(t.model, tc)
    t.optimizer = instantiate(cfg.optim)(t.model.parameters())
    t.step_fn = training_step(t.train_step, t.optimizer, t.ema, tc, t.device)
    t.step_t = torch.zeros((), dtype=torch.long, device=t.device)
    t.bad_step = torch.full((), -1, dtype=torch.long, device=t.device)
    return FakeRun(t, forward, hand_backward(monkeypatch, t.model))


def on_cuda(*tensors: torch.Tensor) -> bool:
    return all(isinstance(t, FakeTensor) and t.device == CUDA for t in tensors)


class Writes(TorchDispatchMode):
    """Records every tensor an op writes in place (as its schema says), fake or not: what a step
    changed, without values (a fake tensor's version counter misses foreach and fused ops)."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[torch.Tensor] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for i, arg in enumerate(func._schema.arguments):
            if arg.alias_info is not None and arg.alias_info.is_write:
                value = args[i] if i < len(args) else kwargs.get(arg.name)
                self.written += [t for t in tree_leaves(value) if isinstance(t, torch.Tensor)]
        return func(*args, **kwargs)

    def count(self, tensor: torch.Tensor) -> int:
        return sum(w is tensor for w in self.written)

    def all_written(self, tensors) -> bool:
        return all(self.count(t) for t in tensors)


def first_batch(trainer: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    # the default generator stands in for the run's CUDA one (which needs the driver)
    return next(trainer.data.train_batches(BATCH, None, trainer.memory_format))


MODELS = list(SUITE)
SAMPLING = pytest.mark.parametrize("per_example", [False, True], ids=["shared", "per_example"])


# ------------------------------------------------------------------------ the training step

@SAMPLING
@pytest.mark.parametrize("name", MODELS)
def test_training_step_runs_on_the_device(name, per_example, fake, cuda_autocast, monkeypatch):
    run = fake_trainer(name, per_example, fake, monkeypatch)
    t = run.trainer
    x, y = first_batch(t)
    assert on_cuda(x, y) and x.dtype == torch.float32 and y.dtype == torch.int64
    params = list(t.model.parameters())
    log_alphas = t.regularizer.log_alphas
    ema_state = [v for v in t.ema.module.state_dict(keep_vars=True).values() if v.is_floating_point()]
    counters = [t.step_t, t.bad_step, t.budget.value, t.budget.multiplier]

    with Writes() as writes:
        loss, ce = t.step_fn(x, y)  # training_step: train_step itself (trainer.cuda_graph=false)

    assert on_cuda(loss, ce) and loss.shape == ce.shape == () and ce.dtype == torch.float32
    assert loss.dtype == torch.float32  # the budget's float64 sums come back in the gates' dtype
    (logits,) = run.forward.outputs
    assert on_cuda(logits) and logits.dtype == torch.bfloat16 and logits.shape == (BATCH, 10)
    (backward_of,) = run.backward.losses  # the loss the backward was asked for: a graph on the device
    assert on_cuda(backward_of) and backward_of.shape == () and backward_of.grad_fn is not None
    assert writes.all_written(params) and on_cuda(*params)  # the optimiser stepped each one
    # the clamp (min, then max) writes every log_alpha twice more than the optimiser writes a weight
    step_writes = min(writes.count(p) for p in params if not any(p is la for la in log_alphas))
    assert all(writes.count(la) >= step_writes + 2 for la in log_alphas)
    state = [v for s in t.optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    assert state and on_cuda(*state)
    assert writes.all_written(ema_state) and on_cuda(*ema_state)
    assert writes.all_written(counters) and on_cuda(*counters)
    assert t.budget.value.dtype == t.budget.multiplier.dtype == torch.float64
    if t.regularizer.bank:  # the forward used every sample the bank drew
        assert not per_example and all(g._preset is None for g in t.regularizer.bank.gates)
    else:
        assert per_example  # per-example gates sample themselves, in the forward


@pytest.mark.parametrize("name", MODELS)
def test_evaluation_runs_on_the_device_up_to_its_host_read(name, fake, cuda_autocast, monkeypatch):
    t = fake_trainer(name, False, fake, monkeypatch).trainer
    outputs = []
    t.eval_model.register_forward_hook(lambda module, args, out: outputs.append((module.training, out)))
    with pytest.raises(DataDependentOutputException):  # the error rate's float(), after the loop
        t.evaluate()
    assert len(outputs) == -(-len(t.data.test_y) // BATCH)  # every evaluation batch
    for training, logits in outputs:
        assert not training and on_cuda(logits) and logits.dtype == torch.bfloat16


@pytest.mark.parametrize("name", MODELS)
def test_flops_run_on_the_device(name, fake, monkeypatch):
    model = fake_trainer(name, False, fake, monkeypatch).trainer.model
    expected = expected_flops(model)  # differentiable: what the budget's gradient goes through
    assert on_cuda(expected) and expected.dtype == torch.float64 and expected.requires_grad
    for measure in (pruned_measure, dense_measure):  # what pruned_flops / dense_flops read
        flops = flops_under(model, measure)
        assert on_cuda(flops) and flops.shape == () and flops.dtype == torch.float64
    params = expected_params(model)
    assert on_cuda(params) and params.dtype == torch.float64
    with pytest.raises(DataDependentOutputException):  # a float, read on the host
        pruned_flops(model)


@pytest.mark.parametrize("name", MODELS)
def test_graph_step_preparation_runs_on_the_device(name, fake, cuda_autocast, monkeypatch):
    run = fake_trainer(name, False, fake, monkeypatch, "trainer.cuda_graph=true")
    t = run.trainer
    assert isinstance(t.step_fn, GraphedStep)
    monkeypatch.setattr(torch.cuda, "Stream", lambda *args, **kwargs: "side stream")  # needs the driver
    t.step_fn._prepare()
    assert all(group["capturable"] for group in t.optimizer.param_groups if "capturable" in group)
    count = t.ema.n_averaged
    assert on_cuda(count)

    with Writes() as writes:
        loss, _ = t.train_step(*first_batch(t))  # a warm-up step, as it runs on the side stream

    assert on_cuda(loss) and writes.count(count) == 1  # the EMA counted on the device
    steps = [s["step"] for s in t.optimizer.state.values() if "step" in s]
    assert on_cuda(*steps)  # capturable: the optimiser's step counts stay on the device too


@pytest.mark.parametrize("name", MODELS)
def test_gate_backwards_run_on_the_device(name, fake, monkeypatch):
    model = fake_trainer(name, False, fake, monkeypatch).trainer.model
    bank = GateBank(model, 1000)
    penalty = bank.draw()
    grad_z = [torch.ones(n, device=CUDA) for n in bank.sizes]
    out = penalty.grad_fn.apply(torch.ones_like(penalty), *grad_z)  # the fused backward
    skipped, grads = out[:3], out[3:]  # coef, sizes and the noise take none
    assert skipped == (None,) * 3 and len(grads) == len(bank.gates)
    for grad, gate in zip(grads, bank.gates, strict=True):
        assert on_cuda(grad) and grad.shape == gate.log_alpha.shape and grad.dtype == torch.float32
    log_alpha = bank.gates[0].log_alpha
    z = gates.sample_gate(log_alpha, (BATCH, len(log_alpha)))  # one row per example
    grad, none = z.grad_fn.apply(torch.ones_like(z))
    assert on_cuda(z, grad) and grad.shape == log_alpha.shape and none is None


# ------------------------------------------------------------------------ the data

@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_device_data_batches_on_the_device(dataset, fake):
    data = synthetic_data(dataset)
    seen = []
    if data.augment is not None:
        def augment(x, generator):
            seen.append(x)
            return random_crop_flip(x, generator)
        data.augment = augment
    fmt = torch.channels_last if dataset == "cifar10" else torch.contiguous_format
    batches = list(data.train_batches(BATCH, None, fmt))
    assert [len(x) for x, _ in batches] == [8, 8, 4]  # the last batch is smaller
    for x, y in batches:
        assert on_cuda(x, y) and x.dtype == torch.float32 and x.is_contiguous(memory_format=fmt)
        assert x.shape[1:] == data.train_x.shape[1:] and y.dtype == torch.int64
    assert len(seen) == (3 if dataset == "cifar10" else 0) and on_cuda(*seen)
    (x1, y1), *_ = data.train_batches(BATCH, None, fmt, rank=1, world_size=2)  # rank 1 of 2
    assert on_cuda(x1, y1) and len(x1) == len(y1) == BATCH // 2
    tests = list(data.test_batches(BATCH, fmt))
    assert [len(y) for _, y in tests] == [8, 4] and all(on_cuda(x, y) for x, y in tests)


def test_cifar_loader_moves_the_images_to_the_device(tmp_path):
    write_cifar_binary(tmp_path, "cifar10", n_train=10, n_test=4)
    # the loader reads real host arrays, which this mode turns fake on their way to the device
    with FakeTensorMode(allow_non_fake_inputs=True):
        data = load_cifar("cifar10", tmp_path, CUDA, source="binary", verify="size")
        assert on_cuda(data.train_x, data.train_y, data.test_x, data.test_y, data._mean, data._std)
        x, y = next(data.train_batches(4, None, torch.channels_last))
        assert on_cuda(x, y) and x.shape == (4, 3, 32, 32)


@pytest.mark.xfail(strict=True, raises=DynamicOutputShapeException,
                   reason="not fakeable: hold_out selects with a boolean mask, whose size depends on data")
def test_validation_split_on_the_device(fake):
    split_for_run(synthetic_data("cifar10"), 5, 0)


# ------------------------------------------------------------------------ the public API

def user_model() -> nn.Sequential:
    """A model of the user's own, gated with the library's layers (not a suite model)."""
    return nn.Sequential(L0Conv2d(3, 8, 3, padding=1, lam=0.1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), L0Linear(8 * 4 * 4, 16, lam=0.1), nn.ReLU(),
                         L0Linear(16, 10, lam=0.1))


USER_INPUT = (3, 8, 8)


@pytest.mark.parametrize("kind", ["flops", "l0"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "per_layer"])
def test_library_training_step_runs_on_the_device(fused, kind, fake, cuda_autocast, monkeypatch):
    host_flops_from(user_model, monkeypatch, (1, *USER_INPUT))
    with torch.device("cuda"):
        model = user_model()
    x = torch.randn(BATCH, *USER_INPUT, device=CUDA).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,), device=CUDA)
    reg = L0Regularizer(model, 1000, weight_decay=5e-4, fused=fused)
    budget = Budget(model, 0.5, kind=kind, example_input=x[:1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    backward = hand_backward(monkeypatch, model)
    with Writes() as writes:
        penalty = reg.penalty() + budget.penalty()
        with bf16_autocast(True, CUDA)():
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y) + penalty
        opt.zero_grad()
        loss.backward()
        opt.step()
        reg.after_step()
        budget.dual_step()

    assert on_cuda(logits, loss, penalty, budget.value, budget.multiplier)
    assert logits.dtype == torch.bfloat16 and len(backward.losses) == 1 and backward.losses[0] is loss
    assert writes.all_written(model.parameters()) and on_cuda(*model.parameters())
    assert writes.all_written([budget.value, budget.multiplier])
    for measured in (expected_flops(model, x[:1]), reg.expected_l0()):
        assert on_cuda(measured) and measured.shape == ()


def test_compact_network_runs_on_the_device():
    torch.manual_seed(0)
    model = user_model().eval()
    with torch.no_grad():  # closed maps feed constants through batch norm; closed inputs are gathered
        model[0].gate.log_alpha[:3] = -5.0
        model[1].running_mean.uniform_(-1.0, 1.0)
        model[5].gate.log_alpha[::3] = -5.0
        model[7].gate.log_alpha[::2] = -5.0
    small = compact(model, torch.zeros(1, *USER_INPUT))  # on the CPU (see the next test)
    state = small.state_dict()
    assert {"l0_index__5", "l0_shift__5.value"} <= set(state)  # the gather and the constant
    mode = FakeTensorMode()
    with mode:
        # Module.to cannot move a fake module: its tensors are given fake CUDA ones instead
        small.load_state_dict({k: mode.from_tensor(v).to(CUDA) for k, v in state.items()}, assign=True)
        out = small(torch.randn(BATCH, *USER_INPUT, device=CUDA))
        assert on_cuda(out) and out.shape == (BATCH, 10)
        assert on_cuda(*small.state_dict().values())


def test_compact_runs_on_the_device_up_to_its_first_host_read(fake):
    with torch.device("cuda"):
        model = user_model()
    with FakeCopyMode(fake), pytest.raises(DataDependentOutputException):  # which channels to cut
        compact(model, torch.zeros(1, *USER_INPUT, device=CUDA))

