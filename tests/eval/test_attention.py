"""Attention weights against timm's own unfused path, mass masks by hand, Jaccard, and the CNN error."""

from __future__ import annotations

import pytest
import timm
import torch

from dinomed.eval.attention import attention_jaccard, jaccard, last_block_attention, mass_masks, upsample
from dinomed.models.backbones import create_backbone


@pytest.fixture(scope="module")
def vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone("vit_tiny_patch16_224", in_chans=1, img_size=64)[0].eval()


def test_matches_timm_unfused_attention(vit: torch.nn.Module) -> None:
    images = torch.randn(2, 1, 48, 64)
    ours = last_block_attention(vit, images)
    attn = vit.blocks[-1].attn
    captured = {}
    handle = attn.attn_drop.register_forward_hook(lambda m, i, o: captured.setdefault("w", o))
    attn.fused_attn = False
    try:
        with torch.no_grad():
            vit.forward_features(images)
    finally:
        attn.fused_attn = True
        handle.remove()
    reference = captured["w"][:, :, 0, 1:].reshape(2, attn.num_heads, 3, 4)
    assert ours.shape == (2, 3, 3, 4)
    assert torch.allclose(ours, reference, atol=1e-6)


def test_mass_mask_keeps_smallest_top_set() -> None:
    attn = torch.tensor([[0.5, 0.05], [0.3, 0.15]])  # sorted: 0.5, 0.3, 0.15, 0.05
    assert mass_masks(attn, keep=0.6).tolist() == [[True, False], [True, False]]  # 0.5 < 0.6, 0.8 reaches it
    assert mass_masks(attn, keep=0.5).tolist() == [[True, False], [False, False]]
    assert mass_masks(attn, keep=1.0).all()


def test_mass_mask_is_scale_free_and_batched() -> None:
    attn = torch.rand(2, 3, 4, 4)
    assert torch.equal(mass_masks(attn), mass_masks(attn * 7))
    kept = (attn * mass_masks(attn)).flatten(-2).sum(-1) / attn.flatten(-2).sum(-1)
    assert (kept >= 0.6).all()


def test_jaccard_and_upsample() -> None:
    a = torch.tensor([[1, 1, 0, 0]], dtype=torch.bool)
    b = torch.tensor([[0, 1, 1, 0]], dtype=torch.bool)
    assert jaccard(a, b) == pytest.approx(1 / 3)
    assert jaccard(torch.zeros(2, 2), torch.zeros(2, 2)) == 1.0
    up = upsample(torch.tensor([[[[True, False]]]]), (2, 4))
    assert up.dtype == torch.bool and up[0, 0].tolist() == [[True, True, False, False]] * 2


def test_cnn_backbone_gives_clear_error() -> None:
    cnn = timm.create_model("resnet10t", pretrained=False, num_classes=0)
    with pytest.raises(ValueError, match="no ViT self-attention.*not a CNN"):
        last_block_attention(cnn, torch.randn(1, 3, 32, 32))


def test_attention_jaccard_on_tiny_masked_set(vit: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    samples = [{"image": torch.rand(32, 32, 1, generator=gen).numpy(),
                "mask": (torch.arange(32)[:, None] < 16).expand(32, 32).long().numpy()} for _ in range(2)]

    def transform(image, mask=None):
        return {"image": torch.as_tensor(image).permute(2, 0, 1), "mask": torch.as_tensor(mask)}

    out = attention_jaccard(vit, samples, transform, keep=0.6)
    assert len(out["per_head"]) == 3 and 0.0 <= out["best_head_jaccard"] <= 1.0
    assert out["best_head_jaccard"] == max(out["per_head"]) and out["num_images"] == 2
