"""Backbones from any local source: dinomed exports, timm files, official DINO / DINOv2 checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed

from dinomed.models.backbones import (
    create_backbone,
    fit_to_model,
    guess_arch,
    load_backbone,
    resolve_backbone,
    save_backbone,
    to_timm_keys,
)

ARCH = "vit_tiny_patch16_224"


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    model, _ = create_backbone(ARCH, in_chans=3, img_size=32)
    return model.eval()


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, channels: int = 3, size: int = 32) -> None:
    x = torch.rand(2, channels, size, size)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x), atol=1e-5, rtol=1e-5)


def test_random_source_builds_requested_arch() -> None:
    model, spec = resolve_backbone("random", arch=ARCH, in_chans=1, img_size=32)
    assert spec.arch == ARCH and spec.meta["source"] == "random"
    assert model.patch_embed.proj.in_channels == 1


def test_dinomed_export_and_run_dir(tiny, tmp_path: Path) -> None:
    save_backbone(tiny, create_backbone(ARCH, img_size=32)[1], tmp_path / "run" / "export")
    for source in (tmp_path / "run", tmp_path / "run" / "export", tmp_path / "run" / "export" / "backbone.safetensors"):
        model, spec = resolve_backbone(str(source), img_size=32)
        assert spec.arch == ARCH
        _same_outputs(model, tiny)
    _same_outputs(load_backbone(tmp_path / "run"), tiny)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".bin"])
def test_plain_timm_checkpoint_files(tiny, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in tiny.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    model, spec = resolve_backbone(str(path), img_size=32)  # arch guessed from the weights
    assert spec.arch == ARCH
    _same_outputs(model, tiny)


def test_official_dino_training_checkpoint(tiny, tmp_path: Path) -> None:
    """DINO's checkpoint.pth: teacher under ``backbone.`` + ``head.``, student under ``module.backbone.``."""
    backbone = tiny.state_dict()
    teacher = {**{f"backbone.{k}": v for k, v in backbone.items()}, "head.last_layer.weight_g": torch.ones(8, 1)}
    student = {f"module.backbone.{k}": torch.zeros_like(v) for k, v in backbone.items()}
    path = tmp_path / "checkpoint.pth"
    torch.save({"student": student, "teacher": teacher, "epoch": 3}, path)
    model, _ = resolve_backbone(str(path), arch=ARCH, img_size=32)
    _same_outputs(model, tiny)


def test_dinov2_keys_map_to_timm() -> None:
    """DINOv2: ``mask_token`` dropped, chunked blocks flattened, ``ls1.gamma`` kept, registers renamed."""
    model = timm.create_model("vit_small_patch14_dinov2", img_size=28, depth=2, num_classes=0)
    state = dict(model.state_dict())
    chunked = {k.replace("blocks.1.", "blocks.0.1.").replace("blocks.0.norm", "blocks.0.0.norm")
               if k.startswith("blocks.") else k: v for k, v in state.items()}
    chunked["mask_token"] = torch.zeros(1, 384)
    mapped = to_timm_keys(chunked)
    assert set(mapped) == set(state) and "blocks.1.ls1.gamma" in mapped
    assert guess_arch(mapped) == "vit_small_patch14_dinov2"
    reg = to_timm_keys({"register_tokens": torch.zeros(1, 4, 8), "cls_token": torch.ones(1, 1, 8),
                        "pos_embed": torch.full((1, 5, 8), 2.0)})
    assert reg["reg_token"].shape == (1, 4, 8) and reg["pos_embed"].shape == (1, 4, 8)
    assert torch.equal(reg["cls_token"], torch.full((1, 1, 8), 3.0))


def test_position_embedding_interpolated_to_new_size(tiny) -> None:
    bigger, _ = create_backbone(ARCH, img_size=64)
    state = fit_to_model(tiny.state_dict(), bigger, "test", arch="vit_tiny_patch16_224")
    expected = resample_abs_pos_embed(tiny.pos_embed.detach(), new_size=[4, 4], old_size=[2, 2], num_prefix_tokens=1)
    torch.testing.assert_close(state["pos_embed"], expected)


def test_rgb_weights_to_grayscale_by_summing(tiny, tmp_path: Path) -> None:
    """A gray image is R=G=B, so summed RGB filters give the RGB model's output exactly."""
    path = tmp_path / "rgb.pth"
    torch.save(tiny.state_dict(), path)
    gray, _ = resolve_backbone(str(path), in_chans=1, img_size=32)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(gray.eval()(x), tiny(x.repeat(1, 3, 1, 1)), atol=1e-5, rtol=1e-4)


def test_not_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(ValueError, match="notes.pth: not a readable checkpoint"):
        resolve_backbone(str(path))
    with pytest.raises(FileNotFoundError, match="backbone not found"):
        resolve_backbone(str(tmp_path / "missing.pth"))


def test_other_architecture_names_mismatching_keys(tiny, tmp_path: Path) -> None:
    path = tmp_path / "tiny.pth"
    torch.save(tiny.state_dict(), path)
    with pytest.raises(ValueError, match=r"do not fit architecture 'vit_small_patch16_224'.*shape mismatch.*blocks.0.attn.proj.bias: checkpoint \(192,\) vs model \(384,\)"):
        resolve_backbone(str(path), arch="vit_small_patch16_224", img_size=32)
