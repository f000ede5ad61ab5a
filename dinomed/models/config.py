"""Recipe section ``model``: the timm ViT backbone and the DINO projection head."""

from __future__ import annotations

from dataclasses import dataclass

from dinomed.config import option


@dataclass
class ModelConfig:
    """Backbone architecture (any timm ViT name) and DINO head sizes (paper defaults)."""

    arch: str = option("vit_small_patch16_224", "timm model name of a ViT")
    drop_path_rate: float = option(0.1, "stochastic depth rate of the student", min=0.0, max=1.0)
    out_dim: int = option(65536, "DINO head output dimension K", min=2)
    hidden_dim: int = option(2048, "DINO head MLP hidden width", min=1)
    bottleneck_dim: int = option(256, "DINO head bottleneck before the weight-normalised layer", min=1)
    norm_last_layer: bool = option(True, "fix the weight-norm gain of the last layer to 1 (stabilises ViT-S)")
    use_bn_in_head: bool = option(False, "BatchNorm in the head MLP")
    init: str | None = option(
        None, "continued pretraining: start student and teacher from these local weights (a dinomed run or export, "
        "a timm checkpoint, an official DINO *_pretrain.pth or full checkpoint, a DINOv2 file); the architecture "
        "comes from the weights. Sets the continued-run defaults of train.freeze_backbone_epochs, optim.layer_decay "
        "and dino.warmup_teacher_temp_epochs")
