"""End-of-epoch (or on-signal) checkpoints: written atomically, loaded without running code.

The run directory keeps two: ``checkpoint.pt`` (the latest) and ``checkpoint.prev.pt`` (the one
before it), so a latest damaged on disk (a full disk, a truncated copy) costs one epoch, not the run.
"""

from __future__ import annotations

import io
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch

from l0repro.record import atomic_write_bytes

CHECKPOINT_FILE = "checkpoint.pt"
PREVIOUS_FILE = "checkpoint.prev.pt"
# keys that may change between the run that wrote a checkpoint and the one resuming it
RESUMABLE_KEYS = ("data.root", "data.download", "trainer.progress", "trainer.device",
                  "trainer.fused_gates", "trainer.cuda_graph", "trainer.threads")  # the same maths
# keys added after runs were checkpointed: absent from an older checkpoint is the same run as
# this value (no budget: the paper's objective alone)
ADDED_KEYS = {"trainer.target_flops": None, "trainer.target_l0": None, "trainer.dual_lr": 0.01}
RESUMABLE_PREFIXES = ("logger.",)


class CheckpointError(Exception):
    """A checkpoint that cannot be used for this run."""


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``checkpoint.pt``; the file it replaces becomes ``checkpoint.prev.pt``.

    Renames only, so a complete checkpoint is on disk at every instant. A latest that is not a
    complete file (truncated) is overwritten rather than kept as the previous one.
    """
    buf = io.BytesIO()
    torch.save(state, buf)
    latest = Path(run_dir) / CHECKPOINT_FILE
    if _complete(latest):
        os.replace(latest, Path(run_dir) / PREVIOUS_FILE)
    atomic_write_bytes(latest, buf.getvalue())


def _complete(path: Path) -> bool:
    """``torch.save`` writes a zip; a file cut short has lost the zip's closing directory."""
    try:
        with zipfile.ZipFile(path):
            return True
    except (OSError, zipfile.BadZipFile):
        return False


def _load(path: Path) -> dict[str, Any]:
    """``weights_only=True``: loading never runs code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupt or containing objects that are not plain data
        raise CheckpointError(f"checkpoint {path} cannot be loaded: {e}") from e


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The latest checkpoint in ``run_dir`` that loads, or None when there is none.

    A latest that fails to load (or is missing beside a previous one) is reported on stderr and
    ``checkpoint.prev.pt`` is used; when that fails too, ``CheckpointError`` names both files.
    """
    latest, previous = Path(run_dir) / CHECKPOINT_FILE, Path(run_dir) / PREVIOUS_FILE
    if not previous.exists():
        return _load(latest) if latest.exists() else None
    try:
        return _load(latest)
    except CheckpointError as e:
        try:
            state = _load(previous)
        except CheckpointError as e_prev:
            raise CheckpointError(f"{e}\n{e_prev}\nneither checkpoint can be used; delete both "
                                  "to start this run again") from e
        print(f"l0repro.train: warning: {e if latest.exists() else f'{latest} is missing'}; "
              f"resuming from the previous one, {previous} (step {state.get('step')})", file=sys.stderr)
        return state


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
        if key in ADDED_KEYS and key not in a and b.get(key) == ADDED_KEYS[key]:
            continue
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            diffs.append(f"{key}: checkpoint {a.get(key, '<absent>')!r} != now {b.get(key, '<absent>')!r}")
    return diffs
