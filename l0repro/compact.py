"""Compaction: the small dense network a trained L0 network stands for (PAPER.md section 4).

``compact(model)`` turns a gated ``MLP``, ``LeNet5`` or ``WideResNet`` into a module of
plain torch layers with the same test-time outputs (``model.eval()``: gates at ``z_hat``,
batch norm with running statistics). Units with ``z_hat == 0`` are removed from the layer
that makes them and from the layer that reads them; the ``z_hat`` of kept units is folded
into the weights. Folding is done in float64 and stored in float32.

- MLP: each ``L0Linear`` gates its inputs. The compact first layer reads only the kept
  pixels (an index buffer, gathered in the forward); hidden unit ``j`` survives when the
  next layer's gate ``j`` is open.
- LeNet-5: conv1/conv2 keep their open maps (gate folded into filter and bias); conv2 reads
  only the kept conv1 maps; fc1 reads only the flattened positions whose own gate and conv2
  map are both open (an index buffer). As in ``LeNet5.flop_terms``, a kept conv2 map is kept
  even when no fc1 input reads it, so the compact cost is exactly ``pruned_flops``. The
  compact forward pools before its ReLUs (the same numbers, max and ReLU commute; a quarter of
  the ReLUs): 3-50 % faster per 1000 images on one AVX2 core, the most at 10 conv1 maps.
- WRN: each block's gated ``conv1`` keeps its open maps, with ``z_hat`` and ``bn2`` folded
  in (``conv1 -> bn2`` has nothing between them: scale into the filters, shift into a new
  conv bias, exact in eval mode). ``bn1`` and the final ``bn`` are kept as
  ``nn.BatchNorm2d``: a ReLU sits between each of them and the next conv, and the residual
  stream they read must stay unscaled. A closed map still feeds ``relu(bn2(0))`` =
  ``relu(beta - gamma * mean / sqrt(var + eps))``, a per-channel constant, into ``conv2``;
  with zero padding its contribution is not a plain bias at the border. The compact block
  therefore adds a precomputed per-position map ``const_map[1, out, H, W]`` = conv2 of the
  closed maps' constants at the block's output size (``image_size`` of the gated model),
  exact at every position; an input of another size is refused. A block whose constants
  are all zero has no map; a block whose ``conv1`` maps are all closed keeps only its
  shortcut and the map. The map is a bias add: 0 FLOPs in the ``flop_counter`` convention.

Cost accounting: ``FlopCounterMode`` on the compact model equals ``flops.pruned_flops`` of
the gated one, and the weights + biases of its linear/conv layers equal ``params_kept``
(``flops.param_counts``), except that a compact WRN's conv1 also carries ``bn2``'s folded
shift as a bias (one per kept map; ``param_counts`` counts no batch-norm parameters).

The MLP and LeNet-5 need at least one kept unit in every counted layer: with none, the
output is a constant and ``compact`` raises ``ValueError`` naming the layer.

``python -m l0repro.compact RUN_DIR [--out FILE]`` compacts a run's ``weights.pt``, writes
``{builder, kwargs, state_dict}`` (``load_compact`` rebuilds it; ``weights_only=True``) and
prints the compact architecture, parameters, FLOPs, the largest output difference on the
test set and the test error of both models (for a selection run, ``data.validation``: on
its held-out split instead, the test set staying unseen).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.flop_counter import FlopCounterMode

from l0repro import flops, gates
from l0repro.data import load_dataset
from l0repro.data.validation import split_for_run
from l0repro.layers import L0Gate
from l0repro.models import MLP, LeNet5, WideResNet
from l0repro.record import CONFIG_FILE, WEIGHTS_FILE

COMPACT_FILE = "compact.pt"


class CompactModule(nn.Module):
    """A compact network rebuilt from plain constructor arguments (``self.kwargs``)."""

    kwargs: dict[str, Any]

    def layer_summary(self) -> str:
        """``name in->out`` for every linear/conv layer, in definition order."""
        parts = []
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear):
                parts.append(f"{name} {m.in_features}->{m.out_features}")
            elif isinstance(m, nn.Conv2d):
                parts.append(f"{name} {m.in_channels}->{m.out_channels}")
        return ", ".join(parts)


def gather_columns(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[:, index]``, skipped when ``index`` keeps every column: ``compact`` builds its
    indices sorted and unique, so a full-length one is the identity (a dense layer keeps all
    its inputs, and copying them would only cost time)."""
    return x if index.numel() == x.shape[1] else x.index_select(1, index)


