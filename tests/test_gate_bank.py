"""The fused gate bank against the per-layer path and against the maths written out."""

import math

import pytest
import torch
from torch import nn

from l0repro.l0 import gates
from l0repro.l0.gate_bank import GateBank, _SampleAndPenalise
from l0repro.l0.layers import L0Conv2d, L0Linear, gated_layers
from l0repro.l0.regularizer import L0Penalty
from l0repro.models import MLP, LeNet5
from l0repro.train import Trainer
from tests.conftest import compose_train

BETA, GAMMA, ZETA, EPS = 2.0 / 3.0, -0.1, 1.1, 1e-6
N_TRAIN = 1000


def reference(u: torch.Tensor, la: torch.Tensor, coef: torch.Tensor):
    """Sample and penalty composed from plain torch ops (autograd does the derivatives)."""
    z = torch.clamp(torch.sigmoid((torch.log(u) - torch.log(1 - u) + la) / BETA) * (ZETA - GAMMA) + GAMMA,
                    0.0, 1.0)
    penalty = (coef * torch.sigmoid(la - BETA * math.log(-GAMMA / ZETA))).sum()
    return penalty, z


def log_alphas(model: nn.Module) -> list[torch.Tensor]:
    return [layer.gate.log_alpha for _, layer in gated_layers(model)]


def small_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(L0Conv2d(1, 3, 3, lam=0.5), nn.Flatten(), L0Linear(3 * 4 * 4, 5, lam=2.0),
                         nn.ReLU(), L0Linear(5, 2, lam=0.1))


def test_values_and_gradients_match_the_maths_written_out():
    torch.manual_seed(0)
    sizes = [4, 3, 5]
    las = [torch.randn(n, dtype=torch.float64, requires_grad=True) for n in sizes]
    u = torch.rand(sum(sizes), dtype=torch.float64) * 0.98 + 0.01
    coef = torch.rand(sum(sizes), dtype=torch.float64) + 0.5
    w = torch.randn(sum(sizes), dtype=torch.float64)
    penalty, *zs = _SampleAndPenalise.apply(coef, sizes, u, *las)
    (3.0 * penalty + (torch.cat(zs) * w).sum()).backward()
    got = [la.grad.clone() for la in las]
    flat = torch.cat(las).detach().requires_grad_()
    ref_pen, ref_z = reference(u, flat, coef)
    (3.0 * ref_pen + (ref_z * w).sum()).backward()
    torch.testing.assert_close(penalty, ref_pen)
    torch.testing.assert_close(torch.cat(zs), ref_z)
    torch.testing.assert_close(torch.cat(got), flat.grad)


def test_gradcheck_including_clamped_gates():
    sizes = [6, 2]
    # log_alphas wide enough that some samples clamp at 0 and some at 1
    las = [torch.linspace(-6, 6, n, dtype=torch.float64).requires_grad_() for n in sizes]
    u = torch.linspace(0.05, 0.95, sum(sizes), dtype=torch.float64)
    coef = torch.linspace(0.5, 2.0, sum(sizes), dtype=torch.float64)
    z = torch.cat(_SampleAndPenalise.apply(coef, sizes, u, *las)[1:])
    assert (z == 0).any() and (z == 1).any() and ((z > 0) & (z < 1)).any()
    assert torch.autograd.gradcheck(lambda *a: _SampleAndPenalise.apply(coef, sizes, u, *a), las)


def test_penalty_grows_with_log_alpha_and_open_gates_grow_too():
    """Signs: more open gates cost more; a larger log_alpha never shrinks a sample."""
    la = torch.zeros(50, dtype=torch.float64, requires_grad=True)
    u = torch.rand(50, dtype=torch.float64) * 0.98 + 0.01
    penalty, z = _SampleAndPenalise.apply(torch.ones(50, dtype=torch.float64), [50], u, la)
    assert float(torch.autograd.grad(penalty, la, retain_graph=True)[0].min()) > 0
    assert float(torch.autograd.grad(z.sum(), la)[0].min()) >= 0
    assert float(penalty.detach()) == pytest.approx(50 / (1 + math.exp(BETA * math.log(-GAMMA / ZETA))))


