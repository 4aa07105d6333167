"""MNIST through torchvision, held on the device (inputs scaled to [0, 1], no normalisation)."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.datasets import MNIST

from l0repro.data.device_data import DeviceData
from l0repro.data.errors import DataError, check_md5, check_root

# md5 of the uncompressed IDX files (the well-known values torchvision also uses)
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


def load_mnist(root: str | Path, device: torch.device, download: bool = True) -> DeviceData:
    """Read MNIST from ``root`` (torchvision layout ``root/MNIST/raw``), downloading when absent."""
    root = check_root(root, create=download)
    raw = root / "MNIST" / "raw"
    have_files = raw.is_dir() and any(raw.iterdir())
    if have_files:
        for fname, md5 in MNIST_MD5.items():
            check_md5(raw / fname, md5)
    splits = {}
    for train in (True, False):
        try:
            ds = MNIST(root=str(root), train=train, download=download and not have_files)
        except RuntimeError as e:  # torchvision: "Dataset not found" or a failed integrity check
            raise DataError(f"MNIST under {raw}: {e}") from e
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"MNIST under {raw} is unreadable or truncated: {e}") from e
        splits[train] = (ds.data, ds.targets)
    expected = {True: 60000, False: 10000}
    for train, (x, y) in splits.items():
        if x.shape[1:] != (28, 28) or len(x) != expected[train] or len(y) != len(x):
            split = "train" if train else "test"
            raise DataError(f"MNIST {split} split under {raw} has shape {tuple(x.shape)} and "
                            f"{len(y)} labels; expected ({expected[train]}, 28, 28)")
    (trx, try_), (tex, tey) = splits[True], splits[False]
    return DeviceData(
        name="mnist",
        train_x=trx.unsqueeze(1).to(device), train_y=try_.long().to(device),
        test_x=tex.unsqueeze(1).to(device), test_y=tey.long().to(device),
        num_classes=10,
    )
