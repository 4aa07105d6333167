"""Train to a size: expected FLOPs (or expected open weights) as a constraint, not a penalty.

Instead of guessing lambda, ask for ``E[FLOPs] / dense FLOPs <= target``. The constraint is
solved by its Lagrangian, ``loss + multiplier * (g - target)``, minimised over the network and
maximised over ``multiplier >= 0`` by gradient ascent (gradient descent-ascent, as in
Gallego-Posada et al. 2022, "Controlled Sparsity via Constrained Optimization"):

    budget = Budget(model, target=0.25)            # kind="flops" (default) or "l0"
    for x, y in batches:
        penalty = reg.penalty() + budget.penalty()  # before the forward (reg draws the gates)
        loss = F.cross_entropy(model(x), y) + penalty
        opt.zero_grad(); loss.backward(); opt.step()
        reg.after_step(); budget.dual_step()        # multiplier += dual_lr * (g - target), >= 0

``g`` is differentiable in the gates' ``log_alpha`` (``expected_flops``), so the multiplier
prices every gate by the FLOPs it costs. While the constraint holds, the multiplier is reset to
0 ("dual restart", an option of the same authors' cooper library): an inactive constraint's
optimal multiplier is 0, and a multiplier that only decays slowly would keep closing gates
below the target. Everything stays on the model's device, a few small ops per step with no host
sync, so the step can be captured in a CUDA graph. The dual step is written out here rather
than taken from cooper: it is three tensor ops, it runs inside that graph, and the method keeps
needing torch alone.

``kind="l0"``: ``g`` is the expected number of open weights in the gated groups over their
total (the paper's L0 norm, as a fraction).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from l0repro.l0 import gates
from l0repro.l0.flops import closed_measure, dense_measure, expected_measure, flops_under, resolve_input
from l0repro.l0.layers import gated_layers

KINDS = ("flops", "l0")
MET_TOLERANCE = 0.05  # a run meets its budget when g ends within 5 % (relative) above target


class Budget:
    """The constraint ``g(model) <= target`` and its Lagrange multiplier.

    Args:
        model: a module with ``L0Linear`` / ``L0Conv2d`` layers.
        target: the fraction in (0, 1] of the dense FLOPs (``kind="flops"``) or of the gated
            groups' weights (``kind="l0"``) to keep, in expectation under the training gates.
        kind: ``flops`` or ``l0``.
        dual_lr: the multiplier's ascent step per unit of violation.
        example_input: one input batch (FLOPs only; may be left out for the suite's models).

    Raises:
        ValueError: a target outside (0, 1], a model without gates, an unknown kind, or a
            FLOPs target below what closing every gate reaches (the message gives that floor).
    """

    def __init__(self, model: nn.Module, target: float, *, kind: str = "flops",
                 dual_lr: float = 0.01, example_input: torch.Tensor | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"budget kind must be one of {KINDS}, got {kind!r}")
        if not 0.0 < target <= 1.0:
            raise ValueError(f"target_{kind} must be a fraction in (0, 1], got {target!r}")
        if not dual_lr > 0.0:
            raise ValueError(f"dual_lr must be positive, got {dual_lr!r}")
        self.layers = [layer for _, layer in gated_layers(model)]
        if not self.layers:
            raise ValueError(f"target_{kind}={target}: {type(model).__name__} has no L0 gates to "
                             "close (a dense or dropout model); use an L0 model")
        self.model, self.kind, self.target, self.dual_lr = model, kind, float(target), float(dual_lr)
        device = self.layers[0].gate.log_alpha.device
        if kind == "flops":
            self.example_input = resolve_input(model, example_input)
            with torch.no_grad():
                self.dense = float(flops_under(model, dense_measure, self.example_input))
                self.floor = float(flops_under(model, closed_measure, self.example_input)) / self.dense
            if target < self.floor:
                raise ValueError(f"target_flops={target} is below what the gates can reach: with "
                                 f"every gate closed, the ungated layers still cost {self.floor:.4f} "
                                 f"of the dense FLOPs; choose a target >= {self.floor:.4f}")
        else:
            self.sizes = torch.tensor([float(layer.group_size()) for layer in self.layers],
                                      dtype=torch.float64, device=device)
            self.dense = float(sum(layer.group_size() * layer.gate.n for layer in self.layers))
            self.floor = 0.0
        self.multiplier = torch.zeros((), dtype=torch.float64, device=device)
        self.value = torch.zeros((), dtype=torch.float64, device=device)  # g at the last penalty

    def fraction(self) -> torch.Tensor:
        """g: expected FLOPs / dense, or expected open gated weights / all of them (0-dim,
        float64, differentiable in ``log_alpha``)."""
        if self.kind == "flops":
            return flops_under(self.model, expected_measure, self.example_input) / self.dense
        open_ = torch.stack([gates.prob_nonzero(layer.gate.log_alpha).sum().double()
                             for layer in self.layers])
        return (open_ * self.sizes).sum() / self.dense

    def penalty(self) -> torch.Tensor:
        """``multiplier * (g - target)``: add it to the loss (its gradient prices the gates)."""
        g = self.fraction()
        self.value.copy_(g.detach())
        # float64 for the sums (WRN-28-10 counts ~1e10 FLOPs); the loss keeps the gates' dtype
        return (self.multiplier * (g - self.target)).to(self.layers[0].gate.log_alpha.dtype)

    @torch.no_grad()
    def dual_step(self) -> None:
        """Ascend the multiplier on the last ``penalty()``'s violation; 0 while it is met."""
        violation = self.value - self.target
        grown = (self.multiplier + self.dual_lr * violation).clamp_min(0.0)
        self.multiplier.copy_(torch.where(violation > 0, grown, torch.zeros_like(grown)))

    def met(self, value: float | None = None) -> bool:
        """Whether ``g`` (the last one, by default) is within ``MET_TOLERANCE`` above the target."""
        g = float(self.value) if value is None else value
        return g <= self.target * (1.0 + MET_TOLERANCE)

    def state_dict(self) -> dict[str, Any]:
        return {"multiplier": self.multiplier.clone(), "value": self.value.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.multiplier.copy_(state["multiplier"])
        self.value.copy_(state["value"])
