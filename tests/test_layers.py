"""Gated layers: forward passes against hand computations, and the penalty term by term."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from l0repro.l0 import L0Regularizer, gates
from l0repro.l0.layers import L0Conv2d, L0Linear, gated_layers
from l0repro.l0.regularizer import L0Penalty
from l0repro.models import MLP, LeNet5

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1


def model_penalty(model: nn.Module, n_train: int, weight_decay: float) -> torch.Tensor:
    """The whole model's penalty, unfused (what the old ``model_penalty`` returned)."""
    return L0Regularizer(model, n_train, weight_decay, fused=False).penalty()


def log_alphas(model: nn.Module) -> list[torch.Tensor]:
    return L0Regularizer(model, 1).log_alphas


def expected_l0(model: nn.Module) -> torch.Tensor:
    return L0Regularizer(model, 1).expected_l0()


def p_open(la: float) -> float:
    """P(z != 0) written out: sigmoid(log_alpha - beta * log(-gamma / zeta))."""
    return 1.0 / (1.0 + math.exp(-(la - BETA * math.log(-GAMMA / ZETA))))


def linear(n_in=5, n_out=3, seed=0, **kw) -> L0Linear:
    torch.manual_seed(seed)
    kw.setdefault("lam", 0.1)
    return L0Linear(n_in, n_out, **kw).double()


def conv(c_in=2, c_out=4, k=3, seed=0, **kw) -> L0Conv2d:
    torch.manual_seed(seed)
    kw.setdefault("lam", 0.1)
    layer = L0Conv2d(c_in, c_out, k, **kw).double()
    with torch.no_grad():
        layer.bias.uniform_(0.5, 1.0)  # clearly non-zero, so a gated bias is visible
        layer.gate.log_alpha.copy_(torch.linspace(-1.0, 2.0, c_out))
    return layer


# --- L0Linear forward ---------------------------------------------------------------------


def test_linear_eval_scales_inputs_by_z_hat():
    layer = linear().eval()
    with torch.no_grad():
        layer.gate.log_alpha.copy_(torch.tensor([-1.0, 0.0, 0.5, 2.0, 4.0]))
    x = torch.randn(6, 5, dtype=torch.float64)
    z_hat = gates.deterministic_gate(layer.gate.log_alpha).detach()
    assert 0 < float(z_hat.min()) and float(z_hat.max()) == 1.0  # fractional and saturated gates
    torch.testing.assert_close(layer(x), F.linear(x * z_hat, layer.weight, layer.bias))
    assert torch.equal(layer(x), layer(x))


@pytest.mark.parametrize("per_example", [False, True])
def test_linear_train_uses_the_sample_it_draws(per_example):
    layer = linear(per_example=per_example).train()
    x = torch.randn(6, 5, dtype=torch.float64)
    torch.manual_seed(123)
    out = layer(x)
    torch.manual_seed(123)
    shape = (6, 5) if per_example else (5,)
    z = gates.sample_gate(layer.gate.log_alpha, shape)
    torch.testing.assert_close(out, F.linear(x * z, layer.weight, layer.bias))
    out.sum().backward()
    assert layer.gate.log_alpha.grad.abs().sum() > 0


def test_linear_per_example_gates_differ_per_row_and_shared_do_not():
    x = torch.ones(8, 5, dtype=torch.float64)
    shared = linear(per_example=False).train()
    torch.manual_seed(0)
    out = shared(x)
    assert all(torch.equal(out[0], out[i]) for i in range(8))  # one sample for the batch
    per = linear(per_example=True).train()
    torch.manual_seed(0)
    out = per(x)
    assert len({tuple(row.tolist()) for row in out}) == 8  # identical inputs, eight samples


def test_linear_closed_gate_removes_its_input_column():
    layer = linear().eval()
    with torch.no_grad():
        layer.gate.log_alpha[2] = -10.0
    x = torch.randn(4, 5, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 2] = torch.randn(4, dtype=torch.float64) * 100
    assert torch.equal(layer(x), layer(x2))
    x3 = x.clone()
    x3[:, 1] += 1.0  # an open column does change the output
    assert not torch.equal(layer(x), layer(x3))


