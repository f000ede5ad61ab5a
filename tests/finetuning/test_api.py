"""End-to-end fine-tuning on tiny phantoms: modes, artefacts, load/predict, merge, resume and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dinomed.api import finetune, load_model, merge
from dinomed.models.backbones import load_backbone



@pytest.fixture(scope="module")
def seg_run(tmp_path_factory, tiny: list[str]) -> Path:
    out = tmp_path_factory.mktemp("runs") / "seg"
    return finetune("endoscopy", task="seg", labels=0.5, overrides=tiny, out=out).run_dir


def test_lora_run_writes_peft_adapters_and_metrics(seg_run: Path) -> None:
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (seg_run / "model" / "adapter").iterdir()}
    assert (seg_run / "model" / "head.safetensors").is_file() and (seg_run / "splits.json").is_file()
    metrics = json.loads((seg_run / "metrics.json").read_text())
    assert metrics["labelled"] == 4 and 0 <= metrics["test"]["dice"] <= 1
    assert metrics["parameters"]["trainable"] < metrics["parameters"]["total"] / 10
    assert len((seg_run / "metrics.jsonl").read_text().splitlines()) == 2
    state = torch.load(seg_run / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 2


def test_load_model_predicts_and_refuses_other_channels(seg_run: Path) -> None:
    model = load_model(seg_run)
    mask = model.predict(np.random.default_rng(0).random((40, 48, 3), dtype=np.float32))
    assert mask.shape == (40, 48) and mask.dtype == np.int64
    with pytest.raises(ValueError, match=r"expects \(H, W, 3\)"):
        model.predict(np.zeros((40, 48, 1), np.float32))
    with pytest.raises(ValueError, match="expected float values in \\[0, 1\\]"):
        model.predict(np.zeros((40, 48, 3), np.uint16))


def test_merge_matches_adapted_backbone(seg_run: Path, tmp_path: Path) -> None:
    model = load_model(seg_run)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        adapted = model.vit(x)
        merged = load_backbone(merge(seg_run, tmp_path / "merged")).eval()
        torch.testing.assert_close(merged(x), adapted, atol=1e-5, rtol=0)
    with pytest.raises(FileExistsError, match="nothing was overwritten"):
        merge(seg_run, tmp_path / "merged")


def test_existing_run_is_not_overwritten(seg_run: Path, tiny: list[str]) -> None:
    with pytest.raises(FileExistsError, match="already holds a run"):
        finetune("endoscopy", task="seg", overrides=tiny, out=seg_run)


@pytest.mark.parametrize("labels,message", [(10_000, "larger than"), (0, "positive count")])
def test_bad_label_budget(tmp_path: Path, tiny: list[str], labels, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        finetune("endoscopy", task="seg", labels=labels, overrides=tiny, out=tmp_path / "run")


def test_task_without_targets_and_unknown_lora_target(tmp_path: Path, tiny: list[str]) -> None:
    with pytest.raises(ValueError, match="task 'depth' needs a depth"):
        finetune("oct", task="depth", overrides=tiny, out=tmp_path / "a")
    with pytest.raises(ValueError, match=r"\['query'\] match no Linear.*available"):
        finetune("endoscopy", task="seg", overrides=[*tiny, "finetune.lora_targets=[query]"], out=tmp_path / "b")


def test_not_a_checkpoint_backbone(tmp_path: Path, tiny: list[str]) -> None:
    bad = tmp_path / "weights.pth"
    bad.write_text("not weights")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        finetune("endoscopy", task="seg", backbone=str(bad), overrides=tiny, out=tmp_path / "run")


@pytest.mark.parametrize("task", ["seg", "depth"])
def test_dpt_with_detail_trains_saves_and_merges(tmp_path: Path, tiny: list[str], task: str) -> None:
    run = finetune("endoscopy", task=task, labels=0.5, out=tmp_path / "run",
                   overrides=[*tiny, "finetune.decoder=dpt", "finetune.detail=true", "finetune.head_hidden=16"])
    counts = run.metrics["parameters"]
    assert counts["detail"] > 0 and counts["lora"] > 0 and counts["backbone_trained"] == 0
    assert counts["trainable"] == counts["lora"] + counts["head"]
    assert counts["total"] == counts["trainable"] + counts["backbone_frozen"]
    model = load_model(run.run_dir)
    assert model.info["head"]["decoder"] == "dpt" and model.info["head"]["detail"] == 3
    x = torch.rand(2, 3, 32, 48)
    merged = load_backbone(merge(run.run_dir, tmp_path / "merged")).eval()
    with torch.no_grad():
        adapted = model(x)
        model.backbone = merged  # the same head on the merged plain ViT
        torch.testing.assert_close(model(x), adapted, atol=1e-4, rtol=1e-4)
    assert adapted.shape[-2:] == (32, 48)


def test_detail_needs_the_dpt_decoder(tmp_path: Path, tiny: list[str]) -> None:
    with pytest.raises(ValueError, match="detail: true needs decoder: dpt"):
        finetune("endoscopy", task="seg", overrides=[*tiny, "finetune.detail=true"], out=tmp_path / "run")
    with pytest.raises(ValueError, match="decoder.*fusion.*dpt|fusion, dpt|'fusion', 'dpt'"):
        finetune("endoscopy", task="seg", overrides=[*tiny, "finetune.decoder=unet"], out=tmp_path / "run2")
    with pytest.raises(ValueError, match=r"decoder dpt fuses 4 levels.*finetune.blocks"):
        finetune("endoscopy", task="seg", overrides=[*tiny, "finetune.decoder=dpt", "finetune.blocks=[5, 11]"],
                 out=tmp_path / "run3")
