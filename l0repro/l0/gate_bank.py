"""Every gate of a model sampled, and the expected-L0 penalty computed, in one fused op.

Per gated layer a training step otherwise runs about two dozen small kernels (noise,
sample, penalty and their backwards); for the MNIST models on a CPU their launch cost
rivals the layers' matmuls. ``GateBank`` draws all shared-sample gates from one noise
tensor inside a single autograd Function whose backward is written out, hands each gate
its sample for the next forward pass (``L0Gate.preset``), and returns the expected-L0
part of the penalty. The maths is ``gates``' own: the same hard-concrete sample, the same
``P(z != 0)``. On a CPU the noise is even the same stream as per-layer sampling in
forward order (one ``uniform_`` over the concatenation draws what the per-layer calls
would), so fused and per-layer training agree to rounding (tests/test_gate_bank.py).
"""

from __future__ import annotations

import torch
from torch import nn

from l0repro.l0 import gates
from l0repro.l0.layers import GatedLayer, L0Gate, gated_layers


class _SampleAndPenalise(torch.autograd.Function):
    """(coef, sizes, u, *log_alphas) -> (sum_j coef_j P(z_j != 0), z for each gate vector)."""

    @staticmethod
    def forward(ctx, coef: torch.Tensor, sizes: list[int], u: torch.Tensor, *log_alphas: torch.Tensor):
        la = torch.cat(log_alphas)
        s, z = gates.sample_from_noise(la, u)
        p = gates.prob_nonzero(la)
        ctx.save_for_backward(s, z, p, coef)
        ctx.sizes = sizes
        return (torch.dot(coef, p), *z.split(sizes))

    @staticmethod
    def backward(ctx, grad_penalty: torch.Tensor, *grad_z: torch.Tensor):
        # autograd materialises the gradient of an unused output as zeros: none is None
        s, z, p, coef = ctx.saved_tensors
        grad = gates.sample_backward(torch.cat(grad_z), s, z)
        grad.addcmul_(gates.prob_nonzero_backward(coef, p), grad_penalty)
        return (None, None, None, *grad.split(ctx.sizes))


class GateBank:
    """Draws the gates of every gated layer of ``model`` at once; see the module docstring.

    Call ``draw()`` before each training forward pass; it returns the expected-L0 penalty
    ``sum_layers lambda / N * |group| * sum_j P(z_j != 0)`` (the L2 parts stay with
    ``L0Penalty``). Layers that sample per example keep sampling themselves.
    """

    def __init__(self, model: nn.Module, n_train: int) -> None:
        if n_train <= 0:
            raise ValueError(f"n_train must be positive, got {n_train}")
        layers = [layer for _, layer in gated_layers(model) if not layer.per_example]
        self.layers: list[GatedLayer] = layers  # their expected-L0 term is drawn here
        self.gates: list[L0Gate] = [layer.gate for layer in layers]
        self.sizes = [g.n for g in self.gates]
        self.coef = torch.cat([torch.full((g.n,), layer.l0_coef(n_train), dtype=torch.float64)
                               for g, layer in zip(self.gates, layers, strict=True)]) \
            if layers else torch.zeros(0, dtype=torch.float64)

    def __len__(self) -> int:
        return len(self.gates)

    def draw(self, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Sample every gate for the next forward pass; returns their expected-L0 penalty.

        ``noise``: the uniform noise to use, the gates' concatenated in layer order (tests
        compare with per-layer sampling from the same noise); by default drawn here.
        """
        la0 = self.gates[0].log_alpha
        if self.coef.device != la0.device or self.coef.dtype != la0.dtype:  # follows the model
            self.coef = self.coef.to(la0)
        if noise is None:
            u = torch.empty(sum(self.sizes), device=la0.device, dtype=la0.dtype)
            u.uniform_(gates.EPS, 1.0 - gates.EPS)
        else:
            u = noise
        penalty, *zs = _SampleAndPenalise.apply(self.coef, self.sizes, u,
                                                *(g.log_alpha for g in self.gates))
        for gate, z in zip(self.gates, zs, strict=True):
            gate.preset(z)
        return penalty