# --- L0Conv2d forward ---------------------------------------------------------------------


def test_conv_eval_scales_output_maps_including_bias():
    layer = conv().eval()
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    z_hat = gates.deterministic_gate(layer.gate.log_alpha)
    ref = (F.conv2d(x, layer.weight) + layer.bias[None, :, None, None]) * z_hat[None, :, None, None]
    torch.testing.assert_close(layer(x), ref)


def test_conv_closed_gate_zeroes_the_whole_map_bias_included():
    layer = conv().eval()
    with torch.no_grad():
        layer.gate.log_alpha[1] = -10.0
    out = layer(torch.randn(2, 2, 6, 6, dtype=torch.float64))
    assert bool((out[:, 1] == 0).all())
    assert bool((out[:, [0, 2, 3]] != 0).any(dim=(2, 3)).all())


@pytest.mark.parametrize("per_example", [False, True])
def test_conv_train_uses_the_sample_it_draws(per_example):
    layer = conv(per_example=per_example).train()
    x = torch.randn(3, 2, 6, 6, dtype=torch.float64)
    torch.manual_seed(7)
    out = layer(x)
    torch.manual_seed(7)
    z = gates.sample_gate(layer.gate.log_alpha, (3, 4) if per_example else (4,))
    z = z if per_example else z.expand(3, 4)
    ref = (F.conv2d(x, layer.weight) + layer.bias[None, :, None, None]) * z[:, :, None, None]
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    assert layer.gate.log_alpha.grad.abs().sum() > 0


def test_conv_per_example_gates_differ_per_example():
    layer = conv(c_out=8, per_example=True).train()
    with torch.no_grad():
        layer.gate.log_alpha.zero_()
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64).expand(4, -1, -1, -1)
    torch.manual_seed(0)
    out = layer(x)
    assert not torch.equal(out[0], out[1])


# --- penalty ------------------------------------------------------------------------------


def hand_linear_penalty(layer: L0Linear, n: int, wd: float) -> float:
    w, b = layer.weight.detach().tolist(), layer.bias.detach().tolist()
    total = 0.0
    for j, la in enumerate(layer.gate.log_alpha.detach().tolist()):
        col = sum(w[i][j] ** 2 for i in range(layer.out_features))  # the group: weight column j
        total += p_open(la) * (layer.lam / n * layer.out_features + wd / 2 * col)
    return total + wd / 2 * sum(v * v for v in b)  # input gates leave the bias ungated


def hand_conv_penalty(layer: L0Conv2d, n: int, wd: float) -> float:
    c_out, c_in, k, _ = layer.weight.shape
    w = layer.weight.detach()
    total = 0.0
    for j, la in enumerate(layer.gate.log_alpha.detach().tolist()):
        theta = float((w[j] ** 2).sum())
        size = c_in * k * k
        if layer.bias is not None:  # the bias belongs to the map's group
            theta += float(layer.bias.detach()[j]) ** 2
            size += 1
        total += p_open(la) * (layer.lam / n * size + wd / 2 * theta)
    return total


@pytest.mark.parametrize("wd", [0.0, 0.3])
def test_linear_penalty_by_hand(wd):
    layer = linear(n_in=3, n_out=2, lam=0.7)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]]))
        layer.bias.copy_(torch.tensor([0.4, -1.5]))
        layer.gate.log_alpha.copy_(torch.tensor([-1.0, 0.0, 2.0]))
    expected = hand_linear_penalty(layer, 50, wd)
    assert float(layer.penalty(50, wd).detach()) == pytest.approx(expected, rel=1e-12)
    if wd == 0.0:  # spelled out once: lam/N * |g_j| = 0.7/50 * 2 per open gate
        assert expected == pytest.approx(0.7 / 50 * 2 * (p_open(-1) + p_open(0) + p_open(2)))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("wd", [0.0, 0.3])
