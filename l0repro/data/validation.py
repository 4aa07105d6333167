"""A validation split carved from the training set, for choosing things without the test set.

``hold_out(data, n, seed)`` takes a fixed, seeded set of ``n`` training images away from
training and returns a ``DeviceData`` whose training split is the rest and whose evaluation
split (``test_x``/``test_y`` of that object) is the held-out set. The real test set is not
carried along, so a selection run cannot look at it even by accident.

The held-out indices depend only on ``seed`` and the training-set size (a CPU generator, the
same on every device), not on the run's seed: every point of a sweep is judged on the same
images. Their identity is recorded as a checksum (``ValidationSplit.record``).

The L0 penalty keeps the full training set's N (``n_train_full``): the authors' scripts
hard-code N = 60000 for MNIST, and keeping it leaves the per-step objective of a selection
run exactly that of the run it selects for; only which images are seen differs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

import torch

from l0repro.data.device_data import DeviceData
from l0repro.data.errors import DataError


@dataclass(frozen=True)
class ValidationSplit:
    n: int
    seed: int
    n_train_full: int
    indices_sha256: str

    def record(self) -> dict[str, Any]:
        return {"n": self.n, "seed": self.seed, "n_train_full": self.n_train_full,
                "indices_sha256": self.indices_sha256}


def validation_indices(n_train: int, n: int, seed: int) -> torch.Tensor:
    """The sorted indices (int64, CPU) of the ``n`` held-out images among ``n_train``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n_train, generator=gen)[:n].sort().values


def indices_checksum(indices: torch.Tensor) -> str:
    return hashlib.sha256(indices.to(torch.int64).numpy().tobytes()).hexdigest()


def hold_out(data: DeviceData, n: int, seed: int) -> tuple[DeviceData, ValidationSplit]:
    """(train on the rest, evaluate on the held-out ``n``), and the split's record."""
    if isinstance(n, bool) or not isinstance(n, int) or not 0 < n < data.n_train:
        raise DataError(f"data.validation={n!r}: must be an integer between 1 and "
                        f"{data.n_train - 1} (the {data.name} training set has {data.n_train} images)")
    val = validation_indices(data.n_train, n, seed)
    keep = torch.ones(data.n_train, dtype=torch.bool)
    keep[val] = False
    val_d, keep_d = val.to(data.device), keep.to(data.device)
    split = replace(data, train_x=data.train_x[keep_d], train_y=data.train_y[keep_d],
                    test_x=data.train_x[val_d], test_y=data.train_y[val_d])
    return split, ValidationSplit(n, seed, data.n_train, indices_checksum(val))


def split_for_run(data: DeviceData, n: int | None, seed: int) -> tuple[DeviceData, ValidationSplit | None]:
    """``hold_out`` when ``n`` (``data.validation``) is set, else the data as it is."""
    return hold_out(data, n, seed) if n else (data, None)
