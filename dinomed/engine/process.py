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

__all__ = ["ProcessContext"]


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
        if not self.distributed:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item() > 0)

    def any_true(self, flag: bool, device: torch.device) -> bool:
        """Whether ``flag`` holds in at least one process."""
        return not self.all_true(not flag, device)

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
