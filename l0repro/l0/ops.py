"""What the channel tracer knows about each torch op: how it moves channels and constants.

A traced node (``torch.fx``) is one of these kinds:

- ``layer``: ``nn.Conv2d`` / ``nn.Linear`` (and their gated subclasses): reads channels,
  writes new ones. The only ops that cost FLOPs in the ``flop_counter`` convention.
- ``channelwise``: output channel ``c`` depends on input channel ``c`` only, same count
  (activations, batch norm, pooling, dropout, identity). ``const`` says what it does to a
  channel that is a constant everywhere: ``apply`` (still a constant: evaluate the op on it),
  ``same`` (the same constant: pooling, dropout in eval) or ``zero_only`` (zero stays zero,
  another constant does not: average pooling that counts zero padding).
- ``add``: two tensors of one shape added (a residual join), or a tensor plus a number.
- ``scale``: a tensor times a number.
- ``flatten``: ``(N, C, *S) -> (N, C * prod(S))``; feature ``f`` comes from channel ``f // prod(S)``.
- ``cat``: concatenation along the channel dimension.
- ``shape``: returns no tensor (``x.size(0)``, ``x.shape``): reads no channel values.
- ``unknown``: anything else. Fine where no gate reaches it; refused where one does.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
               nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
               nn.Softplus, nn.Softsign, nn.LogSigmoid, nn.Tanhshrink)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)  # eval mode: a per-channel affine map
SAME_CONST = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
              nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
              nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
ACTIVATION_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu, F.silu,
                        F.mish, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.hardtanh,
                        F.hardswish, F.hardsigmoid, F.softplus}
SAME_CONST_FUNCTIONS = {F.max_pool2d, F.max_pool1d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d,
                        F.adaptive_avg_pool1d, F.dropout, F.dropout2d}
ACTIVATION_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_"}
SAME_CONST_METHODS = {"contiguous", "clone"}
ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
SCALE_FUNCTIONS = {operator.mul, operator.imul, torch.mul, operator.truediv}


@dataclass(frozen=True)
class Op:
    """How one traced node moves channels. ``inputs``: its tensor arguments (fx nodes)."""

    kind: str  # layer, channelwise, add, scale, flatten, cat, placeholder, output, shape, unknown
    inputs: tuple[fx.Node, ...] = ()
    const: str = "apply"  # channelwise only: apply, same, zero_only
    name: str = ""  # what the op is, for messages


def tensor_meta(node: fx.Node):
    meta = node.meta.get("tensor_meta")
    return meta if meta is not None and hasattr(meta, "shape") else None


def _tensor_args(node: fx.Node) -> tuple[fx.Node, ...]:
    flat = [a for a in node.args if isinstance(a, fx.Node)]
    flat += [a for a in node.kwargs.values() if isinstance(a, fx.Node)]
    return tuple(a for a in flat if tensor_meta(a) is not None)


def describe(node: fx.Node) -> str:
    """``call_function relu``, ``call_module layer1.0.bn1 (BatchNorm2d)`` and the like."""
    target = node.target
    if node.op == "call_function":
        target = getattr(target, "__name__", str(target))
    return f"{node.op} {target}"


def _is_flatten(node: fx.Node, inputs: tuple[fx.Node, ...]) -> bool:
    out, src = tensor_meta(node), tensor_meta(inputs[0]) if inputs else None
    if out is None or src is None or len(src.shape) <= 2 or len(out.shape) != 2:
        return False
    return out.shape[0] == src.shape[0] and out.shape[1] == src.shape[1:].numel()


def _avg_pool_const(module: nn.AvgPool2d) -> str:
    padded = module.padding not in (0, (0, 0))
    return "zero_only" if padded and module.count_include_pad else "same"


def classify(node: fx.Node, modules: dict[str, nn.Module]) -> Op:
    """The ``Op`` of a traced node (see the module docstring)."""
    if node.op == "placeholder":
        return Op("placeholder", name=describe(node))
    if node.op == "output":
        return Op("output", tuple(a for a in node.all_input_nodes if tensor_meta(a) is not None),
                  name="the model's output")
    if tensor_meta(node) is None:  # sizes, shapes, attributes: no channel values read
        return Op("shape", name=describe(node))
    inputs = _tensor_args(node)
    name = describe(node)
    if node.op == "call_module":
        module = modules[node.target]
        name = f"{name} ({type(module).__name__})"
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            return Op("layer", inputs, name=name)
        if isinstance(module, ACTIVATIONS + NORMS):
            return Op("channelwise", inputs, "apply", name)
        if isinstance(module, SAME_CONST):
            return Op("channelwise", inputs, "same", name)
        if isinstance(module, nn.AvgPool2d):
            return Op("channelwise", inputs, _avg_pool_const(module), name)
        if isinstance(module, nn.Flatten) and _is_flatten(node, inputs):
            return Op("flatten", inputs, name=name)
        return Op("unknown", inputs, name=name)
    if node.op == "call_function":
        target = node.target
        if target in ACTIVATION_FUNCTIONS:
            return Op("channelwise", inputs[:1], "apply", name)
        if target in SAME_CONST_FUNCTIONS:
            return Op("channelwise", inputs[:1], "same", name)
        if target is F.avg_pool2d:
            return Op("channelwise", inputs[:1], "zero_only", name)
        if target in ADD_FUNCTIONS and len(node.args) == 2 and "alpha" not in node.kwargs:
            return _add_or_scale(node, inputs, "add", name)
        if target in SCALE_FUNCTIONS and len(inputs) == 1 and len(node.args) == 2:
            return Op("scale", inputs, name=name)
        if target is torch.flatten and _is_flatten(node, inputs):
            return Op("flatten", inputs, name=name)
        if target is torch.cat and _cat_dim(node) == 1:
            return Op("cat", tuple(node.args[0]), name=name)
    if node.op == "call_method":
        method = node.target
        if method in ACTIVATION_METHODS:
            return Op("channelwise", inputs[:1], "apply", name)
        if method in SAME_CONST_METHODS or (method == "mean" and _spatial_mean(node)):
            return Op("channelwise", inputs[:1], "same", name)
        if method in ("add", "add_") and len(node.args) == 2 and not node.kwargs:
            return _add_or_scale(node, inputs, "add", name)
        if method in ("mul", "mul_", "div", "div_") and len(inputs) == 1 and len(node.args) == 2:
            return Op("scale", inputs, name=name)
        if method in ("flatten", "view", "reshape") and _is_flatten(node, inputs):
            return Op("flatten", inputs, name=name)
    return Op("unknown", inputs, name=name)


def _add_or_scale(node: fx.Node, inputs: tuple[fx.Node, ...], kind: str, name: str) -> Op:
    if len(inputs) == 2:
        shapes = {tuple(tensor_meta(a).shape) for a in inputs} | {tuple(tensor_meta(node).shape)}
        return Op(kind, inputs, name=name) if len(shapes) == 1 else Op("unknown", inputs, name=name)
    if len(inputs) == 1:
        return Op(kind, inputs, name=name)  # a tensor plus a number
    return Op("unknown", inputs, name=name)


def _cat_dim(node: fx.Node) -> int | None:
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
    meta = tensor_meta(node)
    if not isinstance(dim, int) or meta is None:
        return None
    return dim % len(meta.shape)


def _spatial_mean(node: fx.Node) -> bool:
    """``x.mean((2, 3))``: a global average pool."""
    src, out = tensor_meta(node.args[0]) if isinstance(node.args[0], fx.Node) else None, tensor_meta(node)
    if src is None or out is None or len(src.shape) != 4:
        return False
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keep = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
    return (not keep and isinstance(dims, (tuple, list)) and sorted(d % 4 for d in dims) == [2, 3]
            and tuple(out.shape) == tuple(src.shape[:2]))
