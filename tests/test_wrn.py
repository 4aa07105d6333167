"""WideResNet: architecture, gate placement, FLOP accounting, and the Table 2 configs."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from l0repro.l0 import L0Regularizer, gates
from l0repro.l0.flops import dense_flops, expected_flops, param_counts, pruned_flops
from l0repro.l0.layers import L0Conv2d, gated_layers
from l0repro.models import WideResNet

CONF = Path(__file__).resolve().parents[1] / "conf"
TABLE2 = sorted(p.stem for p in (CONF / "experiment" / "table2").glob("*.yaml"))


def model_penalty(model: nn.Module, n_train: int, weight_decay: float) -> torch.Tensor:
    """The whole model's penalty, unfused (what the old ``model_penalty`` returned)."""
    return L0Regularizer(model, n_train, weight_decay, fused=False).penalty()


def clamp_gates_(model: nn.Module) -> None:
    """The per-step log_alpha clamp (what the old ``clamp_gates_`` did)."""
    L0Regularizer(model, 1).after_step()


def counted_flops(model: nn.Module) -> int:
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 3, 32, 32))
    return counter.get_total_flops()


@pytest.mark.parametrize("depth,widen", [(28, 10), (10, 1), (16, 2)])
def test_dense_flops_equal_flop_counter(depth, widen):
    torch.manual_seed(0)
    for method in ("dropout", "l0"):
        model = WideResNet(depth, widen, method=method)
        # a gated conv computes every map whatever its gate: the counter sees the dense work
        assert dense_flops(model) == counted_flops(model), method
    if depth == 28:
        assert dense_flops(model) == pytest.approx(10.49e9, rel=1e-3)  # the known ~5.25 GMACs


def test_closed_maps_save_work_in_conv1_and_conv2():
    model = WideResNet(10, 2, method="l0", num_classes=10)
    dense = dense_flops(model)
    expected_before = float(expected_flops(model).detach())
    block = model.group2[0]  # the group's first block: stride 2, 32 -> 64 channels, 16x16 out
    k = 5
    with torch.no_grad():
        block.conv1.gate.log_alpha[:k] = gates.LOG_ALPHA_MIN
    saved = 2 * 9 * 16 * 16 * (32 * k + k * 64)  # conv1 outputs and conv2 inputs
    assert pruned_flops(model) == dense - saved
    assert model.architecture() == [32, 64 - k, 128]
    kept, total = param_counts(model)
    assert total - kept == 9 * (32 * k + k * 64)
    # open gates count P(z != 0) < 1 each; closing maps lowers the expected count too
    assert float(expected_flops(model).detach()) < expected_before < dense


def test_param_counts_cover_every_conv_and_the_classifier():
    model = WideResNet(16, 2, method="dense", num_classes=100)
    n = sum(p.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
            for p in m.parameters())
    assert param_counts(model) == (n, n)


def test_gates_only_on_each_blocks_first_conv():
    model = WideResNet(16, 2, method="l0", lambdas=0.5, init_drop_rate=0.3)
    names = [name for name, _ in gated_layers(model)]
    assert names == list(model.unit_layers) == [f"group{g}.{b}.conv1" for g in (1, 2, 3)
                                                 for b in (0, 1)]
    assert list(model.unit_layers.values()) == [32, 32, 64, 64, 128, 128]
    assert all(layer.lam == 0.5 and layer.bias is None for _, layer in gated_layers(model))
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    assert model.name == "wrn-16-2"
    drop = WideResNet(16, 2, method="dropout", dropout_rate=0.3)
    assert [m.p for m in drop.modules() if isinstance(m, nn.Dropout)] == [0.3] * 6
    assert not gated_layers(drop) and drop.architecture() == [32, 32, 64, 64, 128, 128]
    dense = WideResNet(16, 2, method="dense")
    assert not gated_layers(dense) and not any(isinstance(m, nn.Dropout) for m in dense.modules())


