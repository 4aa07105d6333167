"""A whole dataset held on the training device, batched with tensor ops only.

Images stay uint8 (N, C, H, W) on the device; each batch is gathered, converted to
float in [0, 1], optionally augmented and normalised, all on the device. The epoch
order comes from a ``torch.Generator`` on the device, so it is reproducible and its
state can be checkpointed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class DeviceData:
    name: str
    train_x: torch.Tensor  # uint8 (N, C, H, W)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...] | None = None  # per channel, on the [0, 1] scale
    std: tuple[float, ...] | None = None
    augment: Augment | None = None  # applied to float training batches only

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.dtype != torch.uint8 or x.dim() != 4 or len(x) != len(y):
                raise ValueError(f"{self.name} {split}: expected uint8 (N, C, H, W) images and N "
                                 f"labels, got {tuple(x.shape)} {x.dtype} and {tuple(y.shape)}")
        c = self.train_x.shape[1]

        def per_channel(v):
            return None if v is None else torch.tensor(v, device=self.device).view(1, c, 1, 1)

        self._mean, self._std = per_channel(self.mean), per_channel(self.std)

    @property
    def n_train(self) -> int:
        return len(self.train_y)

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    def steps_per_epoch(self, batch_size: int, world_size: int = 1) -> int:
        """Batches per epoch; across ``world_size`` ranks, a last batch too small to give
        every rank an example is dropped."""
        full, rest = divmod(self.n_train, batch_size)
        return full + (rest >= world_size)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x if self._mean is None else (x - self._mean) / self._std

    def train_batches(self, batch_size: int, generator: torch.Generator,
                      memory_format: torch.memory_format = torch.contiguous_format,
                      rank: int = 0, world_size: int = 1,
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled (x, y) batches; the last batch may be smaller.

        ``batch_size`` is the global batch. Every rank passes a generator in the same state,
        so all draw the same order and augmentation; rank r keeps rows r, r + world_size, ...
        of each batch: together the ranks see exactly the single-process batches.
        """
        order = torch.randperm(self.n_train, device=self.device, generator=generator)
        for start in range(0, self.steps_per_epoch(batch_size, world_size) * batch_size, batch_size):
            idx = order[start:start + batch_size]
            x = self.train_x[idx].float().div_(255.0)
            if self.augment is not None:
                x = self.augment(x, generator)  # whole batch: the generator advances alike on all ranks
            if world_size > 1:
                x, idx = x[rank::world_size], idx[rank::world_size]
            yield self._normalize(x).contiguous(memory_format=memory_format), self.train_y[idx]

    def test_batches(self, batch_size: int,
                     memory_format: torch.memory_format = torch.contiguous_format,
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.test_y), batch_size):
            x = self._normalize(self.test_x[start:start + batch_size].float().div_(255.0))
            yield x.contiguous(memory_format=memory_format), self.test_y[start:start + batch_size]
