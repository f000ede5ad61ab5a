"""benchmarks/gpu_check.sh starts and skips cleanly where there is no CUDA device (CI, laptops)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the check would run for minutes")
def test_without_cuda_the_gpu_check_says_so_and_exits_0() -> None:
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                          timeout=120, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and done.stdout.strip().endswith("no CUDA device (or no torch in "
                                                                 f"{sys.executable}); skipped"), done


def test_the_check_script_parses_and_names_every_check() -> None:
    source = (ROOT / "benchmarks" / "gpu_check.py").read_text(encoding="utf-8")
    ast.parse(source)
    for name in ("pretrain fp16", "pretrain bf16", "kill -9 + resume", "LoRA fine-tune + predict", "DDP 2 processes",
                 "throughput"):
        assert f'"{name}' in source, name
