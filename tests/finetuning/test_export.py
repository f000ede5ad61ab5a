"""ONNX export of fine-tuned models: LoRA merged, dynamic batch, metadata, onnxruntime agrees with PyTorch."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from rich.console import Console

import dinomed
from dinomed.extras import MissingExtra
from dinomed.finetuning.export import read_metadata

onnxruntime = pytest.importorskip("onnxruntime", reason='ONNX export needs the deploy extra: pip install "dinomed[deploy]"')
QUIET = Console(quiet=True)
CASES = {"seg": ("endoscopy", "lora", (3, 2, 32, 32)), "depth": ("endoscopy", "full", (3, 1, 32, 32)),
         "cls": ("oct", "frozen", (3, 4))}


@pytest.mark.parametrize("task", ["seg", pytest.param("depth", marks=pytest.mark.slow),
                                  pytest.param("cls", marks=pytest.mark.slow)])
def test_exported_graph_runs_in_onnxruntime_like_the_model(task, tmp_path, tiny) -> None:
    recipe, mode, shape = CASES[task]
    run = dinomed.finetune(recipe, task=task, mode=mode, labels=0.5, overrides=tiny, out=tmp_path / task,
                           console=QUIET)
    exported = dinomed.export(run.run_dir, onnx=tmp_path / f"{task}.onnx", console=QUIET)
    assert exported.max_abs_diff < 1e-4, exported.max_abs_diff
    meta = read_metadata(exported.path)
    assert meta["task"] == task and meta["image_size"] == "32" and len(meta["mean"]) == int(meta["channels"])
    session = onnxruntime.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    batch = torch.rand(3, int(meta["channels"]), 32, 32)  # another batch size than the export's example
    out = session.run(None, {"image": batch.numpy()})[0]
    assert out.shape == shape
    with torch.no_grad():
        np.testing.assert_allclose(out, dinomed.load_model(run.run_dir)(batch).numpy(), atol=1e-4)


def test_without_the_deploy_extra_the_hint_names_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if it were not installed
    from dinomed.finetuning.export import export_onnx

    with pytest.raises(MissingExtra, match=r'ONNX export needs the deploy extra: pip install "dinomed\[deploy\]"'):
        export_onnx(object(), tmp_path / "m.onnx")  # type: ignore[arg-type]
