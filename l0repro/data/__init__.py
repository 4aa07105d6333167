"""Datasets held whole on the training device."""

from __future__ import annotations

from pathlib import Path

import torch

from l0repro.data.device_data import DeviceData
from l0repro.data.errors import DataError

DATASETS = ("mnist", "cifar10", "cifar100")


def load_dataset(name: str, root: str | Path, device: torch.device, download: bool = True,
                 **options) -> DeviceData:
    """Load dataset ``name`` from ``root`` onto ``device``."""
    if name == "mnist":
        from l0repro.data.mnist import load_mnist
        return load_mnist(root, device, download=download)
    if name in ("cifar10", "cifar100"):
        from l0repro.data.cifar import load_cifar
        return load_cifar(name, root, device, download=download, **options)
    raise DataError(f"unknown dataset {name!r}; expected one of {list(DATASETS)}")


__all__ = ["DATASETS", "DataError", "DeviceData", "load_dataset"]
