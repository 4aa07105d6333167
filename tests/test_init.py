"""``model.init``: the authors' He-normal init (default for the MNIST models) and PyTorch's."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from l0repro.models import MLP, LeNet5
from l0repro.models.init import apply_init
from tests.conftest import compose_train


def weighted_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


@pytest.mark.parametrize("build", [lambda init: MLP(init=init),
                                   lambda init: LeNet5(init=init),
                                   lambda init: MLP(method="dense", init=init),
                                   lambda init: LeNet5(method="dense", init=init)])
def test_he_init_has_std_sqrt_2_over_fan_in_and_zero_biases(build):
    torch.manual_seed(0)
    he, default = build("he"), build("torch")
    for a, b in zip(weighted_layers(he), weighted_layers(default), strict=True):
        fan_in = a.weight[0].numel()
        expected = math.sqrt(2.0 / fan_in)
        # He: normal with that std (a few % sampling error on the smallest layer, 500 weights)
        assert a.weight.std().item() == pytest.approx(expected, rel=0.1), type(a)
        assert a.weight.mean().abs().item() < 0.2 * expected
        assert torch.count_nonzero(a.bias) == 0
        # PyTorch's default: uniform with std 1/sqrt(3 fan_in), about 2.4x smaller, biases non-zero
        assert b.weight.std().item() == pytest.approx(1.0 / math.sqrt(3.0 * fan_in), rel=0.1)
        assert torch.count_nonzero(b.bias) > 0


def test_init_leaves_the_gates_as_the_layers_set_them():
    torch.manual_seed(0)
    model = MLP(init="he")
    for layer, p in zip((model.fc1, model.fc2, model.fc3), (0.2, 0.5, 0.5), strict=True):
        assert layer.gate.log_alpha.mean().item() == pytest.approx(math.log((1 - p) / p), abs=0.01)


def test_mnist_configs_default_to_the_authors_init():
    for row in ("mlp_l0", "mlp_l0_sep", "lenet5_l0", "lenet5_l0_sep", "mlp_dense", "lenet5_dense"):
        assert compose_train([f"experiment=table1/{row}"]).model.init == "he"


def test_unknown_init_is_refused_with_its_name():
    with pytest.raises(ValueError, match="'xavier'"):
        apply_init(MLP(), "xavier")
