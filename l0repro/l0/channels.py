"""Where a model's gates reach: its channel flow, traced once with ``torch.fx``.

``trace(model, example_input)`` records the eval-mode graph (``L0Linear`` and ``L0Conv2d``
as leaves) with every tensor's shape. ``channel_plan`` then groups the tensors into channel
*spaces*: tensors whose channel ``c`` (dimension 1) is the same channel, because the ops
between them act per channel (activations, batch norm, pooling, dropout) or add them up (a
residual join). A space is made by its *producers* (the layers, inputs or other ops that
write it) and read by its *consumers* (layers, flattens, concatenations, the output).

A channel of a space is absent from the smaller network, and costs nothing, when

- *closed*: every producer is an ``L0Conv2d`` whose gate for it is closed, so the channel is
  zero where it is made; behind batch norm or an activation it becomes a constant, which its
  readers take as a bias (``compact``). Needs readers that can drop a channel (layers,
  flattens, concatenations), not the output; an op the tracer does not know among the
  readers raises ``ValueError`` naming the gated layer and the op;
- or *unread*: every reader is an ``L0Linear`` whose input gate for it is closed, and every
  producer is a layer that can drop the output channel (a hidden unit of an MLP).

A flattened or concatenated tensor is a *derived* space: its features exist where their
source channels do, and its readers may drop more (an ``L0Linear``'s closed inputs are
gathered out). A unit is never removed because of what lies beyond a flatten (a kept conv
map stays kept even when no linear input reads it).

``SpacePlan.measures(measure)`` turns per-gate numbers (P(open), 0/1, or 1) into each space's
per-channel weight ``a * b``: ``a`` that the channel is made (1 - prod(1 - g) over the closing
producers), ``b`` that it is read (1 - prod(1 - g) over the reading gates). FLOPs and
compaction both use it, so the counted cost is the compact network's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from l0repro.l0.layers import L0Conv2d, L0Gate, L0Layer, L0Linear
from l0repro.l0.ops import Op, classify, describe, tensor_meta

Measure = Callable[[L0Gate], torch.Tensor]


class L0Tracer(fx.Tracer):
    """``torch.fx`` tracer that keeps the gated layers whole (their gate is not traced into)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, L0Layer) or super().is_leaf_module(m, qualname)


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Put every submodule in eval mode for the block; restore each one's mode after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def unwrap(model: nn.Module) -> nn.Module:
    """The module evaluation uses: ``AveragedModel``'s (an EMA) ``module``, else ``model``."""
    return model.module if isinstance(model, torch.optim.swa_utils.AveragedModel) else model


def trace(model: nn.Module, example_input: torch.Tensor) -> fx.GraphModule:
    """The eval-mode graph of ``model`` with each node's output shape (``tensor_meta``).

    Raises:
        ValueError: the model cannot be traced (e.g. control flow that depends on the data).
    """
    tracer = L0Tracer()
    if tracer.is_leaf_module(model, ""):  # a bare layer: trace it as the one layer of a model
        model = nn.Sequential(model)
    with eval_mode(model):
        try:
            graph = tracer.trace(model)
        except Exception as e:  # fx raises TraceError, TypeError, RuntimeError... for these
            raise ValueError(f"cannot trace {type(model).__name__} with torch.fx (data-dependent "
                             f"control flow or an untraceable op?): {type(e).__name__}: {e}") from e
        gm = fx.GraphModule(tracer.root, graph)
        with torch.no_grad():
            ShapeProp(gm).propagate(example_input)
    return gm


@dataclass
class Space:
    """Tensors sharing one set of channels; see the module docstring."""

    index: int
    size: int
    nodes: list[fx.Node] = field(default_factory=list)
    producers: list[fx.Node] = field(default_factory=list)
    consumers: list[tuple[fx.Node, Op]] = field(default_factory=list)
    derived: tuple = ()  # ("flatten", source space, positions) or ("cat", source spaces)
    closing: list[str] = field(default_factory=list)  # L0Conv2d producers (rule "closed")
    reading: list[str] = field(default_factory=list)  # L0Linear readers (rule "unread")


@dataclass
class LayerTerm:
    """One conv or linear layer: ``2 * kernel * positions * in * out / groups`` FLOPs."""

    node: str
    module: str
    in_space: int
    out_space: int
    kernel: int  # kernel area (1 for a linear layer)
    positions: int  # output positions (1 for a linear layer on (N, F))
    bias: bool
    groups: int
    gated_inputs: bool  # an L0Linear: its own input gates weigh its inputs
    in_features: int
    out_features: int
    opaque: bool  # channels not on dimension 1 (a linear layer on (N, ..., F)): counted dense


