"""Seeded synthetic images with real anatomy-like structure: the built-in default data of every modality.

Each sample is a pure function of ``(modality, seed, index, size)`` and renders in a few milliseconds with
vectorised numpy, so the DataLoader can draw them on the fly during pretraining. Classes differ in salient,
characteristic structure (OCT: many drusen lifting the RPE across the macula, large dark cystoid spaces in a
thickened retina, a wide hyper-reflective CNV mass breaking the layers), and every image carries per-group
nuisance (tilt, curvature, gain, speckle, camera pose) shared by a simulated patient / video sequence, so grouped
splits matter and a random-init ViT is not enough.

    ds = PhantomDataset("oct", count=256, size=(224, 224), seed=0)
    sample = ds[0]            # {"image": (224, 224, 1) float32, "label": 2, "mask": ..., "meta": {...}}
    write_phantom_dataset("endoscopy", "out/", count=64)   # PNGs + manifest.csv

Modalities:

* ``oct``: retinal B-scans; mask = lesion pixels with value = class index (drusen 1, fluid 2, cnv 3).
* ``endoscopy``: colon lumen frames rendered from a known depth map (``depth`` in mm); mask 1 = polyp.
* ``thermal``: radiometric frames; raw 16-bit counts with ``T_C = counts * gain + offset``
  (:data:`THERMAL_CALIBRATION`, centi-kelvin as in FLIR TLinear radiometry); ``image`` is the
  :data:`THERMAL_WINDOW_C` window. Mask value = 1 + class index of the warm objects.
* ``natural``: textured geometric shapes; mask value = 1 + class index.
"""

from __future__ import annotations

import math
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from dinomed.data.records import ImageDataset, Record

PHANTOM_CLASSES: dict[str, list[str]] = {
    "oct": ["normal", "drusen", "fluid", "cnv"],
    "endoscopy": ["no_polyp", "polyp"],
    "thermal": ["person", "vehicle", "animal"],
    "natural": ["circle", "square", "triangle", "star"],
}
"""Frame classes per modality; ``label`` indexes this list."""

PHANTOM_MASK_CLASSES: dict[str, list[str]] = {
    "oct": ["background", "drusen", "fluid", "cnv"],
    "endoscopy": ["background", "polyp"],
    "thermal": ["background", "person", "vehicle", "animal"],
    "natural": ["background", "circle", "square", "triangle", "star"],
}
"""Segmentation classes per modality; ``mask`` values index this list (0 = background)."""

THERMAL_CALIBRATION: dict[str, float] = {"gain": 0.01, "offset": -273.15}
"""Linear radiometric calibration of the thermal phantom: ``T_C = counts * gain + offset`` (0.01 K per count)."""

THERMAL_WINDOW_C: tuple[float, float] = (20.0, 40.0)
"""Temperature window (°C) mapped to [0, 1] in the thermal ``image``; people and engines stand out in it."""

DEPTH_PNG_SCALE = 100.0
"""Depth PNGs written by :func:`write_phantom_dataset` hold ``depth_mm * 100`` (0.01 mm units) as uint16."""

GROUP_SIZE = 8
"""Consecutive indices sharing a simulated patient / video sequence (and its nuisance parameters)."""

# Endoscopy classes are not balanced: most colonoscopy frames in polyp datasets show a polyp.
_LABEL_BLOCKS: dict[str, tuple[int, ...]] = {
    "oct": (0, 1, 2, 3),
    "endoscopy": (0, 1, 1, 1),
    "thermal": (0, 1, 2),
    "natural": (0, 1, 2, 3),
}


# ----------------------------------------------------------------------------------------------- seeding + noise
def _check_modality(modality: str) -> None:
    if modality not in PHANTOM_CLASSES:
        raise ValueError(f"Unknown phantom modality {modality!r}. Valid modalities are {sorted(PHANTOM_CLASSES)}")


def _tag(modality: str) -> int:
    return zlib.crc32(modality.encode())


