"""q/k/v split, LoRA via peft, adapter save/load in PEFT's format, and merging back to a plain timm ViT."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from dinomed.models.backbones import create_backbone
from dinomed.models.lora import (
    LoraSettings,
    SplitQKVAttention,
    apply_lora,
    fuse_qkv_state,
    load_lora,
    merge_lora,
    split_qkv,
)

ARCH = "vit_tiny_patch16_224"


def _tiny(seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = timm.create_model(ARCH, img_size=32, num_classes=0, depth=2, dynamic_img_size=True, **kwargs)
    return model.eval()


@pytest.mark.parametrize("fused", [True, False])
def test_split_keeps_outputs(fused: bool) -> None:
    model = _tiny()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for block in model.blocks:  # the same attention kernel on both sides
            block.attn.fused_attn = fused
        reference = model(x)
        split_qkv(model)
        assert all(block.attn.fused_attn == fused for block in model.blocks)
        assert isinstance(model.blocks[0].attn, SplitQKVAttention)
        torch.testing.assert_close(model(x), reference, atol=1e-6, rtol=0)


def test_split_keeps_qk_norm_layers() -> None:
    model = _tiny(qk_norm=True)
    with torch.no_grad():
        for block in model.blocks:  # non-trivial norms so a dropped norm would change the output
            block.attn.q_norm.weight.uniform_(0.5, 1.5)
            block.attn.k_norm.bias.uniform_(-0.5, 0.5)
        x = torch.randn(2, 3, 32, 32)
        reference = model(x)
        split_qkv(model)
        torch.testing.assert_close(model(x), reference, atol=1e-6, rtol=0)


def test_fused_state_loads_into_plain_timm() -> None:
    model = _tiny()
    plain = _tiny(seed=1)
    plain.load_state_dict(fuse_qkv_state(split_qkv(_tiny()).state_dict()))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("targets,expected", [
    (("k", "v"), {"k", "v"}), (("q", "v"), {"q", "v"}), (("q", "k", "v"), {"q", "k", "v"}), (("fc1", "fc2"), {"fc1", "fc2"}),
])
def test_only_adapters_of_chosen_targets_train(targets, expected) -> None:
    peft_model = apply_lora(_tiny(), LoraSettings(targets=targets, r=4, alpha=8, dropout=0.1))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable} == expected
    # rank 4 adapters on 2 blocks, each target a 192x192 (attention) or 192x768 (MLP) layer
    per_layer = {"q": 4 * 384, "k": 4 * 384, "v": 4 * 384, "fc1": 4 * (192 + 768), "fc2": 4 * (768 + 192)}
    assert sum(peft_model.get_nb_trainable_parameters()[:1]) == 2 * sum(per_layer[t] for t in targets)
    lora = peft_model.peft_config["default"]
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (4, 8, 0.1)


def test_unknown_target_lists_available_layers() -> None:
    with pytest.raises(ValueError, match=r"\['query'\] match no Linear.*available: fc1, fc2, k, proj, q, v"):
        apply_lora(_tiny(), LoraSettings(targets=("query", "v")))


def _trained_adapters(targets: tuple[str, ...]) -> torch.nn.Module:
    peft_model = apply_lora(_tiny(), LoraSettings(targets=targets))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # peft initialises B to zero; make the update non-trivial
                param.normal_(0, 0.1)
    return peft_model.eval()


def test_adapters_round_trip_in_peft_format(tmp_path: Path) -> None:
    peft_model = _trained_adapters(("k", "v"))
    peft_model.save_pretrained(tmp_path / "adapter")
    assert {p.name for p in (tmp_path / "adapter").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    reloaded = load_lora(_tiny(), str(tmp_path / "adapter")).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), peft_model(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("targets", [("k", "v"), ("q", "k", "v", "fc1")])
def test_merge_matches_adapted_model(targets) -> None:
    peft_model = _trained_adapters(targets)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        adapted = peft_model(x)
        plain = _tiny(seed=3)
        plain.load_state_dict(merge_lora(peft_model))
        torch.testing.assert_close(plain(x), adapted, atol=1e-5, rtol=0)


def test_create_backbone_split_keeps_spec_arch() -> None:
    model, spec = create_backbone(ARCH, img_size=32)
    split_qkv(model)
    assert spec.arch == ARCH and not any(n.endswith("attn.qkv") for n, _ in model.named_modules())
