"""Wide residual networks (Zagoruyko & Komodakis 2016) with L0 gates, for Table 2."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from l0repro.l0.layers import L0Conv2d
from l0repro.models.base import METHODS, SparseModel, check_method, per_layer

# the gated convs' weight-decay factor: the released code's wd / (1 - 0.3), or wd itself
GATED_WEIGHT_DECAY = {"authors": 1.0 / (1.0 - 0.3), "plain": 1.0}


class WideBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3(stride)-BN-ReLU-[dropout]-conv3x3, plus shortcut.

    ``conv1`` is an ``L0Conv2d`` gating its output maps when ``lam`` is given, else a plain
    conv. The shortcut is the identity, or a strided 1x1 conv on the pre-activated input
    ``relu(bn1(x))`` when the shape changes (as in the original WRN code).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, *,
                 lam: float | None = None, init_drop_rate: float = 0.3,
                 dropout_rate: float = 0.0, per_example: bool = False, wd_scale: float = 1.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        if lam is None:
            self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        else:
            self.conv1 = L0Conv2d(in_channels, out_channels, 3, stride, 1, bias=False, lam=lam,
                                  init_drop_rate=init_drop_rate, per_example=per_example,
                                  wd_scale=wd_scale)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else None
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.shortcut = None
        if in_channels != out_channels or stride != 1:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(o)
        o = F.relu(self.bn2(self.conv1(o)))
        if self.dropout is not None:
            o = self.dropout(o)
        return self.conv2(o) + skip


class WideResNet(SparseModel):
    """Pre-activation WRN-``depth``-``widen_factor`` for 32x32 images (CIFAR).

    conv3x3(16), then three groups of ``(depth - 4) / 6`` blocks of widths 16k, 32k, 64k
    (k = ``widen_factor``) at 32x32, 16x16 and 8x8, then BN-ReLU-global average pool-linear.

    Args:
        depth: 6n + 4 layers (28 in the paper).
        widen_factor: width multiplier k (10 in the paper).
        method: ``l0`` (gated), ``dropout`` (WRN-dropout) or ``dense`` (plain WRN).
        lambdas: L0 strength ``c`` (``lambda = c / N``), one value or one per gated conv.
        init_drop_rate: initial dropout rate that sets the gates' ``log_alpha`` (paper: 0.3).
        dropout_rate: dropout between the block's convs for ``method='dropout'`` (0.3).
        num_classes: classifier outputs.
        per_example: one gate sample per example instead of one per minibatch.
        gated_weight_decay: ``authors`` (the gated convs' expected L2 uses wd / (1 - 0.3), as
            the released code does) or ``plain`` (wd, as every other layer).
        image_size: input side (FLOPs and compaction trace one example of it).

    Decisions:

    - Gates: only on the output maps of each block's first 3x3 conv (``groupG.B.conv1``),
      i.e. where WRN-dropout puts its dropout; the stem, every ``conv2``, the shortcuts and
      the classifier are plain layers (plain L2 through ``L0Regularizer``). ``unit_layers``
      lists the gated convs in forward order.
    - Stride: on ``conv1`` (and the 1x1 shortcut) of the first block of a group, as in the
      original WRN code. That is the architecture whose errors Table 2 quotes as baselines,
      and it runs the gated conv at the group's output resolution. The released L0 code puts
      the stride on ``conv2`` instead, so its transition blocks run ``conv1`` at the input
      resolution (4x the positions); its FLOP curves are not directly comparable.
    - A closed gate zeroes a ``conv1`` map, but ``conv2`` then sees ``relu(bn2(0))``, a
      per-channel constant (``relu(beta)`` with batch statistics, ``relu(beta - gamma * mu /
      sigma)`` with running ones), not zero. The FLOP count treats the channel as removed
      from ``conv2`` too (its input measure is the gate's): the constant's contribution can
      be folded into a bias, which costs nothing in the ``flop_counter`` convention. With
      zero padding that bias differs at the border positions (docs/paper.md section 4), so the
      pruned count is the cost of a network whose border correction is also free.
    - Weight decay of the gated convs: the released code builds them with
      ``weight_decay / (1 - 0.3)`` (0.3 = the WRN-dropout rate and the gates' initial drop
      rate), so that at initialisation, where P(z != 0) is about 0.7, their expected L2 is about
      the plain wd of an ungated conv. The paper does not state it. ``gated_weight_decay=
      "authors"`` does the same (the constant 0.3, whatever ``init_drop_rate`` is); ``plain``
      uses wd.
    - Init: convs ``kaiming_normal_(fan_out)`` as in the PyTorch WRN port, BN weight 1 and
      bias 0, classifier bias 0; gates as ``L0Conv2d`` initialises them.
    """

    def __init__(self, depth: int = 28, widen_factor: int = 10, method: str = "l0",
                 lambdas: float | Sequence[float] = 0.001, init_drop_rate: float = 0.3,
                 dropout_rate: float = 0.3, num_classes: int = 10, per_example: bool = False,
                 gated_weight_decay: str = "authors", image_size: int = 32) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), "
                             f"got {depth!r}")
        if isinstance(widen_factor, bool) or not isinstance(widen_factor, int) or widen_factor < 1:
            raise ValueError(f"WRN widen_factor must be a positive integer, got {widen_factor!r}")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate!r}")
        self.method = check_method(method, METHODS)
        if gated_weight_decay not in GATED_WEIGHT_DECAY:
            raise ValueError(f"gated_weight_decay must be one of {sorted(GATED_WEIGHT_DECAY)}, "
                             f"got {gated_weight_decay!r}")
        self.depth, self.widen_factor, self.image_size = depth, widen_factor, image_size
        self.input_shape = (3, image_size, image_size)
        self.name = f"wrn-{depth}-{widen_factor}"
        n = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        strides = [1, 2, 2]
        gated = [f"group{g + 1}.{b}.conv1" for g in range(3) for b in range(n)]
        self.lambdas = per_layer(lambdas, gated, "lambdas") if method == "l0" else []
        self.unit_layers = {}

        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        in_ch, i = 16, 0
        for g in range(3):
            blocks = []
            for b in range(n):
                blocks.append(WideBlock(
                    in_ch, widths[g], strides[g] if b == 0 else 1,
                    lam=self.lambdas[i] if method == "l0" else None,
                    init_drop_rate=init_drop_rate,
                    dropout_rate=dropout_rate if method == "dropout" else 0.0,
                    per_example=per_example,
                    wd_scale=GATED_WEIGHT_DECAY[gated_weight_decay]))
                self.unit_layers[gated[i]] = widths[g]
                in_ch, i = widths[g], i + 1
            self.add_module(f"group{g + 1}", nn.Sequential(*blocks))
        self.bn = nn.BatchNorm2d(in_ch)
        self.fc = nn.Linear(in_ch, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def blocks(self) -> list[WideBlock]:
        return [b for g in (self.group1, self.group2, self.group3) for b in g]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.group3(self.group2(self.group1(self.conv(x))))
        x = F.adaptive_avg_pool2d(F.relu(self.bn(x)), 1)
        return self.fc(x.flatten(1))