def test_per_layer_lambdas():
    lams = [0.1 * (i + 1) for i in range(6)]
    model = WideResNet(16, 1, method="l0", lambdas=lams)
    assert [layer.lam for _, layer in gated_layers(model)] == pytest.approx(lams)
    with pytest.raises(ValueError, match="needs 6 values"):
        WideResNet(16, 1, method="l0", lambdas=[0.1, 0.2])


def test_stride_sits_on_the_first_conv_of_a_group():
    model = WideResNet(16, 2, method="l0")
    for g, stride in ((model.group1, 1), (model.group2, 2), (model.group3, 2)):
        assert g[0].conv1.stride == (stride, stride) and g[0].conv2.stride == (1, 1)
        assert g[0].shortcut.stride == (stride, stride)
        assert g[1].conv1.stride == (1, 1) and g[1].shortcut is None
    sizes = []
    for g in (model.group1, model.group2, model.group3):
        g.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:])))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert sizes == [(32, 32, 32), (64, 16, 16), (128, 8, 8)]


@pytest.mark.parametrize("depth,widen,match", [(27, 10, "27"), (4, 1, "got 4"), (28, 0, "got 0"),
                                               (28, 2.5, "2.5"), (28, True, "True")])
def test_bad_depth_or_width_is_rejected_with_the_value(depth, widen, match):
    with pytest.raises(ValueError, match=match):
        WideResNet(depth, widen)


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="'lasso'"):
        WideResNet(10, 1, method="lasso")


def test_closed_gate_feeds_a_constant_into_conv2():
    torch.manual_seed(0)
    model = WideResNet(10, 1, method="l0")
    block = model.group1[0]
    with torch.no_grad():
        block.conv1.gate.log_alpha[3] = gates.LOG_ALPHA_MIN
        block.bn2.running_mean.uniform_(-1, 1)
        block.bn2.running_var.uniform_(0.5, 2)
        block.bn2.weight.uniform_(0.5, 2)
        block.bn2.bias.uniform_(0.1, 1)  # positive, so relu(bn2(0)) != 0
    seen = []
    block.conv2.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    model.eval()(torch.randn(2, 3, 32, 32))
    bn = block.bn2
    const = F.relu(bn.bias - bn.weight * bn.running_mean / torch.sqrt(bn.running_var + bn.eps))
    torch.testing.assert_close(seen[0][:, 3], const[3].expand(2, 32, 32))
    assert const[3] > 0  # not zero: the map is closed but conv2 still sees a constant


@pytest.mark.parametrize("per_example", [False, True])
def test_forward_penalty_backward_and_clamp(per_example):
    torch.manual_seed(0)
    model = WideResNet(10, 1, method="l0", per_example=per_example).train()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    loss = F.cross_entropy(model(x), y) + model_penalty(model, 50000, 5e-4)
    loss.backward()
    for _, layer in gated_layers(model):
        assert layer.gate.log_alpha.grad is not None and layer.weight.grad.abs().sum() > 0
    assert model.fc.weight.grad is not None and model.conv.weight.grad is not None
    with torch.no_grad():
        model.group1[0].conv1.gate.log_alpha.fill_(50.0)
    clamp_gates_(model)
    log_alpha = model.group1[0].conv1.gate.log_alpha.detach()
    assert float(log_alpha.max()) == pytest.approx(gates.LOG_ALPHA_MAX)


def test_channels_last_and_bf16_autocast_forward():
    model = WideResNet(10, 1, method="l0").to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out.float()).all()
    assert isinstance(model.group1[0].conv1, L0Conv2d)