@dataclass
class SpacePlan:
    """A traced model's spaces and layers (``channel_plan``); evaluates measures on them."""

    gm: fx.GraphModule
    spaces: list[Space]
    space_of: dict[str, int]  # node name -> space index
    terms: list[LayerTerm]
    ops: dict[str, Op]
    gate_modules: dict[str, L0Layer]

    def measures(self, measure: Measure) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per space, (a, b): float64 per-channel weights that a channel is made and read."""
        a: list[torch.Tensor | None] = [None] * len(self.spaces)
        b: list[torch.Tensor | None] = [None] * len(self.spaces)
        device = next(iter(self.gm.parameters()), torch.zeros(())).device

        def one(size: int) -> torch.Tensor:
            return torch.ones(size, dtype=torch.float64, device=device)

        def any_open(names: list[str], size: int) -> torch.Tensor:
            closed = [1.0 - measure(self.gate_modules[n].gate).double() for n in names]
            return one(size) if not closed else 1.0 - torch.stack(closed).prod(0)

        def get(i: int) -> torch.Tensor:
            if a[i] is None:
                space = self.spaces[i]
                if space.derived and space.derived[0] == "flatten":
                    _, src, positions = space.derived
                    a[i] = (get(src) * b[src]).repeat_interleave(positions)
                elif space.derived:
                    a[i] = torch.cat([get(s) * b[s] for s in space.derived[1]])
                else:
                    a[i] = any_open(space.closing, space.size)
            return a[i]

        for i, space in enumerate(self.spaces):
            b[i] = any_open(space.reading, space.size)
        return [get(i) for i in range(len(self.spaces))], b

    def layer_measures(self, measure: Measure) -> list[tuple[LayerTerm, torch.Tensor, torch.Tensor]]:
        """Per layer (term, input weights, output weights) under ``measure``."""
        a, b = self.measures(measure)
        out = []
        for t in self.terms:
            if t.opaque:
                dev = a[0].device
                w_in = torch.ones(t.in_features, dtype=torch.float64, device=dev)
                w_out = torch.ones(t.out_features, dtype=torch.float64, device=dev)
            else:
                w_in = a[t.in_space]
                if t.gated_inputs:
                    w_in = w_in * measure(self.gate_modules[t.module].gate).double()
                w_out = a[t.out_space] * b[t.out_space]
            out.append((t, w_in, w_out))
        return out


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def add(self, x: str) -> None:
        self.parent.setdefault(x, x)

    def find(self, x: str) -> str:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, x: str, y: str) -> None:
        self.parent[self.find(x)] = self.find(y)


def _channels(node: fx.Node) -> int:
    shape = tensor_meta(node).shape
    return int(shape[1]) if len(shape) > 1 else 1


def channel_plan(model: nn.Module, example_input: torch.Tensor) -> SpacePlan:
    """Trace ``model`` on ``example_input`` and find its channel spaces and layers.

    Raises:
        ValueError: the model cannot be traced, a gated layer is used in a way the plan cannot
            follow (called twice, an ``L0Linear`` on more than two dimensions), or a gated
            channel reaches an op the tracer does not know before any layer reads it.
    """
    gm = trace(model, example_input)
    modules = dict(gm.named_modules())
    ops: dict[str, Op] = {}
    uf = _UnionFind()
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        op = ops[node.name] = classify(node, modules)
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
        if tensor_meta(node) is None or op.kind == "output":
            continue
        uf.add(node.name)
        if op.kind in ("channelwise", "add", "scale"):
            for src in op.inputs:
                if _channels(src) == _channels(node):
                    uf.union(node.name, src.name)
    gate_modules = {name: m for name, m in modules.items() if isinstance(m, L0Layer)}
    for name, n in calls.items():
        if n > 1 and isinstance(modules[name], (nn.Conv2d, nn.Linear, *_NORMS)):
            raise ValueError(f"{name} ({type(modules[name]).__name__}) is called {n} times in one "
                             f"forward; a layer shared between places cannot be pruned per place")

    roots: dict[str, int] = {}
    spaces: list[Space] = []
    space_of: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.name not in uf.parent:
            continue
        root = uf.find(node.name)
        if root not in roots:
            roots[root] = len(spaces)
            spaces.append(Space(len(spaces), _channels(node)))
        space = spaces[roots[root]]
        space.nodes.append(node)
        space_of[node.name] = space.index
        op = ops[node.name]
        joined = op.kind in ("channelwise", "add", "scale") and any(
            uf.find(s.name) == root for s in op.inputs)
        if not joined:
            space.producers.append(node)

    terms = []
    for node in gm.graph.nodes:
        op = ops[node.name]
        for src in op.inputs:
            if src.name in space_of and space_of.get(node.name) != space_of[src.name]:
                spaces[space_of[src.name]].consumers.append((node, op))
        if op.kind == "layer":
            terms.append(_layer_term(node, modules[node.target], space_of))
        elif op.kind == "flatten":
            src = op.inputs[0]
            positions = int(tensor_meta(src).shape[2:].numel())
            spaces[space_of[node.name]].derived = ("flatten", space_of[src.name], positions)
        elif op.kind == "cat":
            spaces[space_of[node.name]].derived = ("cat", [space_of[s.name] for s in op.inputs])

    for space in spaces:
        _decide_rules(space, ops, modules)
    return SpacePlan(gm, spaces, space_of, terms, ops, gate_modules)


_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _layer_term(node: fx.Node, module: nn.Module, space_of: dict[str, int]) -> LayerTerm:
    src = node.args[0]
    in_shape, out_shape = tensor_meta(src).shape, tensor_meta(node).shape
    if isinstance(module, nn.Conv2d):
        kernel, positions = module.kernel_size[0] * module.kernel_size[1], int(out_shape[2:].numel())
        n_in, n_out, groups, opaque = module.in_channels, module.out_channels, module.groups, False
    else:
        kernel, positions = 1, int(out_shape[1:-1].numel())
        n_in, n_out, groups, opaque = module.in_features, module.out_features, 1, len(in_shape) != 2
        if opaque and isinstance(module, L0Linear):
            raise ValueError(f"{node.target} (L0Linear) reads a {len(in_shape)}-d input "
                             f"{tuple(in_shape)}; its gates are on the last dimension, which the "
                             "channel plan cannot follow: flatten to (N, features) first")
    return LayerTerm(node.name, node.target, space_of[src.name], space_of[node.name], kernel,
                     positions, module.bias is not None, groups, isinstance(module, L0Linear),
                     n_in, n_out, opaque)


def _is_plain_reader(node: fx.Node, op: Op, modules: dict[str, nn.Module]) -> bool:
    """A consumer that can drop an input channel: a flatten, a concatenation, or a layer."""
    if op.kind in ("flatten", "cat"):
        return True
    if op.kind != "layer":
        return False
    module = modules[node.target]
    if isinstance(module, nn.Conv2d):
        return module.groups == 1
    return len(tensor_meta(node.args[0]).shape) == 2


def _is_layer_producer(node: fx.Node, ops: dict[str, Op], modules: dict[str, nn.Module]) -> bool:
    return ops[node.name].kind == "layer" and _is_plain_reader(node, ops[node.name], modules)


def _decide_rules(space: Space, ops: dict[str, Op], modules: dict[str, nn.Module]) -> None:
    """Fill ``space.closing`` and ``space.reading`` (the module docstring's two rules)."""
    if space.derived:
        return
    gated = [p for p in space.producers if isinstance(modules.get(p.target), L0Conv2d)]
    for node, op in space.consumers:
        if gated and op.kind == "unknown":
            raise ValueError(f"the channels of gated layer {gated[0].target} (L0Conv2d) reach "
                             f"'{describe(node)}' ({node.name}), an op the L0 tracer cannot follow "
                             "exactly; FLOPs and compaction support convs, linear layers, batch "
                             "norm, elementwise activations, pooling, dropout, flatten, residual "
                             "additions and channel concatenation")
    producers_are_layers = space.producers and all(
        _is_layer_producer(p, ops, modules) for p in space.producers)
    if (gated and len(gated) == len(space.producers) and producers_are_layers
            and all(_is_plain_reader(n, op, modules) for n, op in space.consumers)):
        space.closing = [p.target for p in gated]
    readers = [n for n, op in space.consumers]
    if (producers_are_layers and readers and all(
            op.kind == "layer" and isinstance(modules[n.target], L0Linear)
            for n, op in space.consumers)):
        space.reading = [n.target for n in readers]
