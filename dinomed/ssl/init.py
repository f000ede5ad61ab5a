"""Continued pretraining: student and teacher start from existing weights (``model.init``, ``--init``).

Sources, all local files read with ``weights_only=True``:

* a dinomed pretrain run directory (its checkpoint's teacher: backbone, DINO head and loss centre) or an export
  folder / ``backbone.safetensors`` (backbone only);
* a timm checkpoint (backbone only);
* the official DINO files: the backbone-only ``*_pretrain.pth`` and the full training checkpoint
  (``student`` / ``teacher`` / ``optimizer`` / ``dino_loss`` / ``args``; ``module.`` / ``backbone.`` / ``head.``
  prefixes), whose teacher head (``last_layer.weight_g`` / ``weight_v``) and loss centre are loaded too;
* DINOv2 files (patch 14, register tokens, LayerScale), position embeddings interpolated from 518 px to the recipe's
  crop size.

The architecture comes from the weights (a stored ``backbone.json``, the run's config, or the tensor shapes); RGB
weights go into one-channel recipes by summing the patch filters. The teacher equals the student at step 0. What
was loaded, newly initialised and ignored is written to ``RUN_DIR/init.json`` and printed in one line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from dinomed.config import load_yaml
from dinomed.engine import CONFIG_FILE, load_checkpoint
from dinomed.models.backbones import (
    BackboneSpec,
    fit_to_model,
    guess_arch,
    locate_export,
    read_checkpoint,
    timm_key,
    to_timm_keys,
    unwrap_state,
)
from dinomed.ssl.trainer import CHECKPOINT

__all__ = ["InitWeights", "InitReport", "read_init", "apply_init"]

# DINO's and DINOv2's heads use the old weight_norm names; dinomed's uses torch's parametrizations.
_HEAD_RENAMES = {"last_layer.weight_g": "last_layer.parametrizations.weight.original0",
                 "last_layer.weight_v": "last_layer.parametrizations.weight.original1"}
_HEAD_PREFIXES = ("head.", "dino_head.")
_SOURCES_HELP = ("expected a dinomed run dir or export, a timm checkpoint, or an official DINO / DINOv2 file "
                 "(.pth, .pt, .safetensors)")


@dataclass
class InitWeights:
    """What a source holds, in dinomed's names: backbone (timm keys), DINO head and centre when present."""

    path: Path
    kind: str
    arch: str
    backbone: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor] = field(default_factory=dict)
    center: torch.Tensor | None = None
    ignored: list[str] = field(default_factory=list)


