"""The process context of a single-process run (multi-process runs are tested in tests/ssl/test_distributed.py)."""

from __future__ import annotations

import torch
from torch import nn

from dinomed.engine import ProcessContext


def test_a_single_process_is_main_and_needs_no_collectives(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    context = ProcessContext.from_environment("cpu")
    assert (context.rank, context.world_size, context.is_main, context.distributed) == (0, 1, True, False)
    context.barrier()
    cpu = torch.device("cpu")
    assert context.all_true(True, cpu) and not context.all_true(False, cpu) and context.any_true(True, device=cpu)
    assert context.any_true(True, False, device=cpu) == (True, False)
    assert context.broadcast("run-1") == "run-1"
    module = nn.Linear(2, 2)
    assert context.wrap(module, cpu) is module
