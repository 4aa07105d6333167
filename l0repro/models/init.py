"""Weight initialisation schemes of the MNIST models (``model.init``).

- ``he``: what the authors' released code does. Every linear and conv weight is He-normal,
  std = sqrt(2 / fan_in) (their ``L0Dense`` stores weights as (in, out) and calls
  ``kaiming_normal(mode='fan_out')``, which is fan_in of the layer; their ``L0Conv2d`` uses
  ``mode='fan_in'``), and every bias is zero. The gates' ``log_alpha`` is left as the layer
  set it (``gates.init_log_alpha``).
- ``torch``: PyTorch's default ``nn.Linear`` / ``nn.Conv2d`` init (Kaiming-uniform with
  a = sqrt(5), std = 1 / sqrt(3 fan_in), about 2.4x smaller; uniform biases).
"""

from __future__ import annotations

from torch import nn

INITS = ("he", "torch")


def apply_init(model: nn.Module, scheme: str) -> nn.Module:
    """Re-initialise ``model``'s linear and conv layers in place by ``scheme``; returns it."""
    if scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; expected one of {list(INITS)}")
    if scheme == "torch":
        return model  # the layers' constructors already did it
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model