def test_conv_penalty_by_hand(wd, bias):
    torch.manual_seed(0)
    layer = L0Conv2d(2, 3, 2, bias=bias, lam=0.4).double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(3, 2, 2, 2))
        if bias:
            layer.bias.copy_(torch.tensor([2.0, -1.0, 0.5]))
        layer.gate.log_alpha.copy_(torch.tensor([-2.0, 0.5, 3.0]))
    assert layer.group_size() == (9 if bias else 8)
    expected = hand_conv_penalty(layer, 30, wd)
    assert float(layer.penalty(30, wd).detach()) == pytest.approx(expected, rel=1e-12)


def test_model_penalty_adds_plain_l2_for_ungated_params_and_none_for_log_alpha():
    gated = linear(n_in=3, n_out=2, lam=0.7)
    plain = nn.Linear(2, 2).double()
    model = nn.Sequential(gated, nn.ReLU(), plain)
    wd, n = 0.3, 50
    plain_l2 = wd / 2 * float(plain.weight.detach().pow(2).sum() + plain.bias.detach().pow(2).sum())
    expected = hand_linear_penalty(gated, n, wd) + plain_l2
    pen = model_penalty(model, n, wd)
    assert pen.dim() == 0 and float(pen.detach()) == pytest.approx(expected, rel=1e-12)
    no_wd = float(model_penalty(model, n, 0.0).detach())
    assert no_wd == pytest.approx(hand_linear_penalty(gated, n, 0.0), rel=1e-12)
    pen.backward()
    torch.testing.assert_close(plain.weight.grad, wd * plain.weight.detach())
    torch.testing.assert_close(plain.bias.grad, wd * plain.bias.detach())


def test_plain_l2_gradient_is_zero_not_nan_at_zero():
    # BatchNorm biases start at exactly 0; the L2 term must not turn their gradient into NaN
    plain = nn.Linear(2, 2)
    with torch.no_grad():
        plain.bias.zero_()
    model = nn.Sequential(L0Linear(3, 2, lam=0.1), plain)
    model_penalty(model, 10, 0.5).backward()
    assert torch.equal(plain.bias.grad, torch.zeros(2))
    torch.testing.assert_close(plain.weight.grad, 0.5 * plain.weight.detach())


def test_log_alpha_carries_no_penalty():
    layer = linear(n_in=3, n_out=2, lam=0.0)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
        layer.gate.log_alpha.fill_(2.0)
    model = nn.Sequential(layer)
    pen = model_penalty(model, 10, 0.5)
    assert float(pen.detach()) == 0.0  # L2 on log_alpha would add 0.5/2 * 3 * 4


def test_penalty_object_sees_later_parameter_updates():
    torch.manual_seed(0)
    model = MLP(lambdas=[0.1, 0.2, 0.3], hidden=(6, 4), in_features=8, num_classes=3)
    pen = L0Penalty(model, 100, 1e-2)
    before = float(pen().detach())
    with torch.no_grad():
        model.fc2.weight.mul_(2.0)
        model.fc1.gate.log_alpha.sub_(1.0)
    after = float(pen().detach())
    assert after != before
    assert after == pytest.approx(float(model_penalty(model, 100, 1e-2).detach()), rel=1e-6)


def test_penalty_of_an_ungated_model_is_plain_l2():
    torch.manual_seed(0)
    model = MLP(method="dense", hidden=(6, 4), in_features=8, num_classes=3)
    l2 = sum(float(p.detach().pow(2).sum()) for p in model.parameters())
    assert float(model_penalty(model, 10, 0.2).detach()) == pytest.approx(0.1 * l2, rel=1e-5)
    assert float(model_penalty(model, 10, 0.0).detach()) == 0.0


@pytest.mark.parametrize("wd", [0.0, 0.3])
def test_penalty_pushes_every_gate_closed(wd):
    lin, cv = linear(n_in=4, lam=0.5), conv(lam=0.5)
    for layer in (lin, cv):
        layer.penalty(100, wd).backward()
        assert bool((layer.gate.log_alpha.grad > 0).all())


@pytest.mark.parametrize("lam", [-0.1, float("nan")])
def test_bad_lambda_is_rejected(lam):
    with pytest.raises(ValueError, match="lambda"):
        L0Linear(3, 2, lam=lam)
    with pytest.raises(ValueError, match="lambda"):
        L0Conv2d(1, 2, 3, lam=lam)


def test_bad_n_train_is_rejected():
    with pytest.raises(ValueError, match="n_train"):
        model_penalty(nn.Sequential(linear()), 0, 0.0)


# --- model-level helpers ------------------------------------------------------------------


def test_after_step_clamps_every_log_alpha_of_the_model():
    torch.manual_seed(0)
    lo, hi = gates.LOG_ALPHA_MIN, gates.LOG_ALPHA_MAX
    assert (lo, hi) == pytest.approx((math.log(0.01), math.log(100)))
    for built_before in (False, True):  # the regulariser clamps the parameters as they are now
        model = LeNet5()
        reg = L0Regularizer(model, 1) if built_before else None
        with torch.no_grad():
            for la in log_alphas(model):
                la.copy_(torch.linspace(-20, 20, la.numel()))
        (reg or L0Regularizer(model, 1)).after_step()
        for la in (la.detach() for la in log_alphas(model)):
            assert float(la.min()) == pytest.approx(lo) and float(la.max()) == pytest.approx(hi)
            inside = la[(la > lo + 1e-6) & (la < hi - 1e-6)]
            assert inside.numel() > 0  # values inside the range are left alone
    L0Regularizer(nn.Linear(2, 2), 1).after_step()  # a model without gates is a no-op
    L0Regularizer(MLP(method="dense"), 1).after_step()


def test_log_alphas_and_gated_layers_in_definition_order():
    model = LeNet5()
    assert [name for name, _ in gated_layers(model)] == ["conv1", "conv2", "fc1", "fc2"]
    assert [la.numel() for la in log_alphas(model)] == [20, 50, 800, 500]
    assert gated_layers(LeNet5(method="dense")) == [] and log_alphas(MLP(method="dense")) == []


def test_expected_l0_is_the_sum_of_prob_nonzero():
    torch.manual_seed(0)
    model = MLP()
    ref = sum(float(gates.prob_nonzero(la.detach()).sum()) for la in log_alphas(model))
    assert float(expected_l0(model)) == pytest.approx(ref, rel=1e-6)
    # with the paper's init: 784 inputs at p = 0.2, 400 hidden units at p = 0.5
    assert ref == pytest.approx(784 * p_open(math.log(4)) + 400 * p_open(0.0), rel=1e-3)
    lenet = LeNet5()  # conv gates count too
    ref = sum(float(gates.prob_nonzero(la.detach()).sum()) for la in log_alphas(lenet))
    assert float(expected_l0(lenet)) == pytest.approx(ref, rel=1e-6)
    assert ref == pytest.approx(1370 * p_open(0.0), rel=1e-3)
    assert float(expected_l0(MLP(method="dense"))) == 0.0


@pytest.mark.parametrize("make", [lambda s: L0Linear(4, 3, lam=0.4, wd_scale=s),
                                  lambda s: L0Conv2d(2, 3, 2, lam=0.4, wd_scale=s)])
def test_wd_scale_multiplies_the_expected_l2_only(make):
    torch.manual_seed(0)
    scaled, plain = make(2.5), make(1.0)
    plain.load_state_dict(scaled.state_dict())
    assert scaled.penalty(30, 0.2).item() == pytest.approx(plain.penalty(30, 0.5).item(), rel=1e-6)
    assert scaled.penalty(30, 0.0).item() == pytest.approx(plain.penalty(30, 0.0).item(), rel=1e-7)
    assert scaled.expected_l2(0.2).item() > plain.expected_l2(0.2).item() > 0


@pytest.mark.parametrize("scale", [-1.0, float("nan")])
def test_bad_wd_scale_is_rejected(scale):
    with pytest.raises(ValueError, match="wd_scale"):
        L0Conv2d(2, 3, 2, lam=0.4, wd_scale=scale)
