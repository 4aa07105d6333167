"""The MNIST benchmark's frozen-gates loop: fixed samples, no gate gradient, no penalty."""

import torch

from l0repro.bench.mnist import FrozenGates
from l0repro.models import MLP


def test_frozen_gates_preset_the_same_sample_every_step_and_take_no_gradient():
    torch.manual_seed(0)
    model = MLP().train()
    frozen = FrozenGates(model)
    x = torch.rand(8, 784)
    outs = []
    for _ in range(2):
        assert not frozen.active and float(frozen.penalty()) == 0.0  # nothing added to the loss
        out = model(x)
        assert all(layer.gate._preset is None for layer in (model.fc1, model.fc2, model.fc3))
        out.sum().backward()
        outs.append(out.detach())
    torch.testing.assert_close(outs[0], outs[1])  # the same gates both steps
    assert all(layer.gate.log_alpha.grad is None for layer in (model.fc1, model.fc2, model.fc3))
    assert model.fc1.weight.grad is not None
