"""Model builders. Configs name these classes with ``_target_``."""

from l0repro.models.base import SparseModel
from l0repro.models.mnist import MLP, LeNet5
from l0repro.models.wrn import WideResNet

__all__ = ["MLP", "LeNet5", "SparseModel", "WideResNet"]
