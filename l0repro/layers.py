"""Layers with hard-concrete L0 gates.

``L0Linear`` gates its *input* units (one gate per column of the weight), ``L0Conv2d``
gates its *output* feature maps (one gate per filter, bias included). Each layer
owns its lambda (the ``c`` in the paper's ``lambda = c / N``) and returns its part of
the paper's penalty: expected L0 plus expected L2, both weighted by P(gate != 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from l0repro import gates


class L0Gate(nn.Module):
    """A vector of ``n`` hard-concrete gates with learnable ``log_alpha``.

    In training mode ``forward`` draws a reparameterised sample: one shared vector, or
    one row per example when ``batch_size`` is given. In eval mode it returns ``z_hat``.
    A shared sample drawn ahead by a ``GateBank`` (``preset``) is used, once, instead.
    """

    def __init__(self, n: int, init_drop_rate: float) -> None:
        super().__init__()
        self.n = n
        self.init_drop_rate = init_drop_rate
        self.log_alpha = nn.Parameter(gates.init_log_alpha(n, init_drop_rate))
        self._preset: torch.Tensor | None = None

    def preset(self, z: torch.Tensor) -> None:
        """Make ``z`` (a shared sample of this gate) the next training forward's sample."""
        if z.shape != (self.n,):
            raise ValueError(f"a preset sample needs shape ({self.n},), got {tuple(z.shape)}")
        self._preset = z

    def forward(self, batch_size: int | None = None) -> torch.Tensor:
        if not self.training:
            return gates.deterministic_gate(self.log_alpha)
        if batch_size is None and self._preset is not None:
            z, self._preset = self._preset, None
            return z
        shape = (self.n,) if batch_size is None else (batch_size, self.n)
        return gates.sample_gate(self.log_alpha, shape)

    def prob_nonzero(self) -> torch.Tensor:
        return gates.prob_nonzero(self.log_alpha)

    def kept(self) -> torch.Tensor:
        return gates.is_kept(self.log_alpha)

    def clamp_(self) -> None:
        gates.clamp_log_alpha_(self.log_alpha.data)

    def extra_repr(self) -> str:
        return f"n={self.n}, init_drop_rate={self.init_drop_rate}"


def _check_lambda(lam: float) -> float:
    if not lam >= 0.0:  # also rejects NaN
        raise ValueError(f"L0 lambda must be a non-negative number, got {lam!r}")
    return float(lam)


def _check_wd_scale(scale: float) -> float:
    if not scale >= 0.0:  # also rejects NaN
        raise ValueError(f"wd_scale must be a non-negative number, got {scale!r}")
    return float(scale)


class L0Linear(nn.Linear):
    """``nn.Linear`` whose input units are gated; a closed gate removes a weight column.

    Args:
        lam: the L0 strength ``c`` (the penalty uses ``c / N`` per weight of a group).
        init_drop_rate: initial dropout rate that sets ``log_alpha``'s mean.
        per_example: one gate sample per example instead of one per minibatch.
        wd_scale: multiplies the weight decay of this layer's expected L2 (1: as given).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 lam: float, init_drop_rate: float = 0.5, per_example: bool = False,
                 wd_scale: float = 1.0) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.lam = _check_lambda(lam)
        self.per_example = per_example
        self.wd_scale = _check_wd_scale(wd_scale)
        self.gate = L0Gate(in_features, init_drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_example and self.training:
            return F.linear(x * self.gate(x.shape[0]).to(x.dtype), self.weight, self.bias)
        # one shared sample: scaling the weight columns equals scaling the inputs, and its
        # backward needs no gradient w.r.t. the input (a whole matmul saved on a first layer)
        return F.linear(x, self.weight * self.gate(), self.bias)

    def l0_coef(self, n_train: int) -> float:
        """lam / N * |g|: an input gate's group is its weight column (``out_features`` weights)."""
        return self.lam / n_train * self.out_features

    def expected_l2(self, weight_decay: float, p: torch.Tensor | None = None) -> torch.Tensor:
        """wd/2 * (sum_j P(z_j != 0) ||w_j||^2 + ||b||^2): the input gates do not gate the bias.
        ``wd`` is ``weight_decay * wd_scale``."""
        p = self.gate.prob_nonzero() if p is None else p
        weight_decay = weight_decay * self.wd_scale
        pen = 0.5 * weight_decay * (p * self.weight.pow(2).sum(0)).sum()
        if self.bias is not None:
            pen = pen + 0.5 * weight_decay * self.bias.pow(2).sum()
        return pen

    def penalty(self, n_train: int, weight_decay: float) -> torch.Tensor:
        """sum_j P(z_j != 0) * (lam/N * |g_j| + wd/2 * ||w_j||^2) + wd/2 * ||b||^2."""
        p = self.gate.prob_nonzero()
        pen = self.l0_coef(n_train) * p.sum()
        if weight_decay:  # skipped when 0: the column norms are the costliest part
            pen = pen + self.expected_l2(weight_decay, p)
        return pen

    def extra_repr(self) -> str:
        scale = f", wd_scale={self.wd_scale:g}" if self.wd_scale != 1.0 else ""
        return f"{super().extra_repr()}, lam={self.lam}, per_example={self.per_example}{scale}"


