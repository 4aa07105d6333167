"""Hard-concrete gate math: the sampler's distribution against closed forms and integrals.

The references below write the paper's constants as literals and derive every probability
from the logistic CDF, so a swapped constant or a wrong sign in ``l0repro.l0.gates`` fails.
"""

import math

import pytest
import torch

from l0repro.l0 import L0Regularizer, gates
from l0repro.l0.layers import L0Gate

# the paper's constants, written out independently of the module under test
BETA, GAMMA, ZETA, EPS = 2.0 / 3.0, -0.1, 1.1, 1e-6
LOG_ALPHAS = (-3.0, -1.0, 0.0, 1.0, 3.0)
N_DRAWS = 200_000


def logistic_cdf(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def ref_prob_zero(la: float) -> float:
    # z == 0  <=>  s <= -gamma / (zeta - gamma) = 1/12  <=>  logit(u) <= beta * logit(1/12) - la
    return logistic_cdf(BETA * math.log((1 / 12) / (11 / 12)) - la)


def ref_prob_one(la: float) -> float:
    # z == 1  <=>  s >= (1 - gamma) / (zeta - gamma) = 11/12
    return 1.0 - logistic_cdf(BETA * math.log((11 / 12) / (1 / 12)) - la)


def ref_tail(la: float, t: torch.Tensor) -> torch.Tensor:
    """P(z > t) for t in (0, 1), float64: z > t <=> s > (t - gamma) / (zeta - gamma)."""
    q = (t - GAMMA) / (ZETA - GAMMA)
    return torch.sigmoid(la - BETA * torch.log(q / (1 - q)))


def ref_mean(la: float) -> float:
    """E[z] = int_0^1 P(z > t) dt (z >= 0), by the trapezoid rule on a smooth integrand."""
    t = torch.linspace(0.0, 1.0, 100_001, dtype=torch.float64)
    return float(torch.trapezoid(ref_tail(la, t), t))


def ref_mean_grad(la: float) -> float:
    """d E[z] / d log_alpha = int_0^1 sigmoid'(la - beta * logit(q(t))) dt."""
    t = torch.linspace(0.0, 1.0, 100_001, dtype=torch.float64)
    p = ref_tail(la, t)
    return float(torch.trapezoid(p * (1 - p), t))


def draws(la: float, n: int = N_DRAWS, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return gates.sample_gate(torch.full((n,), la))


def test_constants_are_the_papers():
    assert gates.BETA == pytest.approx(2 / 3, abs=1e-15)
    assert (gates.GAMMA, gates.ZETA, gates.EPS) == (GAMMA, ZETA, EPS)
    assert gates.LOG_ALPHA_MIN == pytest.approx(math.log(0.01))
    assert gates.LOG_ALPHA_MAX == pytest.approx(math.log(100.0))
    assert gates.PRUNE_THRESHOLD == pytest.approx(math.log(1 / 11), abs=1e-14)


@pytest.mark.parametrize("la", LOG_ALPHAS)
def test_closed_forms_match_the_logistic_cdf(la):
    x = torch.tensor([la], dtype=torch.float64)
    assert float(gates.prob_zero(x)) == pytest.approx(ref_prob_zero(la), abs=1e-12)
    assert float(gates.prob_one(x)) == pytest.approx(ref_prob_one(la), abs=1e-12)
    assert float(gates.prob_nonzero(x)) == pytest.approx(1 - ref_prob_zero(la), abs=1e-12)
    # the tail integral's end points are the same masses: P(z > 0+) and P(z > 1-)
    ends = ref_tail(la, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert float(ends[0]) == pytest.approx(1 - ref_prob_zero(la), abs=1e-12)
    assert float(ends[1]) == pytest.approx(ref_prob_one(la), abs=1e-12)


def test_closed_forms_by_counting_a_fine_grid_of_u():
    # z(u) is monotone in u, so the fraction of a uniform grid mapped to 0 (or 1) is the mass
    u = (torch.arange(2_000_000, dtype=torch.float64) + 0.5) / 2_000_000
    for la in LOG_ALPHAS:
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + la) / BETA)
        z = torch.clamp(s * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)
        x = torch.tensor(la, dtype=torch.float64)
        assert float((z == 0).double().mean()) == pytest.approx(float(gates.prob_zero(x)), abs=1e-5)
        assert float((z == 1).double().mean()) == pytest.approx(float(gates.prob_one(x)), abs=1e-5)
        assert float(z.mean()) == pytest.approx(ref_mean(la), abs=1e-5)


def test_known_values():
    # at log_alpha = 0: P(z != 0) = sigmoid(beta * log 11) = 0.83182..., P(z = 1) = 1 - that
    zero = torch.zeros(1, dtype=torch.float64)
    assert float(gates.prob_nonzero(zero)) == pytest.approx(0.831822, abs=1e-6)
    assert float(gates.prob_one(zero)) == pytest.approx(0.168178, abs=1e-6)


@pytest.mark.parametrize("la", LOG_ALPHAS)
def test_sampled_masses_at_0_and_1_match_closed_forms(la):
    z = draws(la)
    assert z.min() >= 0 and z.max() <= 1
    x = torch.tensor(la)
    for empirical, p in (((z == 0).double().mean(), float(gates.prob_zero(x))),
                         ((z == 1).double().mean(), float(gates.prob_one(x)))):
        sigma = math.sqrt(p * (1 - p) / N_DRAWS)
        assert abs(float(empirical) - p) < 5 * sigma, (la, float(empirical), p)


@pytest.mark.parametrize("la", LOG_ALPHAS)
def test_sample_mean_matches_numerical_expectation(la):
    z = draws(la, seed=1).double()
    sigma = float(z.std()) / math.sqrt(N_DRAWS)
    assert abs(float(z.mean()) - ref_mean(la)) < 5 * sigma, (la, float(z.mean()), ref_mean(la))


def test_samples_put_real_mass_on_both_ends_and_between():
    z = draws(0.0)
    inside = (z > 0) & (z < 1)
    assert (z == 0).sum() > 1000 and (z == 1).sum() > 1000 and inside.sum() > 100_000


@pytest.mark.parametrize("la", (-1.0, 0.0, 1.0))
def test_pathwise_gradient_is_dmean_dlogalpha(la):
    torch.manual_seed(2)
    x = torch.full((N_DRAWS,), la, requires_grad=True)
    gates.sample_gate(x).sum().backward()
    g = x.grad.double()  # one pathwise derivative per draw
    assert g.min() >= 0  # z is non-decreasing in log_alpha for every u
    ref = ref_mean_grad(la)
    assert ref > 0.05  # a larger log_alpha opens the gate more on average
    assert abs(float(g.mean()) - ref) < 5 * float(g.std()) / math.sqrt(N_DRAWS)


def test_mean_increases_with_log_alpha():
    means = [float(draws(la, seed=3).double().mean()) for la in LOG_ALPHAS]
    assert means == sorted(means) and means[0] < 0.2 < 0.8 < means[-1]


def test_prob_nonzero_is_increasing_with_the_logistic_derivative():
    x = torch.linspace(-8, 8, 401, dtype=torch.float64, requires_grad=True)
    p = gates.prob_nonzero(x)
    assert bool((p.diff() > 0).all())
    p.sum().backward()
    torch.testing.assert_close(x.grad, (p * (1 - p)).detach())
    assert bool((x.grad > 0).all())
    # ordering of the masses: P(z = 1) < P(z != 0), and P(z = 0) + P(z != 0) = 1
    with torch.no_grad():
        assert bool((gates.prob_one(x) < p).all())
        torch.testing.assert_close(gates.prob_zero(x) + p, torch.ones_like(p))


def test_sample_shape_and_per_example_rows():
    la = torch.zeros(7)
    torch.manual_seed(0)
    assert gates.sample_gate(la).shape == (7,)
    z = gates.sample_gate(la, (5, 7))
    assert z.shape == (5, 7)
    assert not torch.equal(z[0], z[1])
    la64 = torch.zeros(3, dtype=torch.float64)
    assert gates.sample_gate(la64).dtype == torch.float64


def test_deterministic_gate_formula():
    x = torch.linspace(-6, 6, 241, dtype=torch.float64)
    ref = torch.clamp(torch.sigmoid(x) * 1.2 - 0.1, 0.0, 1.0)
    torch.testing.assert_close(gates.deterministic_gate(x), ref)


def test_deterministic_gate_is_zero_exactly_below_the_threshold():
    t = math.log(1 / 11)
    for dtype, d in ((torch.float64, 1e-6), (torch.float32, 1e-3)):
        x = torch.tensor([t - 1.0, t - d, t + d, t + 1.0], dtype=dtype)
        z = gates.deterministic_gate(x)
        assert z[0] == 0 and z[1] == 0 and z[2] > 0 and z[3] > 0, (dtype, z)
        assert gates.is_kept(x).tolist() == [False, False, True, True]


def test_deterministic_gate_is_exactly_one_above_log_11():
    t = math.log(11)  # z_hat == 1 <=> sigmoid(log_alpha) >= 11/12
    z = gates.deterministic_gate(torch.tensor([t - 1e-3, t + 1e-3, 5.0, 50.0], dtype=torch.float64))
    assert z[0] < 1 and z.tolist()[1:] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("p", (0.2, 0.5, 0.3))
def test_init_log_alpha_mean_and_std(p):
    torch.manual_seed(0)
    n = 100_000
    la = gates.init_log_alpha(n, p).double()
    assert la.shape == (n,)
    assert abs(float(la.mean()) - math.log((1 - p) / p)) < 5 * 0.01 / math.sqrt(n)
    assert float(la.std()) == pytest.approx(0.01, rel=0.02)


@pytest.mark.parametrize("p", (0.0, 1.0, -0.1, 1.5, float("nan")))
def test_init_log_alpha_rejects_rates_outside_0_1(p):
    with pytest.raises(ValueError, match="dropout rate"):
        gates.init_log_alpha(4, p)


def test_clamp_log_alpha_in_place():
    x = torch.tensor([-10.0, -4.0, 0.0, 4.0, 10.0])
    out = gates.clamp_log_alpha_(x)
    assert out is x
    torch.testing.assert_close(x, torch.tensor([math.log(0.01), -4.0, 0.0, 4.0, math.log(100)]))
    # works on a leaf that requires grad (it is called on parameters after the step)
    p = torch.nn.Parameter(torch.tensor([-9.0, 9.0]))
    gates.clamp_log_alpha_(p)
    torch.testing.assert_close(p.detach(), torch.tensor([math.log(0.01), math.log(100)]))


def test_l0_gate_eval_is_deterministic_and_train_is_random():
    torch.manual_seed(0)
    gate = L0Gate(50, 0.5)
    gate.eval()
    a, b = gate(), gate()
    assert torch.equal(a, b)
    torch.testing.assert_close(a, gates.deterministic_gate(gate.log_alpha))
    assert gate(4).shape == (50,)  # eval ignores the batch size: z_hat is one vector
    gate.train()
    a, b = gate(), gate()
    assert a.shape == (50,) and not torch.equal(a, b)
    z = gate(8)
    assert z.shape == (8, 50) and not torch.equal(z[0], z[1])
    z.sum().backward()
    assert gate.log_alpha.grad is not None and gate.log_alpha.grad.abs().sum() > 0


def test_l0_gate_init_and_helpers():
    torch.manual_seed(0)
    gate = L0Gate(1000, 0.2)
    assert float(gate.log_alpha.detach().mean()) == pytest.approx(math.log(4), abs=1e-3)
    torch.testing.assert_close(gate.prob_nonzero(), gates.prob_nonzero(gate.log_alpha))
    assert bool(gate.kept().all())
    with torch.no_grad():
        gate.log_alpha[:3] = -20.0
        gate.log_alpha[3] = 20.0
    L0Regularizer(gate, 1).after_step()  # the per-step clamp (was L0Gate.clamp_)
    assert gate.log_alpha[:3].tolist() == pytest.approx([math.log(0.01)] * 3)
    assert float(gate.log_alpha.detach()[3]) == pytest.approx(math.log(100))
    assert int(gate.kept().sum()) == 997


def test_fused_sample_matches_the_composed_ops_and_their_gradient():
    """The hand-written backward of the fused sampler equals autograd on the plain formula."""
    torch.manual_seed(1)
    la = torch.randn(40, dtype=torch.float64, requires_grad=True)
    la_ref = la.detach().clone().requires_grad_()
    u = torch.rand(6, 40, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    fused = gates._HardConcreteSample.apply(la, u)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + la_ref) / gates.BETA)
    ref = torch.clamp(s * (gates.ZETA - gates.GAMMA) + gates.GAMMA, 0.0, 1.0)
    assert torch.allclose(fused, ref)
    weights = torch.randn(6, 40, dtype=torch.float64)
    (fused * weights).sum().backward()
    (ref * weights).sum().backward()
    assert torch.allclose(la.grad, la_ref.grad)
    check = la_ref.detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda a: gates._HardConcreteSample.apply(a, u[0]), (check,))
