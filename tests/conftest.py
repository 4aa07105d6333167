"""Fixtures for every test module: the real datasets and Hydra composition of the real configs.

Every test that needs a real dataset asks for ``mnist_root`` or ``cifar10_root`` (the data
directory, the README's default: ``$L0REPRO_DATA``, else ``./data`` in the checkout). A dataset
present there is used; an absent one is downloaded into it once per session
(``l0repro.data.fetch``, what ``make data`` runs); one that cannot be had skips its tests with the
reason, or fails them under ``CI``, where the data must be there. Such tests carry the
``real_data`` marker, and the run ends with a list of those skipped.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from l0repro.data import DataError
from l0repro.data import fetch as data_fetch
from l0repro.threads import allowed_cpus

pytest_plugins = ["tests.device_option"]  # pytest --device cuda: the device tests on a GPU

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
DATA_FIXTURES = {"mnist_root", "cifar10_root"}
NO_DATA = "no real data:"  # starts the reason of every skip for want of a dataset
_skipped_for_data: dict[str, list[str]] = {}  # reason -> the tests it skipped


def data_root() -> Path:
    """The data directory: ``$L0REPRO_DATA`` (relative to the checkout), else ``./data``."""
    return Path(os.path.normpath(REPO / Path(os.environ.get("L0REPRO_DATA") or "data").expanduser()))


def real_dataset(name: str) -> Path:
    """The data directory holding dataset ``name``, fetched when absent; else skip (fail in CI)."""
    root = data_root()
    if data_fetch.missing(name, root):
        try:
            data_fetch.fetch(name, root)
        except DataError as e:
            msg = f"{NO_DATA} {e}; run `make data` (or set L0REPRO_DATA to a directory holding it)"
            if os.environ.get("CI"):
                pytest.fail(msg, pytrace=False)
            pytest.skip(msg)
    return root


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    return real_dataset("mnist")


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    return real_dataset("cifar10")


def loopback_error(timeout_s: float = 5.0) -> str | None:
    """Why a TCP connection to 127.0.0.1 fails here (e.g. ``unshare -n``: loopback down), or None.

    The gloo rendezvous would retry such a connection until its timeout instead of failing.
    """
    try:
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            with socket.create_connection(server.getsockname(), timeout=timeout_s):
                pass
    except OSError as e:
        return str(e) or type(e).__name__
    return None


@pytest.fixture(scope="session")
def loopback() -> None:
    """Skip (fail under ``CI``) a test that starts a process group when loopback TCP fails."""
    error = loopback_error()
    if error:
        msg = f"no usable loopback: a TCP connection to 127.0.0.1 fails ({error}); process groups need one"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


def pytest_configure(config):
    config.addinivalue_line("markers", "real_data: needs a real dataset (mnist_root, cifar10_root)")
    share_the_cores()


def share_the_cores() -> None:
    """Each pytest-xdist worker (``make test`` runs ``-n auto``) and the trainings it starts use
    their share of the allowed cores instead of all of them: oversubscribed OpenMP threads spin and
    slow every worker down. Serial runs get a fixed count too (all the allowed cores), so that
    runs compared for equality use the same threads whatever the load (``trainer.threads: auto``
    would follow it). An ``OMP_NUM_THREADS`` set by the caller is kept."""
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    threads = os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(allowed_cpus()) // workers)))
    torch.set_num_threads(int(threads))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker("real_data")


_skipped_for_gpu: dict[str, list[str]] = {}
NEEDS_GPU = ("needs a GPU", "needs --device cuda")


def pytest_runtest_logreport(report):
    if not (report.skipped and isinstance(report.longrepr, tuple)):
        return
    reason = report.longrepr[2].removeprefix("Skipped: ")
    if report.when == "setup" and NO_DATA in reason:
        _skipped_for_data.setdefault(reason, []).append(report.nodeid)
    elif any(words in reason for words in NEEDS_GPU):
        _skipped_for_gpu.setdefault(reason, []).append(report.nodeid)


def _list_skips(tr, skipped: dict[str, list[str]], what: str) -> None:
    count = sum(len(nodeids) for nodeids in skipped.values())
    tr.write_sep("-", f"{count} tests skipped: {what}")
    for reason, nodeids in skipped.items():
        tr.write_line(reason)
        for nodeid in nodeids:
            tr.write_line(f"  skipped {nodeid}")


def pytest_terminal_summary(terminalreporter):
    """Name the tests skipped for want of data or of a GPU, with the reason, at the end of the run."""
    if _skipped_for_data:
        _list_skips(terminalreporter, _skipped_for_data, "they need real data (make data)")
    if _skipped_for_gpu:
        _list_skips(terminalreporter, _skipped_for_gpu,
                    "they need a GPU (docs/gpu.md: pytest --device cuda on a CUDA machine)")


def compose_train(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("train", overrides=overrides)


@pytest.fixture(autouse=True)
def _no_wandb_network(monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
