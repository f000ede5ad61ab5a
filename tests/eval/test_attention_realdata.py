"""Attention-mask Jaccard on real CVC-ClinicDB polyp frames (random-init ViT-Ti: the pipeline runs end to end and
gives a baseline a pretrained backbone must beat)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dinomed.data.records import ImageDataset, Record
from dinomed.eval.attention import attention_jaccard
from dinomed.models.backbones import create_backbone


class _CVCFrames(ImageDataset):
    """One frame from each of the first ``count`` sequences of CVC-ClinicDB's index.csv, with its polyp mask."""

    modality = "endoscopy"

    def __init__(self, root: Path, count: int) -> None:
        with open(root / "index.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        first = {}
        for row in rows:
            first.setdefault(row["sequence"], row)
        self.records = [Record(image=str(root / r["image"]), mask=str(root / r["mask"]), group=r["sequence"])
                        for r in list(first.values())[:count]]

    def load(self, record: Record) -> dict[str, Any]:
        image = np.asarray(Image.open(record.image).convert("RGB"), dtype=np.float32) / 255.0
        mask = (np.asarray(Image.open(record.mask).convert("L")) > 127).astype(np.int64)
        return {"image": image, "mask": mask, "meta": {"path": record.image}}


@pytest.mark.realdata
def test_cvc_polyp_jaccard_random_init(shared_data: Path) -> None:
    from dinomed.augment import build_eval_transform

    dataset = _CVCFrames(shared_data / "endoscopy" / "cvc-clinicdb", count=4)
    model, _ = create_backbone("vit_tiny_patch16_224", in_chans=3, img_size=64)
    out = attention_jaccard(model, dataset, build_eval_transform("endoscopy", 64, 3), keep=0.6)
    assert out["num_images"] == 4 and len(out["per_head"]) == 3
    assert 0.0 < out["union_jaccard"] <= 1.0 and out["best_head_jaccard"] == max(out["per_head"])
