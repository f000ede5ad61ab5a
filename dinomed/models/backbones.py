"""timm ViT backbones: one construction path, safetensors export, and loading from any local source (no network)."""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import load_file, save_file
from timm.layers import resample_abs_pos_embed
from torch import nn

from dinomed.files import atomic_write
from dinomed.models.nat import NAT  # registers nat_* / dinat_* with timm, so every timm.create_model knows them

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


@dataclass(frozen=True)
class FeatureLevels:
    """The feature maps a backbone offers dense heads: ``dims[i]`` channels at ``strides[i]`` of the input.

    A ViT has one level per block, all at its patch size; NAT one per stage, at strides 4, 8, 16, 32.
    """

    dims: tuple[int, ...]
    strides: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.dims)


def is_vit(model: nn.Module) -> bool:
    return hasattr(model, "blocks") and hasattr(model, "patch_embed")


def is_hierarchical(model: nn.Module) -> bool:
    """A backbone with stages of growing stride (NAT): feature maps from ``feature_info``, no CLS token."""
    return isinstance(model, NAT)


def feature_levels(model: nn.Module) -> FeatureLevels:
    """What :func:`~dinomed.models.decoders.backbone_features` can return for ``model``."""
    if is_hierarchical(model):
        return FeatureLevels(tuple(f["num_chs"] for f in model.feature_info),
                             tuple(f["reduction"] for f in model.feature_info))
    patch = model.patch_embed.patch_size[0]
    return FeatureLevels((model.embed_dim,) * len(model.blocks), (patch,) * len(model.blocks))


def create_backbone(
    arch: str, *, in_chans: int = 3, img_size: int = 224, drop_path_rate: float = 0.0
) -> tuple[nn.Module, BackboneSpec]:
    """A randomly initialised backbone without classifier: a timm ViT, or a NAT / DiNAT (:mod:`dinomed.models.nat`,
    registered with timm), accepting any input size that is a patch multiple.

    ``dynamic_img_size`` interpolates a ViT's position embeddings so 96-px local crops and 224-px global crops
    share one model, as in DINO (NAT has none and takes any size).
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
    not_vit = (f"'{arch}' is neither a Vision Transformer (self-attention blocks, patch embedding) nor a NAT; "
               "dinomed needs a ViT (e.g. vit_small_patch16_224) or nat_mini / nat_tiny / dinat_mini / dinat_tiny")
    try:
        model = timm.create_model(arch, pretrained=False, drop_path_rate=drop_path_rate, **kwargs)
    except TypeError:  # CNNs reject ViT-only arguments such as img_size / dynamic_img_size
        raise ValueError(not_vit) from None
    if not (is_vit(model) or is_hierarchical(model)):
        raise ValueError(not_vit)
    return model, BackboneSpec(arch=arch, kwargs=kwargs)


def save_backbone(model: nn.Module, spec: BackboneSpec, folder: str | Path) -> Path:
    """Write ``backbone.safetensors`` + ``backbone.json`` into ``folder``; returns the weights path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    weights = atomic_write(folder / BACKBONE_WEIGHTS, lambda tmp: save_file(state, str(tmp)))
    atomic_write(folder / BACKBONE_SPEC, spec.to_json())
    return weights


def locate_export(path: Path) -> tuple[Path, Path]:
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
    weights, spec_path = locate_export(Path(path))
    spec = BackboneSpec.from_json(spec_path)
    model = timm.create_model(spec.arch, pretrained=False, **spec.kwargs)
    state = load_file(str(weights), device=str(map_location))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights}: weights do not match {spec.arch}; missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.dinomed_spec = spec  # type: ignore[attr-defined]
    return model


# ------------------------------------------------------------------------------------------------ any source
RANDOM = "random"
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
# Wrappers official DINO/DINOv2 and dinomed training checkpoints put around the backbone weights; the
# teacher comes first because DINO evaluates (and we export) the teacher.
_WRAPPERS = ("teacher", "model", "state_dict", "student", "module")
_PREFIXES = ("module.", "backbone.", "encoder.")
# Keys that exist in SSL checkpoints but not in a classifier-free timm ViT.
_DROPPED = re.compile(r"^(mask_token|head\.|fc_norm\.|pre_logits\.|dino_head\.|ibot_head\.|last_layer\.)")
_SIZE_BY_WIDTH = {192: "tiny", 384: "small", 768: "base", 1024: "large", 1536: "giant2"}


