"""Token layout, extraction and the safetensors cache key."""

from __future__ import annotations

import torch

from dinomed.eval.features import cache_key, cached_features, extract_features, module_digest, vit_tokens
from dinomed.models.backbones import create_backbone


def _vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone("vit_tiny_patch16_224", in_chans=1, img_size=32)[0].eval()


def test_vit_tokens_layout() -> None:
    model = _vit()
    with torch.no_grad():
        cls, patches = vit_tokens(model, torch.randn(2, 1, 32, 48))
        pooled = model(torch.randn(2, 1, 32, 48) * 0 + 1)
        cls_same, _ = vit_tokens(model, torch.ones(2, 1, 32, 48))
    assert cls.shape == (2, 192) and patches.shape == (2, 2, 3, 192)
    assert torch.allclose(pooled, cls_same, atol=1e-5)  # timm's pooled output is the normed CLS token


def test_extract_and_cache_roundtrip(stripes, tmp_path, transform) -> None:
    model = _vit()
    direct = extract_features(model, stripes, transform, batch_size=5)
    assert direct.cls.shape == (24, 192) and direct.labels.tolist() == [i % 3 for i in range(24)]
    first, path, hit = cached_features(model, stripes, transform, "t", cache_dir=tmp_path)
    again, path2, hit2 = cached_features(model, stripes, transform, "t", cache_dir=tmp_path)
    assert (hit, hit2) == (False, True) and path == path2 and path.suffix == ".safetensors"
    assert torch.allclose(again.cls, direct.cls, atol=1e-5) and torch.equal(again.labels, direct.labels)


def test_cache_key_changes_with_weights_records_and_transform(stripes) -> None:
    model = _vit()
    key = cache_key(model, stripes, "eval:oct:32:1")
    assert cache_key(model, stripes, "eval:oct:64:1") != key
    assert cache_key(model, stripes.subset(range(10)), "eval:oct:32:1") != key
    digest = module_digest(model)
    with torch.no_grad():
        model.cls_token.add_(1e-3)
    assert module_digest(model) != digest and cache_key(model, stripes, "eval:oct:32:1") != key
