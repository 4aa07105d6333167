"""Shared fixtures: the real data directory and Hydra composition of the real configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"


def data_root() -> Path:
    return Path(os.environ.get("L0REPRO_DATA", REPO.parent / "shared" / "data")).resolve()


def require(path: Path, what: str) -> Path:
    """Skip when real data is absent on a dev machine; fail in CI, where it must exist."""
    if not path.exists():
        msg = f"{what} not found at {path} (set L0REPRO_DATA)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture
def mnist_root() -> Path:
    root = data_root()
    require(root / "MNIST" / "raw" / "train-images-idx3-ubyte", "MNIST")
    return root


def compose_train(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("train", overrides=overrides)


@pytest.fixture(autouse=True)
def _no_wandb_network(monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
