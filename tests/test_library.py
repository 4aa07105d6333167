"""The L0 method on models the suite never built: FLOPs and compaction by tracing, exact, safe
at residual joins, and refusing what it cannot follow."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from l0repro import (
    L0Conv2d,
    L0Linear,
    L0Regularizer,
    compact,
    dense_flops,
    expected_flops,
    load_compact,
    param_counts,
    pruned_flops,
    save_compact,
)
from l0repro.compact_run import counted_flops as counted
from l0repro.compact_run import layer_params
from l0repro.l0 import gates
from l0repro.l0.compact import ConstantShift
from l0repro.l0.layers import L0Layer, gated_layers

torchvision = pytest.importorskip("torchvision")


def random_gates_(model: nn.Module, seed: int) -> None:
    """Every gated layer gets closed, fully open and part-way open units."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in gated_layers(model):
            n = layer.gate.n
            kind = torch.randint(0, 3, (n,), generator=gen)
            kind[:3] = torch.tensor([0, 1, 2])
            partial = torch.rand(n, generator=gen) * 4 - 2
            value = torch.where(kind == 0, gates.LOG_ALPHA_MIN,
                                torch.where(kind == 1, gates.LOG_ALPHA_MAX, partial))
            layer.gate.log_alpha.copy_(value)


def trained_like_batchnorm_(model: nn.Module, seed: int) -> None:
    """Non-zero running statistics and shifts, so closed maps feed non-zero constants."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) - 0.5)


def assert_exact(gated: nn.Module, small: nn.Module, x: torch.Tensor) -> None:
    gated.eval()
    with torch.no_grad():
        want, got = gated(x), small(x)
    scale = float(want.abs().max())
    assert float((want - got).abs().max()) <= 1e-5 * scale


def gated_resnet18() -> nn.Module:
    """torchvision's resnet18 for 10 classes, each block's first conv swapped the way a user
    would, with ``L0Conv2d.from_conv``."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    for block in (b for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for b in layer):
        block.conv1 = L0Conv2d.from_conv(block.conv1, lam=0.1, init_drop_rate=0.3)
    return model


def test_resnet18_with_gated_block_convs_compacts_exactly_at_the_counted_cost():
    model = gated_resnet18()
    random_gates_(model, seed=1)
    trained_like_batchnorm_(model, seed=2)
    with torch.no_grad():  # one block wholly closed: it is left with its shortcut and a constant
        model.layer3[1].conv1.gate.log_alpha.fill_(gates.LOG_ALPHA_MIN)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    small = compact(model, x[:1])
    assert_exact(model, small, x)
    assert counted(small, x[:1]) == pruned_flops(model, x[:1]) < dense_flops(model, x[:1])
    assert counted(model, x[:1]) == dense_flops(model, x[:1])
    assert layer_params(small) == param_counts(model, x[:1])[0] < param_counts(model, x[:1])[1]
    assert not any(isinstance(m, L0Layer) for m in small.modules())
    # the closed maps' constants come back through conv2's zero padding: per-position shifts
    assert any(isinstance(m, ConstantShift) and m.value.shape[-1] > 1 for m in small.modules())
    kept = [int(gates.is_kept(b.conv1.gate.log_alpha).sum()) for layer in
            (model.layer1, model.layer2, model.layer3, model.layer4) for b in layer]
    assert kept[5] == 0 and all(0 < k < 64 * 8 for k in kept[:5])


