"""The README's code examples run as written."""

import re

import torch

from tests.conftest import REPO


def run_example(heading: str) -> dict:
    """Execute the first Python block after ``heading`` in README.md; its namespace."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(heading):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def test_own_model_example_runs_and_trains_the_gates():
    namespace = run_example("### The layers in your own model")
    model, gates = namespace["model"], namespace["gates"]
    assert len(gates) == 2 and all(g.grad is not None and g.grad.abs().sum() > 0 for g in gates)
    assert float(namespace["loss"].detach()) > 0
    assert model[0].gate.log_alpha.shape == (8,) and model[3].gate.log_alpha.shape == (8 * 26 * 26,)


def test_compaction_example_loads_a_published_compact_network():
    namespace = run_example("### Compaction: the small dense network")
    small, logits = namespace["small"], namespace["logits"]
    assert logits.shape == (5, 10) and torch.isfinite(logits).all()
    assert "Linear" in repr(small) and "L0" not in repr(small)
