"""Every entry point answers ``--help`` with what it does and an example, and exits 0."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

COMMANDS = {
    "train": ["l0repro.train"],
    "bench": ["l0repro.bench"],
    "bench mnist": ["l0repro.bench", "mnist"],
    "bench wrn": ["l0repro.bench", "wrn"],
    "bench compact": ["l0repro.bench", "compact"],
    "bench threads": ["l0repro.bench", "threads"],
    "bench eta": ["l0repro.bench", "eta"],
    "diagnose": ["l0repro.diagnose"],
    "data.fetch": ["l0repro.data.fetch"],
    "report": ["l0repro.report"],
    "compact_run": ["l0repro.compact_run"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_says_what_it_does_with_an_example(name):
    module, *sub = COMMANDS[name]
    proc = subprocess.run([sys.executable, "-m", module, *sub, "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    command = " ".join(["python -m", module, *sub])
    assert "usage" in text.lower() and command in text, text  # names itself as it is typed
    examples = text.lower().split("example", 1)
    assert len(examples) == 2, f"no example in:\n{text}"
    # an example is a command line of this entry point, under the word "example"
    assert any(line.strip().startswith(command + " ") for line in examples[1].splitlines()), text
    assert len(text.split()) > 30, text  # more than a bare usage line: it says what it does
