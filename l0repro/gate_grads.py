"""Where the gates' gradient comes from: the data (cross-entropy) or the penalty (docs/paper.md 3b).

A gate that scales a whole feature map feeding a training-mode batch norm has its scale divided
back out when the sample is shared by the minibatch, so ``log_alpha`` learns almost only from
the penalty. ``gate_gradients`` measures both parts per gated layer on real batches, with
``torch.autograd.grad`` taken separately for the cross-entropy and for the penalty;
``python -m l0repro.diagnose gates`` prints them, and with ``trainer.log_gate_grads=true`` the
trainer logs them at logging intervals (``GateGradLog``).

The data part is heavy-tailed with shared samples: batch norm's ``eps`` stops the cancellation
only for a sample z close to 0 (z^2 var ~ eps), a few per cent of the draws, whose gradient is
then large. So the median over (batch, gate) draws shows the typical gate, the mean the tail.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from l0repro.l0.layers import gated_layers
from l0repro.l0.regularizer import L0Regularizer
from l0repro.runtime import Autocast


@dataclass
class GateGrad:
    """One gated layer's gradients: ``data[b, j]`` = dCE/dlog_alpha_j on batch b, ``penalty[j]``."""

    layer: str
    data: torch.Tensor  # (batches, gates)
    penalty: torch.Tensor  # (gates,), the same on every batch

    @property
    def gates(self) -> int:
        return self.penalty.numel()

    @property
    def data_mean(self) -> float:
        return float(self.data.abs().mean())

    @property
    def data_median(self) -> float:
        return float(self.data.abs().median())

    @property
    def penalty_mean(self) -> float:
        return float(self.penalty.abs().mean())

    @property
    def share_above(self) -> float:
        """Fraction of (batch, gate) draws whose data gradient outweighs that gate's penalty's."""
        return float((self.data.abs() > self.penalty.abs()).float().mean())


def gate_gradients(model: nn.Module, regularizer: L0Regularizer,
                   batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                   autocast: Autocast = nullcontext) -> list[GateGrad]:
    """Both gradient parts for every gated layer of ``model``, one data row per batch (x, y).

    Each forward runs in the model's current mode (train mode: the layers draw fresh samples,
    shared or per example as configured). ``regularizer`` is the run's whole regulariser
    (expected L0 + expected L2), unfused. Parameters' ``.grad`` are left alone.
    """
    layers = gated_layers(model)
    if not layers:
        return []
    log_alphas = [layer.gate.log_alpha for _, layer in layers]
    pen = torch.autograd.grad(regularizer.penalty(), log_alphas)
    data: list[list[torch.Tensor]] = [[] for _ in layers]
    for x, y in batches:
        with autocast():
            logits = model(x)
        for rows, g in zip(data, torch.autograd.grad(F.cross_entropy(logits.float(), y), log_alphas),
                           strict=True):
            rows.append(g.detach())
    return [GateGrad(name, torch.stack(rows).float(), p.detach().float())
            for (name, _), rows, p in zip(layers, data, pen, strict=True)]


class GateGradLog:
    """The trainer's ``gates/grad_data/<layer>`` (mean |dCE/dlog_alpha|), ``gates/grad_data_median/
    <layer>`` and ``gates/grad_penalty/<layer>`` (mean |dpenalty/dlog_alpha|) on a step's batch.

    ``row(x, y)`` costs one extra forward and backward but leaves training alone: the RNG is
    forked (the run's gate noise and data order are unchanged) and batch norm's running
    statistics are restored afterwards.
    """

    def __init__(self, model: nn.Module, n_train: int, weight_decay: float,
                 autocast: Autocast = nullcontext) -> None:
        self.model = model
        self.regularizer = L0Regularizer(model, n_train, weight_decay, fused=False)
        self.autocast = autocast

    def row(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        buffers = list(self.model.buffers())
        saved = [b.clone() for b in buffers]
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            grads = gate_gradients(self.model, self.regularizer, [(x, y)], self.autocast)
        with torch.no_grad():
            for b, s in zip(buffers, saved, strict=True):
                b.copy_(s)
        out = {}
        for g in grads:
            out[f"gates/grad_data/{g.layer}"] = g.data_mean
            out[f"gates/grad_data_median/{g.layer}"] = g.data_median
            out[f"gates/grad_penalty/{g.layer}"] = g.penalty_mean
        return out
