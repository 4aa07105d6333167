"""``pytest --device cuda`` (or ``L0REPRO_TEST_DEVICE=cuda``): the device tests on a GPU.

The gate, layer, gate-bank and FLOP tests build their tensors and modules with torch's
factory defaults. Under ``--device cuda`` the tests of ``DEVICE_MODULES`` run with
``torch.set_default_device("cuda")``, so the same assertions check the CUDA kernels; the
``test_device`` fixture names the device for tests that place things themselves
(tests/test_device.py). A test that holds on a CPU only is skipped there, with its reason.
The default, cpu, changes nothing. Registered by tests/conftest.py (``pytest_plugins``).
"""

from __future__ import annotations

import os

import pytest
import torch

# (tests/test_device.py places its tensors on ``test_device`` itself: no default device there,
# which keeps torch's device mode out of its CUDA-graph capture)
DEVICE_MODULES = ("test_gates.py", "test_layers.py", "test_gate_bank.py", "test_flops.py")
CPU_ONLY = {  # test -> why it holds on a CPU only (and what checks the device instead)
    "test_gate_bank.py::test_bank_draws_what_the_layers_would_and_the_same_penalty":
        "one uniform_ over all gates draws the per-layer stream on a CPU only; "
        "test_device.py compares the two from the same noise",
    "test_gate_bank.py::test_fused_and_per_layer_training_agree":
        "trains with trainer.device=cpu; test_device.py trains on the device",
}


def pytest_addoption(parser) -> None:
    parser.addoption("--device", default=None,
                     help="run the device tests (gates, layers, gate bank, FLOPs, test_device.py) "
                          "on this torch device, e.g. cuda; default $L0REPRO_TEST_DEVICE, else cpu")


def device_name(config) -> str:
    return config.getoption("--device") or os.environ.get("L0REPRO_TEST_DEVICE") or "cpu"


def pytest_configure(config) -> None:
    name = device_name(config)
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise pytest.UsageError(f"--device {name}: {e}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"--device {name}: torch {torch.__version__} sees no CUDA device")


@pytest.fixture(scope="session")
def test_device(pytestconfig) -> torch.device:
    """The device the device tests run on (``--device``)."""
    return torch.device(device_name(pytestconfig))


@pytest.fixture(autouse=True)
def _default_device(request):
    name = device_name(request.config)
    path = request.node.path.name
    if name == "cpu" or path not in DEVICE_MODULES:
        yield
        return
    reason = CPU_ONLY.get(f"{path}::{request.node.originalname}")
    if reason:
        pytest.skip(f"cpu only: {reason}")
    torch.set_default_device(name)
    try:
        yield
    finally:
        torch.set_default_device(None)