def compose_experiment(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose("train", overrides=[f"experiment=table2/{name}", *overrides])


def test_table2_has_every_row():
    assert set(TABLE2) >= {f"wrn_{d}_{m}" for d in ("c10", "c100")
                           for m in ("plain", "dropout", "l0_001", "l0_002")}
    assert "wrn_c10_l0_sweep" in TABLE2
    # the per-example variant of every L0 row, beside it
    assert {f"{r}_pe" for r in TABLE2 if "_l0_00" in r and not r.endswith("_pe")} <= set(TABLE2)


@pytest.mark.parametrize("experiment", TABLE2)
def test_table2_experiment_composes_and_trains_one_step(experiment):
    cfg = compose_experiment(experiment, "model.depth=10", "model.widen_factor=1")
    dataset = "cifar100" if experiment.startswith("wrn_c100") else "cifar10"
    assert cfg.data.name == dataset and cfg.model.num_classes == cfg.data.num_classes
    assert cfg.name.startswith(f"table2/{experiment}")
    assert cfg.model.name == "wrn-10-1"
    assert (cfg.trainer.batch_size, cfg.trainer.epochs) == (128, 200)
    assert (cfg.trainer.ema_decay, cfg.trainer.weight_decay) == (0.99, 5e-4)
    assert cfg.optim.nesterov and cfg.optim.lr == 0.1
    assert list(cfg.scheduler.milestones) == [60, 120, 160] and cfg.scheduler.gamma == 0.2
    expected_method = {"plain": "dense", "dropout": "dropout"}.get(experiment.split("_")[2], "l0")
    assert cfg.model.method == expected_method
    if expected_method == "l0":  # the decisions the configs carry (README, "Where the paper is unclear")
        assert cfg.model.per_example == experiment.endswith("_pe")
        assert cfg.model.gated_weight_decay == "authors" and cfg.trainer.bf16 == "auto"

    spec = OmegaConf.to_container(cfg.model, resolve=True)
    spec.pop("name")
    torch.manual_seed(0)
    model = instantiate(spec)
    assert isinstance(model, WideResNet) and model.fc.out_features == cfg.data.num_classes
    opt = instantiate(cfg.optim)(model.parameters())
    sched = instantiate(cfg.scheduler)(opt)
    x = torch.randn(4, 3, 32, 32)
    y = torch.randint(0, cfg.data.num_classes, (4,))
    loss = F.cross_entropy(model.train()(x), y) + model_penalty(model, 50000, 5e-4)
    loss.backward()
    opt.step()
    sched.step()
    clamp_gates_(model)
    assert torch.isfinite(loss)
    if expected_method == "l0":
        lam = 0.002 if "_l0_002" in experiment else 0.001
        assert [layer.lam for _, layer in gated_layers(model)] == [lam] * 3


def test_sweep_names_each_run_by_its_lambda():
    cfg = compose_experiment("wrn_c10_l0_sweep", "model.lambdas=0.02")
    assert cfg.name == "table2/wrn_c10_l0_sweep/lam0.02"
    assert cfg.model.name == "wrn-28-10"


def test_gated_convs_weight_decay_is_the_authors_wd_over_0_7_by_default():
    torch.manual_seed(0)
    authors, plain = WideResNet(10, 1), WideResNet(10, 1, gated_weight_decay="plain")
    plain.load_state_dict(authors.state_dict())
    for (name, a), (_, p) in zip(gated_layers(authors), gated_layers(plain), strict=True):
        assert a.wd_scale == pytest.approx(1 / 0.7) and p.wd_scale == 1.0, name
        # the expected L2 scales, the expected L0 does not
        assert a.expected_l2(5e-4).item() == pytest.approx(p.expected_l2(5e-4).item() / 0.7, rel=1e-6)
        assert a.penalty(50_000, 0.0).item() == pytest.approx(p.penalty(50_000, 0.0).item(), rel=1e-7)
    # and only the gated convs: the plain L2 of every other parameter is the same
    pa, pp = model_penalty(authors, 50_000, 5e-4), model_penalty(plain, 50_000, 5e-4)
    extra = sum(p.expected_l2(5e-4) * (1 / 0.7 - 1) for _, p in gated_layers(plain))
    assert pa.item() == pytest.approx((pp + extra).item(), rel=1e-6)


def test_unknown_gated_weight_decay_is_rejected_with_the_value():
    with pytest.raises(ValueError, match="gated_weight_decay.*'half'"):
        WideResNet(10, 1, gated_weight_decay="half")
