"""The lease's library step (``bench library``) on the CPU: it passes on the real compaction
and fails, with exit code 1, when the compact model's outputs differ."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

pytest.importorskip("torchvision")

from l0repro.bench import library  # noqa: E402


def test_the_library_step_finds_the_compact_resnet18_exact_and_smaller(tmp_path, capsys):
    out = tmp_path / "bench_library.json"
    assert library.main(["--batch-size", "4", "--repeats", "1", "--json", str(out)]) == 0
    r = json.loads(out.read_text())["results"][0]
    assert r["exact"] and r["max_rel_diff"] <= 1e-5 and r["gated_layers_left"] == 0
    assert r["flops_pruned"] < 0.75 * r["flops_dense"] and r["params_kept"] < r["params_dense"]
    assert r["gated_images_per_s"] > 0 and r["compact_images_per_s"] > 0
    assert "exact" in capsys.readouterr().out


def test_a_compaction_that_changes_the_outputs_fails_the_step(monkeypatch, capsys):
    class Shifted(nn.Module):
        def __init__(self, small: nn.Module) -> None:
            super().__init__()
            self.small = small

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.small(x) * (1 + 1e-3)

    real = library.compact
    monkeypatch.setattr(library, "compact", lambda model, x: Shifted(real(model, x)))
    assert library.main(["--batch-size", "2", "--repeats", "1"]) == 1
    assert "NOT EXACT" in capsys.readouterr().out


def test_a_closed_share_outside_0_1_is_refused_naming_it():
    with pytest.raises(ValueError, match="--closed 1.5"):
        library.gated_resnet18(1.5, seed=0)
