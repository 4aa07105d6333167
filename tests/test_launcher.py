"""Sweeps through hydra-submitit-launcher, and the stop signal submitit sends before a timeout."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from hydra import compose, initialize_config_dir

from l0repro.checkpoint import load_checkpoint
from l0repro.record import read_run
from tests.conftest import CONF_DIR, REPO


def test_slurm_launcher_config_composes():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                          "experiment=table2/wrn_c10_l0_001"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1
    assert launcher.max_num_timeout > 0  # timed-out jobs are requeued, and resume
    # deterministic, so a requeued job finds its checkpoint
    assert cfg.hydra.sweep.subdir == "table2/wrn_c10_l0_001/seed0"


def test_local_submitit_sweep_writes_one_complete_run_per_seed(tmp_path, mnist_root):
    cmd = [sys.executable, "-m", "l0repro.train", "-m", "hydra/launcher=local",
           "experiment=table1/mlp_l0", "seed=0,1", "trainer.max_steps=5", f"hydra.sweep.dir={tmp_path}",
           f"data.root={mnist_root}", "logger.wandb.mode=disabled", "trainer.progress=false"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for seed in (0, 1):
        run_dir = tmp_path / "table1" / "mlp_l0" / f"seed{seed}"
        summary, metrics = read_run(run_dir)
        assert summary["status"] == "complete" and summary["seed"] == seed
        assert summary["steps"] == 5 and metrics["step"].tolist() == [5]
        assert load_checkpoint(run_dir)["config"]["seed"] == seed


# Stands for submitit's SIGUSR2 handler (checkpoint the job, requeue it): it must run after ours.
WITH_HANDLER = """
import pathlib, runpy, signal, sys
marker = pathlib.Path(sys.argv.pop(1))
signal.signal(signal.SIGUSR2, lambda signum, frame: marker.write_text(signal.Signals(signum).name))
runpy.run_module("l0repro.train", run_name="__main__", alter_sys=True)
"""


def test_sigusr2_checkpoints_then_hands_over_to_the_launchers_handler(tmp_path, mnist_root):
    run_dir, marker = tmp_path / "run", tmp_path / "handed-over"
    cmd = [sys.executable, "-c", WITH_HANDLER, str(marker), "experiment=table1/mlp_l0",
           "trainer.epochs=2", "trainer.batch_size=1000", f"hydra.run.dir={run_dir}",
           f"data.root={mnist_root}", "logger.wandb.mode=disabled", "trainer.progress=false"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run_dir / "summary.json").exists():  # written after the first checkpoint
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "timed out waiting for the first checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGUSR2)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGUSR2, err
    assert "stopped by SIGUSR2" in err
    state = load_checkpoint(run_dir)
    assert state["epoch"] == 1 and 0 < state["batch_in_epoch"] < 60  # mid-epoch, not the epoch's
    assert marker.read_text() == "SIGUSR2"
