"""Continued pretraining from existing weights, with no download: synthetic checkpoints in each official layout.

Layouts reproduced (from timm models with random weights):
* DINO backbone-only ``dino_deitsmall16_pretrain.pth``: a plain ViT state dict under timm's key names;
* DINO full training checkpoint ``checkpoint.pth``: ``student`` (``module.backbone.*``, ``module.head.*``),
  ``teacher`` (``backbone.*``, ``head.*`` with the old ``last_layer.weight_g`` / ``weight_v``), ``optimizer``,
  ``epoch``, ``args`` (an ``argparse.Namespace``) and ``dino_loss`` (``center``);
* DINOv2 ``dinov2_vits14_reg4_pretrain.pth``: patch 14 at 518 px, ``register_tokens``, ``mask_token``, LayerScale
  ``ls1.gamma``, the CLS position embedding inside ``pos_embed``;
* timm checkpoints (``.pth`` and ``.safetensors``), dinomed run directories and exports.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import timm
import torch
from rich.console import Console
from safetensors.torch import save_file

import dinomed
from dinomed.engine import read_metrics
from dinomed.models.heads import DINOProjectionHead
from dinomed.ssl.init import read_init

TINY = {"model.out_dim": 64, "model.hidden_dim": 32, "model.bottleneck_dim": 16, "augment.local_crops": 2,
        "augment.local_size": 16, "data.phantom.count": 32, "data.phantom.size": [48, 48], "data.num_workers": 0,
        "train.batch_size": 8, "train.epochs": 2, "train.log_every": 1, "train.probe_every": 2,
        "train.probe_images": 16, "train.num_threads": 1}
QUIET = Console(quiet=True)


class Payload:
    """Stands for any object a pickle could build (and run code in)."""


def _vit(arch: str = "vit_tiny_patch16_224", **kwargs) -> torch.nn.Module:
    torch.manual_seed(1)
    return timm.create_model(arch, pretrained=False, num_classes=0, **kwargs).eval()


def _run(tmp_path: Path, name: str, init: Path | None, recipe: str = "endoscopy", **extra) -> dinomed.PretrainResult:
    overrides = {**TINY, "augment.global_size": 32, "train.output_dir": str(tmp_path / "runs"),
                 "train.run_name": name, **extra}
    return dinomed.pretrain(recipe, quick=True, init=init, overrides=overrides, console=QUIET)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weights")
    vit = _vit(img_size=32)
    state = vit.state_dict()
    torch.save(state, root / "dino_deitsmall16_pretrain.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(root / "timm.safetensors"))
    head = DINOProjectionHead(192, 64, 32, 16).state_dict()
    old_head = {k.replace("parametrizations.weight.original0", "weight_g")
                .replace("parametrizations.weight.original1", "weight_v"): v for k, v in head.items()}
    torch.save({
        "student": {**{f"module.backbone.{k}": v for k, v in state.items()},
                    **{f"module.head.{k}": v for k, v in old_head.items()}},
        "teacher": {**{f"backbone.{k}": v for k, v in state.items()}, **{f"head.{k}": v for k, v in old_head.items()}},
        "optimizer": {"state": {}, "param_groups": []}, "epoch": 100, "fp16_scaler": None,
        "args": argparse.Namespace(arch="vit_tiny", out_dim=64, lr=0.0005),
        "dino_loss": {"center": torch.full((1, 64), 0.25)},
    }, root / "checkpoint.pth")
    v2 = _vit("vit_small_patch14_reg4_dinov2", img_size=518)
    sd = v2.state_dict()
    cls_pos = torch.randn(1, 1, sd["pos_embed"].shape[-1]) * 0.02
    official = {k: v for k, v in sd.items() if k not in ("reg_token", "pos_embed", "cls_token")}
    official.update(register_tokens=sd["reg_token"], mask_token=torch.zeros(1, 384),
                    cls_token=sd["cls_token"] - cls_pos, pos_embed=torch.cat([cls_pos, sd["pos_embed"]], dim=1))
    torch.save(official, root / "dinov2_vits14_reg4_pretrain.pth")
    return {"vit": vit, "dinov2": v2, **{p.stem: p for p in root.iterdir()}}


@pytest.mark.parametrize("name", ["dino_deitsmall16_pretrain", "timm", "checkpoint"])
def test_a_file_init_exports_the_source_features_while_the_backbone_is_frozen(files, tmp_path, name) -> None:
    """One step (in the frozen-backbone part when the head is fresh; at lr 0 of the warm-up in any case): the teacher
    backbone is still exactly the source model."""
    run = _run(tmp_path, name, files[name], **{"train.max_steps": 1})
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(run.backbone.eval()(x), files["vit"](x))
    report = json.loads((run.run_dir / "init.json").read_text())
    assert report["arch"] == "vit_tiny_patch16_224" and len([k for k in report["loaded"] if k.startswith("backbone.")]) == len(files["vit"].state_dict())
    if name == "checkpoint":  # the full DINO checkpoint brings its head and loss centre
        assert report["kind"] == "DINO training checkpoint" and "dino_loss.center" in report["loaded"]
        assert not report["initialised"] and {"optimizer", "args", "epoch"} <= set(report["ignored"])
    else:
        assert report["initialised"] and all(k.startswith("head.") for k in report["initialised"])
    config = dinomed.load_recipe(run.run_dir / "config.yaml")
    freeze = 0.0 if name == "checkpoint" else 0.1 * TINY["train.epochs"]  # a fresh head: a tenth of the run, at most 1
    assert (config.train.freeze_backbone_epochs, config.optim.layer_decay, config.dino.warmup_teacher_temp_epochs) \
        == (pytest.approx(freeze), 0.75, 0)  # the continued-run defaults, recorded


def test_dinov2_registers_layerscale_and_518px_positions(files, tmp_path) -> None:
    weights = read_init(files["dinov2_vits14_reg4_pretrain"])
    assert weights.kind == "DINOv2 checkpoint" and weights.arch == "vit_small_patch14_reg4_dinov2"
    assert "mask_token" in weights.ignored
    run = _run(tmp_path, "v2", files["dinov2_vits14_reg4_pretrain"], recipe="thermal",
               **{"train.max_steps": 1, "augment.global_size": 56, "augment.local_size": 28})
    report = json.loads((run.run_dir / "init.json").read_text())
    assert any("patch embedding adapted from 3 to 1" in n for n in report["notes"])
    assert any("position embeddings interpolated" in n for n in report["notes"])
    x = torch.rand(2, 1, 56, 56)
    source = _vit("vit_small_patch14_reg4_dinov2", img_size=518, dynamic_img_size=True)
    with torch.no_grad():  # a grey image is R=G=B: the RGB source sees the same picture
        torch.testing.assert_close(run.backbone.eval()(x), source(x.expand(-1, 3, -1, -1)), atol=2e-4, rtol=1e-4)


def test_a_dinomed_run_and_its_export_continue(files, tmp_path) -> None:
    first = _run(tmp_path, "first", None, **{"train.max_steps": 2})
    from_run = read_init(first.run_dir)
    assert from_run.kind == "dinomed run" and from_run.head and from_run.center is not None
    from_export = read_init(first.run_dir / "export")
    assert from_export.kind == "dinomed export" and not from_export.head
    second = _run(tmp_path, "second", first.run_dir, **{"train.max_steps": 1})
    report = json.loads((second.run_dir / "init.json").read_text())
    assert report["kind"] == "dinomed run" and not report["initialised"] and "dino_loss.center" in report["loaded"]


def test_a_continued_run_resumes_exactly_and_logs_the_forgetting_monitor(files, tmp_path) -> None:
    init = files["checkpoint"]
    whole = _run(tmp_path, "whole", init)
    _run(tmp_path, "part", init, **{"train.max_steps": 3})
    resumed = dinomed.pretrain(resume=tmp_path / "runs" / "part", overrides=["train.max_steps=null"], console=QUIET)
    a, b = read_metrics(whole.run_dir / "metrics.jsonl"), read_metrics(resumed.run_dir / "metrics.jsonl")
    losses = lambda records: [(r["step"], r["loss"]) for r in records if "loss" in r]  # noqa: E731
    assert [s for s, _ in losses(a)] == [s for s, _ in losses(b)]
    assert [l for _, l in losses(b)] == pytest.approx([l for _, l in losses(a)], rel=1e-4, abs=1e-5)
    assert a[0]["step"] == 0 and a[0]["cka_init"] == pytest.approx(1.0) and a[0]["cos_init"] == pytest.approx(1.0)
    probed = [r for r in a if "cka_init" in r]
    assert len(probed) >= 3 and all(0.0 <= r["cka_init"] <= 1.0 + 1e-6 for r in probed)


def test_a_head_that_does_not_fit_is_trained_fresh(files, tmp_path) -> None:
    run = _run(tmp_path, "k128", files["checkpoint"], **{"train.max_steps": 1, "model.out_dim": 128})
    report = json.loads((run.run_dir / "init.json").read_text())
    assert report["initialised"] and any("does not fit the recipe's head" in n for n in report["notes"])


def test_bad_init_files_fail_naming_the_file_and_the_keys(files, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pth: model.init weights not found; expected a dinomed run"):
        read_init(tmp_path / "missing.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(ValueError, match="notes.pth: not a readable checkpoint"):
        read_init(text)
    cnn = tmp_path / "resnet.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), cnn)
    with pytest.raises(ValueError, match="no 'patch_embed.proj.weight' \\(is this a ViT\\?\\)"):
        read_init(cnn)
    pickled_code = tmp_path / "code.pth"
    torch.save({"model": Payload()}, pickled_code)  # an arbitrary class: weights_only refuses to build it
    with pytest.raises(ValueError, match="code.pth: not a readable checkpoint"):
        read_init(pickled_code)
    state = torch.load(files["dino_deitsmall16_pretrain"], weights_only=True)
    truncated = tmp_path / "truncated.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("blocks.11.")}, truncated)
    with pytest.raises(ValueError, match=r"truncated.pth: weights do not fit architecture 'vit_tiny_patch16_224' \(missing \['blocks.11.*right file"):
        _run(tmp_path, "truncated", truncated, **{"train.max_steps": 1})
    assert not (tmp_path / "runs" / "truncated").exists()  # a run that could not start leaves nothing behind
    export = tmp_path / "export"
    export.mkdir()
    save_file({k: v.contiguous() for k, v in state.items()}, str(export / "backbone.safetensors"))
    (export / "backbone.json").write_text(json.dumps({"arch": "vit_small_patch16_224", "kwargs": {}}))
    with pytest.raises(ValueError, match=r"backbone.safetensors: weights do not fit .*\(shape mismatch \[.blocks.0.attn.proj.bias: checkpoint \(192,\) vs model \(384,\)"):
        _run(tmp_path, "wrong-width", export, **{"train.max_steps": 1})
