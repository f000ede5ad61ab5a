"""The process context of a run: rank, world size, main process, barriers, and DDP wrapping under torchrun.

A single process is the default; under ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
``MASTER_ADDR``/``MASTER_PORT``) the process group is initialised from that environment, with NCCL on CUDA and
gloo on the CPU, as DINO's and DINOv2's launchers do. Only the main process (rank 0) prints, logs and writes
files; the others wait for it at barriers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["ProcessContext", "require_single_process"]


@dataclass(frozen=True)
class ProcessContext:
    """Where this process stands among the run's processes.

    Example:
        >>> context = ProcessContext.from_environment("cpu")   # world size 1 outside torchrun
        >>> if context.is_main:
        ...     save(...)
        >>> context.barrier()
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls, device: str = "auto") -> "ProcessContext":
        """Join the process group torchrun describes in the environment (no-op for a single process)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        if not dist.is_initialized():
            use_cuda = device != "cpu" and torch.cuda.is_available()
            if use_cuda:
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
            dist.init_process_group("nccl" if use_cuda else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait until every process got here (no-op for a single process)."""
        if self.distributed:
            dist.barrier()

    def all_true(self, flag: bool, device: torch.device) -> bool:
        """Whether ``flag`` holds in every process (so all processes take the same branch, e.g. stop together)."""
        return not self.any_true(not flag, device=device)

    def any_true(self, *flags: bool, device: torch.device) -> bool | tuple[bool, ...]:
        """Whether each flag holds in at least one process (one collective for all of them); a single flag
        gives a bool, several a tuple."""
        agreed = flags
        if self.distributed:
            value = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
            dist.all_reduce(value, op=dist.ReduceOp.MAX)
            agreed = tuple(bool(v > 0) for v in value.tolist())
        return agreed[0] if len(agreed) == 1 else tuple(agreed)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` averaged over the processes (the logged loss of a multi-process run is the global one)."""
        if not self.distributed:
            return value
        value = value.detach().clone()
        dist.all_reduce(value)
        return value / self.world_size

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` in every process (e.g. the run directory name rank 0 chose)."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """``module`` in DistributedDataParallel when there are several processes, else unchanged.

        DDP averages gradients over processes during ``backward``; parameters that never get a gradient (a
        frozen weight-norm gain) are left out by DDP since they do not require grad.
        """
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    def close(self) -> None:
        """Leave the process group (end of a torchrun run)."""
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def require_single_process(command: str) -> None:
    """Refuse to run ``command`` under torchrun: it trains in one process (fine-tuning a few dozen labelled images
    gains nothing from several GPUs, and several copies would write the same run directory)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        raise ValueError(f"dinomed {command} runs in one process, but WORLD_SIZE is {world} (torchrun); launch it "
                         "without torchrun (only pretraining runs on several processes)")