@dataclass
class InitReport:
    """Written to ``RUN_DIR/init.json``: where the weights came from and what became of each tensor."""

    source: str
    kind: str
    arch: str
    loaded: list[str]
    initialised: list[str]
    ignored: list[str]
    notes: list[str]

    def summary(self) -> str:
        def listed(keys: list[str]) -> str:
            return "none" if not keys else ", ".join(keys[:6]) + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "")

        notes = f"; {'; '.join(self.notes)}" if self.notes else ""
        return (f"Initialised from {self.kind} {self.source} ({self.arch}): loaded {len(self.loaded)} tensors; "
                f"newly initialised: {listed(self.initialised)}; ignored: {listed(self.ignored)}{notes}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _strip(key: str) -> str:
    return key.removeprefix("module.")


def _split_head(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(DINO head tensors under dinomed's names, the rest)."""
    head, rest = {}, {}
    for key, value in state.items():
        name = _strip(key)
        prefix = next((p for p in _HEAD_PREFIXES if name.startswith(p)), None)
        if prefix is None:
            rest[key] = value
        else:
            local = name[len(prefix):]
            head[_HEAD_RENAMES.get(local, local)] = value
    return head, rest


def _from_run(path: Path) -> InitWeights:
    state = load_checkpoint(path / CHECKPOINT)
    arch = str(load_yaml(path / CONFIG_FILE).get("model", {}).get("arch", ""))
    head, backbone = _split_head(state["teacher"])
    ignored = [k for k in state if k not in ("teacher", "loss")]
    return InitWeights(path, "dinomed run", arch, to_timm_keys(backbone), head, state.get("loss", {}).get("center"),
                       ignored)


def _from_file(path: Path) -> InitWeights:
    raw = read_checkpoint(path)
    state = unwrap_state(raw, path)  # the teacher of a training checkpoint (DINO evaluates and releases it)
    head, rest = _split_head(state)
    backbone = to_timm_keys(rest)
    dropped = [k for k in rest if timm_key(k) is None]
    wrappers = [k for k, v in raw.items() if not isinstance(v, torch.Tensor)] if isinstance(raw, dict) else []
    center = None
    if isinstance(raw, dict) and isinstance(raw.get("dino_loss"), dict):
        center = raw["dino_loss"].get("center")
    kind = ("DINOv2 checkpoint" if "blocks.0.ls1.gamma" in backbone else
            "DINO training checkpoint" if "teacher" in wrappers else "DINO / timm checkpoint")
    ignored = sorted({*dropped, *(w for w in wrappers if w not in ("teacher", "dino_loss"))})
    return InitWeights(path, kind, guess_arch(backbone), backbone, head, center, ignored)


def read_init(source: str | Path) -> InitWeights:
    """The weights at ``source`` (see the module docstring for the accepted layouts); errors name the file."""
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: model.init weights not found; {_SOURCES_HELP}")
    if path.is_dir() and (path / CHECKPOINT).is_file() and (path / CONFIG_FILE).is_file():
        return _from_run(path)
    if path.is_dir() or path.with_name("backbone.json").is_file():
        weights, spec = locate_export(path)
        return InitWeights(weights, "dinomed export", BackboneSpec.from_json(spec).arch, load_file(str(weights)))
    try:
        return _from_file(path)
    except ValueError as err:
        raise ValueError(f"{err} ({_SOURCES_HELP})") from None


def apply_init(weights: InitWeights, student: nn.Module, teacher: nn.Module, loss: nn.Module) -> InitReport:
    """Load ``weights`` into the student (backbone, and the DINO head and centre when they fit the recipe's head),
    then make the teacher its copy. A backbone that does not fit fails naming the file and the first keys."""
    notes = []
    patch = weights.backbone.get("patch_embed.proj.weight")
    in_chans = student.backbone.patch_embed.proj.in_channels
    if patch is not None and patch.shape[1] != in_chans:
        notes.append(f"patch embedding adapted from {patch.shape[1]} to {in_chans} channel(s)")
    backbone = fit_to_model(weights.backbone, student.backbone, str(weights.path), arch=weights.arch,
                            hint="the file does not hold a complete model of this architecture; is it the right file?")
    old_grid = weights.backbone.get("pos_embed")
    if old_grid is not None and old_grid.shape != backbone["pos_embed"].shape:
        notes.append(f"position embeddings interpolated from {tuple(old_grid.shape)} to {tuple(backbone['pos_embed'].shape)}")
    student.backbone.load_state_dict(backbone)
    loaded = [f"backbone.{k}" for k in backbone]
    expected = student.head.state_dict()
    head_fits = bool(weights.head) and set(weights.head) == set(expected) and all(
        weights.head[k].shape == v.shape for k, v in expected.items())
    initialised, ignored = [], list(weights.ignored)
    if head_fits:
        student.head.load_state_dict(weights.head)
        loaded += [f"head.{k}" for k in weights.head]
        if weights.center is not None and weights.center.shape == loss.center.shape:
            loss.center.copy_(weights.center)
            loaded.append("dino_loss.center")
    else:
        initialised = [f"head.{k}" for k in expected]
        if weights.head:
            shapes = {k: tuple(v.shape) for k, v in weights.head.items() if "last_layer" in k}
            notes.append(f"its DINO head {shapes} does not fit the recipe's head (model.out_dim / hidden_dim / "
                         "bottleneck_dim): a fresh head is trained")
            ignored += [f"head.{k}" for k in weights.head]
    teacher.load_state_dict(student.state_dict())
    return InitReport(str(weights.path), weights.kind, weights.arch, loaded, initialised, ignored, notes)
