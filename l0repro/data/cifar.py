"""CIFAR-10 / CIFAR-100 held on the device as uint8 (N, 3, 32, 32), with crop + flip augmentation.

Two sources under the data directory ``root``:

- ``binary``: the official binary version, ``root/cifar-10-batches-bin/data_batch_{1..5}.bin``
  and ``test_batch.bin`` (records of 1 label byte + 3072 pixel bytes, R, G, B planes,
  row-major 32x32), or ``root/cifar-100-binary/train.bin`` and ``test.bin`` (2 label bytes,
  coarse then fine, + 3072). Parsed with numpy in one reshape, no per-image Python.
- ``torchvision``: the python version through ``torchvision.datasets.CIFAR10/100`` under
  ``root`` (torchvision checks its md5s), downloaded when missing and ``download`` is set.

``auto`` uses the binary version when its folder exists, else torchvision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from l0repro.data.augment import random_crop_flip
from l0repro.data.device_data import DeviceData
from l0repro.data.errors import DataError, check_md5, check_root

SOURCES = ("auto", "binary", "torchvision")
VERIFY = ("md5", "size")
PIXELS = 3 * 32 * 32

# [v] docs/paper.md / released code: per-channel statistics on the 0-255 scale
STATS_255 = {
    "cifar10": ((125.3, 123.0, 113.9), (63.0, 62.1, 66.7)),
    "cifar100": ((129.3, 124.1, 112.4), (68.2, 65.4, 70.4)),
}

# official per-file md5s of cifar-10-binary.tar.gz's contents (as in the offline copy's MD5SUMS)
CIFAR10_BIN_MD5 = {
    "data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25",
    "data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
    "data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421",
    "data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
    "data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d",
    "test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d",
}


@dataclass(frozen=True)
class BinaryLayout:
    """Where the official binary version keeps a dataset and what its records look like."""

    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_bytes: int  # the last label byte is the class (CIFAR-100: fine label)
    num_classes: int
    records: dict[str, int]  # official record count per file
    md5: dict[str, str] = field(default_factory=dict)  # empty where the md5s are not known

    @property
    def record_size(self) -> int:
        return self.label_bytes + PIXELS


LAYOUTS = {
    "cifar10": BinaryLayout(
        "cifar-10-batches-bin", tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        ("test_batch.bin",), 1, 10, {f: 10000 for f in CIFAR10_BIN_MD5}, CIFAR10_BIN_MD5),
    # The per-file md5s of cifar-100-binary.tar.gz's train.bin / test.bin could not be found
    # (only the archive's); verify='md5' therefore checks the exact official size instead.
    "cifar100": BinaryLayout(
        "cifar-100-binary", ("train.bin",), ("test.bin",), 2, 100,
        {"train.bin": 50000, "test.bin": 10000}),
}


def read_binary_file(path: Path, layout: BinaryLayout, verify: str = "md5",
                     ) -> tuple[np.ndarray, np.ndarray]:
    """One binary file as (uint8 images (N, 3, 32, 32), int64 labels (N,)).

    ``verify='md5'`` checks the official md5 (or, where unknown, the official size);
    ``verify='size'`` (synthetic test files) only asks for a whole, non-zero number of records.
    Raises ``DataError`` naming the file when it is missing, truncated, corrupt or has
    labels out of range.
    """
    if verify not in VERIFY:
        raise ValueError(f"verify must be one of {list(VERIFY)}, got {verify!r}")
    if not path.is_file():
        raise DataError(f"dataset file {path} is missing")
    rec = layout.record_size
    size = path.stat().st_size
    if verify == "md5" and path.name in layout.md5:
        check_md5(path, layout.md5[path.name])
    elif verify == "md5" and size != layout.records[path.name] * rec:
        raise DataError(f"dataset file {path} has {size} bytes, expected "
                        f"{layout.records[path.name] * rec} ({layout.records[path.name]} records "
                        f"of {rec} bytes); truncated or not the official file")
    if size == 0 or size % rec:
        raise DataError(f"dataset file {path} has {size} bytes, not a whole number of "
                        f"{rec}-byte records (truncated or not a CIFAR binary file)")
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, rec)
    labels = raw[:, layout.label_bytes - 1].astype(np.int64)
    if labels.max() >= layout.num_classes:
        raise DataError(f"dataset file {path} has label {labels.max()}, expected < "
                        f"{layout.num_classes} (wrong dataset or corrupt)")
    return raw[:, layout.label_bytes:].reshape(-1, 3, 32, 32), labels


def _read_binary(root: Path, layout: BinaryLayout, verify: str) -> dict[bool, tuple]:
    splits = {}
    for train, files in ((True, layout.train_files), (False, layout.test_files)):
        parts = [read_binary_file(root / layout.folder / f, layout, verify) for f in files]
        splits[train] = tuple(np.concatenate(arrays) for arrays in zip(*parts, strict=True))
    return splits


def _read_torchvision(name: str, root: Path, download: bool) -> dict[bool, tuple]:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    splits = {}
    for train in (True, False):
        try:
            ds = cls(root=str(root), train=train, download=download)
        except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
            raise DataError(f"{name} (python version) under {root}: {e}") from e
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"{name} (python version) under {root} is unreadable: {e}") from e
        # (N, 32, 32, 3) HWC -> NCHW
        splits[train] = (np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)),
                         np.asarray(ds.targets, dtype=np.int64))
    return splits


def load_cifar(name: str, root: str | Path, device: torch.device, download: bool = True,
               source: str = "auto", verify: str = "md5") -> DeviceData:
    """CIFAR-10/100 from ``root`` on ``device``, normalised with the paper's statistics.

    Args:
        name: ``cifar10`` or ``cifar100``.
        source: ``binary``, ``torchvision`` or ``auto`` (binary when its folder exists).
        verify: binary files only: ``md5`` (official files) or ``size`` (synthetic files
            written by ``l0repro.data.cifar_synthetic``; never use it for real data).
    """
    if name not in LAYOUTS:
        raise DataError(f"unknown CIFAR dataset {name!r}; expected one of {list(LAYOUTS)}")
    if source not in SOURCES:
        raise DataError(f"unknown CIFAR source {source!r}; expected one of {list(SOURCES)}")
    if verify not in VERIFY:
        raise DataError(f"unknown verify mode {verify!r}; expected one of {list(VERIFY)}")
    layout = LAYOUTS[name]
    root = check_root(root, create=download and source != "binary")
    if source == "auto":
        source = "binary" if (root / layout.folder).is_dir() else "torchvision"
    if source == "binary":
        splits = _read_binary(root, layout, verify)
    else:
        splits = _read_torchvision(name, root, download)
    (trx, try_), (tex, tey) = splits[True], splits[False]
    mean, std = STATS_255[name]
    return DeviceData(
        name=name,
        train_x=torch.from_numpy(trx).to(device), train_y=torch.from_numpy(try_).to(device),
        test_x=torch.from_numpy(tex).to(device), test_y=torch.from_numpy(tey).to(device),
        num_classes=layout.num_classes,
        mean=tuple(m / 255.0 for m in mean), std=tuple(s / 255.0 for s in std),
        augment=random_crop_flip,
    )
