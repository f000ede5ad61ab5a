"""Token layout, extraction and the safetensors cache key."""

from __future__ import annotations

import torch

from dinomed.augment.multicrop import build_eval_transform
from dinomed.eval.features import cache_key, cached_features, extract_features, module_digest, image_tokens
from dinomed.models.backbones import create_backbone


def _vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone("vit_tiny_patch16_224", in_chans=1, img_size=32)[0].eval()


def test_image_tokens_layout() -> None:
    model = _vit()
    with torch.no_grad():
        cls, patches = image_tokens(model, torch.randn(2, 1, 32, 48))
        pooled = model(torch.randn(2, 1, 32, 48) * 0 + 1)
        cls_same, _ = image_tokens(model, torch.ones(2, 1, 32, 48))
    assert cls.shape == (2, 192) and patches.shape == (2, 2, 3, 192)
    assert torch.allclose(pooled, cls_same, atol=1e-5)  # timm's pooled output is the normed CLS token


def test_extract_and_cache_roundtrip(stripes, tmp_path, transform) -> None:
    model = _vit()
    direct = extract_features(model, stripes, transform, batch_size=5)
    assert direct.cls.shape == (24, 192) and direct.labels.tolist() == [i % 3 for i in range(24)]
    first, path, hit = cached_features(model, stripes, transform, cache_dir=tmp_path)
    again, path2, hit2 = cached_features(model, stripes, transform, cache_dir=tmp_path)
    assert (hit, hit2) == (False, True) and path == path2 and path.suffix == ".safetensors"
    assert torch.allclose(again.cls, direct.cls, atol=1e-5) and torch.equal(again.labels, direct.labels)


def test_cache_key_changes_with_weights_records_and_transform(stripes) -> None:
    model = _vit()
    small, large = build_eval_transform("oct", 32, 1), build_eval_transform("oct", 64, 1)
    key = cache_key(model, stripes, small)
    assert cache_key(model, stripes, build_eval_transform("oct", 32, 1)) == key  # same settings, same features
    assert cache_key(model, stripes, large) != key
    assert cache_key(model, stripes.subset(range(10)), small) != key
    digest = module_digest(model)
    with torch.no_grad():
        model.cls_token.add_(1e-3)
    assert module_digest(model) != digest and cache_key(model, stripes, small) != key


class _Shift:
    """A custom transform without a declared ``cache_id``: keyed by its pickled state."""

    def __init__(self, offset: float) -> None:
        self.inner, self.offset = build_eval_transform("oct", 32, 1), offset

    def __call__(self, image, **targets):
        out = self.inner(image, **targets)
        return {**out, "image": out["image"] + self.offset}


def test_a_custom_transform_gets_its_own_features(stripes, tmp_path) -> None:
    """A different transform must never read another one's cached features (the key once ignored it)."""
    model = _vit()
    plain, _, _ = cached_features(model, stripes, _Shift(0.0), cache_dir=tmp_path)
    shifted, path, hit = cached_features(model, stripes, _Shift(0.5), cache_dir=tmp_path)
    assert not hit and not torch.allclose(plain.cls, shifted.cls)
    assert cached_features(model, stripes, _Shift(0.5), cache_dir=tmp_path)[2]  # the same settings hit the cache
    unpicklable = lambda image, **targets: _Shift(0.0)(image, **targets)  # noqa: E731
    features, path, hit = cached_features(model, stripes, unpicklable, cache_dir=tmp_path)
    assert path is None and not hit and torch.allclose(features.cls, plain.cls)
