"""A suite model from its Hydra config group (``conf/model/*.yaml``, ``_target_`` a class)."""

from __future__ import annotations

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from l0repro.config_error import ConfigError
from l0repro.models.base import SparseModel


def build_model(model_cfg: DictConfig) -> SparseModel:
    """Instantiate ``model_cfg`` (its ``name`` key is the record's, not the class's)."""
    kwargs = OmegaConf.to_container(model_cfg, resolve=True)
    kwargs.pop("name", None)
    try:
        return instantiate(kwargs, _convert_="all")
    except InstantiationException as e:  # unwrap: the model's own message names the value
        raise ConfigError(f"model ({kwargs.get('_target_')}): {e.__cause__ or e}") from e
