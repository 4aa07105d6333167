"""Compaction of the suite's models: the compact network computes what the gated one does at
test time, costs what ``pruned_flops`` says, and goes through a ``weights_only`` file and the
CLI unchanged. (Any other model: tests/test_library.py.)"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from l0repro.bench.compact import choose, randomize_batchnorm_, set_gates_
from l0repro.bench.compact import main as bench_main
from l0repro.compact_run import counted_flops, layer_params
from l0repro.compact_run import main as compact_main
from l0repro.data.mnist import load_mnist
from l0repro.l0 import compact, gates, load_compact, param_counts, pruned_flops, save_compact
from l0repro.l0.compact import ConstantOutput, ConstantShift
from l0repro.l0.layers import L0Layer, gated_layers
from l0repro.models import MLP, LeNet5, WideResNet
from l0repro.record import WEIGHTS_FILE, read_summary
from tests.test_train import train


def mixed_gates_(model: nn.Module, seed: int, keep: float = 0.6) -> torch.Generator:
    """Close about 1 - ``keep`` of every gated layer's units; the kept ones half fully open,
    half part-way (checked: every layer has all three kinds)."""
    gen = torch.Generator().manual_seed(seed)
    for name, layer in gated_layers(model):
        set_gates_(layer.gate, choose(layer.gate.n, round(keep * layer.gate.n), gen), gen)
        z = gates.deterministic_gate(layer.gate.log_alpha.detach())
        kinds = ((z == 0).sum(), (z == 1).sum(), ((z > 0) & (z < 1)).sum())
        assert all(k > 0 for k in kinds), (name, kinds)
    return gen


def close_all_(layer: nn.Module) -> None:
    with torch.no_grad():
        layer.gate.log_alpha.fill_(gates.LOG_ALPHA_MIN)


def mnist_batches(root, n: int = 2, size: int = 500) -> list[torch.Tensor]:
    data = load_mnist(root, torch.device("cpu"), download=False)
    batches = data.test_batches(size)
    return [next(batches)[0] for _ in range(n)]


def assert_same_outputs(gated: nn.Module, small: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        a, b = gated.eval()(x), small(x)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5 * max(1.0, float(a.abs().max())))
    assert torch.equal(a.argmax(1), b.argmax(1))


def assert_cost_is_the_pruned_cost(gated: nn.Module, small: nn.Module) -> None:
    assert counted_flops(small, gated.example_input()) == pruned_flops(gated)
    assert layer_params(small) == param_counts(gated)[0]
    # no gates left: torch's own layers and the two constant adders only
    assert not any(isinstance(m, L0Layer) for m in small.modules())
    assert all(type(m).__module__.startswith(("torch.", "l0repro.l0.compact")) for m in small.modules())


def convs_and_linears(small: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_channels, m.out_channels) if isinstance(m, nn.Conv2d) else (m.in_features, m.out_features)
            for m in small.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("cls", [MLP, LeNet5])
def test_mnist_models_give_the_same_outputs_on_real_batches(cls, mnist_root):
    torch.manual_seed(0)
    gated = cls()
    mixed_gates_(gated, seed=1)
    small = compact(gated)
    for x in mnist_batches(mnist_root):
        assert_same_outputs(gated, small, x)
    assert_cost_is_the_pruned_cost(gated, small)
    kept = gated.architecture()
    assert kept != gated.full_architecture()
    layers = convs_and_linears(small)
    if cls is LeNet5:  # fc1 reads only the live flattened positions of the kept conv2 maps
        assert [layers[0][1], layers[1][1], layers[2][0], layers[3][0]] == kept
    else:  # fc1 gathers the kept pixels; hidden units removed where the next layer's gate closes
        assert [layer[0] for layer in layers] == kept


def wrn_with_closed_patterns(depth: int, widen: int) -> WideResNet:
    torch.manual_seed(0)
    model = WideResNet(depth, widen)
    gen = mixed_gates_(model, seed=2)
    randomize_batchnorm_(model, gen)
    close_all_(model.group2[0].conv1)  # a transition block: strided, 1x1 shortcut
    if len(model.group1) > 1:
        close_all_(model.group1[1].conv1)  # an identity block: only x + constant map left
    return model.eval()


@pytest.mark.parametrize("depth,widen", [(10, 1), (16, 2)])
def test_wrn_gives_the_same_outputs_with_closed_maps_and_closed_blocks(depth, widen):
    gated = wrn_with_closed_patterns(depth, widen)
    small = compact(gated)
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    assert_same_outputs(gated, small, x)
    assert_cost_is_the_pruned_cost(gated, small)
    # a wholly closed block: its conv2 reads nothing and becomes the constant its closed maps
    # feed through zero padding, which is not a plain bias at the border
    closed = small.get_submodule("l0_const_group2_0_conv2")
    assert isinstance(closed, ConstantOutput)
    cmap = closed.value[0]
    assert not torch.allclose(cmap[:, 0, 0], cmap[:, 4, 4])
    assert torch.allclose(cmap[:, 3, 3], cmap[:, 4, 4])
    # a partly closed block: the closed maps' constant comes back as a per-position shift
    shifts = [m for m in small.modules() if isinstance(m, ConstantShift)]
    assert shifts and all(s.value.shape[-2:] != (1, 1) for s in shifts)
    kept = gated.architecture()
    conv1s = [m for name, m in small.named_modules() if name.endswith("conv1") and isinstance(m, nn.Conv2d)]
    assert sorted(c.out_channels for c in conv1s) == sorted(k for k in kept if k)


def test_wrn_with_every_gate_closed_is_still_exact():
    torch.manual_seed(0)
    gated = WideResNet(10, 1)
    randomize_batchnorm_(gated, torch.Generator().manual_seed(0))
    for _, layer in gated_layers(gated):
        close_all_(layer)
    small = compact(gated)
    assert_same_outputs(gated, small, torch.randn(4, 3, 32, 32))
    assert counted_flops(small, gated.example_input()) == pruned_flops(gated)


@pytest.mark.parametrize("cls,layer", [(MLP, "fc2"), (MLP, "fc1"), (LeNet5, "conv1"), (LeNet5, "fc1")])
def test_a_wholly_closed_mnist_layer_compacts_to_the_constant_it_leaves(cls, layer):
    torch.manual_seed(0)
    model = cls()
    close_all_(model.get_submodule(layer))
    small = compact(model)
    x = torch.rand(4, *model.input_shape)
    assert_same_outputs(model, small, x)
    assert any(isinstance(m, ConstantOutput) for m in small.modules())
    assert counted_flops(small, model.example_input()) == pruned_flops(model) < 532_400 * 9


def test_dense_and_dropout_models_compact_to_themselves():
    torch.manual_seed(0)
    for gated in (MLP(method="dense"), LeNet5(method="dense"), WideResNet(10, 1, method="dropout")):
        randomize_batchnorm_(gated, torch.Generator().manual_seed(0))
        small = compact(gated)
        assert_same_outputs(gated, small, torch.rand(4, *gated.input_shape))
        assert counted_flops(small, gated.example_input()) == counted_flops(gated, gated.example_input())
        assert sorted(convs_and_linears(small)) == sorted(convs_and_linears(gated))


@pytest.mark.parametrize("build", [MLP, LeNet5, lambda: WideResNet(10, 1)])
def test_compact_file_loads_with_weights_only_and_rebuilds(build, tmp_path):
    torch.manual_seed(0)
    gated = build()
    randomize_batchnorm_(gated, mixed_gates_(gated, seed=4))
    small = compact(gated)
    save_compact(small, tmp_path / "c.pt", note="x")
    raw = torch.load(tmp_path / "c.pt", weights_only=True)  # plain data: no class is unpickled
    assert raw["format"] == "l0repro.compact/2" and raw["meta"] == {"note": "x"}
    again = load_compact(tmp_path / "c.pt")
    x = torch.rand(3, *gated.input_shape)
    with torch.no_grad():
        assert torch.equal(again(x), small(x))
    assert counted_flops(again, gated.example_input()) == pruned_flops(gated)


def test_a_file_of_another_format_is_refused_with_the_next_step(tmp_path):
    torch.save({"builder": "CompactMLP", "kwargs": {}, "state_dict": {}}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"old\.pt: not a compact network.*CompactMLP.*l0repro\.compact"):
        load_compact(tmp_path / "old.pt")


def test_a_file_naming_a_function_outside_torch_is_refused(tmp_path):
    small = compact(MLP(method="dense"))
    save_compact(small, tmp_path / "c.pt")
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    node = next(n for n in raw["graph"] if n["op"] == "call_function")
    node["target"] = "os.system"
    torch.save(raw, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="os.system"):
        load_compact(tmp_path / "evil.pt")


def test_cli_on_a_short_real_run(tmp_path, mnist_root, capsys):
    run_dir = tmp_path / "run"
    train(run_dir, "experiment=table1/mlp_l0", "trainer.max_steps=50", "trainer.epochs=1",
          "logger.wandb.mode=disabled")
    assert (run_dir / WEIGHTS_FILE).exists()
    out = tmp_path / "compact.pt"
    report = compact_main([str(run_dir), "--out", str(out), "--data-root", str(mnist_root)])
    printed = capsys.readouterr().out
    assert "test error" in printed and "DIFFERENT" not in printed
    assert report["error_compact"] == report["error_gated"] == read_summary(run_dir)["test_error_final"]
    # float32 sums in another order: differences at the level of float32 rounding of the outputs
    assert report["max_abs_diff"] < 1e-6 * max(10.0, report["max_abs_output"])
    assert report["flops_compact"] == report["flops_pruned"]
    assert report["params_compact"] == report["params_kept"]
    torch.load(out, weights_only=True)  # plain data only
    small = load_compact(out)
    data = load_mnist(mnist_root, torch.device("cpu"), download=False)
    with torch.no_grad():
        wrong = sum(int((small(x).argmax(1) != y).sum()) for x, y in data.test_batches(1000))
    assert wrong / len(data.test_y) == report["error_gated"]


def test_bench_presets_the_synthetic_architecture_and_writes_its_figures(tmp_path):
    out = tmp_path / "rows.json"
    rows = bench_main(["--runs", str(tmp_path / "none"), "--synthetic", "lenet5=9-18-65-25",
                       "--repeats", "1", "--min-time", "0", "--batch", "8", "--json", str(out)])
    (row,) = json.loads(out.read_text())
    assert row == rows[0]  # floats survive JSON exactly
    assert row["architecture"] == [9, 18, 65, 25] and row["threads"] == 1
    assert row["flops_gated"] == 4_586_000
    assert row["flop_ratio"] == pytest.approx(4_586_000 / row["flops_compact"])
    assert row["latency_speedup"] > 0 and row["throughput_batch"] == 8
