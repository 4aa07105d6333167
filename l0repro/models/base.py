"""What every model in the suite offers the training loop, FLOP accounting and the record."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from l0repro.l0.flops import kept_units

METHODS = ("l0", "dense", "dropout")


def check_method(method: str, allowed: Sequence[str]) -> str:
    if method not in allowed:
        raise ValueError(f"unknown method {method!r}; expected one of {list(allowed)}")
    return method


def per_layer(value: float | Sequence[float], names: Sequence[str], what: str) -> list[float]:
    """Broadcast a scalar to one value per layer, or check a list has one value per layer."""
    if isinstance(value, (int, float)):
        values = [float(value)] * len(names)
    else:
        values = [float(v) for v in value]
    if len(values) != len(names):
        raise ValueError(f"{what} needs {len(names)} values (one per layer: {', '.join(names)}), "
                         f"got {len(values)}: {values}")
    return values


class SparseModel(nn.Module):
    """Base class: subclasses set ``unit_layers`` (paper order) and ``input_shape``.

    ``unit_layers`` maps each layer whose units the paper counts to its unit count; the
    layer is gated when ``method == 'l0'``. FLOPs, parameter counts and compaction come from
    the method's generic tracer (``l0repro.l0``), which ``example_input`` feeds.
    """

    name: str = "model"
    method: str
    lambdas: list[float]
    unit_layers: dict[str, int]
    input_shape: tuple[int, ...]  # one example, (C, H, W)

    def example_input(self) -> torch.Tensor:
        """One zero example of the input size, on the model's device (for FLOPs and compaction)."""
        p = next(self.parameters())
        return torch.zeros(1, *self.input_shape, device=p.device, dtype=p.dtype)

    def full_architecture(self) -> list[int]:
        return list(self.unit_layers.values())

    @torch.no_grad()
    def architecture(self) -> list[int]:
        """Units kept at test time per counted layer, in the paper's order: a conv's open maps,
        a linear layer's inputs that are open and made (``l0repro.l0.kept_units``)."""
        kept = kept_units(self)
        return [kept.get(name, n) for name, n in self.unit_layers.items()]