def phantom_label(modality: str, index: int, seed: int = 0) -> int:
    """Class of item ``index`` without rendering: a seeded shuffle of a balanced block of labels."""
    _check_modality(modality)
    block = _LABEL_BLOCKS[modality]
    order = np.random.default_rng([seed, _tag(modality), 0, index // len(block)]).permutation(len(block))
    return block[order[index % len(block)]]


def phantom_group(modality: str, index: int, seed: int = 0) -> str:
    """Simulated patient / sequence of item ``index``; another seed means other patients."""
    return f"{modality}-s{seed}-p{index // GROUP_SIZE}"


@lru_cache(maxsize=128)
def _smoothing_matrix(n: int, cells: int) -> np.ndarray:
    """(n, cells + 3) Gaussian weights from a coarse lattice to n pixels, scaled to unit output variance."""
    nodes = np.arange(-1, cells + 2, dtype=np.float64) / cells
    pix = (np.arange(n) + 0.5) / n
    w = np.exp(-0.5 * ((pix[:, None] - nodes[None, :]) * cells / 0.7) ** 2)
    w /= np.sqrt((w**2).sum(1, keepdims=True))
    w = w.astype(np.float32)
    w.flags.writeable = False
    return w


def _noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth unit-variance Gaussian noise with about ``cells`` blobs across the short side (two matmuls)."""
    h, w = shape
    cy, cx = max(1, round(cells * h / min(h, w))), max(1, round(cells * w / min(h, w)))
    lattice = rng.standard_normal((cy + 3, cx + 3), dtype=np.float32)
    return _smoothing_matrix(h, cy) @ lattice @ _smoothing_matrix(w, cx).T


def _noise1d(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    return _smoothing_matrix(n, cells) @ rng.standard_normal(cells + 3, dtype=np.float32)


@lru_cache(maxsize=32)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1]: y as (h, 1), x as (1, w)."""
    y = ((np.arange(h, dtype=np.float32) + 0.5) / h)[:, None]
    x = ((np.arange(w, dtype=np.float32) + 0.5) / w)[None, :]
    y.flags.writeable = x.flags.writeable = False
    return y, x


def _ramp(d: np.ndarray) -> np.ndarray:
    """Anti-aliased step of a signed pixel distance (0 before the edge, 1 after)."""
    return np.clip(d + 0.5, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------------------- OCT
# Retinal layers from the inner limiting membrane down to Bruch's membrane: (name, share of the retinal
# thickness away from the fovea, amplitude reflectivity). Values follow the typical SD-OCT appearance
# (bright NFL, plexiform layers and RPE; dark nuclear layers). Lesion layers start at zero thickness.
_OCT_LAYERS: tuple[tuple[str, float, float], ...] = (
    ("nfl", 0.10, 0.70), ("gcl", 0.11, 0.30), ("ipl", 0.10, 0.45), ("inl", 0.10, 0.16), ("opl", 0.07, 0.42),
    ("onl", 0.25, 0.09), ("elm", 0.025, 0.35), ("myoid", 0.04, 0.12), ("ez", 0.035, 0.75), ("iz", 0.04, 0.28),
    ("subretinal", 0.0, 0.015), ("cnv", 0.0, 0.80), ("rpe", 0.07, 1.0), ("drusen", 0.0, 0.40),
)
_OCT = {name: k for k, (name, _, _) in enumerate(_OCT_LAYERS)}
_OCT_INNER = ("nfl", "gcl", "ipl", "inl", "opl")  # absent at the foveal pit


def _dome(x: np.ndarray, centre: float, half_width: float, power: float = 0.5) -> np.ndarray:
    return np.clip(1.0 - ((x - centre) / half_width) ** 2, 0.0, None) ** power


def _render_oct(rng_g: np.random.Generator, rng: np.random.Generator, index: int, label: int,
                size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    h, w = size
    y, x = _grid(h, w)
    y, xs = y * h, x[0]  # y in pixels (h, 1); xs in [0, 1] (w,)
    # Patient / scan nuisance: position, tilt and curvature of the eye wall, thickness, gain, speckle. Ranges are
    # those of a macula-centred clinical scan (the operator levels and centres the retina), narrow enough that
    # the pathology, not the pose, is what tells scans apart, as in Kermany-style OCT datasets. Speckle looks and
    # layer reflectivity vary little: they show in every crop and no augmentation removes them, so wider ranges
    # made "which patient" the easiest thing for DINO to match across views (measured: pretrained kNN no better
    # than random init).
    g = dict(rpe=rng_g.uniform(0.64, 0.72), tilt=rng_g.uniform(-0.06, 0.06), curv=rng_g.uniform(0.0, 0.16),
             thick=rng_g.uniform(0.22, 0.28), fovea=rng_g.uniform(0.42, 0.58), pit_w=rng_g.uniform(0.07, 0.12),
             slice_f=rng_g.uniform(2.0, 5.0), gain_db=rng_g.uniform(-2.0, 2.0), floor_db=rng_g.uniform(-30, -24),
             looks=rng_g.uniform(1.6, 2.0), refl=rng_g.uniform(0.95, 1.05, len(_OCT_LAYERS)))
    pit = math.exp(-(((index % GROUP_SIZE) - g["slice_f"]) / 1.5) ** 2)  # fovea deepest on central B-scans
    fovea = g["fovea"] + rng.uniform(-0.04, 0.04)
    xc = xs - 0.5
    bruch = h * (g["rpe"] + rng.uniform(-0.015, 0.015) + (g["tilt"] + rng.uniform(-0.02, 0.02)) * xc
                 + g["curv"] * xc**2 + 0.005 * _noise1d(rng, w, 3))
    total = h * g["thick"] * (1 + 0.06 * _noise1d(rng, w, 2))
    if label in (2, 3):  # macular oedema / a neovascular membrane fills in the foveal pit
        pit *= 0.3
    pit_shape = pit * np.exp(-(((xs - fovea) / g["pit_w"]) ** 2))
    thick = np.zeros((len(_OCT_LAYERS), w), np.float32)
    for name, share, _ in _OCT_LAYERS:
        thick[_OCT[name]] = share * total
    for name in _OCT_INNER:
        thick[_OCT[name]] *= 1.0 - 0.97 * pit_shape
    thick[_OCT["onl"]] *= 1.0 + 0.35 * pit_shape
    thick[_OCT["nfl"]] *= np.clip(1.0 + 1.2 * (xs - fovea), 0.3, None)  # thicker towards the optic disc

    # Lesions are large and spread over most of the macula, as in the scans graders label at a glance, so most
    # DINO crops of a diseased scan show some of the disease.
    cysts: list[tuple[float, float, float]] = []
    if label == 1:  # drusen: many dome-shaped RPE elevations spread across the macula
        n = int(rng.integers(6, 10))
        gap = 0.8 / n  # evenly over fovea +- 0.4, each moved by up to 0.4 of a gap: irregular spacing
        centres = fovea + np.linspace(-0.4, 0.4, n) + rng.uniform(-0.4, 0.4, n) * gap
        for c in centres:
            width = rng.uniform(0.03, 0.07)
            height = max(rng.uniform(0.03, 0.065) * h, 2.5)
            thick[_OCT["drusen"]] += height * _dome(xs, c, width, rng.uniform(0.5, 1.0))
    elif label == 2:  # fluid: large cystoid spaces in a thickened retina, usually over a serous detachment
        for _ in range(rng.integers(4, 8)):
            rx = max(rng.uniform(0.035, 0.08) * w, 2.5)
            ry = max(rx * rng.uniform(0.6, 1.0), 2.0)
            cx = fovea + rng.uniform(-0.35, 0.35)
            thick[_OCT["onl"]] += 1.5 * ry * _dome(xs, cx, 1.6 * rx / w)  # oedema thickens the retina
            cysts.append((cx * w, rx, ry))
        if rng.random() < 0.75:
            thick[_OCT["subretinal"]] += max(rng.uniform(0.05, 0.1) * h, 2.5) * _dome(
                xs, fovea + rng.uniform(-0.08, 0.08), rng.uniform(0.14, 0.24), 0.7)
    elif label == 3:  # CNV: a large irregular hyper-reflective mass above the RPE, with subretinal fluid
        centre, width = fovea + rng.uniform(-0.08, 0.08), rng.uniform(0.25, 0.4)
        profile = _dome(xs, centre, width, 0.7) * np.clip(1 + 0.5 * _noise1d(rng, w, 12), 0.3, None)
        thick[_OCT["cnv"]] += max(rng.uniform(0.08, 0.14) * h, 3.0) * profile
        side = 1.0 if rng.random() < 0.5 else -1.0  # exudation at one margin of the membrane (not in the mask)
        thick[_OCT["subretinal"]] += max(rng.uniform(0.02, 0.045) * h, 1.5) * _dome(
            xs, centre + side * width * rng.uniform(0.6, 0.9), width * rng.uniform(0.5, 0.8), 0.7)
    bounds = bruch[None, :] - np.cumsum(thick[::-1], axis=0)[::-1]  # top boundary of each layer, (K, w)

    refl = np.zeros((h, w), np.float32)
    previous, ramps = 0.0, []
    for k, (_, _, r) in enumerate(_OCT_LAYERS):
        ramps.append(_ramp(y - bounds[k]))
        r *= g["refl"][k]
        refl += (r - previous) * ramps[-1]
        previous = r
    below = y - bruch
    choroid = (0.38 * (0.75 + 0.25 * _noise(rng, size, 20))
               * np.where(_noise(rng, size, 10) > 0.9, np.float32(0.3), np.float32(1.0))  # large choroidal vessel lumens
               * np.exp(-np.clip(below, 0, None) / (0.09 * h)) + 0.02)
    ramps.append(_ramp(below))  # Bruch's membrane closes the last layer
    refl += (choroid - previous) * ramps[-1]

    mask = np.zeros((h, w), np.int64)
    lesion = {1: "drusen", 2: "subretinal", 3: "cnv"}.get(label)
    if lesion is not None:
        k = _OCT[lesion]
        inside = ramps[k] - ramps[k + 1]  # for CNV: the neovascular tissue only, not its exudate
        mask[inside > 0.5] = label
        if label == 3:  # heterogeneous lesion; the photoreceptor band and RPE above/below it are disrupted
            refl *= 1 + 0.5 * inside * _noise(rng, size, 30)
            disrupted = np.clip(thick[_OCT["cnv"]] / 3.0, 0, 1)[None, :]
            frag = (_noise(rng, size, 24) > -0.2).astype(np.float32)
            for name in ("ez", "iz", "rpe"):
                band = ramps[_OCT[name]] - ramps[_OCT[name] + 1]
                refl *= 1 - band * disrupted * (0.75 if name != "rpe" else 0.8 * frag)
    onl_mid = 0.5 * (bounds[_OCT["onl"]] + bounds[_OCT["onl"] + 1])
    for cx, rx, ry in cysts:
        col = int(np.clip(cx, 0, w - 1))
        q = ((x[0] * w - cx) / rx) ** 2 + ((y - onl_mid[col]) / ry) ** 2
        pocket = np.clip((1 - np.sqrt(q)) * ry + 0.5, 0, 1)
        refl *= 1 - 0.97 * pocket
        mask[pocket > 0.5] = 2
    # Retinal vessels in the NFL cast vertical shadows down to the choroid.
    shadow = np.zeros(w, np.float32)
    for _ in range(rng.integers(1, 4)):
        shadow += 0.6 * np.exp(-(((xs - rng.uniform(0.05, 0.95)) / rng.uniform(0.005, 0.012)) ** 2))
    refl *= 1 - np.clip(shadow, 0, 0.8)[None, :] * ramps[_OCT["gcl"]]

    # Log-compressed intensity with fully developed multiplicative speckle (Gamma, mean 1).
    gain = 10 ** ((g["gain_db"] + rng.uniform(-1, 1)) / 10)
    floor = 10 ** (g["floor_db"] / 10)
    speckle = rng.standard_gamma(g["looks"], size=(h, w), dtype=np.float32) / g["looks"]
    db = 10 * np.log10((gain * refl * refl + floor) * speckle + 1e-6)
    lo, hi = g["floor_db"] + 1.0, 4.0  # vitreous (noise floor) nearly black
    image = np.clip((db - lo) / (hi - lo), 0.0, 1.0)
    return image[..., None], mask


# ----------------------------------------------------------------------------------------------------- endoscopy
def _render_endoscopy(rng_g: np.random.Generator, rng: np.random.Generator, index: int, label: int,
                      size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A camera inside a haustrated tube; depth from the geometry, shading from a light at the camera."""
    h, w = size
    y, x = _grid(h, w)
    half = 1.15 / max(h, w)  # tan of half the field of view per pixel (about 98 degrees across)
    u, v = (x - 0.5) * w * 2 * half, (y - 0.5) * h * 2 * half
    frame = index % GROUP_SIZE
    centre = (rng_g.uniform(-0.35, 0.35, 2) + rng_g.uniform(-0.05, 0.05, 2) * frame
              + rng.uniform(-0.03, 0.03, 2)).tolist()
    radius_mm, ecc, ecc_dir = rng_g.uniform(14, 24), rng_g.uniform(0.05, 0.35), rng_g.uniform(0, 2 * math.pi)
    period, amp, taenia = rng_g.uniform(16, 30), rng_g.uniform(0.12, 0.3), rng_g.uniform(0, 2 * math.pi)
    phase = rng_g.uniform(0, 2 * math.pi) + 0.9 * frame + rng.uniform(-0.3, 0.3)  # camera advancing

    du, dv = u - centre[0], v - centre[1]
    r = np.sqrt(du * du + dv * dv) + 1e-3
    cos_t, sin_t = du / r, dv / r
    wall = radius_mm * (1 + ecc * (cos_t * math.cos(ecc_dir) + sin_t * math.sin(ecc_dir)))
    z0 = wall / r
    cos3 = (4 * cos_t * cos_t - 3) * cos_t
    sin3 = (3 - 4 * sin_t * sin_t) * sin_t
    # Haustral folds: ridges every `period` mm along the colon, strongest between the three taeniae coli.
    crease = 0.5 + 0.5 * np.cos(z0 * (2 * math.pi / period) + phase)
    crease *= crease
    fade = np.clip((100.0 - z0) / 40.0, 0.0, 1.0)
    folds = amp * (0.55 + 0.45 * (cos3 * math.cos(taenia) - sin3 * math.sin(taenia))) * crease * crease * fade
    depth = wall * (1 - folds) / r

    mask = np.zeros((h, w), np.int64)
    polyp_alpha = None
    if label == 1:
        px, py, rad, size_mm = _place_polyp(rng, centre, radius_mm, ecc, ecc_dir, half, size)
        angle, aspect = rng.uniform(0, math.pi), rng.uniform(0.65, 1.0)
        ca, sa = math.cos(angle), math.sin(angle)
        a, b = (u - px) * ca + (v - py) * sa, (-(u - px) * sa + (v - py) * ca) / aspect
        q = np.sqrt(a * a + b * b) / rad
        dome = np.clip(1 - q * q, 0, None)
        depth -= 1.2 * size_mm * dome * dome  # smooth sessile bump standing off the wall
        polyp_alpha = np.clip((1 - q) * rad / (2 * half) + 0.5, 0, 1)
        mask[polyp_alpha > 0.5] = 1
    depth = np.clip(depth, 5.0, 120.0).astype(np.float32)

    # Lambertian mucosa lit from the camera. For P = z (u, v, 1) the surface normal is
    # n = (-z_u, -z_v, z + u z_u + v z_v) and n . (u, v, 1) = z, so cos(incidence) = z / (|n| |(u, v, 1)|).
    zv, zu = np.gradient(depth)
    zu, zv = zu / (2 * half), zv / (2 * half)
    ray2 = 1 + u * u + v * v
    normal = np.sqrt(zu * zu + zv * zv + (depth + u * zu + v * zv) ** 2)
    cos_i = np.clip(depth / (normal * np.sqrt(ray2)), 0.0, 1.0)
    # Auto-exposure: the nearest third of the wall is fully exposed (endoscope light control).
    exposure = float(np.partition(depth[::4, ::4], depth[::4, ::4].size // 3, axis=None)[depth[::4, ::4].size // 3])
    exposure = exposure**2 * rng_g.uniform(0.8, 1.2)
    irradiance = cos_i / (depth * depth * ray2) * exposure

    # Colour per channel into one buffer: whole-image (h, w, 3) temporaries would dominate the render time.
    tint = [rng_g.uniform(0.85, 0.98), rng_g.uniform(0.3, 0.45), rng_g.uniform(0.27, 0.4)]
    lit = irradiance * (1 + 0.08 * _noise(rng, size, 16) + 0.05 * _noise(rng, size, 48))
    vessels = np.clip(1 - np.abs(_noise(rng, size, 9)) / 0.07, 0, 1) * np.clip(35.0 / depth, 0, 1)
    c2 = cos_i * cos_i
    c8 = (c2 * c2) ** 2
    c32 = c8 * c8 * c8 * c8
    wet = np.clip(_noise(rng, size, 24), 0, 1)  # mucus film: highlights in patches, not on every crest
    glare = 0.9 * c32 * c32 * wet * np.clip(30.0 / depth - 0.5, 0, 1)  # specular highlights
    glare += 0.01 * rng.standard_normal((h, w), dtype=np.float32)
    if polyp_alpha is not None:  # hyperaemic or pale, finely granular surface (pit pattern)
        pit_pattern = 1 + 0.15 * _noise(rng, size, 60)
        pale = rng.uniform(0.0, 1.0)
        polyp_color = [rng.uniform(0.9, 1.0), 0.22 + 0.45 * pale, 0.2 + 0.4 * pale]
    image = np.empty((3, h, w), np.float32)
    for c, vessel_absorption in enumerate((0.15, 0.45, 0.35)):  # haemoglobin absorbs green and blue most
        albedo = tint[c] * (1 - vessel_absorption * vessels)
        if polyp_alpha is not None:
            albedo += polyp_alpha * (polyp_color[c] * pit_pattern - albedo)
        np.multiply(albedo, lit, out=image[c])
        image[c] += glare
    np.sqrt(np.clip(image, 0.0, 1.0, out=image), out=image)  # display gamma
    return _channels_last(image), mask, depth


def _channels(values: list[float] | np.ndarray) -> np.ndarray:
    return np.asarray(values, np.float32)[:, None, None]


def _channels_last(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(1, 2, 0))


def _place_polyp(rng: np.random.Generator, centre: np.ndarray, radius_mm: float, ecc: float, ecc_dir: float,
                 half: float, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """A polyp position on the wall (u, v), its radius in image units and its size (mm)."""
    h, w = size
    lim_u, lim_v = w * half * 0.85, h * half * 0.85
    size_mm = rng.uniform(3.0, 9.0)
    for _ in range(16):
        theta, z_p = rng.uniform(0, 2 * math.pi), rng.uniform(15.0, 45.0)
        wall = radius_mm * (1 + ecc * np.cos(theta - ecc_dir))
        px, py = centre[0] + wall / z_p * np.cos(theta), centre[1] + wall / z_p * np.sin(theta)
        if abs(px) < lim_u and abs(py) < lim_v:
            break
    px, py = float(np.clip(px, -lim_u, lim_u)), float(np.clip(py, -lim_v, lim_v))
    rad = max(size_mm / z_p, 3.0 * 2 * half)  # at least 3 pixels across at any image size
    return px, py, rad, size_mm


# ------------------------------------------------------------------------------------------------------- thermal
def _paint(temp: np.ndarray, mask: np.ndarray, shape: str, cy: float, cx: float, ry: float, rx: float,
           value: float, cls: int) -> None:
    """Paints an anti-aliased ellipse or rectangle of temperature ``value`` in its bounding box only."""
    h, w = temp.shape
    y0, y1 = max(int(cy - ry - 1), 0), min(int(cy + ry + 2), h)
    x0, x1 = max(int(cx - rx - 1), 0), min(int(cx + rx + 2), w)
    if y0 >= y1 or x0 >= x1:
        return
    dy = (np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - cy) / ry
    dx = (np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - cx) / rx
    q = np.sqrt(dy * dy + dx * dx) if shape == "ellipse" else np.maximum(np.abs(dy), np.abs(dx))
    alpha = np.clip((1 - q) * min(ry, rx) + 0.5, 0, 1)
    region = temp[y0:y1, x0:x1]
    region += alpha * (value - region)
    mask[y0:y1, x0:x1][alpha > 0.5] = cls


def _person(temp: np.ndarray, mask: np.ndarray, rng: np.random.Generator, foot_y: float, cx: float,
            height: float, ambient: float) -> None:
    clothes = 0.55 * rng.uniform(29, 33) + 0.45 * ambient
    cls = 1
    _paint(temp, mask, "rect", foot_y - 0.22 * height, cx - 0.07 * height, 0.22 * height, 0.045 * height,
           clothes - 1.5, cls)
    _paint(temp, mask, "rect", foot_y - 0.22 * height, cx + 0.07 * height, 0.22 * height, 0.045 * height,
           clothes - 1.5, cls)
    _paint(temp, mask, "ellipse", foot_y - 0.6 * height, cx, 0.2 * height, 0.14 * height, clothes, cls)
    _paint(temp, mask, "ellipse", foot_y - 0.88 * height, cx, 0.085 * height, 0.07 * height,
           rng.uniform(33.5, 36.0), cls)


def _vehicle(temp: np.ndarray, mask: np.ndarray, rng: np.random.Generator, foot_y: float, cx: float,
             height: float, ambient: float) -> None:
    cls, facing = 2, (1.0 if rng.random() < 0.5 else -1.0)
    length = height * rng.uniform(2.0, 2.6)
    body = ambient + rng.uniform(3.0, 8.0)  # sun-warmed metal
    _paint(temp, mask, "rect", foot_y - 0.38 * height, cx, 0.22 * height, 0.5 * length, body, cls)
    _paint(temp, mask, "rect", foot_y - 0.75 * height, cx - 0.05 * facing * length, 0.17 * height,
           0.28 * length, ambient - rng.uniform(3, 8), cls)  # glass reflects the cold sky
    _paint(temp, mask, "rect", foot_y - 0.45 * height, cx + 0.36 * facing * length, 0.1 * height,
           0.12 * length, rng.uniform(38, 55), cls)  # engine bay
    for side in (-0.3, 0.3):
        _paint(temp, mask, "ellipse", foot_y - 0.15 * height, cx + side * length, 0.15 * height, 0.15 * height,
               rng.uniform(30, 40), cls)


def _animal(temp: np.ndarray, mask: np.ndarray, rng: np.random.Generator, foot_y: float, cx: float,
            height: float, ambient: float) -> None:
    cls, facing = 3, (1.0 if rng.random() < 0.5 else -1.0)
    fur = 0.6 * rng.uniform(31, 36) + 0.4 * ambient
    for leg in (-0.4, -0.25, 0.25, 0.4):
        _paint(temp, mask, "rect", foot_y - 0.2 * height, cx + leg * height, 0.2 * height, 0.045 * height,
               fur - 2.0, cls)
    _paint(temp, mask, "ellipse", foot_y - 0.5 * height, cx, 0.2 * height, 0.5 * height, fur, cls)
    _paint(temp, mask, "ellipse", foot_y - 0.78 * height, cx + 0.5 * facing * height, 0.13 * height,
           0.15 * height, fur + 1.5, cls)


_THERMAL_OBJECTS = ((_person, 0.45), (_vehicle, 0.28), (_animal, 0.2))  # painter, height at the image bottom


def _render_thermal(rng_g: np.random.Generator, rng: np.random.Generator, index: int, label: int,
                    size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Temperature field (°C): cold sky, buildings, grass and a sun-warmed road, plus warm objects."""
    h, w = size
    y, x = _grid(h, w)
    ambient = rng_g.uniform(18.0, 30.0) + rng.uniform(-0.5, 0.5)
    horizon = rng_g.uniform(0.2, 0.42) + rng.uniform(-0.02, 0.02)
    vanish, skew, road_w = rng_g.uniform(0.3, 0.7), rng_g.uniform(-0.3, 0.3), rng_g.uniform(0.25, 0.5)
    sun = rng_g.uniform(2.0, 10.0)
    ground = np.clip((y - horizon) / (1 - horizon), 0, 1)  # 0 at the horizon, 1 at the bottom row
    sky = ambient - 14 + 6 * y / horizon + 0.4 * _noise(rng, size, 3)
    grass = ambient + 1.0 * _noise(rng, size, 5) + 0.8 * _noise(rng, size, 40) + 1.5 * ground
    road_x = x - vanish - skew * ground
    road = np.abs(road_x) < road_w * ground
    dashes = (np.abs(road_x) < 0.012 * ground) & (np.cos(2 * math.pi * 3 / (ground + 0.05)) > 0)
    temp = np.where(y < horizon, sky, grass)
    temp = np.where(road, ambient + sun + 0.4 * _noise(rng, size, 30) - np.float32(3.0) * dashes, temp)
    for _ in range(rng_g.integers(1, 4)):  # buildings standing on the horizon, windows warm or cold
        x0, x1 = sorted(rng.uniform(0, 1, 2))
        top = horizon * rng.uniform(0.1, 0.8)
        wall = (x > x0) & (x < x1) & (y > top) & (y < horizon + 0.01)
        windows = wall & (np.cos(2 * math.pi * x * rng.uniform(20, 40)) > 0.3) & (np.cos(2 * math.pi * y * 25) > 0.2)
        temp = np.where(wall, ambient + rng.uniform(-1, 3), temp)
        temp = np.where(windows, ambient + rng.uniform(-4, 6), temp)
    temp = temp.astype(np.float32)
    mask = np.zeros((h, w), np.int64)
    painter, scale = _THERMAL_OBJECTS[label]
    feet = np.sort(rng.uniform(horizon + 0.15 * (1 - horizon), 0.98, rng.integers(1, 4)))
    for foot in feet:  # far to near, so nearer objects occlude farther ones
        height = max(h * scale * (0.3 + 0.7 * (foot - horizon) / (1 - horizon)), 10.0)
        painter(temp, mask, rng, foot * h, rng.uniform(0.1, 0.9) * w, height, ambient)
    # Sensor: temporal noise (NETD) and a column fixed-pattern offset shared by the camera (group).
    temp += rng.normal(0, rng_g.uniform(0.04, 0.12), (h, w)).astype(np.float32)
    temp += rng_g.normal(0, rng_g.uniform(0.03, 0.15), w).astype(np.float32)[None, :]
    return temp, mask


def celsius_to_counts(temp_c: np.ndarray) -> np.ndarray:
    """Radiometric uint16 counts of a temperature field, inverse of ``T_C = counts * gain + offset``."""
    cal = THERMAL_CALIBRATION
    return np.clip(np.round((temp_c - cal["offset"]) / cal["gain"]), 0, 65535).astype(np.uint16)


def counts_to_celsius(counts: np.ndarray) -> np.ndarray:
    """Temperature (°C) of radiometric counts under :data:`THERMAL_CALIBRATION`."""
    return (counts.astype(np.float32) * THERMAL_CALIBRATION["gain"] + THERMAL_CALIBRATION["offset"]).astype(
        np.float32)


# ------------------------------------------------------------------------------------------------------- natural
def _render_natural(rng_g: np.random.Generator, rng: np.random.Generator, index: int, label: int,
                    size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A textured shape (the class) on a textured two-colour background."""
    h, w = size
    y, x = _grid(h, w)
    a, b = rng.uniform(0, 1, (2, 3, 1, 1)).astype(np.float32)
    blend = np.clip(0.5 + 0.6 * _noise(rng, size, 3), 0, 1)
    image = (a + blend * (b - a)) * (1 + 0.15 * _noise(rng, size, 40))
    radius = rng.uniform(0.18, 0.32) * min(h, w)
    cy, cx = rng.uniform(radius, h - radius), rng.uniform(radius, w - radius)
    angle = rng.uniform(0, 2 * math.pi)
    py, px = (y * h - cy) / radius, (x * w - cx) / radius
    ry, rx = py * math.cos(angle) - px * math.sin(angle), py * math.sin(angle) + px * math.cos(angle)
    if label == 0:
        q = np.sqrt(rx * rx + ry * ry)
    elif label == 1:
        q = np.maximum(np.abs(rx), np.abs(ry)) / 0.8
    elif label == 2:  # equilateral triangle: inradius 0.5 of the circumradius
        q = np.maximum(np.maximum(ry, -0.866 * rx - 0.5 * ry), 0.866 * rx - 0.5 * ry) / 0.5
    else:  # five-pointed star: radius linear in angle between tips and notches
        tips = np.abs((np.arctan2(ry, rx) * (5 / (2 * math.pi))) % 1.0 - 0.5) * 2
        q = np.sqrt(rx * rx + ry * ry) / (0.42 + 0.58 * tips)
    alpha = np.clip((1 - q) * radius + 0.5, 0, 1)
    stripes_dir = rng.uniform(0, math.pi)
    stripes = 0.8 + 0.2 * np.sin(2 * math.pi * rng.uniform(2, 6) * (rx * math.cos(stripes_dir) + ry * math.sin(stripes_dir)))
    color = np.clip(1 - 0.5 * (a + b) + _channels(rng.uniform(-0.2, 0.2, 3)), 0, 1)
    image += alpha * (color * stripes - image)
    image += 0.02 * rng.standard_normal((h, w), dtype=np.float32)
    mask = np.where(alpha > 0.5, label + 1, 0).astype(np.int64)
    return _channels_last(np.clip(image, 0, 1)), mask


# ------------------------------------------------------------------------------------------------------------ API
def generate_phantom(modality: str, index: int, *, seed: int = 0, size: tuple[int, int] = (224, 224),
                     raw: bool = False) -> dict[str, Any]:
    """Renders phantom item ``index`` as a sample dict (see :mod:`dinomed.data.records`).

    A pure function of ``(modality, seed, index, size)``. ``raw=True`` adds ``sample["raw"]``: the pixels as
    :func:`write_phantom_dataset` stores them (uint8 for oct / endoscopy / natural, uint16 counts for thermal).
    """
    _check_modality(modality)
    if len(size) != 2 or min(size) < 16:
        raise ValueError(f"phantom size must be (height, width) with both >= 16 pixels, got {size!r}")
    h, w = int(size[0]), int(size[1])
    label = phantom_label(modality, index, seed)
    rng_g = np.random.default_rng([seed, _tag(modality), 1, index // GROUP_SIZE])
    rng = np.random.default_rng([seed, _tag(modality), 2, index])
    meta: dict[str, Any] = {"modality": modality, "index": index, "seed": seed,
                            "class_name": PHANTOM_CLASSES[modality][label],
                            "group": phantom_group(modality, index, seed), "path": f"phantom://{modality}/{seed}/{index}"}
    sample: dict[str, Any] = {"label": label, "meta": meta}
    if modality == "thermal":
        temp, mask = _render_thermal(rng_g, rng, index, label, (h, w))
        counts = celsius_to_counts(temp)
        lo, hi = THERMAL_WINDOW_C
        image = np.clip((counts_to_celsius(counts) - lo) / (hi - lo), 0, 1)[..., None]
        meta.update(calibration=dict(THERMAL_CALIBRATION), window_c=THERMAL_WINDOW_C, original_dtype="uint16")
        if raw:
            sample["raw"] = counts
    else:
        if modality == "oct":
            image, mask = _render_oct(rng_g, rng, index, label, (h, w))
        elif modality == "endoscopy":
            image, mask, sample["depth"] = _render_endoscopy(rng_g, rng, index, label, (h, w))
        else:
            image, mask = _render_natural(rng_g, rng, index, label, (h, w))
        meta["original_dtype"] = "uint8"
        if raw:
            pixels = np.round(image * 255).astype(np.uint8)
            sample["raw"] = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
    sample["image"] = image.astype(np.float32)
    sample["mask"] = mask
    return sample


def _convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Gray -> RGB by replication, RGB -> gray by ITU-R BT.601 luminance."""
    if image.shape[-1] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=-1)
    return (image @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]


class PhantomDataset(ImageDataset):
    """``count`` phantom items of ``modality``, rendered on access; labels and groups known without rendering.

    Args:
        modality: one of :data:`PHANTOM_CLASSES`.
        count: number of items (indices ``0 .. count - 1``).
        size: (height, width) of the rendered images.
        seed: generator seed; another seed gives other simulated patients.
        channels: convert images to 1 or 3 channels; ``None`` keeps the modality's own (1 for oct / thermal).
    """

    def __init__(self, modality: str, count: int = 1024, size: tuple[int, int] = (224, 224), seed: int = 0,
                 channels: int | None = None) -> None:
        _check_modality(modality)
        if channels not in (None, 1, 3):
            raise ValueError(f"PhantomDataset channels must be None, 1 or 3, got {channels!r}")
        if count < 1:
            raise ValueError(f"PhantomDataset count must be >= 1, got {count}")
        self.modality, self.size, self.seed, self.channels = modality, (int(size[0]), int(size[1])), seed, channels
        self.class_names = list(PHANTOM_CLASSES[modality])
        depth = "phantom" if modality == "endoscopy" else None
        self.records = [
            Record(image=f"phantom://{modality}/{seed}/{i}", label=phantom_label(modality, i, seed), mask="phantom",
                   depth=depth, group=phantom_group(modality, i, seed), meta={"index": i})
            for i in range(count)
        ]

    def load(self, record: Record) -> dict[str, Any]:
        sample = generate_phantom(self.modality, record.meta["index"], seed=self.seed, size=self.size)
        if self.channels is not None:
            sample["image"] = _convert_channels(sample["image"], self.channels)
        return sample


def write_phantom_dataset(modality: str, out_dir: str | Path, count: int, size: tuple[int, int] = (224, 224),
                          seed: int = 0) -> Path:
    """Writes ``count`` phantom items as PNGs plus ``manifest.csv`` (image, label, mask, depth, group).

    Images: 8-bit gray (oct), 8-bit RGB (endoscopy, natural) or 16-bit radiometric counts (thermal, see
    :data:`THERMAL_CALIBRATION`). Masks: 8-bit class ids. Depth (endoscopy): 16-bit ``depth_mm * 100``
    (:data:`DEPTH_PNG_SCALE`). Labels are class names; paths are relative to ``out_dir``.
    """
    import csv

    from PIL import Image
    from rich.progress import track

    _check_modality(modality)
    out = Path(out_dir)
    for folder in ("images", "masks") + (("depth",) if modality == "endoscopy" else ()):
        (out / folder).mkdir(parents=True, exist_ok=True)
    rows = []
    for i in track(range(count), description=f"Writing {modality} phantom"):
        sample = generate_phantom(modality, i, seed=seed, size=size, raw=True)
        name = f"{modality}_{seed}_{i:05d}.png"
        Image.fromarray(sample["raw"]).save(out / "images" / name)
        Image.fromarray(sample["mask"].astype(np.uint8)).save(out / "masks" / name)
        depth = ""
        if "depth" in sample:
            depth = f"depth/{name}"
            Image.fromarray(np.round(sample["depth"] * DEPTH_PNG_SCALE).astype(np.uint16)).save(out / depth)
        rows.append({"image": f"images/{name}", "label": sample["meta"]["class_name"], "mask": f"masks/{name}",
                     "depth": depth, "group": sample["meta"]["group"]})
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "label", "mask", "depth", "group"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest
