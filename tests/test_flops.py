"""FLOP and parameter accounting for the MNIST networks, against FlopCounterMode and by hand."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from l0repro.l0 import gates
from l0repro.l0.flops import dense_flops, expected_flops, param_counts, pruned_flops
from l0repro.models import MLP, LeNet5

CLOSED = -10.0  # z_hat == 0 and P(z != 0) ~ 1e-4


def counted_flops(model: nn.Module) -> int:
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 1, 28, 28))
    return counter.get_total_flops()


def p_sum(layer) -> float:
    return float(gates.prob_nonzero(layer.gate.log_alpha.detach()).sum())


def close(layer, idx) -> None:
    with torch.no_grad():
        layer.gate.log_alpha[idx] = CLOSED


@pytest.mark.parametrize("cls,flops", [(MLP, 532_400), (LeNet5, 4_586_000)])
@pytest.mark.parametrize("method", ["l0", "dense"])
def test_dense_flops_equal_flop_counter(cls, flops, method):
    torch.manual_seed(0)
    model = cls(method=method)
    # L0 models in eval mode with every gate open do the dense model's matmuls and convs
    assert dense_flops(model) == counted_flops(cls(method="dense")) == flops
    assert counted_flops(model) == flops


@pytest.mark.parametrize("cls,params", [(MLP, 266_610), (LeNet5, 431_080)])
def test_param_counts_of_the_dense_networks(cls, params):
    for method in ("dense", "l0"):
        model = cls(method=method)
        n = sum(p.numel() for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))
                for p in (m.weight, m.bias))
        assert n == params
        assert param_counts(model) == (params, params)


def test_mlp_expected_flops_by_hand():
    torch.manual_seed(0)
    model = MLP()
    e1, e2, e3 = p_sum(model.fc1), p_sum(model.fc2), p_sum(model.fc3)
    ref = 2 * (e1 * e2 + e2 * e3 + e3 * 10)
    got = expected_flops(model)
    assert got.dim() == 0
    got = float(got.detach())
    assert got == pytest.approx(ref, rel=1e-5)
    assert got < dense_flops(model)
    # fresh gates: 784 * P(open | p=0.2) = 0.95 inputs, 300 and 100 at P(open | p=0.5) ~ 0.83
    assert got == pytest.approx(2 * (784 * 0.9519 * 300 * 0.8318 + 300 * 0.8318 * 100
                                     * 0.8318 + 100 * 0.8318 * 10), rel=1e-3)


def test_lenet_expected_flops_by_hand():
    torch.manual_seed(0)
    model = LeNet5()
    close(model.conv2, [3, 7])  # the fc1 inputs they feed count (almost) nothing
    c1, c2 = p_sum(model.conv1), p_sum(model.conv2)
    p_c2 = gates.prob_nonzero(model.conv2.gate.log_alpha.detach())
    p_f1 = gates.prob_nonzero(model.fc1.gate.log_alpha.detach())
    f1 = float((p_f1 * p_c2.repeat_interleave(16)).sum())
    f2 = p_sum(model.fc2)
    ref = 2 * 25 * 24 * 24 * 1 * c1 + 2 * 25 * 8 * 8 * c1 * c2 + 2 * f1 * f2 + 2 * f2 * 10
    assert float(expected_flops(model).detach()) == pytest.approx(ref, rel=1e-5)
    assert float(expected_flops(model).detach()) < dense_flops(model)


def test_mlp_pruned_hidden_units_save_work_in_both_adjacent_layers():
    torch.manual_seed(0)
    model = MLP()
    assert pruned_flops(model) == 532_400  # fresh init: every z_hat > 0
    k = 37
    close(model.fc2, slice(k, None))  # keep k of fc2's 300 inputs = k of fc1's outputs
    assert pruned_flops(model) == 2 * (784 * k + k * 100 + 100 * 10)
    assert param_counts(model) == (784 * k + k + k * 100 + 100 + 100 * 10 + 10, 266_610)
    close(model.fc1, slice(0, 84))  # 700 inputs left
    close(model.fc3, slice(0, 60))  # 40 of fc2's outputs left
    assert pruned_flops(model) == 2 * (700 * k + k * 40 + 40 * 10)
    assert model.architecture() == [700, k, 40]
    assert model.full_architecture() == [784, 300, 100]


def test_lenet_closed_conv2_map_removes_its_fc1_inputs():
    torch.manual_seed(0)
    model = LeNet5()
    conv1, conv2, fc2 = 2 * 25 * 576 * 20, 2 * 25 * 64 * 20 * 50, 2 * 500 * 10
    assert pruned_flops(model) == conv1 + conv2 + 2 * 800 * 500 + fc2
    close(model.conv2, 5)
    assert pruned_flops(model) == conv1 + 2 * 25 * 64 * 20 * 49 + 2 * (800 - 16) * 500 + fc2
    # closing the fc1 gates of map 5 as well changes nothing more; another fc1 gate does
    close(model.fc1, slice(5 * 16, 6 * 16))
    assert pruned_flops(model) == conv1 + 2 * 25 * 64 * 20 * 49 + 2 * (800 - 16) * 500 + fc2
    close(model.fc1, 0)
    assert pruned_flops(model) == conv1 + 2 * 25 * 64 * 20 * 49 + 2 * (800 - 17) * 500 + fc2


def test_lenet_closed_conv1_maps_shrink_conv2_inputs():
    torch.manual_seed(0)
    model = LeNet5()
    close(model.conv1, [0, 4, 9])
    close(model.fc2, slice(0, 100))  # 400 fc1 outputs left
    expected = (2 * 25 * 576 * 17 + 2 * 25 * 64 * 17 * 50 + 2 * 800 * 400 + 2 * 400 * 10)
    assert pruned_flops(model) == expected
    kept, dense = param_counts(model)
    assert dense == 431_080
    assert kept == (25 * 17 + 17) + (25 * 17 * 50 + 50) + (800 * 400 + 400) + (400 * 10 + 10)


def test_architecture_in_paper_order():
    torch.manual_seed(0)
    model = LeNet5()
    assert model.architecture() == [20, 50, 800, 500]
    close(model.conv1, [1, 2, 3])
    close(model.conv2, slice(0, 5))
    close(model.fc1, slice(100, 110))
    close(model.fc2, slice(0, 20))
    # an fc1 input is live only if its own gate and its conv2 map are open:
    # conv2 maps 0-4 take fc1 inputs 0-79 with them, plus the 10 closed fc1 gates 100-109
    assert model.architecture() == [17, 45, 710, 480]
    assert model.full_architecture() == [20, 50, 800, 500]
    assert LeNet5(method="dense").architecture() == [20, 50, 800, 500]
    assert MLP(method="dense").architecture() == [784, 300, 100]
    assert MLP().architecture() == [784, 300, 100]


def test_per_layer_lambdas_and_wrong_lengths():
    model = MLP(lambdas=[0.1, 0.2, 0.3])
    assert [model.fc1.lam, model.fc2.lam, model.fc3.lam] == pytest.approx([0.1, 0.2, 0.3])
    assert MLP(lambdas=0.5).fc3.lam == 0.5
    with pytest.raises(ValueError, match="fc1, fc2, fc3"):
        MLP(lambdas=[0.1, 0.2])
    with pytest.raises(ValueError, match="conv1, conv2, fc1, fc2"):
        LeNet5(lambdas=[10, 0.5, 0.1])
    lenet = LeNet5(lambdas=(10, 0.5, 0.1, 10))
    assert [lenet.conv1.lam, lenet.conv2.lam, lenet.fc1.lam, lenet.fc2.lam] == [10, 0.5, 0.1, 10]


def test_init_drop_rates_set_the_gate_means():
    torch.manual_seed(0)
    model = MLP()
    means = [float(m.gate.log_alpha.detach().mean()) for m in (model.fc1, model.fc2, model.fc3)]
    assert means == pytest.approx([1.3863, 0.0, 0.0], abs=2e-3)  # log(0.8/0.2), log(0.5/0.5)
    lenet = LeNet5(init_drop_rates=[0.5, 0.5, 0.2, 0.5])
    assert float(lenet.fc1.gate.log_alpha.detach().mean()) == pytest.approx(1.3863, abs=2e-3)


def test_models_that_do_not_know_their_input_are_rejected():
    with pytest.raises(ValueError, match="does not know its input size"):
        dense_flops(nn.Linear(2, 2))
    # given an example input, any model is counted (2 FLOPs per multiply-add)
    assert dense_flops(nn.Sequential(nn.Linear(2, 3)), torch.zeros(1, 2)) == 2 * 2 * 3
