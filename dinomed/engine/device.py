"""Device and numerical precision of a run: CUDA when present, the CPU otherwise; fp32, fp16 or bf16.

``auto`` precision follows what each device does well: bf16 on GPUs that support it (no loss scaling needed),
fp16 with a gradient scaler on older GPUs, fp32 on the CPU (where bf16 autocast exists but was measured far
slower than fp32 on CPUs without bf16 instructions; it stays selectable). Losses, softmaxes, the DINO centre and
the monitors are computed in fp32 by the loops whatever the autocast dtype.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

__all__ = ["PRECISIONS", "Precision", "resolve_device"]

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' picks CUDA when present (our users train on one GPU), else the CPU.

    Under ``torchrun`` each process takes the GPU of its local rank when the device is 'auto' or 'cuda'.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"train.device is '{name}' but CUDA is not available; use 'auto' or 'cpu'")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


@dataclass(frozen=True)
class Precision:
    """Autocast dtype and gradient scaling of a run; build with :meth:`resolve`.

    Example:
        >>> precision = Precision.resolve("auto", torch.device("cpu"))   # fp32 on the CPU
        >>> with precision.autocast():
        ...     loss = model(x).sum()
    """

    name: str
    device: torch.device

    @classmethod
    def resolve(cls, name: str, device: torch.device) -> "Precision":
        """``name`` (one of :data:`PRECISIONS`) for ``device``; 'auto' picks bf16 / fp16 on CUDA, fp32 on the CPU."""
        if name not in PRECISIONS:
            raise ValueError(f"unknown precision '{name}'; valid precisions are {list(PRECISIONS)}")
        if name == "auto":
            if device.type == "cuda":
                name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            else:
                name = "fp32"
        if name == "fp16" and device.type != "cuda":
            raise ValueError("train.precision fp16 needs a CUDA device (fp16 training relies on the CUDA gradient "
                             "scaler); on the CPU use bf16 or fp32")
        return cls(name, device)

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.name]

    def autocast(self) -> AbstractContextManager:
        """Mixed-precision context for forward passes (a no-op in fp32)."""
        if self.name == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16 (its narrow exponent underflows small gradients); disabled otherwise."""
        return torch.amp.GradScaler(self.device.type, enabled=self.name == "fp16")
