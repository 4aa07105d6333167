"""The paper's MNIST networks: MLP 784-300-100 and LeNet-5-Caffe (20-50-800-500)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from l0repro.l0.layers import L0Conv2d, L0Linear
from l0repro.models.base import SparseModel, check_method, per_layer
from l0repro.models.init import apply_init


class MLP(SparseModel):
    """784-300-100-10 ReLU MLP; with ``method='l0'`` each linear layer gates its inputs.

    Args:
        method: ``l0`` (gated) or ``dense`` (plain ``nn.Linear``).
        lambdas: L0 strength ``c`` per layer (fc1, fc2, fc3), or one value for all.
        init_drop_rates: initial dropout rate per layer (paper: 0.2 on the input, 0.5 after).
        per_example: one gate sample per example instead of one per minibatch.
        init: weight init, ``he`` (the authors' code: He-normal, zero biases) or ``torch``
            (PyTorch's layer defaults); see ``l0repro.models.init``.
    """

    name = "mlp"

    def __init__(self, method: str = "l0", lambdas: float | Sequence[float] = 0.1,
                 init_drop_rates: Sequence[float] = (0.2, 0.5, 0.5),
                 hidden: Sequence[int] = (300, 100), in_features: int = 784,
                 num_classes: int = 10, per_example: bool = False, init: str = "he") -> None:
        super().__init__()
        self.method = check_method(method, ("l0", "dense"))
        sizes = [in_features, *hidden, num_classes]
        names = [f"fc{i + 1}" for i in range(len(sizes) - 1)]
        self.unit_layers = dict(zip(names, sizes[:-1], strict=True))
        self.lambdas = per_layer(lambdas, names, "lambdas") if method == "l0" else []
        drops = per_layer(init_drop_rates, names, "init_drop_rates")
        for i, name in enumerate(names):
            if method == "l0":
                layer = L0Linear(sizes[i], sizes[i + 1], lam=self.lambdas[i],
                                 init_drop_rate=drops[i], per_example=per_example)
            else:
                layer = nn.Linear(sizes[i], sizes[i + 1])
            self.add_module(name, layer)
        self.layer_names = names
        self.input_shape = (1, 28, 28) if in_features == 784 else (in_features,)
        apply_init(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i, name in enumerate(self.layer_names):
            x = getattr(self, name)(x)
            if i < len(self.layer_names) - 1:
                x = F.relu(x)
        return x



class LeNet5(SparseModel):
    """LeNet-5-Caffe: conv5x5(20) - maxpool2 - conv5x5(50) - maxpool2 - fc(800->500) - fc(500->10).

    No padding, ReLU after every layer but the last. With ``method='l0'`` the convs gate
    their output maps and the fully connected layers gate their inputs; the paper's
    architecture string counts, in order, conv1 maps, conv2 maps, fc1 inputs, fc2 inputs.
    ``init`` is ``he`` (the authors' code) or ``torch``, as for ``MLP``.
    """

    name = "lenet5"

    def __init__(self, method: str = "l0", lambdas: float | Sequence[float] = 0.1,
                 init_drop_rates: float | Sequence[float] = 0.5, in_channels: int = 1,
                 image_size: int = 28, num_classes: int = 10, per_example: bool = False,
                 init: str = "he") -> None:
        super().__init__()
        self.method = check_method(method, ("l0", "dense"))
        names = ["conv1", "conv2", "fc1", "fc2"]
        self.lambdas = per_layer(lambdas, names, "lambdas") if method == "l0" else []
        drops = per_layer(init_drop_rates, names, "init_drop_rates")
        self.s1 = image_size - 4  # conv1 output side
        self.s2 = self.s1 // 2 - 4  # conv2 output side
        self.s3 = self.s2 // 2  # after the second pool
        flat = 50 * self.s3 * self.s3
        self.unit_layers = {"conv1": 20, "conv2": 50, "fc1": flat, "fc2": 500}
        self.input_shape = (in_channels, image_size, image_size)
        if method == "l0":
            kw = [dict(lam=lam, init_drop_rate=p, per_example=per_example)
                  for lam, p in zip(self.lambdas, drops, strict=True)]
            self.conv1 = L0Conv2d(in_channels, 20, 5, **kw[0])
            self.conv2 = L0Conv2d(20, 50, 5, **kw[1])
            self.fc1 = L0Linear(flat, 500, **kw[2])
            self.fc2 = L0Linear(500, num_classes, **kw[3])
        else:
            self.conv1 = nn.Conv2d(in_channels, 20, 5)
            self.conv2 = nn.Conv2d(20, 50, 5)
            self.fc1 = nn.Linear(flat, 500)
            self.fc2 = nn.Linear(500, num_classes)
        apply_init(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)

