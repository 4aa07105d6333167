"""`make data` (``python -m l0repro.data.fetch``): valid data is left alone, a bad file is named,
a download that cannot happen is explained, and nothing is left behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from l0repro.data import DataError, fetch, load_dataset
from l0repro.data.cifar_synthetic import write_cifar_binary
from tests.conftest import REPO
from tests.offline import offline_env


def assert_names_the_next_step(message: str, root: Path) -> None:
    """The message says where the data was looked for and the ways to get it there."""
    assert str(root) in message, message
    assert "`make data`" in message and "L0REPRO_DATA" in message and "DATA=<dir>" in message, message


def fetch_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "l0repro.data.fetch", *args], cwd=REPO,
                          env=offline_env(**env), capture_output=True, text=True, timeout=300)


def no_download(name, root):
    raise AssertionError(f"tried to download {name} into {root}")


def test_present_valid_data_is_checked_and_left_alone(tmp_path, mnist_root, cifar10_root):
    root = tmp_path / "data"
    for name, real in (("mnist", mnist_root), ("cifar10", cifar10_root)):
        for src, dst in zip(fetch.files(name, real), fetch.files(name, root), strict=True):
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src)
    before = sorted(root.rglob("*"))
    proc = fetch_cli("--root", str(root))  # offline: any download attempt would fail
    assert proc.returncode == 0, proc.stderr
    assert f"MNIST: present, md5s ok: {root / 'MNIST' / 'raw'}" in proc.stdout
    assert f"CIFAR-10: present, md5s ok: {root / 'cifar-10-batches-bin'}" in proc.stdout
    assert sorted(root.rglob("*")) == before


def test_impossible_download_is_explained_and_leaves_nothing(tmp_path):
    root = tmp_path / "new" / "data"
    proc = fetch_cli("--root", str(root))
    assert proc.returncode == 1, proc.stdout
    assert f"MNIST not found in {root / 'MNIST' / 'raw'} and could not be downloaded" in proc.stderr
    assert f"CIFAR-10 not found in {root / 'cifar-10-batches-bin'} and could not be downloaded" \
        in proc.stderr
    assert "2 dataset(s) missing" in proc.stderr and "Traceback" not in proc.stderr
    assert_names_the_next_step(proc.stderr, root)
    assert not (tmp_path / "new").exists()  # torchvision's empty MNIST/raw is removed too


def test_downloads_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv(fetch.NO_DOWNLOAD_ENV, "1")
    monkeypatch.setattr(fetch, "_download", no_download)
    with pytest.raises(fetch.FetchError, match="MNIST not found in .* downloads are disabled"):
        fetch.fetch("mnist", tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_a_bad_present_file_is_named_and_not_replaced(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "_download", no_download)
    for path in fetch.files("mnist", tmp_path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not MNIST")
    with pytest.raises(DataError, match="train-images-idx3-ubyte fails its checksum"):
        fetch.fetch("mnist", tmp_path)
    assert (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").read_bytes() == b"not MNIST"


def test_cifar100_files_must_have_the_official_size(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "_download", no_download)
    write_cifar_binary(tmp_path, "cifar100", n_train=10, n_test=2)
    with pytest.raises(DataError, match="train.bin has 30740 bytes, expected 153700000"):
        fetch.fetch("cifar100", tmp_path)


def test_unknown_dataset_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        fetch.main(["--root", "unused", "svhn"])
    assert exit_info.value.code == 2 and "unknown dataset 'svhn'" in capsys.readouterr().err


def test_default_root_is_the_readmes(monkeypatch):
    monkeypatch.delenv("L0REPRO_DATA", raising=False)
    assert fetch.default_root() == Path("data")
    monkeypatch.setenv("L0REPRO_DATA", "/somewhere/data")
    assert fetch.default_root() == Path("/somewhere/data")


@pytest.mark.parametrize("name, first_file", [("mnist", "train-images-idx3-ubyte"),
                                              ("cifar10", "data_batch_1.bin")])
def test_no_download_env_makes_loading_refuse_to_download(tmp_path, monkeypatch, name, first_file):
    monkeypatch.setenv(fetch.NO_DOWNLOAD_ENV, "1")
    monkeypatch.setattr(fetch, "_download", no_download)
    root = tmp_path / "data"
    with pytest.raises(DataError) as refused:
        load_dataset(name, root, torch.device("cpu"), download=True)  # the config asks to download
    message = str(refused.value)
    assert f"{fetch.LABELS[name]} not found in {fetch.folder(name, root)} (missing {first_file}, " in message
    assert f"downloads are off ({fetch.NO_DOWNLOAD_ENV} is set)" in message
    assert_names_the_next_step(message, root)
    assert not root.exists()


def test_training_without_data_or_network_says_what_to_do_next(tmp_path):
    """The demo's first step on a newcomer's machine: no data directory, no network."""
    root = tmp_path / "data"
    cmd = [sys.executable, "-m", "l0repro.train", "experiment=table1/mlp_l0", f"data.root={root}",
           "logger.wandb.mode=disabled", "trainer.progress=false", f"hydra.run.dir={tmp_path / 'run'}"]
    off = f"downloads are off ({fetch.NO_DOWNLOAD_ENV} is set)"
    for env, outcome in (({}, "could not be downloaded"), ({fetch.NO_DOWNLOAD_ENV: "1"}, off)):
        proc = subprocess.run(cmd, cwd=REPO, env=offline_env(**env), capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert f"MNIST not found in {root / 'MNIST' / 'raw'}" in proc.stderr
        assert outcome in proc.stderr, proc.stderr
        assert_names_the_next_step(proc.stderr, root)
        assert not root.exists()  # a failed download leaves no empty directory behind


def test_a_present_dataset_under_a_relative_root_is_loaded_not_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv(fetch.NO_DOWNLOAD_ENV, "1")  # loading must not even ask
    monkeypatch.setattr(fetch, "_download", no_download)
    monkeypatch.chdir(tmp_path)
    write_cifar_binary(Path("data"), "cifar10", n_train=10, n_test=2)
    data = load_dataset("cifar10", "data", torch.device("cpu"), verify="size")
    assert (len(data.train_y), len(data.test_y)) == (10, 2)
