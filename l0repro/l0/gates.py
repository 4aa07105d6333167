"""Hard-concrete gate math (Louizos, Welling, Kingma 2018, section 3 / docs/paper.md section 1).

Every other module calls these pure functions; none re-derives the formulas.
A gate ``z`` in [0, 1] has one parameter ``log_alpha``; training draws a
reparameterised sample, testing uses the deterministic estimator ``z_hat``.
"""

from __future__ import annotations

import math

import torch

BETA = 2.0 / 3.0  # temperature of the concrete distribution
GAMMA = -0.1  # lower stretch limit
ZETA = 1.1  # upper stretch limit
EPS = 1e-6  # keeps u away from 0 and 1 so log(u) and log(1-u) stay finite
LOG_ALPHA_MIN = math.log(1e-2)  # released code clamps log_alpha after every step
LOG_ALPHA_MAX = math.log(1e2)
# z_hat == 0 exactly when sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA <= 0,
# i.e. log_alpha <= logit(-GAMMA / (ZETA - GAMMA)) = log(1/11).
PRUNE_THRESHOLD = math.log(-GAMMA / ZETA)


# prob_nonzero(log_alpha) = sigmoid(log_alpha - LOG_ODDS_SHIFT)
LOG_ODDS_SHIFT = BETA * math.log(-GAMMA / ZETA)


def sample_from_noise(log_alpha: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, z): s = sigmoid((logit(u) + log_alpha) / beta), z = clamp(s * (zeta - gamma) + gamma, 0, 1).

    ``z`` is the training sample; ``s`` is what its derivative needs (``sample_backward``).
    Six kernels, four of them in place.
    """
    s = torch.logit(u).add_(log_alpha).mul_(1.0 / BETA).sigmoid_()
    return s, torch.mul(s, ZETA - GAMMA).add_(GAMMA).clamp_(0.0, 1.0)


def sample_backward(grad_z: torch.Tensor, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """d/dlog_alpha through the sample: grad_z * (zeta - gamma) / beta * s * (1 - s) where 0 < z < 1.

    Where the clamp is active (z == 0 or z == 1, i.e. the stretched value is outside (0, 1))
    the gradient is 0; ``hardtanh_backward`` applies that mask in one kernel.
    """
    grad = torch.ops.aten.hardtanh_backward(grad_z, z, 0.0, 1.0)
    return torch.ops.aten.sigmoid_backward(grad, s).mul_((ZETA - GAMMA) / BETA)


class _HardConcreteSample(torch.autograd.Function):
    """z = clamp(sigmoid((logit(u) + log_alpha) / beta) * (zeta - gamma) + gamma, 0, 1).

    The same maths as composing the torch ops, with the pathwise gradient written out
    (``sample_backward``), so a training step runs a handful of in-place kernels instead
    of a dozen autograd nodes.
    """

    @staticmethod
    def forward(ctx, log_alpha: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        s, z = sample_from_noise(log_alpha, u)
        ctx.save_for_backward(s, z)
        ctx.reduce_batch = z.dim() > log_alpha.dim()
        return z

    @staticmethod
    def backward(ctx, grad_z: torch.Tensor):
        grad = sample_backward(grad_z, *ctx.saved_tensors)
        return (grad.sum(0) if ctx.reduce_batch else grad), None


def sample_gate(log_alpha: torch.Tensor, shape: torch.Size | tuple[int, ...] | None = None) -> torch.Tensor:
    """Draw z ~ HardConcrete(log_alpha) with the reparameterisation trick.

    ``shape`` defaults to ``log_alpha.shape``; a leading batch dimension gives one
    independent sample per example. Gradients flow to ``log_alpha``.
    """
    shape = log_alpha.shape if shape is None else shape
    u = torch.empty(shape, device=log_alpha.device, dtype=log_alpha.dtype).uniform_(EPS, 1.0 - EPS)
    return _HardConcreteSample.apply(log_alpha, u)


def deterministic_gate(log_alpha: torch.Tensor) -> torch.Tensor:
    """Test-time estimator z_hat = clamp(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1)."""
    return torch.clamp(torch.sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def prob_nonzero(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(z != 0) = sigmoid(log_alpha - beta * log(-gamma / zeta)); the expected L0 per gate."""
    return torch.sub(log_alpha, LOG_ODDS_SHIFT).sigmoid_()


def prob_nonzero_backward(grad: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """d/dlog_alpha of ``grad * prob_nonzero(log_alpha)`` given p = that probability: grad * p * (1 - p)."""
    return torch.ops.aten.sigmoid_backward(grad, p)


def prob_zero(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(z == 0), the closed form of the clamp's mass at 0."""
    return 1.0 - prob_nonzero(log_alpha)


def prob_one(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(z == 1) = P(s >= (1 - gamma) / (zeta - gamma)), the clamp's mass at 1."""
    return torch.sigmoid(log_alpha - BETA * math.log((1.0 - GAMMA) / (ZETA - 1.0)))


def is_kept(log_alpha: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the gates that survive pruning (z_hat != 0)."""
    return deterministic_gate(log_alpha) > 0


def init_log_alpha(n: int, drop_rate: float, std: float = 0.01) -> torch.Tensor:
    """log_alpha ~ Normal(log((1 - p) / p), std) for an initial dropout rate p."""
    if not 0.0 < drop_rate < 1.0:
        raise ValueError(f"initial dropout rate must be in (0, 1), got {drop_rate}")
    return torch.randn(n) * std + math.log((1.0 - drop_rate) / drop_rate)


@torch.no_grad()
def clamp_log_alpha_(log_alpha: torch.Tensor) -> torch.Tensor:
    """Clamp log_alpha in place to [log 0.01, log 100], as after every optimiser step."""
    return log_alpha.clamp_(LOG_ALPHA_MIN, LOG_ALPHA_MAX)
