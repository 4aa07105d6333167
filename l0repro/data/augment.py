"""Training-batch augmentation as batched tensor ops on the device (no per-image Python)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Per image: zero-pad by ``pad``, take a random HxW crop, flip horizontally with p = 1/2.

    ``x`` is a float (N, C, H, W) batch in [0, 1] before normalisation, so the padding is
    black, as torchvision's ``RandomCrop(32, padding=4)`` on the PIL image. Each of the
    ``(2 * pad + 1) ** 2`` offsets and both flips are equally likely, drawn independently per
    image from ``generator`` (which must live on ``x``'s device). Returns a new tensor of
    the same shape, dtype, device and memory format; image i stays at row i.
    """
    n, c, h, w = x.shape
    dev = x.device
    offsets = torch.randint(0, 2 * pad + 1, (2, n), device=dev, generator=generator)
    flip = torch.randint(0, 2, (n,), device=dev, generator=generator).bool()
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = offsets[0, :, None] + torch.arange(h, device=dev)  # (N, H)
    cols_fwd = torch.arange(w, device=dev)
    cols = offsets[1, :, None] + torch.where(flip[:, None], cols_fwd.flip(0), cols_fwd)  # (N, W)
    # one gather: out[i, c, y, x] = padded[i, c, rows[i, y], cols[i, x]]
    img = torch.arange(n, device=dev)[:, None, None, None]
    chan = torch.arange(c, device=dev)[:, None, None]
    out = padded[img, chan, rows[:, None, :, None], cols[:, None, None, :]]
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out
