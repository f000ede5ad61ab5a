"""Registry of modality presets: what a DINO view of an OCT / endoscopy / thermal / natural image may look like.

A preset is a dataclass whose fields are its tunable parameters (overridable from a recipe's ``augment.params``)
and whose :meth:`Preset.ops` lists the :class:`~dinomed.augment.ops.Op` steps applied after the random-resized
crop of each view. Presets are registered timm-style and built through :func:`get_preset`::

    preset = get_preset("oct", {"rotate_limit": 5})
    ops = preset.ops("global", 0, channels=1)
    mean, std = preset.normalization(channels=1)

Each preset's docstring says why it departs from DINO's natural-image recipe (Caron et al., ICCV 2021), which
``natural`` reproduces as the baseline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from dinomed.augment.ops import Op
from dinomed.config import from_dict, option
from dinomed.registry import MODALITIES

__all__ = [
    "Preset",
    "register_modality",
    "get_preset",
    "available_modalities",
    "normalization",
    "OCTPreset",
    "EndoscopyPreset",
    "ThermalPreset",
    "NaturalPreset",
]

ViewKind = Literal["global", "local"]
P = TypeVar("P", bound="Preset")

# ITU-R BT.601 luma weights: how a 3-channel mean/std folds into one channel.
_LUMA = (0.299, 0.587, 0.114)


def register_modality(name: str) -> Callable[[type[P]], type[P]]:
    """Class decorator adding a preset to the registry under ``name`` (the recipe's ``modality``)."""
    return MODALITIES.register(name)


def available_modalities() -> list[str]:
    """Names of the registered presets."""
    return MODALITIES.names()


def get_preset(name: str, params: Mapping[str, Any] | None = None) -> Preset:
    """The preset registered as ``name`` with ``params`` (``augment.params``) replacing its defaults."""
    cls = MODALITIES.get(name)
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in params or {}:
        if key not in valid:
            raise ValueError(
                f"augment.params.{key}: unknown parameter for the '{name}' preset; valid parameters are {valid}"
            )
    return from_dict(cls, dict(params or {}), source=f"augment.params ({name} preset)", prefix="augment.params")


def normalization(modality: str, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel ``(mean, std)`` of ``modality`` for a ``channels``-channel input."""
    return get_preset(modality).normalization(channels)


def _prob(value: float, key: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{key} must be a probability in [0, 1], got {value}")


@dataclass
class Preset:
    """Base of all presets: parameters as fields, ops per view, normalisation constants and crop-scale defaults.

    ``mean``/``std`` are given for the preset's native channel count (3 = RGB, 1 = single channel) and adapted by
    :meth:`normalization`. ``global_scale``/``local_scale`` are used when the recipe leaves
    ``augment.global_scale``/``augment.local_scale`` null; an explicit recipe value always wins.
    """

    name: ClassVar[str] = ""
    mean: ClassVar[tuple[float, ...]] = ()
    std: ClassVar[tuple[float, ...]] = ()
    global_scale: ClassVar[tuple[float, float]] = (0.4, 1.0)  # DINO's global_crops_scale
    local_scale: ClassVar[tuple[float, float]] = (0.05, 0.4)  # DINO's local_crops_scale
    foreground: ClassVar[float] = 0.0  # least foreground fraction of a crop (0 = plain random-resized crops)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_p"):
                for v in value if isinstance(value, tuple) else (value,):
                    _prob(v, f.name)

    def ops(self, kind: ViewKind, index: int, channels: int) -> list[Op]:
        """Ops applied after the crop of global view ``index`` (``kind='global'``) or of a local view."""
        raise NotImplementedError  # pragma: no cover - every registered preset implements it

    def normalization(self, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` with ``channels`` entries: RGB constants fold to luma, one-channel ones repeat."""
        mean, std = self.mean, self.std
        if len(mean) == 3 and channels == 1:
            mean = (sum(w * m for w, m in zip(_LUMA, mean)),)
            std = (sum(w * s for w, s in zip(_LUMA, std)),)
        elif len(mean) == 1 and channels == 3:
            mean, std = mean * 3, std * 3
        return tuple(mean), tuple(std)


def _per_view(values: tuple[float, float, float], kind: ViewKind, index: int) -> float:
    """DINO's view asymmetry: ``values`` = (first global, other globals, locals)."""
    if kind == "local":
        return values[2]
    return values[0] if index == 0 else values[1]


def _blur(sigma: tuple[float, float], p: float) -> Op:
    return Op("gaussian_blur", p=p, params={"sigma": sigma})


@register_modality("oct")
@dataclass
class OCTPreset(Preset):
    """Retinal OCT B-scans (grayscale).

    Why it differs from DINO:

    * no vertical flip and only a small rotation: the retinal layer order (vitreous above, choroid below) is
      anatomy, and B-scans are acquired nearly level; a left-right flip only swaps nasal/temporal, which is
      what the other eye looks like;
    * no colour jitter, grayscale or solarize: there is no colour, and solarize inverts the layer reflectivity
      that defines OCT findings; gamma / contrast stand in for device gain and display settings;
    * multiplicative speckle noise: speckle level varies with device and averaging (ART frames), and the
      model should not key on it;
    * milder blur: sigma up to 1 px keeps thin layers (RPE, ELM) visible;
    * larger smallest local crop (10 % of the area vs 5 %) and foreground-aware crops (at least 30 % of every
      crop above the scan's Otsu threshold): the retina fills about a third of a B-scan's height, and plain crops
      often land in the empty vitreous or below the choroid (seen in previews). A speckle-only view gives DINO
      nothing to match with the other views except "all images look alike", which drove short runs on the OCT
      phantom into uniform collapse.

    Mean/std: measured on the shared Kermany + OCTDL B-scans.
    """

    mean: ClassVar[tuple[float, ...]] = (0.237,)
    std: ClassVar[tuple[float, ...]] = (0.201,)
    local_scale: ClassVar[tuple[float, float]] = (0.1, 0.4)
    foreground: ClassVar[float] = 0.3

    hflip_p: float = option(0.5, "left-right flip probability (nasal/temporal mirror)")
    rotate_limit: float = option(10.0, "largest rotation in degrees; small, the layer order must stay", min=0, max=30)
    rotate_p: float = option(0.5, "rotation probability")
    gamma_amount: float = option(0.3, "gamma drawn from [1 - amount, 1 + amount]", min=0, max=0.95)
    brightness: float = option(0.1, "additive brightness range (+-)", min=0)
    contrast: float = option(0.3, "contrast range (+-)", min=0)
    intensity_p: float = option(0.8, "probability of the gamma and of the brightness/contrast change")
    speckle_sigma: float = option(0.25, "std of the unit-mean multiplicative speckle", min=0)
    speckle_p: float = option(0.5, "speckle probability")
    blur_sigma: tuple[float, float] = option((0.1, 1.0), "Gaussian blur sigma range in pixels", min=0)
    blur_p: tuple[float, float, float] = option((0.5, 0.1, 0.2), "blur probability (first global, other globals, locals)")

    def ops(self, kind: ViewKind, index: int, channels: int) -> list[Op]:
        return [
            Op("hflip", p=self.hflip_p, photometric=False),
            Op("rotate", p=self.rotate_p, params={"limit": self.rotate_limit, "border": "constant"}, photometric=False),
            Op("gamma", p=self.intensity_p, params={"amount": self.gamma_amount}, magnitudes=("amount",)),
            Op(
                "brightness_contrast", p=self.intensity_p,
                params={"brightness": self.brightness, "contrast": self.contrast}, magnitudes=("brightness", "contrast"),
            ),
            _blur(self.blur_sigma, _per_view(self.blur_p, kind, index)),
            Op("speckle", p=self.speckle_p, params={"sigma": self.speckle_sigma}, magnitudes=("sigma",)),
        ]


@register_modality("endoscopy")
@dataclass
class EndoscopyPreset(Preset):
    """Endoscopy / colonoscopy video frames (RGB).

    Why it differs from DINO:

    * free rotation and both flips: the scope rolls freely inside the lumen, so there is no "up";
    * a smaller hue shift (0.04 vs 0.1): mucosal colour (redness, pallor) is diagnostic, but white balance and
      light sources differ between towers; no grayscale for the same reason;
    * motion blur instead of Gaussian blur: the blur in endoscopy comes from the moving scope;
    * synthetic specular highlights: wet mucosa reflects the light source into saturated white blobs whose
      position says nothing about the tissue;
    * circular field-of-view mask: real frames have a round (or cut-round) field of view with black corners,
      and crops and rotations must not make the border's shape a feature;
    * larger smallest local crop (10 % of the area vs 5 %): 5 % of a 384x288 frame is mostly uniform mucosa
      or black border;
    * foreground-aware crops (at least 30 % of every crop above the frame's Otsu threshold): keeps crops off
      the black border outside the field of view and the unlit far lumen, where a view shows nothing of the
      mucosa (the mask is computed once per image; ``augment.foreground: 0`` turns it off).

    Mean/std: measured on the shared CVC-ClinicDB frames.
    """

    mean: ClassVar[tuple[float, ...]] = (0.414, 0.284, 0.179)
    std: ClassVar[tuple[float, ...]] = (0.303, 0.211, 0.131)
    local_scale: ClassVar[tuple[float, float]] = (0.1, 0.4)
    foreground: ClassVar[float] = 0.3

    hflip_p: float = option(0.5, "left-right flip probability")
    vflip_p: float = option(0.5, "up-down flip probability (no 'up' inside the lumen)")
    rotate_limit: float = option(180.0, "largest rotation in degrees (180 = any roll of the scope)", min=0, max=180)
    rotate_p: float = option(0.7, "rotation probability")
    brightness: float = option(0.3, "colour jitter brightness", min=0)
    contrast: float = option(0.3, "colour jitter contrast", min=0)
    saturation: float = option(0.2, "colour jitter saturation", min=0)
    hue: float = option(0.04, "colour jitter hue (fraction of the colour wheel); small, colour is diagnostic", min=0, max=0.5)
    jitter_p: float = option(0.8, "colour jitter probability")
    motion_blur_kernel: int = option(9, "largest motion-blur kernel side in pixels", min=3)
    blur_p: tuple[float, float, float] = option((0.5, 0.1, 0.3), "motion blur probability (first global, other globals, locals)")
    specular_count: int = option(4, "at most this many specular highlights", min=1)
    specular_radius: tuple[float, float] = option((0.01, 0.04), "highlight radius range (fraction of the shorter side)", min=0)
    specular_p: float = option(0.3, "specular highlight probability")
    fov_radius: tuple[float, float] = option((0.45, 0.6), "field-of-view circle radius range (fraction of the shorter side)", min=0.1)
    fov_p: float = option(0.5, "field-of-view mask probability")

    def ops(self, kind: ViewKind, index: int, channels: int) -> list[Op]:
        jitter = {"brightness": self.brightness, "contrast": self.contrast, "saturation": self.saturation, "hue": self.hue}
        return [
            Op("hflip", p=self.hflip_p, photometric=False),
            Op("vflip", p=self.vflip_p, photometric=False),
            Op("rotate", p=self.rotate_p, params={"limit": self.rotate_limit, "border": "constant"}, photometric=False),
            Op("color_jitter", p=self.jitter_p, params=jitter, magnitudes=tuple(jitter)),
            Op("motion_blur", p=_per_view(self.blur_p, kind, index), params={"kernel": self.motion_blur_kernel}),
            Op(
                "specular", p=self.specular_p, params={"count": self.specular_count, "radius": self.specular_radius},
                magnitudes=("count",),
            ),
            Op("fov_mask", p=self.fov_p, params={"radius": self.fov_radius}),
        ]


@register_modality("thermal")
@dataclass
class ThermalPreset(Preset):
    """Radiometric thermal frames, temperature-normalised to one channel.

    Why it differs from DINO:

    * no colour jitter, grayscale or solarize: a pixel value is a temperature, and changing it changes the
      scene (a person would become as cold as the road);
    * sensor artefacts instead: column/row fixed-pattern (stripe) noise and dead/stuck pixels of uncooled
      microbolometers, which vary between cameras and over time between flat-field corrections;
    * blur for the low-resolution optics; left-right flips (set ``vflip_p`` for nadir drone footage);
    * larger local crops (15-50 % of the area vs 5-40 %): warm objects (people, cars in HIT-UAV) are small
      and sparse, and a tiny crop of uniform ground gives the student nothing to match.

    Mean/std: measured on the shared HIT-UAV frames.
    """

    mean: ClassVar[tuple[float, ...]] = (0.485,)
    std: ClassVar[tuple[float, ...]] = (0.151,)
    local_scale: ClassVar[tuple[float, float]] = (0.15, 0.5)

    hflip_p: float = option(0.5, "left-right flip probability")
    vflip_p: float = option(0.0, "up-down flip probability (0: scenes have a ground; use 0.5 for nadir aerial views)")
    stripe_sigma: float = option(0.02, "std of the per-column (or per-row) offsets", min=0)
    stripe_p: float = option(0.3, "stripe noise probability")
    dead_fraction: float = option(0.002, "fraction of pixels set dead (0) or stuck (1)", min=0, max=0.1)
    dead_p: float = option(0.2, "dead pixel probability")
    blur_sigma: tuple[float, float] = option((0.1, 1.5), "Gaussian blur sigma range in pixels", min=0)
    blur_p: tuple[float, float, float] = option((0.5, 0.1, 0.3), "blur probability (first global, other globals, locals)")

    def ops(self, kind: ViewKind, index: int, channels: int) -> list[Op]:
        return [
            Op("hflip", p=self.hflip_p, photometric=False),
            Op("vflip", p=self.vflip_p, photometric=False),
            _blur(self.blur_sigma, _per_view(self.blur_p, kind, index)),
            Op("stripe_noise", p=self.stripe_p, params={"sigma": self.stripe_sigma}, magnitudes=("sigma",)),
            Op("dead_pixels", p=self.dead_p, params={"fraction": self.dead_fraction}, magnitudes=("fraction",)),
        ]


@register_modality("natural")
@dataclass
class NaturalPreset(Preset):
    """DINO's own augmentations (``DataAugmentationDINO``), the baseline the medical presets are compared with.

    Flip 0.5; colour jitter (0.4, 0.4, 0.2, 0.1) with p 0.8; grayscale 0.2; Gaussian blur sigma 0.1-2 with p
    1.0 / 0.1 / 0.5 (first global / second global / locals); solarize 0.2 on the second global view only;
    ImageNet mean/std.
    """

    mean: ClassVar[tuple[float, ...]] = (0.485, 0.456, 0.406)
    std: ClassVar[tuple[float, ...]] = (0.229, 0.224, 0.225)

    hflip_p: float = option(0.5, "left-right flip probability")
    brightness: float = option(0.4, "colour jitter brightness", min=0)
    contrast: float = option(0.4, "colour jitter contrast", min=0)
    saturation: float = option(0.2, "colour jitter saturation", min=0)
    hue: float = option(0.1, "colour jitter hue", min=0, max=0.5)
    jitter_p: float = option(0.8, "colour jitter probability")
    grayscale_p: float = option(0.2, "grayscale probability")
    blur_sigma: tuple[float, float] = option((0.1, 2.0), "Gaussian blur sigma range in pixels", min=0)
    blur_p: tuple[float, float, float] = option((1.0, 0.1, 0.5), "blur probability (first global, other globals, locals)")
    solarize_p: float = option(0.2, "solarize probability on the second global view")
    solarize_threshold: float = option(0.5, "solarize threshold (128/255 in DINO)", min=0, max=1)

    def ops(self, kind: ViewKind, index: int, channels: int) -> list[Op]:
        jitter = {"brightness": self.brightness, "contrast": self.contrast, "saturation": self.saturation, "hue": self.hue}
        ops = [
            Op("hflip", p=self.hflip_p, photometric=False),
            Op("color_jitter", p=self.jitter_p, params=jitter, magnitudes=tuple(jitter)),
            Op("grayscale", p=self.grayscale_p),
            _blur(self.blur_sigma, _per_view(self.blur_p, kind, index)),
        ]
        if kind == "global" and index == 1:
            ops.append(Op("solarize", p=self.solarize_p, params={"threshold": self.solarize_threshold}))
        return ops
