"""Bad input fails fast: a clear message naming the bad value or file, a non-zero exit,
and nothing marked complete. One case per row of the README's table."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import hydra.errors
import pytest

from l0repro.config_check import ConfigError
from l0repro.data import DataError
from l0repro.train import USER_ERRORS, run
from tests.conftest import REPO, compose_train, data_root
from tests.test_train import train

QUICK = ["trainer.max_steps=5", "logger.wandb.mode=disabled"]


def assert_not_complete(run_dir: Path) -> None:
    summary = run_dir / "summary.json"
    if summary.exists():
        assert json.loads(summary.read_text())["status"] != "complete"


# the command line's contract, once per kind of refusal: Hydra's (exit 1) and the suite's (exit 2)
@pytest.mark.parametrize("overrides, code, message", [
    (["experiment=table1/no_such_row"], 1, "table1/no_such_row"),
    (["model.method=magic"], 2, "l0repro.train: error (ConfigError): unknown method model.method='magic'"),
])
def test_bad_config_is_refused_by_the_command(tmp_path, overrides, code, message):
    proc = train(tmp_path / "run", *QUICK, *overrides, check=False)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert_not_complete(tmp_path / "run")


# every other refusal in-process (a process per case would cost seconds of imports each)
@pytest.mark.parametrize("overrides, message", [
    (["model=no_such_model"], "no_such_model"),
    (["data=no_such_dataset"], "no_such_dataset"),
])
def test_unknown_config_group_option_is_named(overrides, message):
    with pytest.raises(hydra.errors.MissingConfigException, match=message):
        compose_train([*QUICK, *overrides])


@pytest.mark.parametrize("overrides, message", [
    (["data.name=svhn"], "data.name='svhn'"),
    (["model.lambdas=[0.1,-1.0,0.1]"], "-1.0"),
    (["trainer.batch_size=0"], "trainer.batch_size must be a positive integer, got 0"),
    (["trainer.epochs=-3"], "trainer.epochs must be a positive integer, got -3"),
    (["trainer.max_steps=0"], "trainer.max_steps"),
    (["logger.wandb.mode=sometimes"], "logger.wandb.mode"),
])
def test_bad_config_value_is_refused_before_anything_is_written(tmp_path, overrides, message):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match=re.escape(message)):
        run(compose_train([*QUICK, *overrides]), run_dir)
    assert not run_dir.exists()


def test_config_and_data_errors_are_the_commands_user_errors():
    """What the in-process tests raise, the command reports with its message and exit code 2."""
    assert issubclass(ConfigError, USER_ERRORS) and issubclass(DataError, USER_ERRORS)


# the number of lambdas is checked when the model is built, after the data is loaded
@pytest.mark.parametrize("overrides, message", [
    (["model.lambdas=[0.1,0.1]"], "needs 3 values (one per layer: fc1, fc2, fc3)"),
    (["experiment=table1/lenet5_l0", "model.lambdas=[1,1,1]"], "conv1, conv2, fc1, fc2"),
])
def test_per_layer_lambdas_of_the_wrong_length_are_refused(tmp_path, mnist_root, overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        run(compose_train([*QUICK, *overrides, f"data.root={mnist_root}"]), tmp_path / "run")
    assert_not_complete(tmp_path / "run")


# the data errors below in-process; this one through the command (exit 2, the path named)
def test_missing_data_directory_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    proc = train(tmp_path / "run", *QUICK, f"data.root={missing}", "data.download=false",
                 check=False)
    assert proc.returncode == 2 and f"data directory {missing} does not exist" in proc.stderr
    assert_not_complete(tmp_path / "run")


def test_data_directory_that_is_a_file_is_refused(tmp_path):
    # running as root, permission bits do not make a directory unreadable; a file does
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(DataError, match=re.escape(f"{not_a_dir} is not a directory")):
        run(compose_train([*QUICK, f"data.root={not_a_dir}"]), tmp_path / "run")
    assert_not_complete(tmp_path / "run")


@pytest.fixture
def mnist_copy(tmp_path, mnist_root) -> Path:
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (mnist_root / "MNIST" / "raw").iterdir():
        if not f.name.endswith(".gz"):
            shutil.copy(f, raw / f.name)
    return raw


def test_truncated_dataset_file_is_named(tmp_path, mnist_copy):
    target = mnist_copy / "train-labels-idx1-ubyte"
    target.write_bytes(target.read_bytes()[:1000])
    with pytest.raises(DataError, match=f"{re.escape(str(target))}.*fails its checksum"):
        run(compose_train([*QUICK, f"data.root={mnist_copy.parents[1]}"]), tmp_path / "run")
    assert_not_complete(tmp_path / "run")


def test_corrupt_dataset_file_fails_its_checksum(tmp_path, mnist_copy):
    target = mnist_copy / "t10k-images-idx3-ubyte"
    data = bytearray(target.read_bytes())
    data[5000] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"{re.escape(str(target))}.*fails its checksum"):
        run(compose_train([*QUICK, f"data.root={mnist_copy.parents[1]}"]), tmp_path / "run")
    assert_not_complete(tmp_path / "run")


def test_divergence_stops_with_the_step_and_last_good_metrics(tmp_path, mnist_root):
    run_dir = tmp_path / "run"
    proc = train(run_dir, "trainer.max_steps=300", "trainer.log_every=1",
                 "optim.lr=1e30", "logger.wandb.mode=disabled", check=False)
    assert proc.returncode == 2
    assert "TrainingDiverged" in proc.stderr and "at step" in proc.stderr
    assert "last good metrics" in proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "at step" in summary["error"]


def test_unwritable_output_directory_fails(tmp_path, mnist_root):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = train(blocker / "run", *QUICK, check=False)
    assert proc.returncode != 0 and str(blocker / "run") in proc.stderr


def test_wandb_online_without_key_warns_and_keeps_local_records(tmp_path, mnist_root, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    run_dir = tmp_path / "run"
    proc = train(run_dir, "trainer.max_steps=5", "logger.wandb.mode=online")
    assert "no API key" in proc.stderr and "offline" in proc.stderr
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "complete"
    assert list((run_dir / "wandb").glob("offline-run-*"))


def test_wandb_online_without_network_falls_back_to_offline(tmp_path, mnist_root, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    run_dir = tmp_path / "run"
    proc = train(run_dir, "trainer.max_steps=5", "logger.wandb.mode=online",
                 "logger.wandb.init_timeout=5")
    assert "wandb init (online) failed" in proc.stderr
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "complete"


def test_data_root_is_the_readmes_default(monkeypatch, tmp_path):
    """``$L0REPRO_DATA`` (relative to the checkout), else ``./data`` in the checkout."""
    monkeypatch.delenv("L0REPRO_DATA", raising=False)
    assert data_root() == REPO / "data"
    monkeypatch.setenv("L0REPRO_DATA", str(tmp_path))
    assert data_root() == tmp_path.resolve()
    monkeypatch.setenv("L0REPRO_DATA", "elsewhere")
    assert data_root() == REPO / "elsewhere"
