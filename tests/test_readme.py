"""The README's own-model example runs as written: it trains the gates, compacts exactly, and
its FLOPs are what ``FlopCounterMode`` counts on the compact network."""

import os
import re

import torch
from torch.utils.flop_counter import FlopCounterMode

from l0repro.l0.layers import L0Layer
from tests.conftest import REPO


def run_example(heading: str, workdir) -> dict:
    """Execute the first Python block after ``heading`` in README.md in ``workdir``; its namespace."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(heading):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        exec(compile(code, "README.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    return namespace


def test_own_model_example_trains_compacts_exactly_and_counts_its_flops(tmp_path):
    ns = run_example("## The L0 layers in your own model", tmp_path)
    model, small, x = ns["model"], ns["small"], ns["x"]
    assert (tmp_path / "small.pt").exists()
    assert not any(isinstance(m, L0Layer) for m in small.modules())
    with torch.no_grad():
        want, got = model(x), small(x)
    assert float((want - got).abs().max()) <= 1e-5 * float(want.abs().max())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        small(x[:1])
    pruned = ns["pruned_flops"](model, x[:1])
    assert counter.get_total_flops() == pruned < ns["dense_flops"](model, x[:1]) / 5
    # the gates found the informative inputs: the compact first layer reads few of the 784
    first = next(m for m in small.modules() if isinstance(m, torch.nn.Linear))
    assert first.in_features < 100
    assert float((want.argmax(1) == ns["y"]).float().mean()) > 0.8
