"""Compaction: the small plain network a gated model stands for, for any model built from
the L0 layers (the paper's section 4; see docs/library.md).

``compact(model, example_input)`` returns a ``torch.fx.GraphModule`` of plain torch layers
with the gated model's eval outputs (gates at ``z_hat``, batch norm with running statistics):

1. every gate is folded into its layer, exactly as the eval forward scales the weights, so
   ``L0Conv2d`` / ``L0Linear`` become ``nn.Conv2d`` / ``nn.Linear``;
2. every channel that ``l0repro.l0.channels`` finds absent (closed where it is made, or read
   by no one) is cut out of the layer that makes it, the batch norms that carry it and the
   layers that read it; an ``L0Linear``'s closed inputs that cannot be cut at their source
   (the model's input, a flattened map) are gathered out (``torch.index_select``);
3. a closed channel that batch norm or an activation turns into a constant ``c`` still feeds
   its readers: each reader gets it back as an exact constant added to its output
   (``ConstantShift``): a bias for a linear layer or an unpadded conv, a per-position map for
   a zero-padded conv (exact at the traced input size only; another size is refused);
4. a layer left with no input is replaced by the constant it then outputs (``ConstantOutput``).

The result is checked against the gated model on the example input and on random inputs of
its shape before it is returned (``ValueError`` if it differs beyond float32 rounding, which
would be a bug). ``FlopCounterMode`` on it counts ``pruned_flops(model, example_input)``.

``save_compact`` writes the graph as plain data plus a state dict; ``load_compact`` rebuilds
it from torch's own modules and functions with ``torch.load(weights_only=True)``: no code is
unpickled.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from l0repro.l0 import gates
from l0repro.l0.channels import SpacePlan, eval_mode, unwrap
from l0repro.l0.flops import plan_for, pruned_measure, resolve_input
from l0repro.l0.layers import L0Conv2d, L0Linear
from l0repro.l0.ops import tensor_meta

FORMAT = "l0repro.compact/2"
RELATIVE_TOLERANCE = 1e-5  # of the output scale: float32 sums of fewer terms, in another order


class ConstantShift(nn.Module):
    """Adds a constant (a buffer) to its input: what closed channels still feed a layer.

    ``value`` is ``(1, C)`` or ``(1, C, 1, 1)`` (a bias) or ``(1, C, H, W)`` (exact for
    ``H x W`` outputs only: another size is refused).
    """

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("value", value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_position = self.value.dim() == 4 and self.value.shape[-2:] != (1, 1)
        if per_position and x.shape[-2:] != self.value.shape[-2:]:
            raise ValueError(f"this compact network is exact for {tuple(self.value.shape[-2:])} "
                             f"maps here (its traced input size); got {tuple(x.shape[-2:])}")
        return x + self.value


class ConstantOutput(nn.Module):
    """A layer whose every input channel is gone: it outputs ``value`` for each example."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("value", value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: only its batch size is used
        return self.value.expand(x.shape[0], *self.value.shape[1:]).clone()


# ------------------------------------------------------------------------ constants

def _const_tensor(values: torch.Tensor, ndim: int) -> torch.Tensor:
    return values.reshape(1, -1, *([1] * (ndim - 2)))


def _run_with(node: fx.Node, gm: fx.GraphModule, env: dict[str, torch.Tensor]) -> torch.Tensor:
    """Run ``node``'s op with each tensor input replaced by its constant (a (1, C, 1, 1) tensor)."""
    def sub(a):
        if isinstance(a, fx.Node):
            return _const_tensor(env[a.name], len(tensor_meta(a).shape))
        if isinstance(a, (tuple, list)):
            return type(a)(sub(v) for v in a)
        return a
    args, kwargs = sub(node.args), {k: sub(v) for k, v in node.kwargs.items()}
    if node.op == "call_module":
        out = gm.get_submodule(node.target)(*args, **kwargs)
    elif node.op == "call_function":
        out = node.target(*args, **kwargs)
    else:
        out = getattr(args[0], node.target)(*args[1:], **kwargs)
    return out.reshape(-1)


