"""Exact resume after SIGKILL and after SIGTERM/SIGINT, and no retraining of complete runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from l0repro.checkpoint import CheckpointError, load_checkpoint
from tests.conftest import REPO, data_root
from tests.test_train import train

# 2 epochs of 60 steps: long enough to interrupt, short enough for CI
RUN = ["experiment=table1/mlp_l0", "trainer.epochs=2", "trainer.batch_size=1000",
       "trainer.log_every=25",
       "logger.wandb.mode=disabled", "seed=3"]
VOLATILE = {"wall_time_s", "started_at", "finished_at", "wandb_run_id"}


def start(run_dir: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "l0repro.train", f"hydra.run.dir={run_dir}",
           f"data.root={data_root()}", "trainer.progress=false", *RUN]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"run ended before it could be interrupted:\n{proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.02)


def stable(run_dir: Path) -> tuple[dict, pd.DataFrame]:
    summary = json.loads((run_dir / "summary.json").read_text())
    return {k: v for k, v in summary.items() if k not in VOLATILE}, pd.read_csv(run_dir / "metrics.csv")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, mnist_root):
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    train(run_dir, *RUN)
    return stable(run_dir)


def test_sigkill_after_first_checkpoint_resumes_to_the_same_result(tmp_path, reference):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    wait_for(lambda: (run_dir / "summary.json").exists(), proc)  # written after the checkpoint
    proc.kill()
    proc.wait()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "running"
    assert load_checkpoint(run_dir)["epoch"] == 1
    train(run_dir, *RUN)
    summary, metrics = stable(run_dir)
    assert summary == reference[0]
    pd.testing.assert_frame_equal(metrics, reference[1])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_checkpoints_mid_epoch_and_resumes_exactly(tmp_path, reference, signum):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    # after the first checkpoint the run is in epoch 2: the signal lands mid-epoch
    wait_for(lambda: (run_dir / "summary.json").exists(), proc)  # written after the checkpoint
    time.sleep(0.2)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert "rerun the same command to resume" in err
    state = load_checkpoint(run_dir)
    assert state["epoch"] >= 1 and 0 < state["batch_in_epoch"] < 60
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "running"
    train(run_dir, *RUN)
    summary, metrics = stable(run_dir)
    assert summary == reference[0]
    pd.testing.assert_frame_equal(metrics, reference[1])


def test_complete_run_is_not_retrained_and_other_config_is_refused(tmp_path, mnist_root):
    run_dir = tmp_path / "run"
    short = ["experiment=table1/mlp_l0", "trainer.max_steps=30", "logger.wandb.mode=disabled"]
    train(run_dir, *short)
    before = (run_dir / "summary.json").read_text()
    proc = train(run_dir, *short)
    assert "already complete, not retrained" in proc.stderr
    assert (run_dir / "summary.json").read_text() == before
    proc = train(run_dir, *short, "model.lambdas=[0.2,0.1,0.1]", check=False)
    assert proc.returncode == 2
    assert "model.lambdas" in proc.stderr and "0.2" in proc.stderr


class Payload:
    """Stands for any object whose unpickling could run code."""


def test_checkpoint_with_code_objects_is_refused(tmp_path):
    torch.save({"model": Payload()}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="checkpoint.pt"):
        load_checkpoint(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        load_checkpoint(tmp_path)
