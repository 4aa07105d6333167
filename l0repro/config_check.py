"""Reject bad run configs before any work, with messages that name the key and the value."""

from __future__ import annotations

import math

from omegaconf import DictConfig, ListConfig

from l0repro.config_error import ConfigError
from l0repro.data import DATASETS
from l0repro.models.base import METHODS

__all__ = ["ConfigError", "check_config"]


def _positive_int(value, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")


def check_config(cfg: DictConfig) -> None:
    tc = cfg.trainer
    for key in ("epochs", "batch_size", "eval_batch_size", "log_every"):
        _positive_int(tc[key], f"trainer.{key}")
    if tc.max_steps is not None:
        _positive_int(tc.max_steps, "trainer.max_steps")
    if tc.ema_decay is not None and not 0.0 < tc.ema_decay < 1.0:
        raise ConfigError(f"trainer.ema_decay must be in (0, 1) or null, got {tc.ema_decay!r}")
    if not tc.weight_decay >= 0.0:
        raise ConfigError(f"trainer.weight_decay must be >= 0, got {tc.weight_decay!r}")
    if cfg.data.name not in DATASETS:
        raise ConfigError(f"unknown dataset data.name={cfg.data.name!r}; expected one of "
                          f"{list(DATASETS)}")
    if cfg.model.method not in METHODS:
        raise ConfigError(f"unknown method model.method={cfg.model.method!r}; expected one of "
                          f"{list(METHODS)}")
    lambdas = cfg.model.get("lambdas", [])
    values = list(lambdas) if isinstance(lambdas, ListConfig) else [lambdas]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ConfigError(f"model.lambdas must be non-negative numbers, got {v!r} in "
                              f"{list(values)}")
    targets = {k: tc.get(k) for k in ("target_flops", "target_l0") if tc.get(k) is not None}
    if len(targets) > 1:
        raise ConfigError(f"set one of trainer.target_flops and trainer.target_l0, not both: {targets}")
    for key, value in targets.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
            raise ConfigError(f"trainer.{key} must be a fraction in (0, 1] (or null), got {value!r}")
        if cfg.model.method != "l0":
            raise ConfigError(f"trainer.{key}={value} needs gates to close, but model.method="
                              f"{cfg.model.method!r} has none; use an L0 experiment")
    if targets and not tc.get("dual_lr", 0.0) > 0.0:
        raise ConfigError(f"trainer.dual_lr must be positive, got {tc.get('dual_lr')!r}")
    mode = cfg.logger.wandb.mode
    if mode not in ("online", "offline", "disabled"):
        raise ConfigError(f"logger.wandb.mode must be online, offline or disabled, got {mode!r}")
