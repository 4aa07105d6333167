"""Bias-corrected exponential moving average of all parameters and buffers, for evaluation.

The released code evaluates with an Adam-style bias-corrected EMA: ``m_t = d m_{t-1} +
(1 - d) theta_t`` divided by ``1 - d^t``. That equals a running lerp towards the new value
with weight ``(1 - d) / (1 - d^t)`` (1 on the first update, so it starts as a copy). This
subclass of ``torch.optim.swa_utils.AveragedModel`` does exactly that and, unlike the
parent's ``update_parameters``, never reads its device-side counter back to the host,
so updating it after every step costs no host-device sync. ``count_on_device()`` moves the
count itself to the parameters' device and derives the weight there, so that an update
holds no host value and a CUDA graph can capture it (``l0repro.graph_step``).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


class EMA(AveragedModel):
    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        super().__init__(model, use_buffers=True)
        self.decay = decay
        self._updates = 0  # host mirror of n_averaged (not kept once the count is on the device)
        self._on_device = False

    def count_on_device(self) -> None:
        """Keep the update count on the parameters' device and compute the weight from it there.

        The same numbers as the host count: the weight is the same float64 expression, and a
        lerp with weight 1 (the first update) is the copy. The state dict keeps its keys.
        """
        device = next(itertools.chain(self.module.parameters(), self.module.buffers())).device
        self.n_averaged = self.n_averaged.to(device)
        self._on_device = True

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        if self._on_device:
            self._update_on_device(model)
            return
        self._updates += 1
        weight = (1.0 - self.decay) / (1.0 - self.decay ** self._updates)
        lerp, copy = self._pairs(model, lerp_floats=self._updates > 1)  # the first update copies
        for mine, theirs in lerp.values():
            torch._foreach_lerp_(mine, theirs, weight)
        if copy[0]:
            torch._foreach_copy_(*copy)
        self.n_averaged.fill_(self._updates)

    def _update_on_device(self, model: nn.Module) -> None:
        self.n_averaged += 1
        n = self.n_averaged.double()
        # tensor / tensor: `float / tensor` would multiply by a reciprocal, one rounding more
        weight = torch.full_like(n, 1.0 - self.decay) / (1.0 - torch.pow(self.decay, n))
        lerp, copy = self._pairs(model, lerp_floats=True)  # weight 1 on the first update: a copy
        for dtype, (mine, theirs) in lerp.items():
            torch._foreach_lerp_(mine, theirs, [weight.to(dtype)] * len(mine))
        if copy[0]:
            torch._foreach_copy_(*copy)

    def _pairs(self, model: nn.Module, lerp_floats: bool
               ) -> tuple[dict[torch.dtype, tuple[list, list]], tuple[list, list]]:
        """(averaged, model) tensor pairs: floating ones to lerp, grouped by dtype (when
        ``lerp_floats``), and the rest to copy (integer buffers such as BN's batch counter)."""
        mine = itertools.chain(self.module.parameters(), self.module.buffers())
        theirs = itertools.chain(model.parameters(), model.buffers())
        lerp: dict[torch.dtype, tuple[list, list]] = {}
        copy: tuple[list, list] = ([], [])
        for a, b in zip(mine, theirs, strict=True):
            group = lerp.setdefault(a.dtype, ([], [])) if lerp_floats and a.is_floating_point() \
                else copy
            group[0].append(a)
            group[1].append(b.detach())
        return lerp, copy

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._updates = int(self.n_averaged)
        return result
