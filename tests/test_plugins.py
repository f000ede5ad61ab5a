"""A modality and a task head registered from outside the package run end to end from a recipe.

Registries are the only source of truth for names (``dinomed.registry``): recipe validation, the augmentation
preset, the head with its loss / metrics / primary metric, saving, loading and prediction all find the plug-ins.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

import dinomed
from dinomed.augment.modalities import Preset
from dinomed.augment.ops import Op
from dinomed.config import ConfigError, option
from dinomed.data.phantoms import write_phantom_dataset
from dinomed.registry import MODALITIES, TASK_HEADS

TINY = {"model.arch": "vit_tiny_patch16_224", "model.out_dim": 64, "model.hidden_dim": 32, "model.bottleneck_dim": 16,
        "augment.global_size": 32, "augment.local_crops": 2, "augment.local_size": 16, "train.batch_size": 4,
        "train.max_steps": 2, "data.num_workers": 0, "train.num_threads": 1, "finetune.image_size": 32,
        "finetune.epochs": 1, "finetune.batch_size": 4}


@dataclass
class UltrasoundPreset(Preset):
    """B-mode ultrasound: speckle-like noise and depth-dependent blur; no flips (probe orientation is known)."""

    mean: ClassVar[tuple[float, ...]] = (0.3,)
    std: ClassVar[tuple[float, ...]] = (0.2,)
    speckle: float = option(0.2, "multiplicative speckle std", min=0)

    def ops(self, kind: str, index: int, channels: int) -> list[Op]:
        return [Op("speckle", p=0.5, params={"sigma": self.speckle}, magnitudes=("sigma",))]


class EdgeHead(dinomed.TaskHead):
    """Binary masks from the last block only: a 1x1 conv on the patch grid."""

    target, primary_metric = "mask", "dice"

    def __init__(self, levels: Any, blocks: list[int], *, num_classes: int = 2) -> None:
        super().__init__(levels, blocks[-1:])
        self.conv = nn.Conv2d(self.dims[-1], num_classes, 1)

    def forward(self, features: Any, images: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.conv(features[-1][0]), size=images.shape[-2:], mode="bilinear", align_corners=False)

    @classmethod
    def options(cls, cfg: Any, num_classes: int | None, channels: int) -> dict[str, Any]:
        return {"num_classes": num_classes or 2}

    @classmethod
    def infer_classes(cls, dataset: Any, indices: Any) -> int:
        return 1 + max(int(np.max(dataset[i]["mask"])) for i in indices)

    @classmethod
    def loss(cls, cfg: Any) -> nn.Module:
        from dinomed.finetuning.losses import SegmentationLoss

        return SegmentationLoss()

    @classmethod
    def metrics(cls, cfg: Any, num_classes: int | None) -> Any:
        from dinomed.finetuning.metrics import SegmentationMetrics

        return SegmentationMetrics(num_classes or 2)


@pytest.fixture
def plugins() -> Iterator[None]:
    dinomed.register_modality("ultrasound")(UltrasoundPreset)
    dinomed.register_head("edges")(EdgeHead)
    yield
    MODALITIES.unregister("ultrasound")
    TASK_HEADS.unregister("edges")


def test_unregistered_names_are_refused_listing_the_registered_ones() -> None:
    with pytest.raises(ConfigError, match=r"key 'modality': expected one of \[.*'oct'.*\], got 'ultrasound'"):
        dinomed.load_recipe({"modality": "ultrasound"})
    with pytest.raises(ConfigError, match=r"key 'finetune.task': expected one of \[.*'seg'.*\], got 'edges'"):
        dinomed.load_recipe({"finetune": {"task": "edges"}})


def test_a_third_party_modality_and_head_run_from_a_recipe(plugins, tmp_path: Path) -> None:
    manifest = write_phantom_dataset("oct", tmp_path / "scans", 24, size=(32, 32))
    recipe = {"name": "us", "modality": "ultrasound",
              "data": {"source": "manifest", "manifest": str(manifest), "channels": 1},
              "finetune": {"task": "edges"}}
    quiet = Console(quiet=True)
    run = dinomed.pretrain(recipe, quick=True, console=quiet,
                           overrides={**TINY, "train.output_dir": str(tmp_path / "runs"), "train.run_name": "us"})
    assert run.metrics["finished"] and dinomed.load_recipe(run.run_dir / "config.yaml").modality == "ultrasound"
    seg = dinomed.finetune(recipe, backbone=run.run_dir, labels=8, quick=True, out=tmp_path / "edges",
                           overrides=TINY, console=quiet)
    assert seg.metrics["task"] == "edges" and 0.0 <= seg.metrics["test"]["dice"] <= 1.0
    model = dinomed.load_model(seg.run_dir)
    assert isinstance(model.head, EdgeHead)
    mask = model.predict(np.random.default_rng(0).random((32, 32, 1)).astype(np.float32))
    assert mask.shape == (32, 32)
