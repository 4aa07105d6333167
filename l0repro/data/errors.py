"""Data errors that name the bad directory or file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class DataError(Exception):
    """The dataset cannot be used as configured; the message names the path."""


def check_root(root: str | Path, create: bool) -> Path:
    """The data directory as a Path; it must exist and be readable unless it may be created."""
    root = Path(root).expanduser()
    if not root.exists():
        if not create:
            raise DataError(f"data directory {root} does not exist (set data.root=<dir>)")
        try:
            root.mkdir(parents=True)
        except OSError as e:
            raise DataError(f"data directory {root} does not exist and cannot be created: {e}") from e
    if not root.is_dir():
        raise DataError(f"data directory {root} is not a directory")
    if not os.access(root, os.R_OK | os.X_OK):
        raise DataError(f"data directory {root} is not readable")
    return root


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_md5(path: Path, expected: str) -> None:
    if not path.is_file():
        raise DataError(f"dataset file {path} is missing")
    got = md5_of(path)
    if got != expected:
        raise DataError(f"dataset file {path} fails its checksum: md5 {got}, expected {expected} "
                        "(truncated or corrupt; delete it to re-download)")
