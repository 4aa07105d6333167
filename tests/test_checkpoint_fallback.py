"""A checkpoint damaged on disk costs an epoch, not the run: the previous one is kept and used."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from l0repro.checkpoint import (
    CHECKPOINT_FILE,
    PREVIOUS_FILE,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from tests.test_resume import RUN, stable
from tests.test_train import train


def truncate(path: Path) -> None:
    """What a full disk or a copy cut short leaves."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_new_checkpoint_keeps_the_one_before(tmp_path):
    assert load_checkpoint(tmp_path) is None
    save_checkpoint(tmp_path, {"step": 1})
    assert not (tmp_path / PREVIOUS_FILE).exists()
    save_checkpoint(tmp_path, {"step": 2})
    assert load_checkpoint(tmp_path) == {"step": 2}
    assert torch.load(tmp_path / PREVIOUS_FILE) == {"step": 1}


def test_truncated_latest_falls_back_and_is_not_kept_as_the_previous(tmp_path, capsys):
    save_checkpoint(tmp_path, {"step": 1})
    save_checkpoint(tmp_path, {"step": 2})
    truncate(tmp_path / CHECKPOINT_FILE)
    assert load_checkpoint(tmp_path) == {"step": 1}
    err = capsys.readouterr().err
    assert f"checkpoint {tmp_path / CHECKPOINT_FILE} cannot be loaded" in err
    assert f"resuming from the previous one, {tmp_path / PREVIOUS_FILE} (step 1)" in err
    save_checkpoint(tmp_path, {"step": 2})  # the epoch redone: the damaged file goes, step 1 stays
    assert torch.load(tmp_path / PREVIOUS_FILE) == {"step": 1}
    assert load_checkpoint(tmp_path) == {"step": 2}
    (tmp_path / CHECKPOINT_FILE).unlink()  # killed between the rotation and the new write
    assert load_checkpoint(tmp_path) == {"step": 1}
    assert "checkpoint.pt is missing" in capsys.readouterr().err


def test_both_damaged_names_both(tmp_path):
    save_checkpoint(tmp_path, {"step": 1})
    save_checkpoint(tmp_path, {"step": 2})
    truncate(tmp_path / CHECKPOINT_FILE)
    (tmp_path / PREVIOUS_FILE).write_bytes(b"")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path)
    assert str(tmp_path / CHECKPOINT_FILE) in str(e.value)
    assert str(tmp_path / PREVIOUS_FILE) in str(e.value)


def test_truncated_last_checkpoint_resumes_from_the_previous_and_ends_bit_identical(tmp_path, mnist_root):
    """The uninterrupted run is its own reference: its final checkpoint is cut short as a full
    disk would leave it, and the rerun redoes the last epoch from the epoch-1 checkpoint."""
    run_dir = tmp_path / "run"
    train(run_dir, *RUN)
    uninterrupted = stable(run_dir)
    assert torch.load(run_dir / PREVIOUS_FILE, weights_only=True)["epoch"] == 1
    truncate(run_dir / CHECKPOINT_FILE)
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps(summary | {"status": "running"}))
    proc = train(run_dir, *RUN)
    assert f"checkpoint {run_dir / CHECKPOINT_FILE} cannot be loaded" in proc.stderr
    assert f"resuming from the previous one, {run_dir / PREVIOUS_FILE} (step 60)" in proc.stderr
    resumed = stable(run_dir)
    assert resumed[0] == uninterrupted[0]
    pd.testing.assert_frame_equal(resumed[1], uninterrupted[1])


def test_both_checkpoints_damaged_stops_the_run_naming_both(tmp_path, mnist_root):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in (CHECKPOINT_FILE, PREVIOUS_FILE):
        (run_dir / name).write_bytes(b"cut short")
    proc = train(run_dir, "experiment=table1/mlp_l0", "trainer.max_steps=5",
                 "logger.wandb.mode=disabled", check=False)
    assert proc.returncode == 2, proc.stderr
    assert str(run_dir / CHECKPOINT_FILE) in proc.stderr and str(run_dir / PREVIOUS_FILE) in proc.stderr
    assert not (run_dir / "summary.json").exists()
