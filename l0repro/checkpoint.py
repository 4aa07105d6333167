"""End-of-epoch (or on-signal) checkpoints: written atomically, loaded without running code."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from l0repro.record import atomic_write_bytes

CHECKPOINT_FILE = "checkpoint.pt"
# keys that may change between the run that wrote a checkpoint and the one resuming it
RESUMABLE_KEYS = ("data.root", "data.download", "trainer.progress", "trainer.device",
                  "trainer.fused_gates")  # the same maths either way
RESUMABLE_PREFIXES = ("logger.",)


class CheckpointError(Exception):
    """A checkpoint that cannot be used for this run."""


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``run_dir/checkpoint.pt``; the previous file stays valid until then."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(run_dir) / CHECKPOINT_FILE, buf.getvalue())


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The checkpoint in ``run_dir``, or None. ``weights_only=True``: loading never runs code."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupt or containing objects that are not plain data
        raise CheckpointError(f"checkpoint {path} cannot be loaded: {e}") from e


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ (ignoring keys a resumed run may change)."""
    a, b = flatten(saved), flatten(current)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key in RESUMABLE_KEYS or key.startswith(RESUMABLE_PREFIXES):
            continue
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            diffs.append(f"{key}: checkpoint {a.get(key, '<absent>')!r} != now {b.get(key, '<absent>')!r}")
    return diffs
