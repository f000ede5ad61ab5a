"""A fine-tuned model as an ONNX graph for clinical deployment: runs with onnxruntime alone, no dinomed needed.

LoRA adapters are merged into the backbone first; the batch dimension is dynamic; the input size, channels and the
normalisation the model expects (and the task, classes, depth range) are recorded in the graph's metadata. Export
checks the graph against the PyTorch model with onnxruntime on a random batch and reports the largest difference.

Needs the ``deploy`` extra: ``pip install "dinomed[deploy]"`` (onnx, onnxscript, onnxruntime).

Example:
    >>> exported = dinomed.export("runs/endoscopy-seg-lora", onnx="polyp.onnx")
    >>> exported.max_abs_diff    # onnxruntime vs PyTorch on a random batch
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dinomed.augment.modalities import normalization
from dinomed.extras import require
from dinomed.finetuning.model import FinetunedModel, merged_backbone

__all__ = ["OnnxExport", "export_onnx", "onnx_metadata", "read_metadata"]

OUTPUTS = {"seg": "logits (N, classes, H, W): argmax over axis 1 is the mask",
           "depth": "depth (N, 1, H, W) in the training data's depth units",
           "cls": "logits (N, classes): softmax over axis 1 gives the class probabilities"}


@dataclass
class OnnxExport:
    """Where the graph went, the metadata written into it, and how far onnxruntime is from PyTorch."""

    path: Path
    metadata: dict[str, str]
    max_abs_diff: float


def onnx_metadata(model: FinetunedModel) -> dict[str, str]:
    """What a deployment needs to feed and read the graph (ONNX metadata values are strings: JSON for lists)."""
    info = model.info
    mean, std = normalization(info["modality"], info["channels"])
    data = info.get("data", {})
    meta = {"producer": "dinomed", "task": info["task"], "modality": info["modality"],
            "input": f"float32 (N, {info['channels']}, {info['image_size']}, {info['image_size']}), values mapped to "
                     "[0, 1] as in training (data.intensity), then (x - mean) / std per channel",
            "image_size": str(info["image_size"]), "channels": str(info["channels"]),
            "mean": json.dumps(list(mean)), "std": json.dumps(list(std)),
            "intensity": json.dumps({k: data.get(k) for k in ("intensity", "window", "percentiles",
                                                                "temperature_window") if k in data}),
            "output": OUTPUTS.get(info["task"], "the head's output"),
            "class_names": json.dumps(info.get("class_names") or []), "head": json.dumps(info["head"])}
    return meta


def _plain(model: FinetunedModel) -> FinetunedModel:
    """The model with LoRA folded into a plain backbone (what the graph computes)."""
    backbone, _ = merged_backbone(model)
    return FinetunedModel(backbone, model.head, model.info).eval()


def export_onnx(model: FinetunedModel, path: str | Path, *, opset: int = 18) -> OnnxExport:
    """Write ``model`` (CPU, eval mode) to ``path`` as ONNX with a dynamic batch and check it with onnxruntime."""
    onnx = require("onnx", "deploy", "ONNX export")
    onnxruntime = require("onnxruntime", "deploy", "ONNX export")
    require("onnxscript", "deploy", "ONNX export")  # torch's exporter builds the graph with it
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = _plain(model)
    size, channels = int(model.info["image_size"]), int(model.info["channels"])
    example = torch.rand(2, channels, size, size)  # not 1: the exporter would specialise the batch to it
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(plain, (example,), str(path), dynamo=True, verbose=False, opset_version=opset,
                      input_names=["image"], output_names=["output"], dynamic_shapes=({0: batch},))
    graph = onnx.load(str(path))
    metadata = onnx_metadata(model)
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(path))
    probe = torch.rand(2, channels, size, size)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ours = session.run(None, {"image": probe.numpy()})[0]
    with torch.no_grad():
        reference = plain(probe).numpy()
    return OnnxExport(path, metadata, float(np.abs(ours - reference).max()))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata dinomed wrote into an exported graph (lists and mappings decoded)."""
    onnx = require("onnx", "deploy", "reading an exported graph")
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return {k: json.loads(v) if k in ("mean", "std", "class_names", "head", "intensity") else v for k, v in props.items()}
