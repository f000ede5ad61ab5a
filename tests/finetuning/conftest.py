"""Tiny fine-tuning settings shared by the tests: ViT-Ti at 32 px on a couple dozen phantom images (~2 s a run)."""

from __future__ import annotations

import pytest

TINY_OVERRIDES = ("finetune.image_size=32", "finetune.epochs=2", "finetune.batch_size=4", "data.phantom.count=24",
                  "data.phantom.size=[32,32]", "data.num_workers=0", "finetune.depth_bins=16",
                  "model.arch=vit_tiny_patch16_224")


@pytest.fixture(scope="session")
def tiny() -> list[str]:
    """``--set`` overrides of a tiny fine-tuning run."""
    return list(TINY_OVERRIDES)
