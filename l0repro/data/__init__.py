"""Datasets held whole on the training device."""

from __future__ import annotations

from pathlib import Path

import torch

from l0repro.data.device_data import DeviceData
from l0repro.data.errors import DataError, check_root

DATASETS = ("mnist", "cifar10", "cifar100")
# torchvision's python version of CIFAR (data.options.source=torchvision, or auto without the binary)
PYTHON_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def absent_files(name: str, root: Path, source: str = "auto") -> list[Path]:
    """The files that loading ``name`` from ``root`` needs and does not find ([] when it can start;
    the loader then checks what is there)."""
    from l0repro.data import fetch  # here: `python -m l0repro.data.fetch` imports this package first

    if name == "mnist" or source == "binary":
        return fetch.missing(name, root)
    python = root / PYTHON_FOLDERS[name]
    if python.is_dir() or (source == "auto" and fetch.folder(name, root).is_dir()):
        return []
    return [python] if source == "torchvision" else fetch.missing(name, root)


def load_dataset(name: str, root: str | Path, device: torch.device, download: bool = True,
                 **options) -> DeviceData:
    """Load dataset ``name`` from ``root`` onto ``device``.

    An absent dataset is downloaded first (``l0repro.data.fetch``, bounded by its timeout) when
    ``download`` is set and ``L0REPRO_NO_DOWNLOAD`` is not.

    Raises:
        DataError: the dataset is absent and may not or cannot be downloaded (the message names
            the missing files and what to do next), or a file fails its check.
    """
    from l0repro.data import fetch

    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; expected one of {list(DATASETS)}")
    root = Path(root).expanduser()
    source = options.get("source", "auto")
    off = f"{fetch.NO_DOWNLOAD_ENV} is set" if fetch.downloads_disabled() else \
        None if download else "download=False, e.g. data.download=false"
    if root.exists():  # a file or an unreadable directory: say so before looking inside
        try:
            check_root(root, create=False)
        except DataError as e:
            raise DataError(f"{e}; {fetch.next_step(root)}") from e
    absent = absent_files(name, root, source)
    if absent:
        if off:
            names = ", ".join(p.name for p in absent[:2]) + (f" and {len(absent) - 2} more" if len(absent) > 2
                                                             else "")
            where = "" if root.exists() else f"data directory {root} does not exist: "
            raise DataError(f"{where}{fetch.LABELS[name]} not found in {absent[0].parent} (missing "
                            f"{names}) and downloads are off ({off}); {fetch.next_step(root)}")
        if source != "torchvision":  # torchvision's python version downloads in its own loader
            try:
                fetch.fetch(name, root)
            except fetch.FetchError as e:
                raise DataError(f"{e}; {fetch.next_step(root)}") from e
    if name == "mnist":
        from l0repro.data.mnist import load_mnist
        return load_mnist(root, device, download=False)
    from l0repro.data.cifar import load_cifar
    return load_cifar(name, root, device, download=download and source == "torchvision", **options)


__all__ = ["DATASETS", "DataError", "DeviceData", "load_dataset"]
