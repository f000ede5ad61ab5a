"""Attention-mask Jaccard on real CVC-ClinicDB polyp frames read through the recipe's data layer (manifest source,
grouped by video sequence): the pipeline runs end to end and gives the random-init baseline a pretrained backbone
must beat (benchmarks/bench_eval.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dinomed.augment.multicrop import build_eval_transform
from dinomed.data.datasets import build_dataset
from dinomed.data.splits import splits_for
from dinomed.eval.attention import attention_jaccard
from dinomed.eval.evaluate import eval_backbone
from dinomed.report.visuals import spread_indices
from dinomed.recipe import load_recipe


@pytest.mark.realdata
def test_cvc_polyp_jaccard_random_init(shared_data: Path) -> None:
    manifest = shared_data / "endoscopy" / "cvc-clinicdb" / "index.csv"
    recipe = load_recipe("endoscopy", overrides=["data.source=manifest", f"data.manifest={manifest}",
                                       "data.columns={group: sequence}", "augment.global_size=64"], quick=True)
    dataset = build_dataset(recipe.data, recipe.modality)
    assert len(dataset) == 612 and len(set(dataset.groups())) == 29 and dataset.has("mask")
    test = splits_for(dataset, recipe.data)["test"]
    frames = dataset.subset([test[i] for i in spread_indices(len(test), 4)])
    model, _ = eval_backbone("random", recipe)
    out = attention_jaccard(model, frames, build_eval_transform("endoscopy", 64, 3), keep=0.6)
    assert out["num_images"] == 4 and len(out["per_head"]) == 3  # ViT-Ti: 3 heads
    assert 0.0 < out["union_jaccard"] <= 1.0 and out["best_head_jaccard"] == max(out["per_head"])