def test_bank_draws_what_the_layers_would_and_the_same_penalty():
    """On a CPU one uniform_ over all gates is the per-layer stream in forward order."""
    model = small_model().train()
    x = torch.randn(4, 1, 6, 6)
    torch.manual_seed(1)
    per_layer = model(x)
    per_layer_pen = L0Penalty(model, N_TRAIN, 0.0)()
    per_layer.square().sum().add(per_layer_pen).backward()
    want = [la.grad.clone() for la in log_alphas(model)]
    model.zero_grad()

    bank = GateBank(model, N_TRAIN)
    assert bank.layers == [m for _, m in gated_layers(model)]
    torch.manual_seed(1)
    pen = bank.draw()
    fused = model(x)
    torch.testing.assert_close(fused, per_layer)
    torch.testing.assert_close(pen, per_layer_pen)
    fused.square().sum().add(pen).backward()
    for got, ref in zip(log_alphas(model), want, strict=True):
        torch.testing.assert_close(got.grad, ref)


def test_a_preset_sample_is_used_once_and_never_in_eval():
    model = small_model().train()
    x = torch.randn(4, 1, 6, 6)
    GateBank(model, N_TRAIN).draw()
    first = model[0].gate._preset
    assert first is not None and model[0].gate() is first
    assert model[0].gate._preset is None
    assert not torch.equal(model[0].gate(), first)  # a fresh draw (equal only with probability ~0)
    GateBank(model, N_TRAIN).draw()
    model.eval()
    torch.testing.assert_close(model[0].gate(), gates.deterministic_gate(model[0].gate.log_alpha))
    model(x)  # eval leaves the preset for the next training forward
    assert model[0].gate._preset is not None


def test_preset_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        small_model()[0].gate.preset(torch.ones(4))


def test_per_example_layers_sample_themselves_and_keep_their_l0_term():
    torch.manual_seed(0)
    model = nn.Sequential(L0Linear(4, 3, lam=1.0, per_example=True), L0Linear(3, 2, lam=1.0))
    bank = GateBank(model, N_TRAIN)
    assert bank.layers == [model[1]]
    penalty = L0Penalty(model, N_TRAIN, 0.0, skip_l0=bank.layers)
    torch.testing.assert_close(bank.draw() + penalty(), L0Penalty(model, N_TRAIN, 0.0)())
    assert not L0Penalty(model, N_TRAIN, 0.0, skip_l0=[model[0], model[1]]).active


def test_l2_parts_stay_with_the_penalty():
    model = small_model()
    bank = GateBank(model, N_TRAIN)
    full = L0Penalty(model, N_TRAIN, 5e-4)()
    torch.testing.assert_close(bank.draw() + L0Penalty(model, N_TRAIN, 5e-4, skip_l0=bank.layers)(), full)


@pytest.mark.parametrize("experiment", ["table1/mlp_l0", "table1/lenet5_l0_sep"])
def test_fused_and_per_layer_training_agree(tmp_path, experiment, mnist_root):
    """Ten real training steps each way from the same seed end with the same weights."""
    results = []
    for fused in (True, False):
        cfg = compose_train([f"experiment={experiment}", f"data.root={mnist_root}", "trainer.device=cpu",
                             "logger.wandb.mode=disabled", "trainer.progress=false",
                             f"trainer.fused_gates={str(fused).lower()}"])
        trainer = Trainer(cfg, tmp_path / str(fused))
        assert (trainer.regularizer.bank is not None) == fused
        trainer.model.train()
        batches = trainer.data.train_batches(100, trainer.data_gen)
        losses = [trainer.train_step(x, y)[0] for _, (x, y) in zip(range(10), batches, strict=False)]
        results.append((torch.stack(losses), trainer.model.state_dict()))
    (loss_f, state_f), (loss_p, state_p) = results
    torch.testing.assert_close(loss_f, loss_p)
    for key in state_p:
        torch.testing.assert_close(state_f[key], state_p[key], msg=key)
    # the steps moved the gates, so agreeing is not agreeing on the initial values
    initial = Trainer(cfg, tmp_path / "init").model.state_dict()
    key = next(k for k in state_f if k.endswith("gate.log_alpha"))
    assert not torch.allclose(state_f[key], initial[key])


def test_model_moved_after_the_bank_was_built():
    model = MLP(lambdas=0.1)
    bank = GateBank(model, N_TRAIN)
    model.double()
    assert bank.draw().dtype == torch.float64
    assert len(GateBank(LeNet5(), N_TRAIN)) == 4
    assert len(GateBank(MLP(method="dense"), N_TRAIN)) == 0
