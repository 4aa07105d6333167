"""Layers with hard-concrete L0 gates.

``L0Linear`` gates its *input* units (one gate per column of the weight), ``L0Conv2d``
gates its *output* feature maps (one gate per filter, bias included). Each layer
owns its lambda (the ``c`` in the paper's ``lambda = c / N``) and returns its part of
the paper's penalty: expected L0 plus expected L2, both weighted by P(gate != 0).
Both subclass the torch layer they gate, so code that handles an ``nn.Linear`` or
``nn.Conv2d`` (initialisers, tracers, pruners) handles them too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from l0repro.l0 import gates


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

    def extra_repr(self) -> str:
        return f"n={self.n}, init_drop_rate={self.init_drop_rate}"


def _non_negative(value: float, what: str) -> float:
    if not value >= 0.0:  # also rejects NaN
        raise ValueError(f"{what} must be a non-negative number, got {value!r}")
    return float(value)


class L0Layer:
    """What ``L0Linear`` and ``L0Conv2d`` share: lambda, sampling mode, and the penalty.

    A subclass sets ``gate`` and implements ``group_size`` (weights per gated group) and
    ``group_sq_norms`` (||theta_j||^2 per group) and ``ungated_sq_norm`` (plain-L2 part).
    """

    gate: L0Gate
    lam: float
    per_example: bool
    wd_scale: float

    def _init_l0(self, n_gates: int, lam: float, init_drop_rate: float, per_example: bool,
                 wd_scale: float) -> None:
        self.lam = _non_negative(lam, "L0 lambda")
        self.per_example = bool(per_example)
        self.wd_scale = _non_negative(wd_scale, "wd_scale")
        self.gate = L0Gate(n_gates, init_drop_rate)

    def group_size(self) -> int:
        raise NotImplementedError

    def group_sq_norms(self) -> torch.Tensor:
        raise NotImplementedError

    def ungated_sq_norm(self) -> torch.Tensor | None:
        return None

    def l0_coef(self, n_train: int) -> float:
        """lam / N * |g|: the expected-L0 weight of one open gate."""
        return self.lam / n_train * self.group_size()

    def expected_l2(self, weight_decay: float, p: torch.Tensor | None = None) -> torch.Tensor:
        """wd/2 * (sum_j P(z_j != 0) ||theta_j||^2 + the ungated parameters' ||.||^2), with
        ``wd = weight_decay * wd_scale``."""
        p = self.gate.prob_nonzero() if p is None else p
        wd = weight_decay * self.wd_scale
        pen = 0.5 * wd * (p * self.group_sq_norms()).sum()
        rest = self.ungated_sq_norm()
        return pen if rest is None else pen + 0.5 * wd * rest

    def penalty(self, n_train: int, weight_decay: float) -> torch.Tensor:
        """sum_j P(z_j != 0) * (lam/N * |g_j| + wd/2 * ||theta_j||^2) (+ plain L2 of the rest)."""
        p = self.gate.prob_nonzero()
        pen = self.l0_coef(n_train) * p.sum()
        if weight_decay:  # skipped when 0: the group norms are the costliest part
            pen = pen + self.expected_l2(weight_decay, p)
        return pen

    def _l0_repr(self) -> str:
        scale = f", wd_scale={self.wd_scale:g}" if self.wd_scale != 1.0 else ""
        return f"lam={self.lam}, per_example={self.per_example}{scale}"


class L0Linear(L0Layer, nn.Linear):
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
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._init_l0(in_features, lam, init_drop_rate, per_example, wd_scale)

    @classmethod
    def from_linear(cls, layer: nn.Linear, *, lam: float, **kwargs) -> L0Linear:
        """A gated copy of ``layer`` (same weights, device and dtype); kwargs as the constructor."""
        new = cls(layer.in_features, layer.out_features, layer.bias is not None, lam=lam, **kwargs)
        new.load_state_dict(layer.state_dict(), strict=False)
        return new.to(layer.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_example and self.training:
            return F.linear(x * self.gate(x.shape[0]).to(x.dtype), self.weight, self.bias)
        # one shared sample: scaling the weight columns equals scaling the inputs, and its
        # backward needs no gradient w.r.t. the input (a whole matmul saved on a first layer)
        return F.linear(x, self.weight * self.gate(), self.bias)

    def group_size(self) -> int:
        return self.out_features  # an input gate's group is its weight column

    def group_sq_norms(self) -> torch.Tensor:
        return self.weight.pow(2).sum(0)

    def ungated_sq_norm(self) -> torch.Tensor | None:
        return None if self.bias is None else self.bias.pow(2).sum()  # input gates leave the bias

    def extra_repr(self) -> str:
        return f"{nn.Linear.extra_repr(self)}, {self._l0_repr()}"


class L0Conv2d(L0Layer, nn.Conv2d):
    """``nn.Conv2d`` whose output feature maps are gated; a closed gate zeroes filter and bias.

    With one shared sample the gate scales the filters (cheap); per-example sampling
    scales the output maps instead. Arguments as ``nn.Conv2d`` plus those of ``L0Linear``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 bias: bool = True, *, lam: float, init_drop_rate: float = 0.5,
                 per_example: bool = False, wd_scale: float = 1.0, **conv_kwargs) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride,
                           padding=padding, bias=bias, **conv_kwargs)
        self._init_l0(out_channels, lam, init_drop_rate, per_example, wd_scale)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, *, lam: float, **kwargs) -> L0Conv2d:
        """A gated copy of ``conv`` (same weights, options, device and dtype), e.g. to swap
        the first conv of every residual block of a torchvision model."""
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                  conv.padding, conv.bias is not None, lam=lam, dilation=conv.dilation,
                  groups=conv.groups, padding_mode=conv.padding_mode, **kwargs)
        new.load_state_dict(conv.state_dict(), strict=False)
        return new.to(conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_example and self.training:
            z = self.gate(x.shape[0]).to(x.dtype)
            return self._conv_forward(x, self.weight, self.bias) * z[:, :, None, None]
        z = self.gate()
        bias = None if self.bias is None else self.bias * z
        return self._conv_forward(x, self.weight * z[:, None, None, None], bias)

    def group_size(self) -> int:
        return self.weight[0].numel() + (1 if self.bias is not None else 0)  # filter and bias

    def group_sq_norms(self) -> torch.Tensor:
        sq = self.weight.pow(2).sum((1, 2, 3))
        return sq if self.bias is None else sq + self.bias.pow(2)

    def extra_repr(self) -> str:
        return f"{nn.Conv2d.extra_repr(self)}, {self._l0_repr()}"


GatedLayer = L0Linear | L0Conv2d


def gated_layers(model: nn.Module) -> list[tuple[str, GatedLayer]]:
    """The model's gated layers with their qualified names, in definition order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, L0Layer)]
