"""Tiny archives that mimic each supported public layout, generated in tmp_path (a handful of files each)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, seed: int, size: tuple[int, int] = (40, 32), mode: str = "L") -> None:
    """Random-texture image (distinct per seed, so no accidental near-duplicates)."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def write_mask(path: Path, seed: int) -> None:
    mask = np.zeros((32, 40), np.uint8)
    mask[4 + seed % 8:20, 5:25] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)


@dataclass
class Mimic:
    """A generated source folder, the card layout it mimics, and what prepare should find."""

    card: str
    layout: str
    images: int
    groups: int


def kermany(root: Path) -> Mimic:
    # patient 11 appears in train and test, as in the real OCT2017 split
    for i, (split, cls, patient) in enumerate([("train", "CNV", 11), ("train", "DME", 12), ("train", "NORMAL", 13),
                                                ("test", "CNV", 11), ("test", "DRUSEN", 14), ("train", "DRUSEN", 14)]):
        write_image(root / "OCT2017" / split / cls / f"{cls}-{patient}-{i}.jpeg", i)
    for split in ("train", "test"):
        for cls in ("CNV", "DME", "DRUSEN", "NORMAL"):
            (root / "OCT2017" / split / cls).mkdir(parents=True, exist_ok=True)
    return Mimic("kermany-oct2017", "original", 6, 4)


def octdl(root: Path) -> Mimic:
    for cls in ("AMD", "DME", "ERM", "NO", "RAO", "RVO", "VID"):
        write_image(root / "OCTDL" / cls / f"{cls.lower()}_{100 + len(cls)}_1.jpg", len(cls) + ord(cls[0]))
    write_image(root / "OCTDL" / "AMD" / "amd_777_2.jpg", 99)
    return Mimic("octdl", "original", 8, 3)


def olives(root: Path) -> Mimic:
    rows = ["Path (Trial/Arm/Folder/Visit/Eye/Image Name),Scan (n/49),Eye_ID,Patient_ID"]
    for i, (patient, eye) in enumerate([(1, 1), (1, 2), (2, 3)]):
        rel = f"/Prime_FULL/01-001/V{i}/OD/{i}.tif"
        write_image(root / rel.lstrip("/"), i)
        rows.append(f"{rel},{i},{eye},{patient}")
    (root / "Biomarker_Clinical_Data_Images.csv").write_text("\n".join(rows) + "\n")
    return Mimic("olives", "biomarker-index", 3, 2)


def cvc_original(root: Path) -> Mimic:
    for frame in (1, 25, 26, 612):
        write_image(root / "Original" / f"{frame}.tif", frame, mode="RGB")
        write_mask(root / "Ground Truth" / f"{frame}.tif", frame)
    return Mimic("cvc-clinicdb", "original", 4, 3)


def kvasir(root: Path) -> Mimic:
    for i in range(3):
        write_image(root / "Kvasir-SEG" / "images" / f"cju{i}.jpg", i, mode="RGB")
        write_mask(root / "Kvasir-SEG" / "masks" / f"cju{i}.jpg", i)
    return Mimic("kvasir-seg", "original", 3, 0)


def hamlyn(root: Path) -> Mimic:
    for s, seq in enumerate(("rectified01", "rectified02")):
        for i in range(2):
            write_image(root / seq / "color" / f"{i:010d}.jpg", 100 * s + i, mode="RGB")
            depth = np.full((32, 40), 50 + i, np.uint16)
            (root / seq / "depth").mkdir(parents=True, exist_ok=True)
            Image.fromarray(depth).save(root / seq / "depth" / f"{i:010d}.png")
    return Mimic("hamlyn", "rectified", 4, 2)


def _coco(images: list[dict], key_images: str = "file_name", key_ann: str = "annotations") -> dict:
    anns = [{"id": i, "image_id": im["id"], "category_id": i % 2, "bbox": [1, 2, 5, 6], "area": 30}
            for i, im in enumerate(images)]
    return {"images": [{**{k: v for k, v in im.items() if k != "name"}, key_images: im["name"]} for im in images],
            key_ann: anns, "categories": [{"id": 0, "name": "Person"}, {"id": 1, "name": "Car"}]}


def hit_uav(root: Path) -> Mimic:
    for j, split in enumerate(("train", "val", "test")):
        names = [f"{j % 2}_60_30_0_0{j}{i}00.jpg" for i in range(2)]
        for i, name in enumerate(names):
            write_image(root / "normal_json" / split / name, 10 * j + i)
        images = [{"id": 10 * j + i, "name": n, "date_captured": f"2021011{j}"} for i, n in enumerate(names)]
        path = root / "normal_json" / "annotations" / f"{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_coco(images, "filename", "annotation")))
    return Mimic("hit-uav", "original", 6, 3)


def flir(root: Path) -> Mimic:
    for j, folder in enumerate(("images_thermal_train", "images_thermal_val", "video_thermal_test")):
        names = [f"data/video-vid{j}-frame-00000{i}-abc.jpg" for i in range(2)]
        for i, name in enumerate(names):
            write_image(root / folder / name, 40 + 10 * j + i)
        images = [{"id": i, "name": n} for i, n in enumerate(names)]
        (root / folder / "coco.json").write_text(json.dumps(_coco(images)))
    return Mimic("flir-adas", "v2", 6, 3)


def llvip(root: Path) -> Mimic:
    for j, split in enumerate(("train", "test")):
        for i in range(2):
            stem = f"0{j}000{i}"
            write_image(root / "LLVIP" / "infrared" / split / f"{stem}.jpg", 70 + 10 * j + i)
            xml = ("<annotation><object><name>person</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>11</xmax>"
                   "<ymax>22</ymax></bndbox></object></annotation>")
            (root / "LLVIP" / "Annotations").mkdir(parents=True, exist_ok=True)
            (root / "LLVIP" / "Annotations" / f"{stem}.xml").write_text(xml)
    return Mimic("llvip", "original", 4, 0)


MIMICS: dict[str, Callable[[Path], Mimic]] = {
    "kermany": kermany, "octdl": octdl, "olives": olives, "cvc": cvc_original, "kvasir": kvasir,
    "hamlyn": hamlyn, "hit-uav": hit_uav, "flir": flir, "llvip": llvip}


def tree_digest(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under root with its mode and bytes: compared before/after to prove the source is untouched."""
    return {str(p.relative_to(root)): (p.stat().st_mode, p.read_bytes()) for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """DINOMED_DATA in tmp_path so a default --out never touches the user's home."""
    home = tmp_path / "home"
    monkeypatch.setenv("DINOMED_DATA", str(home))
    return home
