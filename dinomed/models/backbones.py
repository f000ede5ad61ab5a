"""timm ViT backbones: one construction path, safetensors export and loading (no network access)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import load_file, save_file
from torch import nn

BACKBONE_WEIGHTS = "backbone.safetensors"
BACKBONE_SPEC = "backbone.json"


@dataclass
class BackboneSpec:
    """What it takes to rebuild a backbone with plain timm: ``timm.create_model(arch, **kwargs)``."""

    arch: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"arch": self.arch, "kwargs": self.kwargs, "meta": self.meta}, indent=2)

    @classmethod
    def from_json(cls, path: Path) -> "BackboneSpec":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(arch=data["arch"], kwargs=dict(data.get("kwargs", {})), meta=dict(data.get("meta", {})))
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"{path}: not a dinomed backbone description ({err})") from None


def create_backbone(
    arch: str, *, in_chans: int = 3, img_size: int = 224, drop_path_rate: float = 0.0
) -> tuple[nn.Module, BackboneSpec]:
    """A randomly initialised timm ViT without classifier, accepting any input size that is a patch multiple.

    ``dynamic_img_size`` interpolates position embeddings so 96-px local crops and 224-px global crops share
    one model, as in DINO.
    """
    kwargs = {
        "num_classes": 0,
        "in_chans": in_chans,
        "img_size": img_size,
        "dynamic_img_size": True,
    }
    if arch not in timm.list_models():
        close = timm.list_models(f"*{arch.split('_')[0]}*")[:10]
        raise ValueError(f"unknown timm architecture '{arch}'; similar names: {close}")
    model = timm.create_model(arch, pretrained=False, drop_path_rate=drop_path_rate, **kwargs)
    if not hasattr(model, "blocks") or not hasattr(model, "patch_embed"):
        raise ValueError(f"'{arch}' is not a Vision Transformer (no blocks/patch_embed); dinomed needs a ViT")
    return model, BackboneSpec(arch=arch, kwargs=kwargs)


def save_backbone(model: nn.Module, spec: BackboneSpec, folder: str | Path) -> Path:
    """Write ``backbone.safetensors`` + ``backbone.json`` into ``folder``; returns the weights path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / BACKBONE_WEIGHTS
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = weights.with_suffix(".tmp")
    save_file(state, str(tmp))
    tmp.replace(weights)
    (folder / BACKBONE_SPEC).write_text(spec.to_json(), encoding="utf-8")
    return weights


def _locate(path: Path) -> tuple[Path, Path]:
    """Find (weights, spec) from a weights file, an export folder or a run directory."""
    candidates = [path] if path.is_file() else [path / BACKBONE_WEIGHTS, path / "export" / BACKBONE_WEIGHTS]
    for weights in candidates:
        if weights.is_file():
            spec = weights.with_name(BACKBONE_SPEC)
            if not spec.is_file():
                raise FileNotFoundError(f"{weights}: no {BACKBONE_SPEC} next to it describing the architecture")
            return weights, spec
    raise FileNotFoundError(
        f"{path}: no {BACKBONE_WEIGHTS} found (expected a weights file, an export folder or a pretrain run dir)"
    )


def load_backbone(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load a backbone exported by dinomed (weights file, export folder or run dir) as a plain timm model."""
    weights, spec_path = _locate(Path(path))
    spec = BackboneSpec.from_json(spec_path)
    model = timm.create_model(spec.arch, pretrained=False, **spec.kwargs)
    state = load_file(str(weights), device=str(map_location))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights}: weights do not match {spec.arch}; missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.dinomed_spec = spec  # type: ignore[attr-defined]
    return model
