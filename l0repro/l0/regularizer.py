"""The whole L0 regulariser of a model, as the training loop uses it: one object, two calls.

    reg = L0Regularizer(model, n_train=60_000, weight_decay=0.0)
    for x, y in batches:
        penalty = reg.penalty()                  # BEFORE the forward: it draws the gates
        loss = F.cross_entropy(model(x), y) + penalty
        opt.zero_grad(); loss.backward(); opt.step()
        reg.after_step()                                       # log_alpha clamp

``penalty()`` is the paper's objective term per example: for every gated layer
``sum_j P(z_j != 0) * (lambda/N * |g_j| + wd/2 * ||theta_j||^2)``, plus ``wd/2 * ||theta||^2``
for every parameter no gate covers (``log_alpha`` itself carries none). With ``fused=True`` it
also draws every shared-sample gate of the model in one fused op (``GateBank``), which is why it
comes before the forward pass that uses those samples.
"""

from __future__ import annotations

import torch
from torch import nn

from l0repro.l0 import gates
from l0repro.l0.gate_bank import GateBank
from l0repro.l0.layers import GatedLayer, L0Gate, gated_layers


class L0Penalty:
    """Gated layers' expected L0 + L2 and plain L2 on every other parameter, unfused.

    ``skip_l0`` names layers whose expected-L0 term is computed elsewhere (by a ``GateBank``);
    their L2 part stays here. ``active`` is False when nothing is left to compute.
    """

    def __init__(self, model: nn.Module, n_train: int, weight_decay: float,
                 skip_l0: list[nn.Module] | tuple[()] = ()) -> None:
        if n_train <= 0:
            raise ValueError(f"n_train must be positive, got {n_train}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        self.layers = [layer for _, layer in gated_layers(model)]
        owned = {id(p) for layer in self.layers for p in layer.parameters()}
        self.plain = [p for p in model.parameters() if id(p) not in owned]
        skipped = {id(m) for m in skip_l0}
        self.l0_layers = {id(layer) for layer in self.layers if id(layer) not in skipped}
        self.n_train = n_train
        self.weight_decay = weight_decay
        self.device = next(model.parameters()).device
        self.active = bool(self.l0_layers or (weight_decay and (self.layers or self.plain)))

    def _layer_term(self, layer: GatedLayer) -> torch.Tensor | None:
        if id(layer) in self.l0_layers:
            return layer.penalty(self.n_train, self.weight_decay)
        return layer.expected_l2(self.weight_decay) if self.weight_decay else None

    def __call__(self) -> torch.Tensor:
        terms = [t for t in map(self._layer_term, self.layers) if t is not None]
        if self.weight_decay and self.plain:
            sq = torch._foreach_norm(self.plain)
            terms.append(0.5 * self.weight_decay * torch.stack(sq).pow(2).sum())
        return torch.stack(terms).sum() if terms else torch.zeros((), device=self.device)


class L0Regularizer:
    """The L0 (+ expected L2) penalty of ``model`` and the per-step gate upkeep.

    Args:
        model: any module containing ``L0Linear`` / ``L0Conv2d`` layers (others get plain L2).
        n_train: N, the number of training examples (lambda = c / N per layer's ``lam`` = c).
        weight_decay: L2 strength in the loss (expected under the gates for gated groups).
        fused: draw all shared-sample gates and their expected L0 in one fused op; turn it off
            when the forward is ``torch.compile``d (the layers then sample themselves).

    Raises:
        ValueError: ``n_train`` not positive, or ``weight_decay`` negative.
    """

    def __init__(self, model: nn.Module, n_train: int, weight_decay: float = 0.0,
                 fused: bool = True) -> None:
        bank = GateBank(model, n_train) if fused else None
        self.bank = bank if bank else None  # a bank without gates (a dense model) is empty
        self.rest = L0Penalty(model, n_train, weight_decay,
                              skip_l0=self.bank.layers if self.bank else ())
        self.log_alphas = [m.log_alpha for m in model.modules() if isinstance(m, L0Gate)]
        self.device = self.rest.device

    def penalty(self) -> torch.Tensor:
        """This step's penalty (a 0-dim tensor, zero for a dense model without weight decay).

        Call it once per training step, before the forward pass: with ``fused=True`` it draws
        the gate samples that forward uses.
        """
        penalty = self.bank.draw() if self.bank else None
        if self.rest.active:
            penalty = self.rest() if penalty is None else penalty + self.rest()
        return torch.zeros((), device=self.device) if penalty is None else penalty

    @property
    def active(self) -> bool:
        """False when ``penalty()`` is always zero (no gate and no weight decay)."""
        return bool(self.bank) or self.rest.active

    @torch.no_grad()
    def after_step(self) -> None:
        """Clamp every ``log_alpha`` to [log 0.01, log 100], as the authors' code does after
        each optimiser step (keeps closed gates from drifting beyond recovery)."""
        if self.log_alphas:
            torch._foreach_clamp_min_(self.log_alphas, gates.LOG_ALPHA_MIN)
            torch._foreach_clamp_max_(self.log_alphas, gates.LOG_ALPHA_MAX)

    @torch.no_grad()
    def expected_l0(self) -> torch.Tensor:
        """Expected number of open gates over the model (a 0-dim tensor)."""
        if not self.log_alphas:
            return torch.zeros((), device=self.device)
        return torch.stack([gates.prob_nonzero(la).sum() for la in self.log_alphas]).sum()
