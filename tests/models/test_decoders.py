"""DPTDecoder and DetailBranch: shapes for ViT and hierarchical strides, gradients, clear errors, ONNX export."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dinomed.models.decoders import DetailBranch, DPTDecoder

VIT_TI = [192] * 4
# name: (dims, strides, (H, W)); maps are ceil(H / stride) x ceil(W / stride)
CASES = {
    "vit16-112": (VIT_TI, [16] * 4, (112, 112)),
    "vit16-224": (VIT_TI, [16] * 4, (224, 224)),
    "vit16-96x160": (VIT_TI, [16] * 4, (96, 160)),
    "vit14-112": (VIT_TI, [14] * 4, (112, 112)),
    "vit8-112": (VIT_TI, [8] * 4, (112, 112)),
    "nat-112": ([64, 128, 256, 512], [4, 8, 16, 32], (112, 112)),
    "nat-100x150": ([64, 128, 256, 512], [4, 8, 16, 32], (100, 150)),
}
MODES = {
    "vit16-112": ["upsample", "upsample", "identity", "downsample"],
    "vit14-112": ["resize"] * 4,
    "vit8-112": ["upsample", "identity", "downsample", "downsample"],
    "nat-112": ["identity"] * 4,
}


def feature_maps(dims: list[int], strides: list[int], size: tuple[int, int], batch: int = 2) -> list[torch.Tensor]:
    return [torch.randn(batch, d, math.ceil(size[0] / s), math.ceil(size[1] / s)) for d, s in zip(dims, strides)]


def small(dims: list[int], strides: list[int], detail: int | None = None, out_channels: int = 2) -> DPTDecoder:
    torch.manual_seed(0)
    return DPTDecoder(dims, strides, hidden=32, out_channels=out_channels, detail=detail)


@pytest.mark.parametrize("detail", [None, 3])
@pytest.mark.parametrize("case", list(CASES))
def test_output_is_full_resolution(case: str, detail: int | None) -> None:
    dims, strides, size = CASES[case]
    decoder = small(dims, strides, detail, out_channels=5)
    image = torch.rand(2, 3, *size) if detail else None
    with torch.no_grad():
        out = decoder(feature_maps(dims, strides, size), size, image=image)
    assert out.shape == (2, 5, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("case", list(MODES))
def test_reassemble_resamples_by_stride_ratio(case: str) -> None:
    dims, strides, _ = CASES[case]
    decoder = small(dims, strides)
    assert [r.mode for r in decoder.reassemble] == MODES[case]
    if case == "vit8-112":  # 8 -> 32 is two stride-2 convs
        assert len(decoder.reassemble[3].resample) == 2


def test_vit_patch_grid_that_floors_is_accepted() -> None:
    """timm's ViT floors (120 px / 16 = 7 patches) while the targets ceil (120 / 32 -> 4)."""
    decoder = small(VIT_TI, [16] * 4, detail=1)
    maps = [torch.randn(1, 192, 7, 7) for _ in range(4)]
    with torch.no_grad():
        assert decoder(maps, (120, 120), image=torch.rand(1, 1, 120, 120)).shape == (1, 2, 120, 120)


def test_detail_branch_halves_and_quarters_odd_sizes() -> None:
    half, quarter = DetailBranch(3)(torch.rand(2, 3, 97, 150))
    assert half.shape == (2, 32, 49, 75) and quarter.shape == (2, 64, 25, 38)


