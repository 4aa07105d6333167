"""CIFAR loading: the official binary files, their checks, and synthetic CIFAR-100 files."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from l0repro.data import DataError, load_dataset
from l0repro.data.augment import random_crop_flip
from l0repro.data.cifar import CIFAR10_BIN_MD5, STATS_255, load_cifar
from l0repro.data.cifar_synthetic import encode_records, write_cifar_binary
from l0repro.data.errors import md5_of

CPU = torch.device("cpu")


@pytest.fixture
def cifar10_dir(cifar10_root) -> Path:
    """The real CIFAR-10 binary folder (conftest's ``cifar10_root``: skips without data, not in CI)."""
    return cifar10_root / "cifar-10-batches-bin"


def test_real_cifar10_loads_with_official_checks(cifar10_dir):
    data = load_cifar("cifar10", cifar10_dir.parent, CPU, download=False, source="binary")
    assert data.train_x.shape == (50000, 3, 32, 32) and data.test_x.shape == (10000, 3, 32, 32)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    assert torch.bincount(data.train_y).tolist() == [5000] * 10
    assert torch.bincount(data.test_y).tolist() == [1000] * 10
    # the first training labels of data_batch_1: frog, truck, truck, deer, automobile, ...
    assert data.train_y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    # the paper's statistics are the training set's (0-255 scale), to their rounding
    x = data.train_x.float()
    mean, std = STATS_255["cifar10"]
    torch.testing.assert_close(x.mean((0, 2, 3)), torch.tensor(mean), atol=0.1, rtol=0)
    torch.testing.assert_close(x.std((0, 2, 3)), torch.tensor(std), atol=1.0, rtol=0)
    assert data.mean == pytest.approx([m / 255 for m in mean])
    assert data.augment is random_crop_flip and data.num_classes == 10


def test_md5_constants_match_the_real_files_and_their_md5sums(cifar10_dir):
    assert {f: md5_of(cifar10_dir / f) for f in CIFAR10_BIN_MD5} == CIFAR10_BIN_MD5
    md5sums = cifar10_dir.parent / "MD5SUMS"  # in the offline copy; `make data` writes none
    if md5sums.is_file():
        listed = {}
        for line in md5sums.read_text().splitlines():
            md5, path = line.split()
            if path.startswith("cifar-10-batches-bin/"):
                listed[path.split("/", 1)[1]] = md5
        assert {f: listed[f] for f in CIFAR10_BIN_MD5} == CIFAR10_BIN_MD5


def test_real_file_with_a_flipped_byte_is_rejected_by_name(cifar10_dir, tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for f in CIFAR10_BIN_MD5:
        (folder / f).symlink_to(cifar10_dir / f)
    bad = folder / "data_batch_3.bin"
    bad.unlink()
    shutil.copyfile(cifar10_dir / "data_batch_3.bin", bad)
    with open(bad, "r+b") as fh:
        fh.seek(12345)
        byte = fh.read(1)
        fh.seek(12345)
        fh.write(bytes([byte[0] ^ 1]))
    with pytest.raises(DataError, match="data_batch_3.bin.*checksum"):
        load_cifar("cifar10", tmp_path, CPU, download=False)


@pytest.mark.parametrize("name,num_classes", [("cifar10", 10), ("cifar100", 100)])
def test_synthetic_round_trip(tmp_path, name, num_classes):
    written = write_cifar_binary(tmp_path, name, n_train=23, n_test=9, seed=3)
    data = load_cifar(name, tmp_path, CPU, download=False, source="binary", verify="size")
    for split, x, y in (("train", data.train_x, data.train_y), ("test", data.test_x, data.test_y)):
        images, labels = written[split]
        assert x.dtype == torch.uint8 and x.shape == images.shape
        assert np.array_equal(x.numpy(), images) and np.array_equal(y.numpy(), labels)
    assert data.num_classes == num_classes
    mean, std = STATS_255[name]
    assert data.mean == pytest.approx([m / 255 for m in mean])
    assert data.std == pytest.approx([s / 255 for s in std])
    assert data.augment is random_crop_flip
    # a normalised, augmented training batch comes out of the device data
    x, y = next(data.train_batches(8, torch.Generator().manual_seed(0)))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (8,)


def test_cifar100_reads_the_fine_label_and_pixel_planes(tmp_path):
    images = np.zeros((2, 3, 32, 32), dtype=np.uint8)
    images[0, 0, 0, 1] = 7  # R plane, row 0, column 1
    images[1, 2, 31, 0] = 9  # B plane, row 31, column 0
    fine = np.array([99, 42])
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    raw = encode_records(images, fine, label_bytes=2)
    assert len(raw) == 2 * 3074 and raw[0] == 99 // 5 and raw[1] == 99 and raw[2 + 1] == 7
    (folder / "train.bin").write_bytes(raw)
    (folder / "test.bin").write_bytes(raw)
    data = load_dataset("cifar100", tmp_path, CPU, download=False, source="binary",
                        verify="size")
    assert data.train_y.tolist() == [99, 42]
    assert data.train_x[0, 0, 0, 1] == 7 and data.train_x[1, 2, 31, 0] == 9
    assert int(data.train_x.sum()) == 16


def test_synthetic_files_fail_the_official_md5(tmp_path):
    write_cifar_binary(tmp_path, "cifar10", n_train=10, n_test=2)
    with pytest.raises(DataError, match="data_batch_1.bin.*checksum"):
        load_cifar("cifar10", tmp_path, CPU, download=False)


def test_cifar100_md5_mode_checks_the_official_size(tmp_path):
    write_cifar_binary(tmp_path, "cifar100", n_train=10, n_test=2)
    with pytest.raises(DataError, match="train.bin has 30740 bytes, expected 153700000"):
        load_cifar("cifar100", tmp_path, CPU, download=False, source="binary")


@pytest.mark.parametrize("name,fname", [("cifar10", "test_batch.bin"), ("cifar100", "train.bin")])
def test_truncated_file_is_rejected_by_name(tmp_path, name, fname):
    write_cifar_binary(tmp_path, name, n_train=10, n_test=4)
    path = next(tmp_path.glob(f"*/{fname}"))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=f"{fname} has .* not a whole number"):
        load_cifar(name, tmp_path, CPU, download=False, verify="size")


def test_missing_file_is_rejected_by_name(tmp_path):
    write_cifar_binary(tmp_path, "cifar10", n_train=10, n_test=2)
    (tmp_path / "cifar-10-batches-bin" / "data_batch_4.bin").unlink()
    with pytest.raises(DataError, match="data_batch_4.bin is missing"):
        load_cifar("cifar10", tmp_path, CPU, download=False, verify="size")


def test_label_out_of_range_is_rejected(tmp_path):
    write_cifar_binary(tmp_path, "cifar10", n_train=10, n_test=2)
    bad = np.zeros((1, 3, 32, 32), dtype=np.uint8)
    (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").write_bytes(
        encode_records(bad, np.array([10]), label_bytes=1))
    with pytest.raises(DataError, match="test_batch.bin has label 10"):
        load_cifar("cifar10", tmp_path, CPU, download=False, verify="size")


def test_missing_python_version_without_download_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="python version"):
        load_cifar("cifar100", tmp_path, CPU, download=False)  # auto: no binary folder


def test_missing_root_without_download_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_cifar("cifar10", tmp_path / "nowhere", CPU, download=False)


@pytest.mark.parametrize("kw,match", [({"source": "hdf5"}, "source"),
                                      ({"verify": "none"}, "verify")])
def test_bad_options_are_rejected(tmp_path, kw, match):
    with pytest.raises(DataError, match=match):
        load_cifar("cifar10", tmp_path, CPU, download=False, **kw)
