"""One writer per run directory: an exclusive OS lock on ``<run_dir>/.lock`` for a whole run.

The lock is ``flock``: the kernel drops it when the holding process dies, so a run killed by
SIGKILL (or a node that reboots) never leaves a stale lock; the file itself stays and only says
who held it last. A second process on the same directory is refused at once, before it reads
or writes any of the run's record. Hydra itself still writes into the directory before the
train code runs: the refused process rewrites ``.hydra/*.yaml`` (Hydra's copy of its own
overrides) and creates or appends to ``train.log``; ``config.yaml``, ``metrics.csv``,
``summary.json``, the checkpoints, ``weights.pt`` and ``wandb/`` are the holder's alone.
Under data parallelism rank 0 holds the lock for every rank, and every rank learns its answer.

The lock belongs to the open file, and a child the holder forks shares it until the child execs
(the fd is close-on-exec) or ends. A holder killed while it spawns a subprocess (``ldconfig``,
``git``: both run just after the lock is taken) leaves the lock to that child for a moment. So when
the recorded holder has ended, ``acquire`` waits up to ``INHERITED_GRACE_S`` for its children to
let go, and only then refuses, saying that a process the dead run forked holds the lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from l0repro import distributed as dp

LOCK_FILE = ".lock"
HELD = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)  # what flock says when another holds it
INHERITED_GRACE_S = 5.0  # how long a dead holder's child may keep the lock before we refuse


class RunDirLocked(Exception):
    """Another process is running in this run directory."""


def acquire(run_dir: Path) -> int:
    """Lock ``run_dir`` for this process and record the holder; the lock lives as long as the fd.

    Raises ``RunDirLocked`` naming the directory and the holder (host, PID, start time). On a
    file system without ``flock`` (e.g. Lustre mounted without it) warns and returns -1.
    """
    path = Path(run_dir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # no O_TRUNC: the holder's line stays
    try:
        locked = try_lock(fd)
    except OSError as e:
        os.close(fd)
        print(f"l0repro.train: warning: cannot lock {path} ({e}); running without the guard "
              "against a second process on the same run directory", file=sys.stderr)
        return -1
    if not locked:
        holder = os.pread(fd, 1024, 0).decode(errors="replace").split()
        ended = has_ended(holder)
        if not (ended and lock_within(fd, INHERITED_GRACE_S)):
            os.close(fd)
            raise RunDirLocked(refusal(run_dir, path, holder, ended))
    os.ftruncate(fd, 0)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    os.pwrite(fd, f"{socket.gethostname()} {os.getpid()} {started_at}\n".encode(), 0)
    return fd


def has_ended(holder: list[str]) -> bool:
    """Whether the recorded holder ("host pid time") ran on this host and is gone (or a zombie)."""
    if len(holder) != 3 or holder[0] != socket.gethostname() or not holder[1].isdigit():
        return False
    pid = int(holder[1])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    try:  # a zombie has closed its files; its parent has not yet reaped it
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def try_lock(fd: int) -> bool:
    """Take the lock without waiting: False if another holds it; OSError if flock cannot work."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno not in HELD:
            raise
        return False


def lock_within(fd: int, seconds: float) -> bool:
    """Try the lock again until it is free or ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if try_lock(fd):
            return True
    return False


def refusal(run_dir: Path, path: Path, holder: list[str], ended: bool) -> str:
    who = (f"host {holder[0]}, pid {holder[1]}, since {holder[2]}" if len(holder) == 3
           else "a process that has not yet written its name")
    if ended:
        return (f"run directory {run_dir} is locked: the run that held it ({who}) has ended, but "
                f"{INHERITED_GRACE_S:g} s later a process it forked still holds {path} (find it "
                f"with `fuser {path}`); stop that process, or use another hydra.run.dir")
    return (f"run directory {run_dir} is in use by another run ({who}); wait for it to end or "
            "stop it, or use another hydra.run.dir")


@contextmanager
def exclusive_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock for the block (rank 0). When rank 0 is refused, every rank
    raises, so none waits on a rank 0 that is gone. A collective under DDP."""
    fd, error = -1, None
    if dp.is_main():
        try:
            fd = acquire(run_dir)
        except (RunDirLocked, OSError) as e:
            error = e
    refusal = dp.gather_objects(None if error is None else str(error))[0]
    if error is not None:
        raise error
    if refusal is not None:
        raise RunDirLocked(f"rank 0: {refusal}")
    try:
        yield
    finally:
        if fd >= 0:
            os.close(fd)  # releases the lock