def read_checkpoint(path: str | Path) -> Any:
    """What a checkpoint file holds (safetensors, or a torch file read with ``weights_only=True``).

    The official DINO training checkpoints also store their ``argparse`` arguments; ``argparse.Namespace`` is the
    one class allowed besides tensors and containers (a plain attribute bag, it runs no code when unpickled).
    Raises ``ValueError`` naming the file when it is not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: backbone checkpoint not found")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any parse failure means "not a checkpoint"
        raise ValueError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {err}); expected safetensors or a "
            f"torch state dict ({', '.join(CHECKPOINT_SUFFIXES)})"
        ) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, unwrapped from the training wrappers (the teacher first)."""
    return unwrap_state(read_checkpoint(path), Path(path))


def unwrap_state(state: Any, path: Path) -> dict[str, torch.Tensor]:
    """Descend through ``teacher``/``model``/``state_dict`` wrappers to the dict of tensors."""
    while isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        inner = next((state[k] for k in _WRAPPERS if isinstance(state.get(k), dict)), None)
        if inner is None:
            raise ValueError(f"{path}: no tensors found; top-level keys {sorted(state)[:10]} "
                             f"(expected weights or one of the wrappers {list(_WRAPPERS)})")
        state = inner
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict (got {type(state).__name__})")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def timm_key(key: str) -> str | None:
    """The timm ViT name of one DINO / DINOv2 / dinomed checkpoint key, or ``None`` for keys a backbone does not
    have (heads, the iBOT ``mask_token``).

    Strips ``module.``/``backbone.``/``encoder.`` prefixes (DDP and the DINO ``MultiCropWrapper``), flattens DINOv2's
    chunked blocks (``blocks.0.3.`` -> ``blocks.3.``) and renames DINOv2's ``register_tokens``. DINOv2's
    ``blocks.N.ls1.gamma`` already matches timm's layer-scale names.
    """
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    if _DROPPED.match(key):
        return None
    key = re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", key) if re.match(r"^blocks\.\d+\.\d+\.", key) else key
    return "reg_token" if key == "register_tokens" else key


