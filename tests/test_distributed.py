"""Data parallelism on CPU (gloo, two processes): sharding, gradient averaging, a torchrun run."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from l0repro import distributed
from l0repro.checkpoint import load_checkpoint
from l0repro.config_check import ConfigError
from l0repro.data.augment import random_crop_flip
from l0repro.data.device_data import DeviceData
from l0repro.l0 import L0Regularizer
from l0repro.record import read_run
from l0repro.train import Trainer, run
from tests.conftest import REPO, compose_train, data_root

GLOBAL_BATCH = 8
JOIN_TIMEOUT = dt.timedelta(seconds=60)  # a rank that cannot reach the others fails, never hangs


def tiny_data(n: int, augment: bool) -> DeviceData:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    return DeviceData("tiny", x, torch.arange(n), x[:4], torch.arange(4), num_classes=n,
                      mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                      augment=random_crop_flip if augment else None)


def epoch(data: DeviceData, batch_size: int, rank: int = 0, world_size: int = 1) -> list:
    gen = torch.Generator().manual_seed(3)
    return list(data.train_batches(batch_size, gen, rank=rank, world_size=world_size))


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("augment", [False, True])
def test_ranks_together_see_exactly_the_single_process_batches(world, augment):
    data = tiny_data(50, augment)  # 50 = 4 * 12 + 2: the last batch is short
    single = epoch(data, 12)
    shards = [epoch(data, 12, r, world) for r in range(world)]
    steps = data.steps_per_epoch(12, world)
    assert all(len(s) == steps for s in shards)
    assert steps == (5 if world == 2 else 4)  # a last batch of 2 cannot feed 3 ranks: dropped
    for b in range(steps):
        for r in range(world):
            x, y = shards[r][b]
            torch.testing.assert_close(x, single[b][0][r::world], rtol=0, atol=0)
            assert torch.equal(y, single[b][1][r::world])


def test_one_process_path_is_unchanged():
    data = tiny_data(50, augment=True)
    assert data.steps_per_epoch(12) == 5 and data.steps_per_epoch(10) == 5
    assert [len(y) for _, y in epoch(data, 12)] == [12, 12, 12, 12, 2]
    assert distributed.world_size() == 1 and distributed.is_main()
    assert distributed.mean([1.5, 2.0], torch.device("cpu")) == [1.5, 2.0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def overrides(tmp: Path) -> list[str]:
    return ["experiment=table1/mlp_l0", f"data.root={data_root()}", "logger.wandb.mode=disabled",
            "trainer.progress=false", f"trainer.batch_size={GLOBAL_BATCH}", f"hydra.run.dir={tmp}"]


def first_batch(trainer: Trainer, rank: int = 0, world: int = 1):
    gen = torch.Generator().manual_seed(0)
    return next(trainer.data.train_batches(GLOBAL_BATCH, gen, rank=rank, world_size=world))


def ddp_rank(rank: int, port: int, tmp: Path) -> None:
    """One rank: a real Trainer under a two-process gloo group takes one training step."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    cfg = compose_train(overrides(tmp))
    distributed.init(torch.device("cpu"), timeout=JOIN_TIMEOUT)
    trainer = Trainer(cfg, tmp)
    rng = torch.get_rng_state()
    noise = torch.rand(4)  # this rank's first gate noise, put back for the step
    torch.set_rng_state(rng)
    x, y = first_batch(trainer, rank, 2)
    torch.manual_seed(100 + rank)  # the noise the reference replays
    trainer.train_step(x, y)
    grads = [a.grad.clone() for a in trainer.regularizer.log_alphas]
    odd = compose_train([*overrides(tmp), "trainer.batch_size=7"])
    try:
        run(odd, tmp / "odd")
        refused = ""
    except ConfigError as e:
        refused = str(e)
    torch.save({"grads": grads, "noise": noise, "refused": refused}, tmp / f"rank{rank}.pt")
    distributed.finish()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, mnist_root, loopback):
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(ddp_rank, args=(free_port(), tmp), nprocs=2)
    return tmp, [torch.load(tmp / f"rank{r}.pt") for r in range(2)]


