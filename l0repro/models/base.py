"""What every model in the suite offers the training loop, FLOP accounting and the record."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from l0repro.flops import FlopTerm, UnitMeasure, ones
from l0repro.layers import L0Gate

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
    """Base class: subclasses set ``unit_layers`` (paper order) and implement ``flop_terms``.

    ``unit_layers`` maps each layer whose units the paper counts to its unit count; the
    layer is gated when ``method == 'l0'``.
    """

    name: str = "model"
    method: str
    lambdas: list[float]
    unit_layers: dict[str, int]

    def unit(self, layer_name: str, measure: UnitMeasure, like: torch.Tensor) -> torch.Tensor:
        """Per-unit measure of a counted layer's units, 1 for every unit when it is not gated."""
        layer = self.get_submodule(layer_name)
        gate = getattr(layer, "gate", None)
        if isinstance(gate, L0Gate):
            return measure(gate)
        return ones(self.unit_layers[layer_name], like)

    def flop_terms(self, measure: UnitMeasure) -> list[FlopTerm]:
        raise NotImplementedError

    def full_architecture(self) -> list[int]:
        return list(self.unit_layers.values())

    @torch.no_grad()
    def architecture(self) -> list[int]:
        """Units kept (z_hat != 0) per counted layer, in the paper's order."""
        out = []
        for name, n in self.unit_layers.items():
            gate = getattr(self.get_submodule(name), "gate", None)
            out.append(int(gate.kept().sum()) if isinstance(gate, L0Gate) else n)
        return out