def to_timm_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's backbone tensors under timm ViT names (:func:`timm_key`).

    Next to a ``backbone.`` sub-dict, everything else (DINO heads) is left out. DINOv2 models with registers
    add the first position embedding to CLS; timm's register models carry no position embedding for prefix
    tokens, so it is folded into the CLS token (as timm's converter does).
    """
    if any(k.startswith("backbone.") or k.startswith("module.backbone.") for k in state):
        state = {k: v for k, v in state.items() if "backbone." in k}  # drop DINO heads next to the backbone
    out = {name: value for name, value in ((timm_key(k), v) for k, v in state.items()) if name is not None}
    if "reg_token" in out and "pos_embed" in out and "cls_token" in out:
        out["cls_token"] = out["cls_token"] + out["pos_embed"][:, :1]
        out["pos_embed"] = out["pos_embed"][:, 1:]
    return out


def guess_arch(state: dict[str, torch.Tensor]) -> str:
    """timm architecture name for a (timm-keyed) ViT state dict, from its width, patch size and layer scale."""
    if "patch_embed.proj.weight" not in state:
        raise ValueError("cannot infer the architecture: no 'patch_embed.proj.weight' (is this a ViT?); pass --arch")
    width, _, patch, _ = state["patch_embed.proj.weight"].shape
    size = _SIZE_BY_WIDTH.get(width)
    if size is None:
        raise ValueError(f"cannot infer the architecture of a ViT with width {width}; pass --arch")
    if "blocks.0.ls1.gamma" in state:
        reg = "_reg4" if "reg_token" in state else ""
        return f"vit_{size}_patch{patch}{reg}_dinov2"
    return f"vit_{size}_patch{patch}_224"


def _adapt_in_chans(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """RGB -> grayscale sums the RGB filters (a gray image is R=G=B); gray -> RGB splits one filter in three."""
    have = weight.shape[1]
    if have == in_chans:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    if have == 1:
        return weight.repeat(1, in_chans, 1, 1) / in_chans
    raise ValueError(f"cannot adapt a {have}-channel patch embedding to {in_chans} channels")


def fit_to_model(state: dict[str, torch.Tensor], model: nn.Module, source: str, *, arch: str,
                 hint: str = "pass the matching --arch") -> dict[str, torch.Tensor]:
    """Adapt input channels and position-embedding grid to ``model`` (timm ``arch``), then check every key and shape.

    Raises ``ValueError`` naming ``source``, the keys that are missing, unexpected or of another shape, and ``hint``.
    """
    state = dict(state)
    target = model.state_dict()
    if "patch_embed.proj.weight" in state:
        state["patch_embed.proj.weight"] = _adapt_in_chans(state["patch_embed.proj.weight"], model.patch_embed.proj.in_channels)
    pos = state.get("pos_embed")
    if pos is not None and "pos_embed" in target and pos.shape != target["pos_embed"].shape:
        prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
        old = int(math.isqrt(pos.shape[1] - prefix))
        if old * old == pos.shape[1] - prefix and pos.shape[-1] == target["pos_embed"].shape[-1]:
            state["pos_embed"] = resample_abs_pos_embed(
                pos, new_size=list(model.patch_embed.grid_size), old_size=[old, old], num_prefix_tokens=prefix
            )
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(target[k].shape)}"
              for k in sorted(set(state) & set(target)) if state[k].shape != target[k].shape]
    if missing or unexpected or shapes:
        parts = [f"missing {missing[:6]}{' ...' if len(missing) > 6 else ''}" if missing else "",
                 f"unexpected {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}" if unexpected else "",
                 f"shape mismatch {shapes[:4]}" if shapes else ""]
        raise ValueError(f"{source}: weights do not fit architecture '{arch}' ({'; '.join(p for p in parts if p)}); "
                         f"{hint}")
    return state


def resolve_backbone(
    source: str | Path, *, arch: str | None = None, in_chans: int = 3, img_size: int = 224
) -> tuple[nn.Module, BackboneSpec]:
    """A timm ViT from anywhere local: ``"random"``, a dinomed pretrain run dir / export folder, or a
    checkpoint file (timm, official DINO / DINOv2, dinomed ``checkpoints/last.pt``). Never touches the network.

    Input channels and position embeddings are adapted to ``in_chans`` / ``img_size``.

    Example:
        >>> model, spec = resolve_backbone("runs/endoscopy-1", in_chans=3, img_size=224)
        >>> model, spec = resolve_backbone("dino_deitsmall16_pretrain.pth", in_chans=1)
    """
    text = str(source)
    if text == RANDOM:
        model, spec = create_backbone(arch or "vit_small_patch16_224", in_chans=in_chans, img_size=img_size)
        spec.meta["source"] = RANDOM
        return model, spec
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"{path}: backbone not found (expected '{RANDOM}', a pretrain run dir, an "
                                f"export folder or a checkpoint file {', '.join(CHECKPOINT_SUFFIXES)})")
    spec_arch, extra = arch, {}
    if path.is_dir() or path.with_name(BACKBONE_SPEC).is_file():
        weights, spec_path = locate_export(path)
        stored = BackboneSpec.from_json(spec_path)
        spec_arch = arch or stored.arch
        extra = {k: v for k, v in stored.kwargs.items() if k not in ("in_chans", "img_size", "num_classes")}
    else:
        weights = path
    state = to_timm_keys(read_state_dict(weights))
    spec_arch = spec_arch or guess_arch(state)
    model, spec = create_backbone(spec_arch, in_chans=in_chans, img_size=img_size)
    if extra:
        spec = BackboneSpec(spec_arch, {**spec.kwargs, **extra})
        model = timm.create_model(spec_arch, pretrained=False, **spec.kwargs)
    model.dinomed_spec = spec  # type: ignore[attr-defined]
    model.load_state_dict(fit_to_model(state, model, str(weights), arch=spec_arch))
    spec.meta["source"] = str(weights)
    return model, spec