class CompactMLP(CompactModule):
    """ReLU MLP on the kept input pixels ``input_index`` (of ``in_features``).

    Args:
        sizes: widths from the kept inputs to the classes, e.g. ``[266, 88, 33, 10]``.
        in_features: flattened input size the index refers to (784 for MNIST).
    """

    def __init__(self, sizes: list[int], in_features: int) -> None:
        super().__init__()
        self.kwargs = {"sizes": list(sizes), "in_features": in_features}
        self.in_features = in_features
        self.register_buffer("input_index", torch.arange(sizes[0]))
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(sizes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = gather_columns(x.flatten(1), self.input_index)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class CompactLeNet5(CompactModule):
    """LeNet-5-Caffe with ``conv1``/``conv2`` maps, fc1 reading ``fc1_index`` of the flat maps.

    Args:
        maps: kept output maps of conv1 and conv2.
        fc_inputs: kept inputs of fc1 and fc2.
        in_channels, num_classes: as for ``LeNet5``.
    """

    def __init__(self, maps: list[int], fc_inputs: list[int], in_channels: int = 1,
                 num_classes: int = 10) -> None:
        super().__init__()
        self.kwargs = {"maps": list(maps), "fc_inputs": list(fc_inputs),
                       "in_channels": in_channels, "num_classes": num_classes}
        self.conv1 = nn.Conv2d(in_channels, maps[0], 5)
        self.conv2 = nn.Conv2d(maps[0], maps[1], 5)
        self.register_buffer("fc1_index", torch.arange(fc_inputs[0]))
        self.fc1 = nn.Linear(fc_inputs[0], fc_inputs[1])
        self.fc2 = nn.Linear(fc_inputs[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # relu(max_pool(x)) == max_pool(relu(x)) exactly (relu is monotone): 4x fewer relus
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.fc1(gather_columns(x.flatten(1), self.fc1_index)))
        return self.fc2(x)


class CompactBlock(nn.Module):
    """A pruned pre-activation WRN block: ``[conv2(relu(conv1'(o)))] + const_map + shortcut``.

    ``o = relu(bn1(x))``; ``conv1'`` carries ``bn2`` (and the gates) folded in, so it has a
    bias; ``const_map`` is what the closed maps' constants add through ``conv2``.

    Args:
        in_channels, out_channels, stride: as the gated block's.
        width: kept ``conv1`` maps (0: the block is its shortcut plus ``const_map``).
        out_size: output side; ``const_map`` is exact for this size only.
        constant: whether the block has a ``const_map``.
    """

    def __init__(self, in_channels: int, width: int, out_channels: int, stride: int,
                 out_size: int, constant: bool) -> None:
        super().__init__()
        self.out_size = out_size
        has_shortcut = in_channels != out_channels or stride != 1
        self.bn1 = nn.BatchNorm2d(in_channels) if width or has_shortcut else None
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, 1) if width else None
        self.conv2 = nn.Conv2d(width, out_channels, 3, 1, 1, bias=False) if width else None
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False) \
            if has_shortcut else None
        if constant:  # 4-d, so that .to(memory_format=...) gives it the activations' layout
            self.register_buffer("const_map", torch.zeros(1, out_channels, out_size, out_size))
        else:
            self.const_map = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x)) if self.bn1 is not None else None
        out = x if self.shortcut is None else self.shortcut(o)
        if self.conv1 is not None:
            out = self.conv2(F.relu(self.conv1(o))) + out
        if self.const_map is not None:
            if out.shape[-2:] != self.const_map.shape[-2:]:
                raise ValueError(f"this compact WRN is exact for {self.out_size}-pixel block "
                                 f"outputs (its training image size); got {tuple(out.shape[-2:])}")
            out = out + self.const_map if out is x else out.add_(self.const_map)
        return out


class CompactWRN(CompactModule):
    """Pre-activation WRN of ``CompactBlock``s: stem conv, blocks, BN-ReLU-avgpool-linear.

    Args:
        blocks: per block ``[in_channels, width, out_channels, stride, out_size, constant]``.
        num_classes: classifier outputs.
    """

    def __init__(self, blocks: list[list[int]], num_classes: int = 10) -> None:
        super().__init__()
        self.kwargs = {"blocks": [list(b) for b in blocks], "num_classes": num_classes}
        self.conv = nn.Conv2d(3, blocks[0][0], 3, 1, 1, bias=False)
        self.blocks = nn.Sequential(*(CompactBlock(*b[:5], bool(b[5])) for b in blocks))
        self.bn = nn.BatchNorm2d(blocks[-1][2])
        self.fc = nn.Linear(blocks[-1][2], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.conv(x))
        x = F.adaptive_avg_pool2d(F.relu(self.bn(x)), 1)
        return self.fc(x.flatten(1))


