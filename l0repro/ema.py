"""Bias-corrected exponential moving average of all parameters and buffers, for evaluation.

The released code evaluates with an Adam-style bias-corrected EMA: ``m_t = d m_{t-1} +
(1 - d) theta_t`` divided by ``1 - d^t``. That equals a running lerp towards the new value
with weight ``(1 - d) / (1 - d^t)`` (1 on the first update, so it starts as a copy). This
subclass of ``torch.optim.swa_utils.AveragedModel`` does exactly that and, unlike the
parent's ``update_parameters``, never reads its device-side counter back to the host,
so updating it after every step costs no host-device sync.
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
        self._updates = 0  # host mirror of n_averaged

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        self._updates += 1
        weight = (1.0 - self.decay) / (1.0 - self.decay ** self._updates)
        mine = itertools.chain(self.module.parameters(), self.module.buffers())
        theirs = itertools.chain(model.parameters(), model.buffers())
        lerp_a, lerp_b, copy_a, copy_b = [], [], [], []
        for a, b in zip(mine, theirs, strict=True):
            if a.is_floating_point() and self._updates > 1:
                lerp_a.append(a)
                lerp_b.append(b.detach())
            else:  # integer buffers (BN's batch counter) and the first update: copy
                copy_a.append(a)
                copy_b.append(b.detach())
        if lerp_a:
            torch._foreach_lerp_(lerp_a, lerp_b, weight)
        if copy_a:
            torch._foreach_copy_(copy_a, copy_b)
        self.n_averaged.fill_(self._updates)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._updates = int(self.n_averaged)
        return result