@torch.no_grad()
def channel_constants(plan: SpacePlan, gm: fx.GraphModule) -> tuple[dict[str, torch.Tensor], set[str]]:
    """For every node of a space with closing gates (and what is flattened or concatenated
    from it), the per-channel value its closed channels hold (float64, valid where closed);
    and the names of average pools that see a non-zero such constant (not exact)."""
    env: dict[str, torch.Tensor] = {}
    bad: set[str] = set()
    closing = {s.index for s in plan.spaces if s.closing}
    device = next(iter(gm.parameters()), torch.zeros(())).device
    zeros = {"dtype": torch.float64, "device": device}
    for node in gm.graph.nodes:
        i = plan.space_of.get(node.name)
        if i is None:
            continue
        op, space = plan.ops[node.name], plan.spaces[i]
        known = [s.name in env for s in op.inputs]
        if op.kind == "layer":
            if i in closing:  # a closing producer: its closed channels are exactly 0
                env[node.name] = torch.zeros(space.size, **zeros)
        elif op.kind == "flatten" and all(known):
            env[node.name] = env[op.inputs[0].name].repeat_interleave(space.derived[2])
        elif op.kind == "cat" and any(known):
            env[node.name] = torch.cat([env.get(s.name, torch.zeros(plan.spaces[plan.space_of[
                s.name]].size, **zeros)) for s in op.inputs])
        elif op.kind in ("channelwise", "add", "scale") and known and all(known):
            if op.kind == "channelwise" and op.const in ("same", "zero_only"):
                env[node.name] = env[op.inputs[0].name]
                if op.const == "zero_only":
                    bad.add(node.name)  # checked against the removed channels by the caller
            else:  # an activation, batch norm, a residual sum, a scale: evaluate it on the constant
                dtype = tensor_meta(node).dtype
                local = {k: v.to(dtype) for k, v in env.items()}
                env[node.name] = _run_with(node, gm, local).double()
    return env, bad


# ------------------------------------------------------------------------ compaction

def _folded(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) as the eval forward uses them: the gate's z_hat scaled in, same dtype."""
    w, b = module.weight.detach(), None if module.bias is None else module.bias.detach()
    if isinstance(module, L0Conv2d):
        z = gates.deterministic_gate(module.gate.log_alpha.detach())
        return w * z[:, None, None, None], None if b is None else b * z
    if isinstance(module, L0Linear):
        return w * gates.deterministic_gate(module.gate.log_alpha.detach()), b
    return w, b


