"""Where a run executes: the device it resolves to and its bf16 autocast setting."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch

Autocast = Callable[[], AbstractContextManager]


def resolve_device(name: str) -> torch.device:
    """``trainer.device``: ``auto`` is CUDA when available, else the CPU; else the name given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def bf16_autocast(setting: str | bool, device: torch.device) -> Autocast:
    """``trainer.bf16`` (auto = on for CUDA only) as a context factory: bf16 autocast or nothing."""
    on = device.type == "cuda" if setting == "auto" else bool(setting)
    return (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if on else nullcontext
