"""The L0 method, on its own: hard-concrete gates, gated layers, the regulariser, FLOPs and
compaction. Imports torch and nothing else of the suite (docs/library.md)."""

from l0repro.l0.budget import Budget
from l0repro.l0.compact import compact, load_compact, save_compact
from l0repro.l0.flops import (
    dense_flops,
    expected_flops,
    expected_params,
    kept_units,
    param_counts,
    pruned_flops,
)
from l0repro.l0.layers import L0Conv2d, L0Linear
from l0repro.l0.regularizer import L0Regularizer

__all__ = ["Budget", "L0Conv2d", "L0Linear", "L0Regularizer", "compact", "dense_flops", "expected_flops",
           "expected_params", "kept_units", "load_compact", "param_counts", "pruned_flops",
           "save_compact"]