def test_averaged_gradient_counts_the_l0_penalty_once(two_ranks):
    """DDP's mean of (CE_r + penalty) over ranks == mean of CE_r + one penalty, per log alpha."""
    tmp, ranks = two_ranks
    trainer = Trainer(compose_train(overrides(tmp)), tmp)  # one process, the same init
    x, y = first_batch(trainer)
    model = trainer.model
    model.train()

    unfused = L0Regularizer(model, trainer.data.n_train, trainer.cfg.trainer.weight_decay, fused=False)

    def grads(penalty_weight: float) -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        ces = []
        for r in range(2):
            torch.manual_seed(100 + r)
            ces.append(F.cross_entropy(model(x[r::2]), y[r::2]))
        (torch.stack(ces).mean() + penalty_weight * unfused.penalty()).backward()
        return [a.grad.clone() for a in unfused.log_alphas]

    expected, twice = grads(1.0), grads(2.0)
    for r in range(2):
        for got, want, wrong in zip(ranks[r]["grads"], expected, twice, strict=True):
            penalty_part = (wrong - want).abs().max()
            assert penalty_part > 0
            # equal to well within the penalty's own share: counted twice or not at all fails
            assert (got - want).abs().max() <= 1e-3 * penalty_part


def test_each_rank_draws_its_own_gate_noise(two_ranks):
    _, ranks = two_ranks
    assert not torch.equal(ranks[0]["noise"], ranks[1]["noise"])


def test_global_batch_not_divisible_by_the_ranks_is_refused(two_ranks):
    _, ranks = two_ranks
    assert all("trainer.batch_size=7" in r["refused"] and "2" in r["refused"] for r in ranks)


def torchrun(run_dir: Path, *extra: str, nproc: int = 2, check: bool = True,
             popen: bool = False):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "l0repro.train", "experiment=table1/mlp_l0", f"data.root={data_root()}",
           f"hydra.run.dir={run_dir}", "trainer.progress=false", *extra]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    if popen:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def test_torchrun_two_processes_write_one_complete_record(tmp_path, mnist_root, loopback):
    run_dir = tmp_path / "run"
    proc = torchrun(run_dir, "trainer.max_steps=150", "trainer.batch_size=200",
                    "trainer.log_every=50", "trainer.ema_decay=0.9", "logger.wandb.mode=offline")
    summary, metrics = read_run(run_dir)
    assert summary["status"] == "complete" and summary["steps"] == 150
    assert summary["test_error_final"] < 0.2, summary["test_error_final"]  # 12.4 % when written
    # 150 global batches of 200 (100 per rank) are half an epoch, not a whole one
    assert metrics["step"].tolist() == [50, 100, 150]
    assert metrics["epoch"].iloc[-1] == pytest.approx(0.5)
    assert metrics["train/loss"].notna().all()
    # written by rank 0 alone: one wandb run, one closing line
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    assert proc.stderr.count("complete, test error") == 1
    assert load_checkpoint(run_dir)["step"] == 150


@pytest.mark.slow
def test_torchrun_stop_signal_checkpoints_and_resumes_exactly(tmp_path, mnist_root, loopback):
    """SIGTERM to torchrun reaches both ranks; they stop together, and the rerun matches."""
    run = ["trainer.epochs=2", "trainer.batch_size=1000", "trainer.log_every=5",
           "logger.wandb.mode=disabled", "seed=4"]
    torchrun(tmp_path / "reference", *run)
    run_dir = tmp_path / "run"
    proc = torchrun(run_dir, *run, popen=True)
    deadline = time.monotonic() + 300
    while not (run_dir / "summary.json").exists():  # written after the first checkpoint
        assert proc.poll() is None, proc.stderr.read()
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no checkpoint after 300 s:\n{proc.communicate(timeout=60)[1][-3000:]}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert err.count("rerun the same command to resume") == 2, err
    state = load_checkpoint(run_dir)
    assert state["epoch"] == 1 and 0 < state["batch_in_epoch"] < 60 and len(state["rank_rng"]) == 2
    torchrun(run_dir, *run)
    volatile = {"wall_time_s", "started_at", "finished_at"}
    got, want = (json.loads((d / "summary.json").read_text()) for d in (run_dir, tmp_path / "reference"))
    assert {k: v for k, v in got.items() if k not in volatile} == \
        {k: v for k, v in want.items() if k not in volatile}
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "metrics.csv"),
                                  pd.read_csv(tmp_path / "reference" / "metrics.csv"))
