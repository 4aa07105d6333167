"""Data parallelism: one process per device, launched by ``torchrun`` or a multi-task SLURM job.

``init`` joins the process group that the environment describes (torchrun's ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``; or a submitit job with
several tasks) and does nothing in a single process. Every helper is the identity, or free,
without a group, so the single-process path is unchanged.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def _export_submitit_env() -> None:
    """Set torchrun's variables for a submitit job with several tasks (hydra/launcher=slurm)."""
    if "WORLD_SIZE" in os.environ or not os.environ.get("SUBMITIT_EXECUTOR"):
        return
    import submitit

    if submitit.JobEnvironment().num_tasks > 1:
        # keep CUDA_VISIBLE_DEVICES: local_device picks the GPU from LOCAL_RANK
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False,
                                                             overwrite=True)


# how long the rendezvous and every collective wait for the other ranks before failing (torch's
# own default for gloo is 30 minutes); a rank writing a checkpoint keeps the others waiting far less
TIMEOUT = dt.timedelta(minutes=10)


def init(device: torch.device, timeout: dt.timedelta = TIMEOUT) -> None:
    """Join the process group when the environment names more than one process.

    Backend nccl when ``device`` is cuda (each rank on ``local_device(device)``), else gloo.
    Joining, and every collective after it, fails after ``timeout`` instead of waiting on.
    """
    _export_submitit_env()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    if device.type == "cuda":
        device = _local_cuda()
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device, timeout=timeout)
    else:
        dist.init_process_group("gloo", timeout=timeout)


def finish() -> None:
    """Leave the process group (after a run that ended alike on every rank)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """True on the process that writes the run record, wandb and the progress bar."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` under a group (modulo the GPUs this task sees,
    for clusters that bind one GPU per task); ``device`` itself otherwise."""
    return _local_cuda() if device.type == "cuda" and world_size() > 1 else device


def _local_cuda() -> torch.device:
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())


def rank_seed(*keys: int) -> int:
    """A 32-bit seed mixed from ``keys`` (e.g. seed, rank): torch's CPU generator keeps 32 bits."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def mean(values: list[Any], device: torch.device) -> list[Any]:
    """Each value (number or 0-dim tensor) averaged over the ranks; unchanged in one process."""
    if world_size() == 1:
        return values
    t = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=device) for v in values])
    dist.all_reduce(t)
    return (t / world_size()).tolist()


def max_int(value: int, device: torch.device) -> int:
    """The largest ``value`` over the ranks (every rank must call it at the same point)."""
    if world_size() == 1:
        return value
    t = torch.tensor(value, dtype=torch.long, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, indexed by rank (picklable objects; a collective)."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out
