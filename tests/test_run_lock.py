"""One writer per run directory: a second process is refused and writes nothing; the lock dies
with its holder, also under SIGKILL, and a dead holder's forked child is waited for, then named;
under DDP a refusal reaches every rank."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from l0repro import distributed, run_lock
from l0repro.run_lock import LOCK_FILE, RunDirLocked, acquire, exclusive_run_dir, has_ended, try_lock
from tests.conftest import REPO, data_root
from tests.test_distributed import JOIN_TIMEOUT, free_port
from tests.test_resume import RUN, stable, start, wait_for
from tests.test_train import train

HYDRA_OWN = {".hydra", "train.log", LOCK_FILE}  # written before our code runs (l0repro.run_lock)
SHORT = [*RUN, "trainer.max_steps=30"]  # a complete record: an interval row, an epoch row, a checkpoint


@pytest.fixture(scope="module")
def lone_run(tmp_path_factory, mnist_root) -> tuple[dict, pd.DataFrame]:
    run_dir = tmp_path_factory.mktemp("lone") / "run"
    train(run_dir, *SHORT)
    return stable(run_dir)


def record_files(run_dir: Path) -> dict[str, tuple[int, bytes]]:
    """Every file of the run's record (not Hydra's own), with its mtime and content."""
    return {str(p.relative_to(run_dir)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.relative_to(run_dir).parts[0] not in HYDRA_OWN}


def holds_lock(run_dir: Path, pid: int) -> bool:
    lock = run_dir / LOCK_FILE
    return lock.exists() and f" {pid} " in lock.read_text()


def test_lock_is_exclusive_names_the_holder_and_is_released(tmp_path):
    with exclusive_run_dir(tmp_path):
        with pytest.raises(RunDirLocked) as refused, exclusive_run_dir(tmp_path):
            pass
    message = str(refused.value)
    assert f"run directory {tmp_path} is in use" in message
    assert f"host {socket.gethostname()}, pid {os.getpid()}, since " in message
    with exclusive_run_dir(tmp_path):  # released at the end of the block
        pass


def test_second_process_is_refused_and_the_first_ends_as_a_lone_run(tmp_path, lone_run):
    run_dir = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "l0repro.train", f"hydra.run.dir={run_dir}",
                              f"data.root={data_root()}", "trainer.progress=false", *SHORT],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: holds_lock(run_dir, first.pid), first, timeout=600)
    first.send_signal(signal.SIGSTOP)  # hold it still: whatever changes now is the second's doing
    try:
        before = record_files(run_dir)
        second = train(run_dir, *SHORT, "seed=4", check=False)  # another seed: any write would show
        after = record_files(run_dir)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2, second.stderr
    assert f"run directory {run_dir} is in use by another run (host {socket.gethostname()}, " \
           f"pid {first.pid}, since " in second.stderr
    assert after == before
    try:
        _, err = first.communicate(timeout=600)
    finally:
        first.kill()  # a no-op once it has ended
    assert first.returncode == 0, err
    summary, metrics = stable(run_dir)
    assert summary == lone_run[0]
    pd.testing.assert_frame_equal(metrics, lone_run[1])
    assert "seed: 3" in (run_dir / "config.yaml").read_text()


def test_sigkilled_holder_leaves_no_stale_lock(tmp_path):
    """Killed while holding the lock, before it wrote anything, a run blocks no one. (After a
    checkpoint, tests/test_resume.py's SIGKILL test resumes through this same lock.)"""
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    wait_for(lambda: holds_lock(run_dir, proc.pid), proc, timeout=600)
    proc.kill()
    proc.wait(timeout=60)
    assert holds_lock(run_dir, proc.pid)  # its line stays in the file; the kernel dropped its lock
    with exclusive_run_dir(run_dir):
        assert holds_lock(run_dir, os.getpid())


# takes the lock, forks a child that shares it for argv[2] seconds, prints the child's pid, waits
FORKING_HOLDER = """
import os, sys, time
from pathlib import Path
from l0repro.run_lock import acquire
acquire(Path(sys.argv[1]))
child = os.fork()
if child == 0:
    time.sleep(float(sys.argv[2]))
    os._exit(0)
print(child, flush=True)
time.sleep(600)
"""


def killed_forking_holder(run_dir: Path, child_holds_s: float) -> tuple[int, int]:
    """A holder SIGKILLed while its forked child still shares the lock: (holder pid, child pid)."""
    proc = subprocess.Popen([sys.executable, "-c", FORKING_HOLDER, str(run_dir), str(child_holds_s)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    proc.kill()
    proc.wait(timeout=60)
    proc.stdout.close()
    return proc.pid, child


def lock_is_free(run_dir: Path) -> bool:
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR)
    try:
        return try_lock(fd)
    finally:
        os.close(fd)  # releases it if we took it


def test_a_dead_holders_forked_child_is_waited_for(tmp_path):
    """The intermittent stale lock under load: the holder died while a subprocess it was spawning
    had not yet exec'd, so the child still shared the lock when the next run asked."""
    holder, _ = killed_forking_holder(tmp_path, child_holds_s=3.0)
    assert holds_lock(tmp_path, holder)
    assert not lock_is_free(tmp_path)  # the dead run's child still shares it
    with exclusive_run_dir(tmp_path):  # within run_lock.INHERITED_GRACE_S: waits, then takes it
        assert holds_lock(tmp_path, os.getpid())


def test_a_dead_holders_lasting_child_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lock, "INHERITED_GRACE_S", 0.3)
    holder, child = killed_forking_holder(tmp_path, child_holds_s=600)
    try:
        with pytest.raises(RunDirLocked) as refused, exclusive_run_dir(tmp_path):
            pass
    finally:
        os.kill(child, signal.SIGKILL)
    message = str(refused.value)
    assert f"the run that held it (host {socket.gethostname()}, pid {holder}, since " in message
    assert "has ended, but 0.3 s later a process it forked still holds" in message
    assert f"fuser {tmp_path / LOCK_FILE}" in message


def test_has_ended_only_for_a_gone_process_on_this_host():
    host = socket.gethostname()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    assert has_ended([host, gone, "t"])
    assert not has_ended([host, str(os.getpid()), "t"])  # alive
    assert not has_ended([f"not-{host}", gone, "t"])  # another host: cannot tell, so not ended
    assert not has_ended([host, "x1", "t"])  # not a pid
    assert not has_ended([])  # not yet written


def lock_rank(rank: int, port: int, run_dir: Path, out: Path) -> None:
    """One of two gloo ranks asks for a run directory that another process holds."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    distributed.init(torch.device("cpu"), timeout=JOIN_TIMEOUT)
    try:
        with exclusive_run_dir(run_dir):
            outcome = "held"
    except RunDirLocked as e:
        outcome = str(e)
    (out / f"rank{rank}.txt").write_text(outcome)
    distributed.finish()


def test_under_ddp_rank_0_refused_stops_every_rank(tmp_path, loopback):
    run_dir, out = tmp_path / "run", tmp_path / "out"
    run_dir.mkdir()
    out.mkdir()
    fd = acquire(run_dir)  # this process holds it; the ranks are other processes
    try:
        mp.spawn(lock_rank, args=(free_port(), run_dir, out), nprocs=2)  # returns: no rank waits
    finally:
        os.close(fd)
    ranks = [(out / f"rank{r}.txt").read_text() for r in range(2)]
    assert all(f"pid {os.getpid()}" in r and str(run_dir) in r for r in ranks)
    assert ranks[1].startswith("rank 0: ")
