"""l0repro: hard-concrete L0 layers for your own models, and the reproduction of Louizos,
Welling, Kingma 2018 built on them.

    from l0repro import L0Linear, L0Conv2d, L0Regularizer, compact

The method lives in ``l0repro.l0`` and needs only torch; the suite (``l0repro.train``,
``l0repro.report``, ...) needs ``pip install "l0repro[suite]"``.
"""

from l0repro.l0 import (
    Budget,
    L0Conv2d,
    L0Linear,
    L0Regularizer,
    compact,
    dense_flops,
    expected_flops,
    expected_params,
    kept_units,
    load_compact,
    param_counts,
    pruned_flops,
    save_compact,
)

__all__ = ["Budget", "L0Conv2d", "L0Linear", "L0Regularizer", "compact", "dense_flops", "expected_flops",
           "expected_params", "kept_units", "load_compact", "param_counts", "pruned_flops",
           "save_compact"]