def _plain_like(module: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    if isinstance(module, nn.Conv2d):
        new = nn.Conv2d(weight.shape[1] * module.groups, weight.shape[0], module.kernel_size,
                        module.stride, module.padding, module.dilation, module.groups,
                        bias is not None, module.padding_mode, weight.device, weight.dtype)
    else:
        new = nn.Linear(weight.shape[1], weight.shape[0], bias is not None, weight.device,
                        weight.dtype)
    new.weight.data.copy_(weight)
    if bias is not None:
        new.bias.data.copy_(bias)
    return new


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def _slice_norm(bn: nn.modules.batchnorm._BatchNorm, keep: torch.Tensor) -> None:
    for attr in ("weight", "bias", "running_mean", "running_var"):
        t = getattr(bn, attr)
        if t is not None:
            new = t.detach()[keep].clone()
            if isinstance(t, nn.Parameter):
                setattr(bn, attr, nn.Parameter(new, t.requires_grad))
            else:
                setattr(bn, attr, new)
    bn.num_features = int(keep.numel())


def _present(plan: SpacePlan) -> list[torch.Tensor]:
    a, b = plan.measures(pruned_measure)
    return [(ai * bi).cpu() > 0 for ai, bi in zip(a, b, strict=True)]


@torch.no_grad()
def compact(model: nn.Module, example_input: torch.Tensor | None = None) -> fx.GraphModule:
    """The plain network with ``model.eval()``'s outputs and every absent unit removed.

    Args:
        model: any module built from ``L0Linear`` / ``L0Conv2d`` and ordinary torch layers
            (an ``AveragedModel`` EMA wrapper is unwrapped). It is not changed.
        example_input: one input batch of the shape the model is used with; may be left out
            for a model with ``example_input()`` (the suite's models).

    Returns:
        A ``torch.fx.GraphModule`` in eval mode, on the model's device, made of torch's own
        layers (plus ``ConstantShift`` / ``ConstantOutput`` buffers where closed channels
        leave constants).

    Raises:
        ValueError: the model cannot be traced, or a gated channel reaches an op the tracer
            cannot follow exactly (the message names the layer and the op).
    """
    model = unwrap(model)
    x = resolve_input(model, example_input)
    plan = plan_for(model, x)
    present = _present(plan)
    gm = copy.deepcopy(plan.gm)
    with eval_mode(gm):
        consts, zero_only = channel_constants(plan, gm)
    graph, nodes = gm.graph, {n.name: n for n in gm.graph.nodes}
    first_input = next(n for n in graph.nodes if n.op == "placeholder")
    for name in zero_only:  # an average pool that counts zero padding keeps only zeros exact
        removed = (~present[plan.space_of[name]]).to(consts[name].device)
        if bool((consts[name][removed] != 0).any()):
            raise ValueError(f"{nodes[name].target}: a closed channel reaches this average pool "
                             "(zero padding counted) as a non-zero constant, which is not a "
                             "constant after it; compaction cannot remove it exactly")

    for space in plan.spaces:  # batch norms carry their space's channels
        if bool(present[space.index].all()):
            continue
        for node in space.nodes:
            if node.op == "call_module" and isinstance(gm.get_submodule(node.target),
                                                       nn.modules.batchnorm._BatchNorm):
                _slice_norm(gm.get_submodule(node.target),
                            present[space.index].nonzero().flatten().to(x.device))

    for term in plan.terms:
        node, module = nodes[term.node], gm.get_submodule(term.module)
        weight, bias = _folded(module)
        if term.opaque:
            _set_module(gm, term.module, _plain_like(module, weight, bias))
            continue
        have = present[term.in_space]  # the channels that reach this layer physically
        read = have.clone()
        if term.gated_inputs:
            read &= gates.is_kept(module.gate.log_alpha.detach()).cpu()
        out = present[term.out_space].nonzero().flatten().to(weight.device)
        dev_read = read.nonzero().flatten().to(weight.device)
        dropped = (~have).nonzero().flatten().to(weight.device)
        src = node.args[0]
        shift = None
        if src.name in consts and len(dropped) and bool((consts[src.name][dropped] != 0).any()):
            shift = _constant_through(module, weight[out][:, dropped], consts[src.name][dropped],
                                      tensor_meta(src).shape, tensor_meta(node).shape)
        new_bias = None if bias is None else bias[out]
        if len(out) == 0:  # no output channel left: nothing reads it, dead code below
            continue
        if len(dev_read) == 0:  # nothing left to read: the layer is a constant
            value = torch.zeros((1, len(out), *tensor_meta(node).shape[2:]), dtype=torch.float64,
                                device=weight.device)
            if new_bias is not None:
                value += _const_tensor(new_bias.double(), value.dim())
            if shift is not None:
                value = value + shift
            const_name = f"l0_const_{node.name}"
            gm.add_submodule(const_name, ConstantOutput(value.to(weight.dtype)))
            # it still reads its input when channels reach it (what the FLOP count charges the
            # layers before it), else only the batch size of the model's input
            keep = src if bool(have.any()) else first_input
            node.target, node.args, node.kwargs = const_name, (keep,), {}
            continue
        _set_module(gm, term.module, _plain_like(module, weight[out][:, dev_read], new_bias))
        if not bool(read[have].all()):  # a reader that drops more than its source: gather
            rel = torch.cumsum(have.long(), 0)[read] - 1
            index_name = f"l0_index_{node.name}"
            gm.register_buffer(index_name, rel.to(weight.device))
            with graph.inserting_before(node):
                index = graph.get_attr(index_name)
                gathered = graph.call_function(torch.index_select, (src, 1, index))
            node.args = (gathered, *node.args[1:])
        if shift is not None:
            shift_name = f"l0_shift_{node.name}"
            gm.add_submodule(shift_name, ConstantShift(shift.to(weight.dtype)))
            with graph.inserting_after(node):
                shifted = graph.call_module(shift_name, (node,))
            node.replace_all_uses_with(shifted, delete_user_cb=lambda user, s=shifted: user is not s)

    for node in list(graph.nodes):  # a concatenation drops an input with no channel left
        if plan.ops.get(node.name) is not None and plan.ops[node.name].kind == "cat":
            parts = [s for s in node.args[0] if bool(present[plan.space_of[s.name]].any())]
            node.args = (parts, *node.args[1:])
    graph.eliminate_dead_code()
    graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    gm.eval()
    _check_equal(model, gm, x)
    return gm


def _constant_through(module: nn.Module, weight: torch.Tensor, values: torch.Tensor,
                      in_shape: torch.Size, out_shape: torch.Size) -> torch.Tensor:
    """What constant input channels ``values`` add to the layer's output (float64)."""
    w, v = weight.double(), values.to(weight.device)
    if isinstance(module, nn.Linear):
        return (w @ v)[None]
    level = v.view(1, -1, 1, 1).expand(1, -1, *in_shape[2:])
    shift = F.conv2d(level, w, None, module.stride, module.padding, module.dilation)
    if shift.shape[-2:] != out_shape[-2:]:
        raise ValueError(f"cannot compact {type(module).__name__} with padding mode "
                         f"{module.padding_mode!r} exactly")
    flat = shift.flatten(2)
    spread = (flat.amax(2) - flat.amin(2)).abs().max()
    if float(spread) <= 1e-12 * max(1.0, float(flat.abs().max())):
        return shift[:, :, :1, :1]  # the same at every position: a bias
    return shift


def _check_equal(model: nn.Module, small: nn.Module, x: torch.Tensor) -> None:
    """Refuse to return a network whose outputs differ from the gated model's."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    probes = [x, torch.randn(x.shape, generator=generator).to(x)]
    with eval_mode(model):
        for probe in probes:
            want, got = model(probe), small(probe)
            scale = float(want.abs().max()) or 1.0
            diff = float((want - got).abs().max())
            if not diff <= 10 * RELATIVE_TOLERANCE * scale:
                raise ValueError(f"compaction changed the outputs of {type(model).__name__} "
                                 f"(max |difference| {diff:.3g} at output scale {scale:.3g}); "
                                 "this is a bug in l0repro, please report the model")


# ------------------------------------------------------------------------ files

_FUNCTION_MODULES = ("torch", "torch.nn.functional", "operator", "math")
_OWN_MODULES = {"ConstantShift": ConstantShift, "ConstantOutput": ConstantOutput}


def _function_name(fn: Any) -> str:
    for module_name in _FUNCTION_MODULES:
        module = importlib.import_module(module_name)
        if getattr(module, getattr(fn, "__name__", ""), None) is fn:
            return f"{module_name}.{fn.__name__}"
    raise ValueError(f"cannot save a compact network calling {fn!r}: only functions of "
                     f"{', '.join(_FUNCTION_MODULES)} can be written as plain data")


def _resolve_function(name: str) -> Any:
    module_name, _, attr = name.rpartition(".")
    if module_name not in _FUNCTION_MODULES:
        raise ValueError(f"compact file names function {name!r}, outside {_FUNCTION_MODULES}")
    return getattr(importlib.import_module(module_name), attr)


def _encode(a: Any) -> Any:
    if isinstance(a, fx.Node):
        return {"node": a.name}
    if isinstance(a, tuple):
        return {"tuple": [_encode(v) for v in a]}
    if isinstance(a, list):
        return [_encode(v) for v in a]
    if isinstance(a, dict):
        return {"dict": {k: _encode(v) for k, v in a.items()}}
    if isinstance(a, slice):
        return {"slice": [_encode(a.start), _encode(a.stop), _encode(a.step)]}
    if isinstance(a, torch.dtype):
        return {"dtype": str(a).removeprefix("torch.")}
    if a is None or isinstance(a, (bool, int, float, str)):
        return a
    raise ValueError(f"cannot save a compact network with argument {a!r} ({type(a).__name__})")


def _decode(a: Any, env: dict[str, fx.Node]) -> Any:
    if isinstance(a, list):
        return [_decode(v, env) for v in a]
    if isinstance(a, dict):
        (key, value), = a.items()
        if key == "node":
            return env[value]
        if key == "tuple":
            return tuple(_decode(v, env) for v in value)
        if key == "dict":
            return {k: _decode(v, env) for k, v in value.items()}
        if key == "slice":
            return slice(*(_decode(v, env) for v in value))
        if key == "dtype":
            return getattr(torch, value)
    return a


def _module_record(module: nn.Module) -> dict[str, Any]:
    cls = type(module)
    if cls.__name__ in _OWN_MODULES:
        kind = cls.__name__
    elif cls.__module__.startswith("torch.nn") and getattr(nn, cls.__name__, None) is cls:
        kind = f"torch.nn.{cls.__name__}"
    else:
        raise ValueError(f"cannot save a compact network holding {cls.__module__}.{cls.__name__}: "
                         "only torch.nn modules can be written as plain data")
    attrs = {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training"}
    return {"class": kind, "attrs": {k: _encode(v) for k, v in attrs.items()},  # plain data only
            "extra": {"_reversed_padding_repeated_twice": _encode(
                getattr(module, "_reversed_padding_repeated_twice", None))},
            "none_parameters": [k for k, v in module._parameters.items() if v is None],
            "none_buffers": [k for k, v in module._buffers.items() if v is None]}


def save_compact(model: fx.GraphModule, path: Path | str, **meta: Any) -> None:
    """Write a ``compact`` network as plain data (graph, module settings, state dict, ``meta``).

    Raises:
        ValueError: it holds a module or calls a function that is not torch's own.
    """
    leaves = {n.target for n in model.graph.nodes if n.op == "call_module"}
    graph = [{"op": n.op, "name": n.name,
              "target": _function_name(n.target) if n.op == "call_function" else n.target,
              "args": _encode(n.args), "kwargs": _encode(dict(n.kwargs))} for n in model.graph.nodes]
    modules = {name: _module_record(model.get_submodule(name)) for name in sorted(leaves)}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"format": FORMAT, "graph": graph, "modules": modules, "state_dict": state,
                "meta": meta}, path)


def _rebuild_module(record: dict[str, Any], state: dict[str, torch.Tensor], prefix: str) -> nn.Module:
    kind = record["class"]
    if kind in _OWN_MODULES:
        cls = _OWN_MODULES[kind]
    elif kind.startswith("torch.nn.") and isinstance(getattr(nn, kind.rpartition(".")[2], None), type):
        cls = getattr(nn, kind.rpartition(".")[2])
    else:
        raise ValueError(f"compact file names module class {kind!r}, not torch.nn's")
    module = cls.__new__(cls)
    nn.Module.__init__(module)
    for k, v in record["attrs"].items():
        setattr(module, k, _decode(v, {}))
    padding = _decode(record["extra"]["_reversed_padding_repeated_twice"], {})
    if padding is not None:
        module._reversed_padding_repeated_twice = padding
    for key, tensor in state.items():
        if key.startswith(prefix) and "." not in key[len(prefix):]:
            name = key[len(prefix):]
            if tensor.is_floating_point() and name in ("weight", "bias"):
                module.register_parameter(name, nn.Parameter(tensor, requires_grad=False))
            else:
                module.register_buffer(name, tensor)
    for name in record["none_parameters"]:
        module.register_parameter(name, None)
    for name in record["none_buffers"]:
        module.register_buffer(name, None)
    return module


def load_compact(path: Path | str) -> fx.GraphModule:
    """Rebuild a network written by ``save_compact`` (on the CPU, in eval mode).

    Loads with ``torch.load(weights_only=True)`` and builds only torch's own modules and
    functions (and this module's two constant adders).

    Raises:
        ValueError: the file is not a compact network of this format.
    """
    d = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        found = d.get("format", d.get("builder")) if isinstance(d, dict) else type(d).__name__
        raise ValueError(f"{path}: not a compact network of format {FORMAT} (found {found!r}); "
                         "write it again with `python -m l0repro.compact_run RUN_DIR` or save_compact")
    root = nn.Module()
    state = d["state_dict"]
    for name, record in d["modules"].items():
        parent = root
        parts = name.split(".")
        for part in parts[:-1]:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        parent.add_module(parts[-1], _rebuild_module(record, state, name + "."))
    for key, tensor in state.items():  # graph-level buffers (gather indices)
        if "." not in key:
            root.register_buffer(key, tensor)
    graph, env = fx.Graph(), {}
    for n in d["graph"]:
        args, kwargs = _decode(n["args"], env), _decode(n["kwargs"], env)
        target = _resolve_function(n["target"]) if n["op"] == "call_function" else n["target"]
        if n["op"] == "placeholder":
            node = graph.placeholder(target)
        elif n["op"] == "output":
            node = graph.output(args[0])
        else:
            node = graph.create_node(n["op"], target, args, kwargs, name=n["name"])
        env[n["name"]] = node
    return fx.GraphModule(root, graph).eval()
