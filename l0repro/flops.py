"""FLOP and parameter accounting under the gates.

Convention of ``torch.utils.flop_counter``: a multiply-add of a linear or conv layer
counts 2; bias adds, activations, pooling and normalisation count 0. A model describes
each linear/conv layer as a ``FlopTerm``: a per-unit weight on its input channels and on
its output channels (1 = present, P(z != 0) = expected, 0 = pruned). Because gates of
different layers are independent, the expected cost of a layer is
``2 * weights_per_pair * positions * E[#inputs] * E[#outputs]``. This counts that a closed
unit saves work both in the layer that produces it and in the layer it feeds, uses the
real output spatial size, and includes ungated layers (their units weigh 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from l0repro.layers import L0Gate

UnitMeasure = Callable[[L0Gate], torch.Tensor]


@dataclass
class FlopTerm:
    """One linear or conv layer: ``out = sum_in W[out, in] * x[in]`` at ``positions`` places."""

    name: str
    in_units: torch.Tensor  # per input channel: 1, P(open) or 0
    out_units: torch.Tensor  # per output channel
    weights_per_pair: int  # kernel area (1 for linear)
    positions: int  # output spatial size H_out * W_out (1 for linear)
    bias: bool

    def flops(self) -> torch.Tensor:
        return 2 * self.weights_per_pair * self.positions * self.in_units.sum() * self.out_units.sum()

    def params(self) -> torch.Tensor:
        n = self.weights_per_pair * self.in_units.sum() * self.out_units.sum()
        return n + self.out_units.sum() if self.bias else n


def expected_measure(gate: L0Gate) -> torch.Tensor:
    return gate.prob_nonzero()


def pruned_measure(gate: L0Gate) -> torch.Tensor:
    return gate.kept().to(gate.log_alpha.dtype)


def dense_measure(gate: L0Gate) -> torch.Tensor:
    return torch.ones_like(gate.log_alpha)


def ones(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.ones(n, device=like.device, dtype=like.dtype)


def _terms(model: nn.Module, measure: UnitMeasure) -> list[FlopTerm]:
    if not hasattr(model, "flop_terms"):
        raise TypeError(f"{type(model).__name__} does not describe its FLOPs (no flop_terms)")
    return model.flop_terms(measure)


@torch.no_grad()
def expected_flops(model: nn.Module) -> torch.Tensor:
    """Expected forward FLOPs per example under the training gate distribution (0-dim tensor)."""
    return torch.stack([t.flops() for t in _terms(model, expected_measure)]).sum()


@torch.no_grad()
def pruned_flops(model: nn.Module) -> float:
    """FLOPs per example of the network left after removing units with z_hat == 0."""
    return float(torch.stack([t.flops() for t in _terms(model, pruned_measure)]).sum())


@torch.no_grad()
def dense_flops(model: nn.Module) -> float:
    """FLOPs per example with every gate open (equals FlopCounterMode on the dense model)."""
    return float(torch.stack([t.flops() for t in _terms(model, dense_measure)]).sum())


@torch.no_grad()
def expected_params(model: nn.Module) -> torch.Tensor:
    """Expected weights + biases of the linear and conv layers under the training gates (0-dim)."""
    return torch.stack([t.params() for t in _terms(model, expected_measure)]).sum()


@torch.no_grad()
def param_counts(model: nn.Module) -> tuple[int, int]:
    """(kept, dense) weights + biases of the linear and conv layers."""
    kept = torch.stack([t.params() for t in _terms(model, pruned_measure)]).sum()
    dense = torch.stack([t.params() for t in _terms(model, dense_measure)]).sum()
    return int(round(float(kept))), int(round(float(dense)))
