"""Recipe section ``finetune``: task head, adaptation mode (LoRA / full / frozen), optimisation, stopping.

The split and the labelled budget live in the ``data`` section (``data.labelled``, ``data.val_fraction``, ...)
so pretraining, evaluation and fine-tuning share one grouped split.
"""

from __future__ import annotations

from dataclasses import dataclass

from dinomed.config import option
from dinomed.registry import TASK_HEADS

DECODERS = ("fusion", "dpt")  # the dense heads' decoders (dinomed.finetuning.heads.DenseDecoder)

MODES = ("lora", "full", "frozen")


@dataclass
class FinetuneConfig:
    """Defaults follow Surgical-DINO (LoRA rank 4 on attention, 4 evenly spaced blocks, 256 depth bins)."""

    task: str = option("seg", "task head: seg (masks), depth (metric depth maps), cls (image labels) or any "
                       "registered head", choices=TASK_HEADS)
    mode: str = option("lora", "lora: adapters + head; full: every weight; frozen: head only (linear probe)",
                       choices=MODES)
    backbone: str = option("random", "pretrain run dir, export folder, checkpoint file, or 'random'")
    arch: str | None = option(None, "timm architecture; default: stored with the backbone, else model.arch")
    image_size: int = option(224, "side of the square input (a patch-size multiple)", min=16)
    blocks: list[int] | None = option(None, "backbone blocks the head reads; default 4 evenly spaced (last for cls)")
    lora_targets: list[str] = option(["k", "v"], "block Linear layers with adapters: q, k, v, qkv, proj, fc1, fc2")
    lora_r: int = option(4, "LoRA rank (Hu et al.: 4)", min=1)
    lora_alpha: float = option(4.0, "LoRA scale numerator: update = alpha / r * B A", min=0.0)
    lora_dropout: float = option(0.0, "dropout on the LoRA input", min=0.0, max=1.0)
    num_classes: int | None = option(None, "classes incl. background (seg) or labels (cls); default from the data",
                                     min=2)
    depth_bins: int = option(256, "linearly spaced depth bins of the depth head", min=2)
    min_depth: float = option(1e-3, "smallest depth predicted and evaluated, in the data's depth units", min=0.0)
    max_depth: float = option(10.0, "largest depth predicted and evaluated (data units); larger ground truth ignored",
                              min=0.0)
    gradient_weight: float = option(0.5, "weight of the gradient-matching term next to SiLog", min=0.0)
    head_hidden: int = option(128, "channels of the seg/depth decoder (the cls head is linear)", min=2)
    decoder: str = option(
        "fusion", "seg/depth decoder: fusion (the blocks' maps concatenated, one x4 upsample: cheap) or dpt (DPT's "
        "reassemble-and-fuse pyramid at 1/4..1/32, Ranftl et al. 2021)", choices=DECODERS)
    detail: bool = option(
        False, "a detail branch: a small strided conv stem on the input image whose 1/2 and 1/4 maps join DPT's last "
        "fusion steps, so edges come from pixels (decoder dpt; trained with the head)")
    augment: bool = option(True, "paired training augmentation from the modality preset (geometry moves image and "
                           "mask/depth together; strength: augment.strength); false = the eval transform only")
    epochs: int = option(50, "maximum epochs over the labelled train images", min=1)
    max_steps: int | None = option(None, "stop after this many optimiser steps (smoke runs)", min=1)
    max_minutes: float | None = option(None, "stop training after this many wall-clock minutes (at the next step; "
                                       "the epoch is still validated): equal-time comparisons", min=0.0)
    batch_size: int = option(8, "images per step", min=1)
    lr: float = option(1e-3, "learning rate of the head and adapters (AdamW, cosine)", min=0.0)
    backbone_lr: float = option(1e-5, "learning rate of backbone weights in mode 'full'", min=0.0)
    weight_decay: float = option(1e-4, "AdamW weight decay", min=0.0)
    patience: int = option(10, "epochs without validation improvement before stopping", min=1)
    val_every: int = option(1, "epochs between validations and checkpoints; the last epoch is always validated. "
                            "Raise it when the labelled set is tiny and an epoch is a few steps", min=1)
    seed: int = option(0, "seed of head/adapter init and data order")
    output_dir: str = option("runs", "parent folder of run directories")
    run_name: str | None = option(None, "run directory name; default <recipe>-<task>-<mode>-<timestamp>")

    def __post_init__(self) -> None:
        if self.min_depth >= self.max_depth:
            raise ValueError(f"min_depth ({self.min_depth}) must be below max_depth ({self.max_depth})")
        if self.detail and self.decoder != "dpt":
            raise ValueError("detail: true needs decoder: dpt (the branch joins DPT's finest fusion steps)")
        if self.mode == "lora" and not self.lora_targets:
            raise ValueError("mode 'lora' needs at least one lora_targets entry, e.g. [k, v]")
