"""The engine a training loop runs on (Lightning Fabric's role, without the dependency).

It owns what every loop shares: the process context (torchrun / DDP), the device, the precision and its
gradient scaler, thread count and seed, the console (quiet outside the main process), checkpoint writing
(main process only) and DataLoader settings. The loops keep their science and stay plain PyTorch.

Example:
    >>> engine = Engine(device="auto", precision="auto", seed=0)
    >>> model = engine.wrap(model.to(engine.device))
    >>> optimization = engine.optimization(torch.optim.AdamW(model.parameters()))
    >>> with engine.autocast():
    ...     loss = model(x).sum()
    >>> optimization.step(loss, where="step 0")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from dinomed.engine.checkpoint import save_checkpoint
from dinomed.engine.device import Precision, resolve_device
from dinomed.engine.loggers import check_loggers, open_loggers
from dinomed.engine.process import ProcessContext
from dinomed.engine.runs import MetricsLog
from dinomed.engine.signals import worker_start
from dinomed.engine.step import Optimization

__all__ = ["Engine"]


class Engine:
    """Device, precision and processes of one run."""

    def __init__(self, *, device: str = "auto", precision: str = "auto", num_threads: int | None = None,
                 seed: int = 0, loggers: Sequence[str] = (), console: Console | None = None) -> None:
        check_loggers(loggers)  # a missing extra fails before anything is built or written
        self.process = ProcessContext.from_environment(device)
        if num_threads:
            torch.set_num_threads(num_threads)
        self.device = resolve_device(device, self.process.local_rank)
        self.precision = Precision.resolve(precision, self.device)
        torch.manual_seed(seed)
        self.console = (console or Console()) if self.process.is_main else Console(quiet=True)

    @property
    def is_main(self) -> bool:
        return self.process.is_main

    def autocast(self) -> AbstractContextManager:
        return self.precision.autocast()

    def optimization(self, optimizer: torch.optim.Optimizer) -> Optimization:
        """``optimizer`` with the precision's gradient scaler and the processes' agreed non-finite check."""
        return Optimization(optimizer, self.precision, self.process)

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` on the device, in DDP when the run has several processes."""
        return self.process.wrap(module.to(self.device), self.device)

    def save(self, state: dict[str, Any], path: Path) -> Path:
        """Write a checkpoint from the main process only (the others hold the same weights)."""
        if self.is_main:
            save_checkpoint(state, path)
        return path

    def metrics_log(self, path: Path, *, resume_step: int | None = None, loggers: Sequence[str] = (),
                    prefix: str = "train") -> MetricsLog | None:
        """The run's ``metrics.jsonl`` (and live ``loggers``, scalars named ``<prefix>/<key>``) in the main
        process; ``None`` elsewhere (only rank 0 logs)."""
        if not self.is_main:
            return None
        live = open_loggers(loggers, path.parent, prefix, resume_step=resume_step)
        return MetricsLog(path, resume_step=resume_step, loggers=live)

    def loader_options(self, num_workers: int, init: Callable[[int], object] | None = None) -> dict[str, Any]:
        """DataLoader settings of this device: worker processes that leave signals to the main process (and run
        ``init``), pinned memory for copies to CUDA."""
        start = partial(worker_start, init) if num_workers else None
        return {"num_workers": num_workers, "pin_memory": self.device.type == "cuda", "worker_init_fn": start}