@pytest.mark.parametrize("detail", [None, 3])
def test_gradient_reaches_every_parameter(detail: int | None) -> None:
    dims, strides, size = CASES["vit16-96x160"]
    decoder = small(dims, strides, detail)
    image = torch.rand(2, 3, *size) if detail else None
    decoder(feature_maps(dims, strides, size), size, image=image).sum().backward()
    missing = [name for name, p in decoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    if detail:
        assert any(name.startswith("detail.") for name, _ in decoder.named_parameters())


def test_parameter_counts_for_vit_tiny() -> None:
    """The counts quoted in DPTDecoder's docstring (ViT-Ti dims, stride 16, one output channel)."""
    counts = {(hidden, detail): sum(p.numel() for p in DPTDecoder(VIT_TI, [16] * 4, hidden=hidden, out_channels=1,
                                                                     detail=detail).parameters())
              for hidden in (64, 96, 128) for detail in (None, 3)}
    print({k: f"{v / 1e6:.2f} M" for k, v in counts.items()})
    expected = {(128, None): 3.11, (128, 3): 3.32, (96, None): 1.77, (96, 3): 1.92, (64, None): 0.80, (64, 3): 0.90}
    assert {k: round(v / 1e6, 2) for k, v in counts.items()} == expected


def test_constructor_errors_name_what_was_expected() -> None:
    with pytest.raises(ValueError, match="exactly 4 feature maps; got 3 dims"):
        DPTDecoder([192] * 3, [16] * 3, out_channels=2)
    with pytest.raises(ValueError, match="5 strides"):
        DPTDecoder([192] * 4, [16] * 4 + [32], out_channels=2)
    with pytest.raises(ValueError, match="hidden must be an even integer"):
        DPTDecoder(VIT_TI, [16] * 4, hidden=33, out_channels=2)
    with pytest.raises(ValueError, match="strides must be positive"):
        DPTDecoder(VIT_TI, [16, 16, 0, 16], out_channels=2)


def test_forward_errors_name_what_was_expected() -> None:
    dims, strides, size = CASES["vit16-112"]
    maps = feature_maps(dims, strides, size)
    with_detail = small(dims, strides, detail=3)
    with pytest.raises(ValueError, match="expects 4 feature maps .* got 3"):
        with_detail(maps[:3], size, image=torch.rand(2, 3, *size))
    with pytest.raises(ValueError, match=r"built with detail=3: pass image=\(B, 3, 112, 112\)"):
        with_detail(maps, size)
    with pytest.raises(ValueError, match=r"image must be \(B, 3, 112, 112\), got \(2, 1, 112, 112\)"):
        with_detail(maps, size, image=torch.rand(2, 1, *size))
    with pytest.raises(ValueError, match="no detail branch"):
        small(dims, strides)(maps, size, image=torch.rand(2, 3, *size))
    nat = small([64, 128, 256, 512], [4, 8, 16, 32])
    wrong = feature_maps([64, 128, 256, 512], [16] * 4, size)  # 7x7 maps declared stride 4, 8, ...
    with pytest.raises(ValueError, match="feature map 0 is 7x7, but stride 4 on a 112x112 image gives 28x28"):
        nat(wrong, size)
    with pytest.raises(ValueError, match=r"feature map 2 must be \(B, 192, h, w\), got \(2, 100, 7, 7\)"):
        with_detail([*maps[:2], torch.randn(2, 100, 7, 7), maps[3]], size, image=torch.rand(2, 3, *size))


def test_eval_is_deterministic_and_state_dict_round_trips() -> None:
    dims, strides, size = CASES["vit14-112"]
    maps, image = feature_maps(dims, strides, size), torch.rand(2, 3, *size)
    decoder = small(dims, strides, detail=3)
    decoder.train()
    decoder(maps, size, image=image)  # moves the detail branch's BatchNorm statistics off their start
    decoder.eval()
    with torch.no_grad():
        first, second = decoder(maps, size, image=image), decoder(maps, size, image=image)
        torch.manual_seed(1)
        copy = DPTDecoder(dims, strides, hidden=32, out_channels=2, detail=3)
        assert not torch.equal(copy.eval()(maps, size, image=image), first)
        copy.load_state_dict(decoder.state_dict())
        assert torch.equal(first, second)
        assert torch.equal(copy(maps, size, image=image), first)


class _Exportable(nn.Module):
    """Tensors only in, for the exporter: the image size is part of the graph, the batch is dynamic."""

    def __init__(self, decoder: DPTDecoder, size: tuple[int, int]) -> None:
        super().__init__()
        self.decoder, self.size = decoder, size

    def forward(self, m0: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor, m3: torch.Tensor,
                image: torch.Tensor) -> torch.Tensor:
        return self.decoder([m0, m1, m2, m3], self.size, image=image)


@pytest.mark.filterwarnings("ignore:# The axis name")  # the exporter names the one shared batch axis once
def test_exports_to_onnx_with_a_dynamic_batch(tmp_path) -> None:
    reason = 'ONNX export needs the deploy extra: pip install "dinomed[deploy]"'
    onnxruntime = pytest.importorskip("onnxruntime", reason=reason)
    pytest.importorskip("onnxscript", reason=reason)
    dims, strides, size = CASES["vit16-96x160"]
    model = _Exportable(small(dims, strides, detail=3), size).eval()
    example = (*feature_maps(dims, strides, size), torch.rand(2, 3, *size))  # batch 2: 1 would be specialised
    batch = torch.export.Dim("batch", min=1, max=1024)
    names = ["m0", "m1", "m2", "m3", "image"]
    path = tmp_path / "dpt.onnx"
    torch.onnx.export(model, example, str(path), dynamo=True, verbose=False, input_names=names,
                      output_names=["logits"], dynamic_shapes=tuple({0: batch} for _ in names))
    probe = (*feature_maps(dims, strides, size, batch=3), torch.rand(3, 3, *size))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ours = session.run(None, {n: t.numpy() for n, t in zip(names, probe)})[0]
    with torch.no_grad():
        reference = model(*probe).numpy()
    assert ours.shape == (3, 2, *size)
    np.testing.assert_allclose(ours, reference, atol=1e-4)
