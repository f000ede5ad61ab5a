"""Student and teacher networks: ViT backbone + DINO head, run once per crop resolution."""

from __future__ import annotations

import copy
from itertools import groupby

import torch
from torch import nn

from dinomed.models.backbones import BackboneSpec, create_backbone
from dinomed.models.config import ModelConfig
from dinomed.models.heads import DINOProjectionHead


class MultiCropNetwork(nn.Module):
    """Backbone + projection head over a list of crops.

    Crops of equal resolution are concatenated and run through the backbone in one call (as the reference
    ``MultiCropWrapper``), then all CLS embeddings go through the head in one call. Returns per-crop head
    outputs and the per-crop CLS embeddings (the collapse monitor reads the teacher's).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, crops: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        embeddings = []
        for _, same_size in groupby(crops, key=lambda c: c.shape[-2:]):
            batch = list(same_size)
            embeddings.append(self.backbone(torch.cat(batch)) if len(batch) > 1 else self.backbone(batch[0]))
        cls = torch.cat(embeddings)
        logits = self.head(cls)
        sizes = [c.shape[0] for c in crops]
        return list(logits.split(sizes)), list(cls.split(sizes))


def build_student_teacher(
    cfg: ModelConfig, *, in_chans: int, img_size: int
) -> tuple[MultiCropNetwork, MultiCropNetwork, BackboneSpec]:
    """Student (with stochastic depth) and a teacher starting as its exact copy; the teacher gets no gradients."""
    backbone, spec = create_backbone(cfg.arch, in_chans=in_chans, img_size=img_size, drop_path_rate=cfg.drop_path_rate)
    head = DINOProjectionHead(
        backbone.num_features,
        cfg.out_dim,
        cfg.hidden_dim,
        cfg.bottleneck_dim,
        use_bn=cfg.use_bn_in_head,
        norm_last_layer=cfg.norm_last_layer,
    )
    student = MultiCropNetwork(backbone, head)
    teacher = copy.deepcopy(student)
    for module in teacher.modules():  # the teacher never drops paths (reference: built with drop_path_rate 0)
        if hasattr(module, "drop_prob"):
            module.drop_prob = 0.0
    for param in teacher.parameters():
        param.requires_grad_(False)
    return student, teacher, spec
