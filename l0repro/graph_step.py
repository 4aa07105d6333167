"""A whole training step captured once in a CUDA graph and replayed (``trainer.cuda_graph=true``).

The MNIST networks are so small that an eager GPU step is bound by its few hundred kernel
launches; replaying a captured graph launches them all at once. This follows PyTorch's
"whole network capture" recipe (CUDA semantics notes, "CUDA Graphs"):

- the first ``WARMUP_STEPS`` steps run eagerly on a side stream. They are real training steps
  (nothing is skipped or repeated) and create the optimiser state, the cuBLAS/cuDNN handles
  and autograd's streams before the capture;
- the optimiser's param groups are made ``capturable`` (Adam keeps its step count on the
  device); the learning rate is a constant inside the graph, so a step after the scheduler
  changed it captures the graph again;
- each batch is copied into static input buffers that the graph reads;
- the gate noise is drawn inside the graph from the default CUDA generator, which every
  replay advances by the captured philox offset: graph and eager steps draw the same noise;
- the EMA derives its bias-correction weight from a count on the device
  (``EMA.count_on_device``); the step counter and the first non-finite step are device
  tensors updated in place (``Trainer.train_step``);
- a batch of another size (an epoch's last, partial batch) runs eagerly, with the same
  optimiser, EMA and noise stream, so a run with the graph trains on every batch a run
  without it does and resumes exactly from the same checkpoints.

Only CUDA devices can capture: on any other device, with ``trainer.compile`` or with several
processes (DDP), ``trainer.cuda_graph=true`` is refused with a ``ConfigError``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig

from l0repro.config_check import ConfigError
from l0repro.ema import EMA

Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
WARMUP_STEPS = 3  # PyTorch's recipe warms up for 3 iterations (11 with DDP, which is refused)


def check_supported(device: torch.device, compiled: bool = False, world_size: int = 1) -> None:
    """Raise ``ConfigError`` unless a whole step on ``device`` can be captured."""
    if device.type != "cuda":
        raise ConfigError(f"trainer.cuda_graph=true needs a CUDA device, but this run is on "
                          f"{device.type}: set trainer.cuda_graph=false (the default) or run on a GPU")
    if compiled:
        raise ConfigError("trainer.cuda_graph=true and trainer.compile=true cannot be combined: "
                          "choose one (the graph also removes the launch overhead compile targets)")
    if world_size > 1:
        raise ConfigError(f"trainer.cuda_graph=true runs in one process only, got {world_size} "
                          "(DDP's gradient all-reduce is not captured); set trainer.cuda_graph=false")


def training_step(step: Step, optimizer: torch.optim.Optimizer, ema: EMA | None,
                  trainer_cfg: DictConfig, device: torch.device, world_size: int = 1) -> Step:
    """The step the training loop calls: ``step`` itself, or its graph when
    ``trainer_cfg.cuda_graph`` is set (refused where it cannot run, see ``check_supported``)."""
    if not trainer_cfg.get("cuda_graph", False):
        return step
    check_supported(device, bool(trainer_cfg.compile), world_size)
    return GraphedStep(step, optimizer, ema, batch_size=trainer_cfg.batch_size // world_size)


class GraphedStep:
    """Calls ``step(x, y)`` (one training step returning device tensors) through a CUDA graph.

    Returns what ``step`` returns; once the graph runs, those are its static output tensors,
    overwritten by the next replay (clone them to keep them). ``eager_steps`` and
    ``captures`` count what ran outside the graph and how often it was captured.
    """

    def __init__(self, step: Step, optimizer: torch.optim.Optimizer, ema: EMA | None,
                 batch_size: int) -> None:
        self.step = step
        self.optimizer = optimizer
        self.ema = ema
        self.batch_size = batch_size  # the size the graph is captured for
        self.warm = 0  # warm-up steps done
        self.eager_steps = 0
        self.captures = 0
        self.graph = None
        self.static_in: tuple[torch.Tensor, torch.Tensor] | None = None
        self.static_out: tuple[torch.Tensor, torch.Tensor] | None = None
        self.lrs: list[float] | None = None  # the learning rates the graph holds
        self.stream = None  # the side stream of the warm-up and the capture

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.warm == 0:
            self._prepare()
        if self.warm < WARMUP_STEPS or len(x) != self.batch_size:  # warm-up, or a partial batch
            self.warm += 1
            self.eager_steps += 1
            return self._on_side_stream(x, y)
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self.graph is None or lrs != self.lrs:
            self._capture(x, y)
            self.lrs = lrs
            self.captures += 1
        self.static_in[0].copy_(x)
        self.static_in[1].copy_(y)
        self._replay()
        return self.static_out

    # ------------------------------------------------------------ what CUDA does
    # (four small methods, so that a test can stand in for the device on a CPU)
    def _prepare(self) -> None:
        """Once, before the first step: the optimiser and the EMA keep their counts on the device.

        Done here rather than at construction: loading a checkpoint restores the param
        groups' flags, so this runs after any resume.
        """
        for group in self.optimizer.param_groups:
            if "capturable" in group:  # Adam's step count on the device; SGD has none
                group["capturable"] = True
        self.optimizer._warned_capturable_if_run_uncaptured = True  # eager steps are intended
        if self.ema is not None:
            self.ema.count_on_device()
        self.stream = torch.cuda.Stream()

    def _on_side_stream(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        main = torch.cuda.current_stream()
        self.stream.wait_stream(main)
        with torch.cuda.stream(self.stream):
            out = self.step(x, y)
        main.wait_stream(self.stream)
        return out

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.graph = self.static_out = None  # free an earlier graph's memory first
        self.static_in = (x.clone(), y.clone())  # clone keeps x's memory format
        # .grad is None at capture, so backward allocates the gradients from the graph's pool
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            self.static_out = self.step(*self.static_in)  # recorded, not run
        self.graph = graph

    def _replay(self) -> None:
        self.graph.replay()
