"""A backbone (plain, LoRA-adapted or fully trained) with a task head; saving and loading it from a run.

Saved under ``RUN/model/``: ``backbone/`` (save_backbone format: the base weights, or the trained ones in mode
``full``), ``adapter/`` (PEFT's own ``adapter_config.json`` + ``adapter_model.safetensors``, mode ``lora``),
``head.safetensors`` and ``model.json`` (task, head arguments, input contract).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from dinomed.files import atomic_write
from dinomed.finetuning.heads import TaskHead, build_head
from dinomed.models.backbones import BackboneSpec, feature_levels, load_backbone, save_backbone
from dinomed.models.decoders import backbone_features
from dinomed.models.lora import LoraSettings, apply_lora, load_lora, merge_lora

MODEL_DIR = "model"
HEAD_FILE = "head.safetensors"
INFO_FILE = "model.json"


class FinetunedModel(nn.Module):
    """``forward(images)`` -> seg logits (B, K, H, W), depth (B, 1, H, W) or class logits (B, K)."""

    def __init__(self, backbone: nn.Module, head: TaskHead, info: dict[str, Any]) -> None:
        super().__init__()
        self.backbone, self.head, self.info = backbone, head, info

    @property
    def vit(self) -> nn.Module:
        """The timm ViT (inside the peft wrapper in mode ``lora``; adapters act in place)."""
        return self.backbone.get_base_model() if hasattr(self.backbone, "get_base_model") else self.backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(backbone_features(self.vit, images, self.head.blocks), images)

    def predict(self, image: Any) -> Any:
        """Mask (H, W) int64, depth (H, W) float32 or class probabilities (K,) for one image (array or path)."""
        from dinomed.finetuning.predict import predict_image

        return predict_image(self, image)


def adapt(backbone: nn.Module, mode: str, lora: LoraSettings) -> nn.Module:
    """Make only what ``mode`` trains trainable: adapters (lora), everything (full) or nothing (frozen)."""
    if mode == "lora":
        backbone = apply_lora(backbone, lora)
    else:
        backbone.requires_grad_(mode == "full")
    return backbone


def parameter_report(model: FinetunedModel) -> dict[str, int]:
    """Where the parameters are and which of them train: the backbone's own weights (frozen / trained), LoRA
    adapters, the head (its detail path, the branch and where it joins the decoder, counted apart too) and the
    totals. Printed at the start of a
    fine-tune and saved in ``metrics.json``, so a run says what it adapted."""
    def count(params: Any, trainable: bool | None = None) -> int:
        return sum(p.numel() for p in params if trainable is None or p.requires_grad == trainable)

    backbone = [p for n, p in model.backbone.named_parameters() if "lora_" not in n]
    detail = [p for n, p in model.head.named_parameters() if any(part.startswith("detail") for part in n.split("."))]
    report = {"backbone_frozen": count(backbone, False), "backbone_trained": count(backbone, True),
              "lora": count(p for n, p in model.backbone.named_parameters() if "lora_" in n),
              "head": count(model.head.parameters()),
              "detail": count(detail)}
    report["trainable"], report["total"] = count(model.parameters(), True), count(model.parameters())
    return report


def describe_parameters(report: dict[str, int]) -> str:
    """One line for the console: ``trainable X of Y (Z %): LoRA a, head b (detail c), backbone d``."""
    parts = [f"LoRA {report['lora']:,}"] if report["lora"] else []
    head = f"head {report['head']:,}" + (f" (detail branch {report['detail']:,})" if report["detail"] else "")
    parts.append(head)
    if report["backbone_trained"]:
        parts.append(f"backbone {report['backbone_trained']:,}")
    share = 100 * report["trainable"] / max(report["total"], 1)
    return (f"Trainable parameters [bold]{report['trainable']:,}[/] of {report['total']:,} ({share:.2f} %): "
            f"{', '.join(parts)}; frozen backbone {report['backbone_frozen']:,}.")


def save_model(model: FinetunedModel, spec: BackboneSpec, folder: Path, *, base: nn.Module | None = None) -> Path:
    """Write the model under ``folder``; ``base`` is the un-adapted backbone (modes lora / frozen)."""
    folder.mkdir(parents=True, exist_ok=True)
    mode = model.info["mode"]
    if mode == "full" or base is None:
        save_backbone(model.vit, spec, folder / "backbone")
    else:
        save_backbone(base, spec, folder / "backbone")
    if mode == "lora":
        model.backbone.save_pretrained(str(folder / "adapter"))
    head_state = {k: v.detach().contiguous().cpu() for k, v in model.head.state_dict().items()}
    atomic_write(folder / HEAD_FILE, lambda tmp: save_file(head_state, str(tmp)))
    atomic_write(folder / INFO_FILE, json.dumps(model.info, indent=2))
    return folder


def read_model(folder: str | Path) -> FinetunedModel:
    """Rebuild a :class:`FinetunedModel` saved by :func:`save_model` (eval mode, CPU)."""
    folder = Path(folder)
    info_path = folder / INFO_FILE
    if not info_path.is_file():
        raise FileNotFoundError(f"{folder}: no {INFO_FILE}; expected a fine-tuning run dir or its {MODEL_DIR}/ folder")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    vit = load_backbone(folder / "backbone")
    backbone = load_lora(vit, str(folder / "adapter")) if info["mode"] == "lora" else vit
    head = build_head(info["task"], feature_levels(vit), **info["head"])
    head.load_state_dict(load_file(str(folder / HEAD_FILE)))
    return FinetunedModel(backbone, head, info).eval()


def merged_backbone(model: FinetunedModel) -> tuple[nn.Module, BackboneSpec]:
    """The backbone with LoRA folded in, as a plain timm ViT (identity for modes full / frozen)."""
    spec: BackboneSpec = model.vit.dinomed_spec
    if model.info["mode"] != "lora":
        return model.vit, spec
    import timm

    plain = timm.create_model(spec.arch, pretrained=False, **spec.kwargs)
    plain.load_state_dict(merge_lora(model.backbone))
    return plain.eval(), spec
