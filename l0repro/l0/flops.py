"""FLOPs and parameters of any model built from the L0 layers, under its gates.

Convention of ``torch.utils.flop_counter``: a multiply-add of a linear or conv layer counts
2; bias adds, activations, pooling and normalisation count 0. Each layer's cost is
``2 * kernel * positions * E[#inputs] * E[#outputs] / groups`` with the per-channel weights of
``l0repro.l0.channels`` (gates of different layers are independent): a closed unit saves work
in the layer that makes it and in every layer that reads it, the real spatial sizes are used,
and ungated layers count in full. With every gate open the count equals ``FlopCounterMode`` on
the model; with the test-time gates (``pruned_flops``) it equals ``FlopCounterMode`` on
``compact(model)``.

Every function takes ``(model, example_input)``: one input batch of the shape the model is
used with (its values do not matter). The model is traced once per input shape and the trace
is cached; a model that knows its input (``model.example_input()``, as the suite's models do)
may leave it out.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import nn

from l0repro.l0 import gates
from l0repro.l0.channels import LayerTerm, Measure, SpacePlan, channel_plan, unwrap
from l0repro.l0.layers import L0Gate, L0Linear

_PLANS: weakref.WeakKeyDictionary[nn.Module, dict[tuple, SpacePlan]] = weakref.WeakKeyDictionary()


def expected_measure(gate: L0Gate) -> torch.Tensor:
    return gates.prob_nonzero(gate.log_alpha)


def pruned_measure(gate: L0Gate) -> torch.Tensor:
    return gates.is_kept(gate.log_alpha.detach()).double()


def dense_measure(gate: L0Gate) -> torch.Tensor:
    return torch.ones_like(gate.log_alpha, dtype=torch.float64)


def resolve_input(model: nn.Module, example_input: torch.Tensor | None) -> torch.Tensor:
    """``example_input``, or the model's own ``example_input()``; raises ``ValueError`` if neither."""
    if example_input is not None:
        return example_input
    own = getattr(model, "example_input", None)
    if callable(own):
        return own()
    raise ValueError(f"{type(model).__name__} does not know its input size: pass example_input, "
                     "one input batch of the shape the model is used with")


def plan_for(model: nn.Module, example_input: torch.Tensor | None = None) -> SpacePlan:
    """The model's channel plan (``channel_plan``), traced once per input shape and cached."""
    model = unwrap(model)
    x = resolve_input(model, example_input)
    key = (tuple(x.shape), x.dtype, x.device)
    cache = _PLANS.setdefault(model, {})
    if key not in cache:
        cache[key] = channel_plan(model, x)
    return cache[key]


def _total(model: nn.Module, example_input: torch.Tensor | None, measure: Measure,
           cost: Callable[[LayerTerm, torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    plan = plan_for(model, example_input)
    terms = [cost(t, w_in, w_out) for t, w_in, w_out in plan.layer_measures(measure)]
    return torch.stack(terms).sum() if terms else torch.zeros((), dtype=torch.float64)


def _flops(t: LayerTerm, w_in: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    return 2 * t.kernel * t.positions * w_in.sum() * w_out.sum() / t.groups


def _params(t: LayerTerm, w_in: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    n = t.kernel * w_in.sum() * w_out.sum() / t.groups
    return n + w_out.sum() if t.bias else n


def flops_under(model: nn.Module, measure: Measure,
                example_input: torch.Tensor | None = None) -> torch.Tensor:
    """FLOPs per example with every gate weighed by ``measure(gate)`` (a per-unit tensor: 1 open,
    0 closed, P(open) expected); a 0-dim float64 tensor, differentiable through ``measure``."""
    return _total(model, example_input, measure, _flops)


def expected_flops(model: nn.Module, example_input: torch.Tensor | None = None) -> torch.Tensor:
    """Expected forward FLOPs per example under the training gates: a differentiable 0-dim
    float64 tensor (a few small ops, no host sync), for logging or a FLOPs constraint."""
    return flops_under(model, expected_measure, example_input)


def pruned_flops(model: nn.Module, example_input: torch.Tensor | None = None) -> float:
    """FLOPs per example of the network left when units with z_hat == 0 are removed (what
    ``FlopCounterMode`` counts on ``compact(model)`` for one example)."""
    with torch.no_grad():
        return float(flops_under(model, pruned_measure, example_input))


def dense_flops(model: nn.Module, example_input: torch.Tensor | None = None) -> float:
    """FLOPs per example with every gate open (``FlopCounterMode`` on the model, one example)."""
    with torch.no_grad():
        return float(flops_under(model, dense_measure, example_input))


def closed_measure(gate: L0Gate) -> torch.Tensor:
    return torch.zeros_like(gate.log_alpha, dtype=torch.float64)


def expected_params(model: nn.Module, example_input: torch.Tensor | None = None) -> torch.Tensor:
    """Expected weights + biases of the conv and linear layers under the training gates."""
    with torch.no_grad():
        return _total(model, example_input, expected_measure, _params)


def param_counts(model: nn.Module, example_input: torch.Tensor | None = None) -> tuple[int, int]:
    """(kept, dense) weights + biases of the conv and linear layers (kept: in ``compact(model)``)."""
    with torch.no_grad():
        kept = _total(model, example_input, pruned_measure, _params)
        dense = _total(model, example_input, dense_measure, _params)
    return int(round(float(kept))), int(round(float(dense)))


def kept_units(model: nn.Module, example_input: torch.Tensor | None = None) -> dict[str, int]:
    """Per gated layer (qualified name), the units it keeps at test time: an ``L0Linear``'s
    inputs that reach it (its gate open and the feature made), an ``L0Conv2d``'s output maps."""
    plan = plan_for(model, example_input)
    out = {}
    with torch.no_grad():
        for t, w_in, w_out in plan.layer_measures(pruned_measure):
            if t.module in plan.gate_modules:
                gated_in = isinstance(plan.gate_modules[t.module], L0Linear)
                out[t.module] = int(round(float((w_in if gated_in else w_out).sum())))
    return out
