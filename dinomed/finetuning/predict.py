"""Prediction on new images with the training input contract enforced, and outputs people can look at.

Masks are written as PNG class ids plus an overlay PNG; depth maps as 16-bit PNG (depth x
100, the phantom writer's convention) plus a colour-mapped preview.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

from dinomed.augment.multicrop import build_eval_transform
from dinomed.config import from_dict
from dinomed.data.config import DataConfig
from dinomed.data.datasets import FileDataset
from dinomed.data.phantoms import DEPTH_PNG_SCALE, THERMAL_CALIBRATION, THERMAL_WINDOW_C
from dinomed.data.readers import RASTER_SUFFIXES
from dinomed.engine import progress_bar
from dinomed.files import atomic_write


def prediction_data(info: dict[str, Any]) -> DataConfig:
    """The run's ``data`` section as prediction must read files with it.

    A thermal phantom renders radiometric counts through :data:`~dinomed.data.phantoms.THERMAL_CALIBRATION` and
    :data:`~dinomed.data.phantoms.THERMAL_WINDOW_C`, so its files (``write_phantom_dataset``) and real radiometric
    frames are read as ``intensity: thermal`` with those constants, the mapping the model saw in training.
    """
    data = from_dict(DataConfig, info["data"])
    if info["modality"] == "thermal" and data.uses_phantom:
        data = replace(data, intensity="thermal", thermal_gain=THERMAL_CALIBRATION["gain"],
                       thermal_offset=THERMAL_CALIBRATION["offset"], temperature_window=THERMAL_WINDOW_C)
    return data


def read_input(path: str | Path, info: dict[str, Any]) -> np.ndarray:
    """Read ``path`` as float [0, 1] HWC through the training data layer (reader, intensity mapping, channel
    conversion), refusing another bit depth than the training images (their intensity scale would differ)."""
    image, meta = FileDataset(prediction_data(info), info["modality"]).read(str(path), None)
    bits, expected = meta.get("bit_depth"), info["input"].get("bit_depth")
    if expected and bits and bits != expected:
        raise ValueError(f"{path}: {bits}-bit image, but the model was trained on {expected}-bit images; "
                         f"convert it to {expected} bit first")
    return image.astype(np.float32)


def check_array(image: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """An HWC float array in [0, 1] with the training channel count (HW accepted for one channel)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] != info["channels"]:
        raise ValueError(f"image of shape {image.shape}: the model expects (H, W, {info['channels']}) "
                         f"({info['channels']}-channel images, as in training)")
    if not np.issubdtype(image.dtype, np.floating) or image.min() < 0 or image.max() > 1:
        raise ValueError(f"image of dtype {image.dtype} with range [{image.min()}, {image.max()}]: expected float "
                         f"values in [0, 1] ({info['input'].get('bit_depth') or 8}-bit data divided by its maximum)")
    return image.astype(np.float32)


@torch.no_grad()
def predict_image(model: Any, image: np.ndarray | str | Path) -> np.ndarray:
    """Mask (H, W) int64, depth (H, W) float32 or class probabilities (K,) at the input's own size."""
    info = model.info
    array = read_input(image, info) if isinstance(image, (str, Path)) else check_array(image, info)
    tensor = build_eval_transform(info["modality"], info["image_size"], info["channels"])(array)["image"][None]
    device = next(model.parameters()).device
    out = model.eval()(tensor.to(device)).float().cpu()
    if info["task"] == "cls":
        return out.softmax(1)[0].numpy()
    out = F.interpolate(out, size=array.shape[:2], mode="bilinear", align_corners=False)
    return out.argmax(1)[0].numpy() if info["task"] == "seg" else out[0, 0].numpy()


def _palette(count: int) -> np.ndarray:
    import matplotlib

    colours = matplotlib.colormaps["tab10"](np.arange(count) % 10)[:, :3]
    colours[0] = 0.0
    return (colours * 255).astype(np.uint8)


def write_prediction(image: np.ndarray, output: np.ndarray, task: str, stem: str, out_dir: Path) -> list[Path]:
    """PNG files for one prediction: mask + overlay (seg), 16-bit depth + preview (depth); paths written."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    rgb = (np.repeat(image, 3, -1) if image.shape[-1] == 1 else image) * 255
    if task == "seg":
        mask_path, overlay_path = out_dir / f"{stem}_mask.png", out_dir / f"{stem}_overlay.png"
        Image.fromarray(output.astype(np.uint8)).save(mask_path)
        colours = _palette(int(output.max()) + 1)[output]
        blend = np.where(output[..., None] > 0, 0.55 * rgb + 0.45 * colours, rgb)
        Image.fromarray(blend.clip(0, 255).astype(np.uint8)).save(overlay_path)
        return [mask_path, overlay_path]
    import matplotlib

    depth_path, preview_path = out_dir / f"{stem}_depth.png", out_dir / f"{stem}_depth_preview.png"
    Image.fromarray(np.clip(output * DEPTH_PNG_SCALE, 0, 65535).astype(np.uint16)).save(depth_path)
    norm = (output - output.min()) / max(float(output.max() - output.min()), 1e-9)
    Image.fromarray((matplotlib.colormaps["magma"](norm)[..., :3] * 255).astype(np.uint8)).save(preview_path)
    return [depth_path, preview_path]


def input_files(path: str | Path) -> list[Path]:
    """One image file, or the raster images directly inside a folder (sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such image or folder")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in RASTER_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{path}: no images ({', '.join(RASTER_SUFFIXES)}) in this folder")
    return files


@dataclass
class PredictResult:
    """What :func:`dinomed.predict` wrote: one entry per input image (its output files), and ``predictions.csv``
    for classification models."""

    out_dir: Path
    files: dict[str, list[Path]] = field(default_factory=dict)
    table: Path | None = None


def predict_folder(model: Any, inputs: str | Path, out: str | Path, *, console: Console | None = None) -> PredictResult:
    """Predict every image of ``inputs`` (a file or a folder) with a fine-tuned ``model`` into ``out``.

    Segmentation and depth write their images per input; classification writes ``predictions.csv`` (image,
    predicted class, one probability column per class).
    """
    console = console or Console()
    files, out = input_files(inputs), Path(out)
    task, rows = model.info["task"], []
    result = PredictResult(out)
    names = model.info["class_names"]
    with progress_bar("predict", console) as bar:
        job = bar.add_task("predict", total=len(files))
        for path in files:
            image = read_input(path, model.info)
            output = model.predict(image)
            if task == "cls":
                labels = names or [str(i) for i in range(len(output))]
                rows.append([path.name, labels[int(output.argmax())], *[f"{p:.4f}" for p in output]])
            else:
                result.files[path.name] = write_prediction(image, output, task, path.stem, out)
            bar.advance(job)
    if rows:
        header = ["image", "prediction", *(names or [str(i) for i in range(len(rows[0]) - 2)])]
        text = io.StringIO()
        csv.writer(text).writerows([header, *rows])
        result.table = atomic_write(out / "predictions.csv", text.getvalue())
    console.print(f"{len(files)} prediction(s) written to {out}")
    return result
