"""Device and precision: what 'auto' picks, what the CPU refuses, autocast dtypes, when the grad scaler runs."""

from __future__ import annotations

import pytest
import torch

from dinomed.engine import Precision, resolve_device


def test_auto_device_is_cuda_when_present_else_cpu() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="CUDA is not available; use 'auto' or 'cpu'"):
        resolve_device("cuda")


def test_precision_auto_is_fp32_on_the_cpu_and_fp16_needs_cuda() -> None:
    cpu = torch.device("cpu")
    assert Precision.resolve("auto", cpu).name == "fp32"
    with pytest.raises(ValueError, match="precision fp16 needs a CUDA device.*bf16 or fp32"):
        Precision.resolve("fp16", cpu)
    with pytest.raises(ValueError, match="valid precisions are"):
        Precision.resolve("fp8", cpu)


def test_bf16_autocasts_matmuls_on_the_cpu_and_fp32_does_not() -> None:
    x = torch.randn(4, 8)
    w = torch.randn(8, 8)
    with Precision.resolve("bf16", torch.device("cpu")).autocast():
        assert (x @ w).dtype == torch.bfloat16
    with Precision.resolve("fp32", torch.device("cpu")).autocast():
        assert (x @ w).dtype == torch.float32


def test_only_fp16_scales_the_loss() -> None:
    cpu = torch.device("cpu")
    assert not Precision.resolve("fp32", cpu).grad_scaler().is_enabled()
    assert not Precision.resolve("bf16", cpu).grad_scaler().is_enabled()