class UnseenNet(nn.Module):
    """A model no suite code knows: residual blocks with batch norm, a residual join of two
    gated convs, a concatenation, average pooling, and a gated MLP head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(16)
        self.block_conv1 = L0Conv2d(16, 16, 3, padding=1, bias=False, lam=0.1)
        self.block_bn = nn.BatchNorm2d(16)
        self.block_conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.left = L0Conv2d(16, 8, 1, lam=0.1)  # both branches gated: a channel of their sum
        self.right = L0Conv2d(16, 8, 1, lam=0.1)  # goes only when both gates close it
        self.side = L0Conv2d(16, 4, 3, padding=1, lam=0.1)
        self.pool = nn.AvgPool2d(2)
        self.head1 = L0Linear(12 * 16 * 16, 32, lam=0.1)
        self.head2 = L0Linear(32, 10, lam=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.stem(x)))
        x = x + self.block_conv2(F.relu(self.block_bn(self.block_conv1(x))))  # residual block
        joined = F.relu(self.left(x) + self.right(x))
        x = torch.cat([joined, torch.sigmoid(self.side(x))], dim=1)  # sigmoid(0) = 0.5: a constant
        x = torch.flatten(self.pool(x), 1)
        return self.head2(F.relu(self.head1(x)))


def test_a_model_the_tests_never_saw_compacts_exactly_with_the_counted_flops(tmp_path):
    torch.manual_seed(0)
    model = UnseenNet()
    random_gates_(model, seed=5)
    trained_like_batchnorm_(model, seed=6)
    x = torch.randn(3, 3, 32, 32)
    small = compact(model, x[:1])
    assert_exact(model, small, x)
    assert counted(small, x[:1]) == pruned_flops(model, x[:1])
    assert layer_params(small) == param_counts(model, x[:1])[0]
    save_compact(small, tmp_path / "unseen.pt")
    again = load_compact(tmp_path / "unseen.pt")
    with torch.no_grad():
        assert torch.equal(again(x), small(x))


def test_a_channel_of_a_residual_sum_goes_only_when_every_producer_closes_it():
    model = UnseenNet().eval()
    with torch.no_grad():
        for layer in (model.left, model.right):
            layer.gate.log_alpha.fill_(gates.LOG_ALPHA_MAX)
        model.left.gate.log_alpha[:4] = gates.LOG_ALPHA_MIN  # channels 0-3 closed on the left
        model.right.gate.log_alpha[2:6] = gates.LOG_ALPHA_MIN  # 2-5 on the right: 2, 3 on both
    x = torch.randn(2, 3, 32, 32)
    small = compact(model, x[:1])
    assert small.get_submodule("left").out_channels == small.get_submodule("right").out_channels == 6
    assert_exact(model, small, x)


def test_expected_flops_are_differentiable_and_fall_when_a_gate_closes():
    model = UnseenNet()
    x = torch.zeros(1, 3, 32, 32)
    flops = expected_flops(model, x)
    assert flops.requires_grad and flops.dtype == torch.float64
    flops.backward()
    grad = model.head1.gate.log_alpha.grad
    assert grad is not None and bool((grad > 0).all())  # opening a gate costs FLOPs
    before = float(flops.detach())
    with torch.no_grad():
        model.side.gate.log_alpha.fill_(gates.LOG_ALPHA_MIN)
    assert float(expected_flops(model, x).detach()) < before


def test_a_gated_channel_into_an_unknown_op_is_refused_naming_layer_and_op():
    class Squeeze(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = L0Conv2d(3, 8, 3, lam=0.1)
            self.fc = nn.Linear(8, 2)

        def forward(self, x):
            y = self.conv(x)
            return self.fc(y.transpose(1, 3).mean((1, 2)))  # channels moved off dimension 1

    with pytest.raises(ValueError, match=r"gated layer conv \(L0Conv2d\).*transpose"):
        compact(Squeeze(), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="transpose"):
        pruned_flops(Squeeze(), torch.zeros(1, 3, 8, 8))


def test_data_dependent_control_flow_is_refused():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = L0Linear(4, 2, lam=0.1)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else -self.fc(x)

    with pytest.raises(ValueError, match="cannot trace Branchy"):
        compact(Branchy(), torch.zeros(1, 4))


def test_a_user_model_without_example_input_is_told_to_pass_one():
    with pytest.raises(ValueError, match="pass example_input"):
        dense_flops(nn.Sequential(L0Linear(4, 2, lam=0.1)))


def test_the_regulariser_trains_the_gates_and_clamps_them():
    torch.manual_seed(0)
    model = nn.Sequential(L0Conv2d(1, 8, 3, lam=0.1), nn.ReLU(), nn.Flatten(),
                          L0Linear(8 * 26 * 26, 10, lam=0.1))
    reg = L0Regularizer(model, n_train=60_000, weight_decay=5e-4)
    opt = torch.optim.SGD(model.parameters(), lr=1e3)  # a huge step: the clamp must hold
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    model.train()
    penalty = reg.penalty()  # before the forward: it draws the gates
    loss = F.cross_entropy(model(x), y) + penalty
    opt.zero_grad()
    loss.backward()
    assert all(la.grad is not None and la.grad.abs().sum() > 0 for la in reg.log_alphas)
    opt.step()
    reg.after_step()
    for la in reg.log_alphas:
        la = la.detach()
        assert float(la.min()) >= gates.LOG_ALPHA_MIN - 1e-6 and float(la.max()) <= gates.LOG_ALPHA_MAX + 1e-6


def test_from_conv_and_from_linear_keep_the_layer_when_the_gates_are_open():
    conv, linear = nn.Conv2d(3, 5, 3, stride=2, padding=1, dilation=1), nn.Linear(6, 4)
    gconv, glinear = L0Conv2d.from_conv(conv, lam=0.1), L0Linear.from_linear(linear, lam=0.1)
    with torch.no_grad():
        for layer in (gconv, glinear):
            layer.gate.log_alpha.fill_(gates.LOG_ALPHA_MAX)  # z_hat == 1
        x, v = torch.randn(2, 3, 9, 9), torch.randn(2, 6)
        assert torch.equal(gconv.eval()(x), conv(x)) and torch.equal(glinear.eval()(v), linear(v))