class L0Conv2d(nn.Conv2d):
    """``nn.Conv2d`` whose output feature maps are gated; a closed gate zeroes filter and bias.

    With one shared sample the gate scales the filters (cheap); per-example sampling
    scales the output maps instead.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True, *, lam: float, init_drop_rate: float = 0.5,
                 per_example: bool = False, wd_scale: float = 1.0) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         bias=bias)
        self.lam = _check_lambda(lam)
        self.per_example = per_example
        self.wd_scale = _check_wd_scale(wd_scale)
        self.gate = L0Gate(out_channels, init_drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_example and self.training:
            z = self.gate(x.shape[0]).to(x.dtype)
            return self._conv_forward(x, self.weight, self.bias) * z[:, :, None, None]
        z = self.gate()
        bias = None if self.bias is None else self.bias * z
        return self._conv_forward(x, self.weight * z[:, None, None, None], bias)

    def group_size(self) -> int:
        k = self.weight[0].numel()
        return k + (1 if self.bias is not None else 0)

    def l0_coef(self, n_train: int) -> float:
        """lam / N * |g|: an output map's group is its filter and its bias."""
        return self.lam / n_train * self.group_size()

    def expected_l2(self, weight_decay: float, p: torch.Tensor | None = None) -> torch.Tensor:
        """wd/2 * sum_j P(z_j != 0) * ||theta_j||^2, the bias inside each map's group; ``wd`` is
        ``weight_decay * wd_scale``."""
        p = self.gate.prob_nonzero() if p is None else p
        group_l2 = self.weight.pow(2).sum((1, 2, 3))
        if self.bias is not None:
            group_l2 = group_l2 + self.bias.pow(2)
        return 0.5 * weight_decay * self.wd_scale * (p * group_l2).sum()

    def penalty(self, n_train: int, weight_decay: float) -> torch.Tensor:
        """sum_j P(z_j != 0) * (lam/N * |g_j| + wd/2 * ||theta_j||^2); the bias is in the group."""
        p = self.gate.prob_nonzero()
        pen = self.l0_coef(n_train) * p.sum()
        if weight_decay:
            pen = pen + self.expected_l2(weight_decay, p)
        return pen

    def extra_repr(self) -> str:
        scale = f", wd_scale={self.wd_scale:g}" if self.wd_scale != 1.0 else ""
        return f"{super().extra_repr()}, lam={self.lam}, per_example={self.per_example}{scale}"


GatedLayer = L0Linear | L0Conv2d


def gated_layers(model: nn.Module) -> list[tuple[str, GatedLayer]]:
    """The model's gated layers with their qualified names, in definition order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (L0Linear, L0Conv2d))]


class L0Penalty:
    """The whole regulariser: gated layers' expected L0 + L2, plain L2 on every other parameter.

    ``log_alpha`` carries no penalty. Built once per model so the per-step call does no
    module walking; calling it returns a 0-dim tensor. ``skip_l0`` names layers whose
    expected-L0 term is computed elsewhere (by a ``GateBank``); their L2 part stays here.
    ``active`` is False when nothing is left to compute.
    """

    def __init__(self, model: nn.Module, n_train: int, weight_decay: float,
                 skip_l0: list[nn.Module] | tuple[()] = ()) -> None:
        if n_train <= 0:
            raise ValueError(f"n_train must be positive, got {n_train}")
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


def model_penalty(model: nn.Module, n_train: int, weight_decay: float) -> torch.Tensor:
    """One-off ``L0Penalty(model, n_train, weight_decay)()``."""
    return L0Penalty(model, n_train, weight_decay)()


def log_alphas(model: nn.Module) -> list[torch.Tensor]:
    return [m.log_alpha for m in model.modules() if isinstance(m, L0Gate)]


@torch.no_grad()
def clamp_gates_(model_or_log_alphas: nn.Module | list[torch.Tensor]) -> None:
    """Apply the post-step log_alpha clamp to every gate (pass ``log_alphas(model)`` to reuse)."""
    las = model_or_log_alphas
    if isinstance(las, nn.Module):
        las = log_alphas(las)
    if las:
        torch._foreach_clamp_min_(las, gates.LOG_ALPHA_MIN)
        torch._foreach_clamp_max_(las, gates.LOG_ALPHA_MAX)


@torch.no_grad()
def expected_l0(model: nn.Module) -> torch.Tensor:
    """Expected number of open gates, summed over the model (a 0-dim tensor)."""
    terms = [m.prob_nonzero().sum() for m in model.modules() if isinstance(m, L0Gate)]
    return torch.stack(terms).sum() if terms else torch.zeros(())
