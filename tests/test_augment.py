"""random_crop_flip: per-image crops and flips as batched ops, aligned with the labels."""

import pytest
import torch
import torch.nn.functional as F

from l0repro.data.augment import random_crop_flip

PAD = 4


def reference(img: torch.Tensor, dy: int, dx: int, flip: bool) -> torch.Tensor:
    """One image the slow, obvious way: zero-pad, slice, flip."""
    h, w = img.shape[-2:]
    out = F.pad(img, (PAD, PAD, PAD, PAD))[:, dy:dy + h, dx:dx + w]
    return out.flip(-1) if flip else out


def decode(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Crop offsets and flips of a batch of the position-coded image (value = y*32 + x + 1)."""
    centre = out[:, 0, 16, 16].round().long() - 1
    sy, sx = centre // 32, centre % 32
    flip = out[:, 0, 16, 17] < out[:, 0, 16, 16]
    dy = sy - 16 + PAD
    # no flip: out[.., x] = img[.., x + dx - 4]; flip: out[.., x] = img[.., dx + 31 - x - 4]
    dx = torch.where(flip, sx - 31 + 16 + PAD, sx - 16 + PAD)
    return dy, dx, flip


def coded_batch(n: int) -> torch.Tensor:
    pos = (torch.arange(32 * 32, dtype=torch.float32) + 1).view(1, 1, 32, 32)
    return pos.expand(n, 3, 32, 32).clone()


def test_every_offset_and_flip_occurs_uniformly_and_matches_reference():
    n = 162 * 100
    out = random_crop_flip(coded_batch(n), torch.Generator().manual_seed(0))
    dy, dx, flip = decode(out)
    assert dy.min() == 0 and dy.max() == 2 * PAD and dx.min() == 0 and dx.max() == 2 * PAD
    combo = (dy * 9 + dx) * 2 + flip.long()
    counts = torch.bincount(combo, minlength=162)
    assert len(counts) == 162
    # 100 expected per cell; a Poisson(100) count leaves [50, 160] with p ~ 1e-7
    assert counts.min() >= 50 and counts.max() <= 160, counts
    img = coded_batch(1)[0]
    for i in range(300):
        expected = reference(img, int(dy[i]), int(dx[i]), bool(flip[i]))
        torch.testing.assert_close(out[i], expected, rtol=0, atol=0)


def test_labels_stay_aligned_and_padding_is_zero():
    n = 500
    x = (torch.arange(n, dtype=torch.float32) + 1).view(n, 1, 1, 1).expand(n, 3, 32, 32).clone()
    out = random_crop_flip(x, torch.Generator().manual_seed(1))
    ident = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1) + 1
    # every pixel is either the image's own value or zero padding
    assert ((out == ident) | (out == 0)).all()
    # the central 24x24 is inside the image for every offset
    assert (out[:, :, PAD:-PAD, PAD:-PAD] == ident).all()
    # some images got padded borders, and padding never exceeds 4 rows/cols per side
    assert (out == 0).any()
    assert ((out == 0).flatten(1).sum(1) <= 3 * (32 * 32 - 24 * 24)).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_shape_dtype_device_and_format_preserved(dtype, channels_last):
    x = torch.rand(7, 3, 32, 32).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert out.data_ptr() != x.data_ptr()


def test_deterministic_given_the_generator():
    x = torch.rand(64, 3, 32, 32)
    a = random_crop_flip(x, torch.Generator().manual_seed(5))
    b = random_crop_flip(x, torch.Generator().manual_seed(5))
    c = random_crop_flip(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_cuda_with_a_device_generator():
    x = coded_batch(256).cuda()
    g = torch.Generator("cuda").manual_seed(0)
    out = random_crop_flip(x, g)
    assert out.device == x.device
    dy, dx, flip = decode(out.cpu())
    img = coded_batch(1)[0]
    for i in range(20):
        torch.testing.assert_close(out[i].cpu(), reference(img, int(dy[i]), int(dx[i]),
                                                           bool(flip[i])), rtol=0, atol=0)