BUILDERS: dict[str, type[CompactModule]] = {
    c.__name__: c for c in (CompactMLP, CompactLeNet5, CompactWRN)}


# ------------------------------------------------------------------------ compaction

def gate_values(layer: nn.Module, n: int) -> torch.Tensor:
    """``z_hat`` of a layer's gated units, as the gated forward computes it (in the parameters'
    dtype), then widened to float64 (all ones when the layer has no gate)."""
    gate = getattr(layer, "gate", None)
    if isinstance(gate, L0Gate):  # float32 weight * float32 z is exact in float64: same weights
        return gates.deterministic_gate(gate.log_alpha.detach()).double()
    return torch.ones(n, dtype=torch.float64, device=layer.weight.device)


def _kept(z: torch.Tensor, what: str) -> torch.Tensor:
    idx = torch.nonzero(z > 0).flatten()
    if len(idx) == 0:
        raise ValueError(f"every unit of {what} is closed (z_hat == 0): the network's output "
                         f"is a constant; there is no smaller network to build")
    return idx


def _set(module: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    module.weight.copy_(weight)
    if bias is not None:
        module.bias.copy_(bias)


@torch.no_grad()
def _compact_mlp(model: MLP) -> CompactMLP:
    layers = [getattr(model, n) for n in model.layer_names]
    zs = [gate_values(layer, layer.in_features) for layer in layers]
    kept = [_kept(z, f"{n} (inputs)") for z, n in zip(zs, model.layer_names, strict=True)]
    kept.append(torch.arange(layers[-1].out_features, device=kept[0].device))
    out = CompactMLP([len(k) for k in kept], layers[0].in_features)
    out.input_index.copy_(kept[0])
    for i, (layer, z) in enumerate(zip(layers, zs, strict=True)):
        w = layer.weight.double()[kept[i + 1]][:, kept[i]] * z[kept[i]]
        _set(out.layers[i], w, layer.bias[kept[i + 1]])
    return out


@torch.no_grad()
def _compact_lenet5(model: LeNet5) -> CompactLeNet5:
    z1, z2 = gate_values(model.conv1, 20), gate_values(model.conv2, 50)
    zf1, zf2 = gate_values(model.fc1, model.fc1.in_features), gate_values(model.fc2, 500)
    c1, c2 = _kept(z1, "conv1 (maps)"), _kept(z2, "conv2 (maps)")
    area = model.s3 * model.s3
    live = (zf1 > 0) & (z2 > 0).repeat_interleave(area)  # own gate and its conv2 map open
    f1, f2 = _kept(live.double(), "fc1 (inputs)"), _kept(zf2, "fc2 (inputs)")
    rank = torch.full((50,), -1, dtype=torch.long, device=c2.device)
    rank[c2] = torch.arange(len(c2), device=c2.device)  # a kept map's place among the kept
    out = CompactLeNet5([len(c1), len(c2)], [len(f1), len(f2)], model.conv1.in_channels,
                        model.fc2.out_features)
    out.fc1_index.copy_(rank[f1 // area] * area + f1 % area)
    _set(out.conv1, model.conv1.weight.double()[c1] * z1[c1, None, None, None],
         model.conv1.bias.double()[c1] * z1[c1])
    _set(out.conv2, model.conv2.weight.double()[c2][:, c1] * z2[c2, None, None, None],
         model.conv2.bias.double()[c2] * z2[c2])
    _set(out.fc1, model.fc1.weight.double()[f2][:, f1] * zf1[f1], model.fc1.bias[f2])
    _set(out.fc2, model.fc2.weight.double()[:, f2] * zf2[f2], model.fc2.bias)
    return out


def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) in float64 with ``bn(y) == scale * y + shift`` in eval mode."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return scale, bn.bias.double() - scale * bn.running_mean.double()


@torch.no_grad()
def _compact_wrn(model: WideResNet) -> CompactWRN:
    specs, folded = [], []
    side = model.image_size
    for block in model.blocks():
        c1 = block.conv1
        side = (side - 1) // c1.stride[0] + 1
        z = gate_values(c1, c1.out_channels)
        kept, closed = torch.nonzero(z > 0).flatten(), torch.nonzero(z == 0).flatten()
        scale, shift = bn_affine(block.bn2)
        const_map = None
        if len(closed) and bool((shift[closed] > 0).any()):
            level = F.relu(shift[closed]).view(1, -1, 1, 1).expand(1, -1, side, side)
            const_map = F.conv2d(level, block.conv2.weight.double()[:, closed], padding=1)
        specs.append([c1.in_channels, len(kept), c1.out_channels, c1.stride[0], side,
                      int(const_map is not None)])
        folded.append((block, kept, z, scale, shift, const_map))
    out = CompactWRN(specs, model.fc.out_features)
    out.conv.load_state_dict(model.conv.state_dict())
    out.bn.load_state_dict(model.bn.state_dict())
    out.fc.load_state_dict(model.fc.state_dict())
    for new, (block, kept, z, scale, shift, const_map) in zip(out.blocks, folded, strict=True):
        if new.bn1 is not None:
            new.bn1.load_state_dict(block.bn1.state_dict())
        if new.shortcut is not None:
            new.shortcut.load_state_dict(block.shortcut.state_dict())
        if new.conv1 is not None:
            s = (z * scale)[kept]
            _set(new.conv1, block.conv1.weight.double()[kept] * s[:, None, None, None],
                 shift[kept])
            _set(new.conv2, block.conv2.weight[:, kept])
        if const_map is not None:
            new.const_map.copy_(const_map)
    return out


def compact(model: nn.Module) -> CompactModule:
    """The plain network with ``model.eval()``'s outputs and units with ``z_hat == 0`` removed.

    ``model`` is not changed; given the EMA wrapper, its module (what evaluation uses) is compacted.
    """
    if isinstance(model, AveragedModel):  # the EMA wrapper: evaluation uses its module
        model = model.module
    builders = ((WideResNet, _compact_wrn), (LeNet5, _compact_lenet5), (MLP, _compact_mlp))
    for cls, build in builders:
        if isinstance(model, cls):
            device = next(model.parameters()).device
            return build(model).to(device).eval()
    raise TypeError(f"cannot compact a {type(model).__name__}; expected one of "
                    f"{[c.__name__ for c, _ in builders]}")


# ------------------------------------------------------------------------ files and counts

def save_compact(model: CompactModule, path: Path | str, **meta: Any) -> None:
    """Write ``{builder, kwargs, state_dict, meta}``: plain data, loads with ``weights_only``."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"builder": type(model).__name__, "kwargs": model.kwargs, "state_dict": state,
                "meta": meta}, path)


def load_compact(path: Path | str) -> CompactModule:
    """Rebuild a compact model written by ``save_compact`` (on the CPU, in eval mode)."""
    d = torch.load(path, map_location="cpu", weights_only=True)
    model = BUILDERS[d["builder"]](**d["kwargs"])
    model.load_state_dict(d["state_dict"])
    for name, index in model.named_buffers():
        if name.endswith("_index") and index.numel() > 1 and not bool((index.diff() > 0).all()):
            raise ValueError(f"{path}: buffer {name} is not sorted and unique; compact() writes "
                             f"every index that way (was the file edited?)")
    return model.eval()


def counted_flops(model: nn.Module, sample_shape: Iterable[int]) -> int:
    """``FlopCounterMode`` FLOPs of one eval forward on a single example of ``sample_shape``."""
    x = torch.zeros(1, *sample_shape, device=next(model.parameters()).device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    return counter.get_total_flops()


def layer_params(model: nn.Module) -> int:
    """Weights + biases of the linear and conv layers (``flops.param_counts``' convention)."""
    return sum(p.numel() for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))
               for p in m.parameters(recurse=False))


# ------------------------------------------------------------------------ runs and CLI

def load_run_model(run_dir: Path | str) -> tuple[Any, nn.Module]:
    """(config, gated model with the run's evaluation weights) from a run directory, on the CPU."""
    # the trainer's builder, so the model is the one the run trained (imported here: the
    # trainer pulls in wandb and the data pipeline, which compaction itself never needs)
    from l0repro.train import build_model

    run_dir = Path(run_dir)
    weights = run_dir / WEIGHTS_FILE
    if not weights.exists():
        raise FileNotFoundError(f"{weights} not found: a run writes it when it completes")
    cfg = OmegaConf.load(run_dir / CONFIG_FILE)
    model = build_model(cfg.model)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return cfg, model.eval()


@torch.no_grad()
def compare_outputs(gated: nn.Module, small: nn.Module, batches) -> dict[str, float]:
    """Error of both models on ``batches`` of (x, y) and the largest |difference| of their outputs."""
    wrong_g = wrong_c = n = 0
    max_diff = max_abs = 0.0
    for x, y in batches:
        a, b = gated(x), small(x)
        max_diff = max(max_diff, float((a - b).abs().max()))
        max_abs = max(max_abs, float(a.abs().max()))
        wrong_g += int((a.argmax(1) != y).sum())
        wrong_c += int((b.argmax(1) != y).sum())
        n += len(y)
    return {"error_gated": wrong_g / n, "error_compact": wrong_c / n, "max_abs_diff": max_diff,
            "max_abs_output": max_abs, "n": n}


def gated_sample_shape(model: nn.Module) -> tuple[int, int, int]:
    """(C, H, W) of one input example of a suite model."""
    if isinstance(model, WideResNet):
        return (3, model.image_size, model.image_size)
    if isinstance(model, LeNet5):
        side = model.s1 + 4
        return (model.conv1.in_channels, side, side)
    if isinstance(model, MLP):
        return (1, 28, 28) if model.fc1.in_features == 784 else (model.fc1.in_features, 1, 1)
    raise TypeError(f"no sample shape known for {type(model).__name__}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m l0repro.compact",
                                     description="Compact a run's weights into a small dense model.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help=f"default RUN_DIR/{COMPACT_FILE}")
    parser.add_argument("--data-root", default=None,
                        help="dataset directory (default: $L0REPRO_DATA, else the run's data.root)")
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args(argv)
    cfg, gated = load_run_model(args.run_dir)
    small = compact(gated)
    out_path = args.out or args.run_dir / COMPACT_FILE
    sample = gated_sample_shape(gated)
    report = {
        "architecture": gated.architecture(), "full_architecture": gated.full_architecture(),
        "layers": small.layer_summary(),
        "params_compact": layer_params(small), "params_kept": flops.param_counts(gated)[0],
        "params_dense": flops.param_counts(gated)[1],
        "flops_compact": counted_flops(small, sample), "flops_pruned": flops.pruned_flops(gated),
        "flops_dense": flops.dense_flops(gated),
    }
    root = args.data_root or os.environ.get("L0REPRO_DATA") or cfg.data.root
    data = load_dataset(cfg.data.name, root, torch.device("cpu"), download=False,
                        **(cfg.data.get("options") or {}))
    # a selection run never sees the test set: judge it on its held-out split, as it was trained
    data, validation = split_for_run(data, cfg.data.get("validation"),
                                     cfg.data.get("validation_seed", 0))
    report["split"] = "val" if validation else "test"
    report |= compare_outputs(gated, small, data.test_batches(args.batch_size))
    save_compact(small, out_path, run_dir=str(args.run_dir), **{
        k: report[k] for k in ("architecture", "flops_compact", "error_compact")})

    arch = "-".join(map(str, report["architecture"]))
    full = "-".join(map(str, report["full_architecture"]))
    print(f"{args.run_dir}: {cfg.model.name} -> {type(small).__name__}, written to {out_path}")
    print(f"  architecture  {arch} (of {full}); layers: {report['layers']}")
    print(f"  parameters    {sum(p.numel() for p in small.state_dict().values())} in the file, "
          f"{report['params_compact']} in linear/conv layers (params_kept {report['params_kept']}, "
          f"dense {report['params_dense']})")
    print(f"  FLOPs         {report['flops_compact']} counted on the compact model (pruned_flops "
          f"{report['flops_pruned']:.0f}, dense {report['flops_dense']:.0f}: "
          f"{100 * report['flops_compact'] / report['flops_dense']:.1f} %)")
    print(f"  outputs       max |compact - gated| = {report['max_abs_diff']:.3g} over "
          f"{report['n']} {report['split']} images (outputs up to {report['max_abs_output']:.3g}: "
          f"float32 sums in another order)")
    print(f"  {report['split'] + ' error':13} gated {100 * report['error_gated']:.2f} %, compact "
          f"{100 * report['error_compact']:.2f} %"
          + ("" if report["error_gated"] == report["error_compact"] else "  (DIFFERENT)"))
    return report


if __name__ == "__main__":
    result = main(sys.argv[1:])
    sys.exit(0 if result["error_gated"] == result["error_compact"] else 1)
