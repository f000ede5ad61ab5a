"""Datasets over real files (image folder, manifest, COCO object crops) and :func:`build_dataset`.

Every dataset is an :class:`~dinomed.data.records.ImageDataset`: construction lists records and checks each file
cheaply (exists, header readable, DICOM has pixels, NIfTI has 2-4 dimensions); multi-frame DICOM (OCT volumes)
and NIfTI volumes expand into one record per frame / slice, grouped by their file so one volume never spans two
splits. Loading reads pixels (:mod:`~dinomed.data.readers`), maps them to [0, 1] (:mod:`~dinomed.data.intensity`)
and converts to ``data.channels``.

With ``data.on_error: skip`` a bad file is left out at construction, and one that fails at load time is replaced
by the next good item; both land in ``dataset.skipped`` as ``(path, reason)`` and in the ``dinomed.data`` log
(load-time skips inside DataLoader workers reach only the log, since workers hold copies of the dataset).

Example::

    dataset = build_dataset(recipe.data, recipe.modality)
    sample = dataset[0]          # {"image": (H, W, C) float32 in [0, 1], "label": ..., "meta": {...}}
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dinomed.data.config import DataConfig
from dinomed.data.intensity import normalise, to_channels
from dinomed.data.prepared import prepared_root, resolve_prepared
from dinomed.data.readers import DataError, count_frames, read_image, read_mask, read_thermal
from dinomed.data.records import SPLIT_SYNONYMS, ImageDataset, Record, SubsetDataset, canonical_split

log = logging.getLogger("dinomed.data")


def class_index(names: Iterable[str], label_map: dict[str, int]) -> tuple[list[str], dict[str, int]]:
    """``(class_names, name -> id)``: the sorted names found, or the label map (names sharing an id joined by '/')."""
    if not label_map:
        found = sorted(set(names))
        return found, {name: i for i, name in enumerate(found)}
    ids = max(label_map.values()) + 1
    return ["/".join(n for n, i in label_map.items() if i == k) for k in range(ids)], dict(label_map)


def label_id(label_of: dict[str, int], name: str, source: str | Path, where: str) -> int:
    """Id of class ``name``; a class missing from the label map is an error naming it and the known ones."""
    if name not in label_of:
        raise DataError(source, f"{where}: label '{name}' is not in data.label_map (known: {sorted(label_of)})")
    return label_of[name]


class SkipOnError:
    """``__getitem__`` that, with ``on_error: skip``, records a failing item and returns the next good one."""

    records: list[Record]
    on_error: str
    skipped: list[tuple[str, str]]
    load: Callable[[Record], dict[str, Any]]

    def _skip(self, err: DataError) -> None:
        entry = (err.path, err.problem)
        if entry not in self.skipped:
            self.skipped.append(entry)
            log.warning("skipped %s: %s", err.path, err.problem)

    def __getitem__(self, index: int) -> dict[str, Any]:
        count = len(self.records)
        for offset in range(count):
            try:
                return self.load(self.records[(index + offset) % count])
            except DataError as err:
                if self.on_error != "skip":
                    raise
                self._skip(err)
        raise DataError(self.records[index].image if count else "<empty>", "every item of this dataset failed to load (see .skipped)")


class FileSubset(SkipOnError, SubsetDataset):
    """Subset of a file dataset that keeps its skip behaviour and shares its ``skipped`` list."""

    def __init__(self, parent: FileDataset, indices: Sequence[int]) -> None:
        super().__init__(parent, indices)
        self.on_error, self.skipped = parent.on_error, parent.skipped


class FileDataset(SkipOnError, ImageDataset):
    """Shared loading for file-backed datasets; subclasses fill ``records`` and ``class_names``."""

    def __init__(self, cfg: DataConfig, modality: str) -> None:
        self.cfg, self.modality, self.on_error = cfg, modality, cfg.on_error
        self.records: list[Record] = []
        self.class_names: list[str] | None = None
        self.skipped: list[tuple[str, str]] = []

    def _checked(self, make: Callable[[], list[Record]]) -> list[Record]:
        """Run a construction step; on a :class:`DataError` either raise or skip (``on_error``)."""
        try:
            return make()
        except DataError as err:
            if self.on_error != "skip":
                raise
            self._skip(err)
            return []

    def _file_records(self, record: Record) -> list[Record]:
        """Check ``record``'s files and expand a multi-frame DICOM / NIfTI volume into one record per frame."""
        frames = count_frames(record.image, nifti_axis=self.cfg.nifti_axis)
        for target in (record.mask, record.depth):
            if target is not None and not Path(target).is_file():
                raise DataError(target, f"file not found (mask/depth of {record.image})")
        if frames == 1 and not record.image.lower().endswith((".dcm", ".dicom", ".nii", ".nii.gz")):
            return [record]
        group = record.group if record.group is not None else record.meta.get("key", record.image)
        return [
            Record(record.image, record.label, record.mask, record.depth, group,
                   {**record.meta, "frame": i, "key": f"{record.key}#{i}"}, record.split)
            for i in range(frames)
        ]

    def subset(self, indices: Sequence[int]) -> FileSubset:
        return FileSubset(self, indices)

    def read(self, path: str, frame: int | None) -> tuple[np.ndarray, dict[str, Any]]:
        """Pixels of ``path`` in [0, 1] with ``data.channels`` channels, and the reader's metadata."""
        if self.cfg.intensity == "thermal":
            raw, meta = read_thermal(path, self.cfg.thermal_gain, self.cfg.thermal_offset, frame)
        else:
            raw, meta = read_image(path, frame, nifti_axis=self.cfg.nifti_axis)
        if min(raw.shape[:2]) < self.cfg.min_size:
            raise DataError(path, f"image is {raw.shape[1]}x{raw.shape[0]} px, smaller than data.min_size "
                            f"({self.cfg.min_size} px); lower data.min_size or drop the file (data.on_error: skip)")
        return to_channels(normalise(raw, meta, self.cfg), self.cfg.channels), meta

    def load(self, record: Record) -> dict[str, Any]:
        image, meta = self.read(record.image, record.meta.get("frame"))
        sample: dict[str, Any] = {"image": image}
        if record.label is not None:
            sample["label"] = record.label
        if record.mask is not None:
            sample["mask"] = self._same_size(read_mask(record.mask), record.mask, image, record.image)
        if record.depth is not None:
            depth = read_image(record.depth)[0][..., 0] * np.float32(self.cfg.depth_scale)
            sample["depth"] = self._same_size(depth, record.depth, image, record.image)
        sample["meta"] = {**meta, **record.meta, "path": record.image, "group": record.group, "split": record.split,
                          "modality": self.modality}
        return sample

    @staticmethod
    def _same_size(target: np.ndarray, target_path: str, image: np.ndarray, image_path: str) -> np.ndarray:
        if target.shape[:2] != image.shape[:2]:
            raise DataError(
                target_path, f"size {target.shape[1]}x{target.shape[0]} differs from its image {image_path} "
                f"({image.shape[1]}x{image.shape[0]})"
            )
        return target


def _inside(root: Path, path: str, source: str | Path, where: str, limit: Path | None = None) -> Path:
    """Where a listed path points: an absolute path as it is (hospitals export absolute lists); a relative one under
    ``root``, which it must not leave (``limit``, default ``root``), so a typo cannot reach other folders."""
    if Path(path).is_absolute():
        return Path(path)
    resolved = (root / path).resolve()
    limit = limit or root
    if not resolved.is_relative_to(limit.resolve()):
        raise DataError(source, f"{where}: relative path '{path}' leaves the data root {limit}; relative paths are "
                        "read from data.root (default: the folder of the list), so set data.root to a folder above "
                        "them, or list absolute paths")
    return resolved


class FolderDataset(FileDataset):
    """Images under ``root``; first-level sub-folders are class names when every image sits in one.

    A flat folder (or ``folder_labels: false``) is unlabelled. Files are taken in sorted order, so indices are
    stable across runs.
    """

    def __init__(self, root: str | Path, cfg: DataConfig, modality: str) -> None:
        super().__init__(cfg, modality)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(self.root, "data root is not a folder")
        files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.name.lower().endswith(tuple(cfg.extensions)))
        if not files:
            raise DataError(self.root, f"no image files (extensions {cfg.extensions}) in this folder or below")
        labelled = cfg.folder_labels and all(len(p.relative_to(self.root).parts) > 1 for p in files)
        label_of: dict[str, int] = {}
        if labelled:
            self.class_names, label_of = class_index((p.relative_to(self.root).parts[0] for p in files), cfg.label_map)
        for path in files:
            rel = path.relative_to(self.root).as_posix()
            self.records += self._checked(lambda: self._file_records(Record(
                str(path), label_id(label_of, rel.split("/")[0], path, "class folder") if labelled else None, meta={"key": rel}
            )))
        if not self.records:
            raise DataError(self.root, f"every image file was skipped: {self.skipped}")


def read_manifest(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV (header line) or JSON (list of objects) manifest, values as strings ('' when empty)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "manifest not found")
    try:
        if path.suffix.lower() == ".json":
            rows = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise DataError(path, "JSON manifest must be a list of objects, one per image")
        else:
            with path.open(newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.DictReader(fh))
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(path, f"cannot parse the manifest ({err})") from None
    if not rows:
        raise DataError(path, "manifest lists no images")
    return [{str(k): "" if v is None else str(v).strip() for k, v in row.items()} for row in rows]


class ManifestDataset(FileDataset):
    """Images listed in a CSV/JSON manifest with columns image, label, mask, depth, group (+ split).

    ``data.columns`` renames roles (the CVC-ClinicDB index uses ``sequence`` as its group, OCT ``patient_id``).
    Paths are relative to ``data.root`` or else the manifest's folder, and must stay inside it.
    """

    def __init__(self, manifest: str | Path, cfg: DataConfig, modality: str) -> None:
        super().__init__(cfg, modality)
        self.manifest = Path(manifest)
        rows = read_manifest(self.manifest)
        self.root = Path(cfg.root) if cfg.root else self.manifest.parent
        # a manifest written by `dinomed datasets prepare` also points into its untouched source folder
        self.limit = None if cfg.root else prepared_root(self.manifest)
        present = set(rows[0])
        columns = {role: cfg.columns.get(role, role) for role in ("image", "label", "mask", "depth", "group", "split")}
        missing = [f"'{col}'" + (f" (data.columns.{role})" if role in cfg.columns else "")
                   for role, col in columns.items() if (role == "image" or role in cfg.columns) and col not in present]
        if missing:
            raise DataError(self.manifest, f"missing column(s) {', '.join(missing)}; columns found: {sorted(present)} "
                            "(map differently named ones with data.columns)")
        self.columns = {role: col for role, col in columns.items() if col in present}
        self.splits = self._given_splits(rows)
        labels = [row[self.columns["label"]] for row in rows] if "label" in self.columns else []
        label_of: dict[str, int] = {}
        if any(labels):
            self.class_names, label_of = class_index((name for name in labels if name), cfg.label_map)
        for number, row in enumerate(rows, start=1):
            self.records += self._checked(lambda: self._row_records(row, number, label_of))
        if not self.records:
            raise DataError(self.manifest, f"every row was skipped: {self.skipped}")

    def _given_splits(self, rows: list[dict[str, str]]) -> list[str | None]:
        """The manifest's own split per row (canonical names), or ``None`` per row when it has no split column.

        With a split column every row needs a value: an empty or unknown one is an error naming the rows, since
        guessing would put an image the study holds out into training.
        """
        if "split" not in self.columns:
            return [None] * len(rows)
        column = self.columns["split"]
        values = [row[column] for row in rows]
        empty = [n for n, v in enumerate(values, start=1) if not v]
        if empty:
            raise DataError(self.manifest, f"column '{column}' (split) is empty in row(s) {_rows(empty)}; every row "
                            "needs train, val or test (or drop the column to let dinomed draw grouped splits)")
        unknown = [(n, v) for n, v in enumerate(values, start=1) if canonical_split(v) is None]
        if unknown:
            raise DataError(self.manifest, f"column '{column}' (split): row {unknown[0][0]} has '{unknown[0][1]}'"
                            f"{f' (and {len(unknown) - 1} more rows)' if len(unknown) > 1 else ''}; expected "
                            f"train, val or test (synonyms: {', '.join(sorted(SPLIT_SYNONYMS))})")
        return [canonical_split(v) for v in values]

    def _row_records(self, row: dict[str, str], number: int, label_of: dict[str, int]) -> list[Record]:
        where = f"row {number}"
        value = lambda role: row.get(self.columns.get(role, ""), "") or None  # noqa: E731
        image = value("image")
        if image is None:
            raise DataError(self.manifest, f"{where}: empty image path")
        paths = {role: _inside(self.root, value(role), self.manifest, where, self.limit)
                 for role in ("mask", "depth") if value(role)}
        image_path = _inside(self.root, image, self.manifest, where, self.limit)
        if not image_path.is_file():
            raise DataError(image_path, f"image file not found (listed in {self.manifest}, {where})")
        label = label_id(label_of, value("label"), self.manifest, where) if value("label") else None
        record = Record(str(image_path), label, str(paths["mask"]) if "mask" in paths else None,
                        str(paths["depth"]) if "depth" in paths else None, value("group"),
                        {"key": image, "row": number}, self.splits[number - 1])
        return self._file_records(record)


class CocoCropDataset(FileDataset):
    """One labelled crop per COCO box (e.g. HIT-UAV thermal persons / vehicles), with context padding.

    A box grows by ``coco_padding`` of its size on every side (the surroundings help tell a person from a warm
    rock), is clipped to the image, and boxes smaller than ``coco_min_size`` px are left out. Crops are grouped by
    their source image so one frame never feeds two splits; ``iscrowd`` boxes are skipped as in COCO evaluation.
    """

    def __init__(self, annotations: str | Path, cfg: DataConfig, modality: str) -> None:
        super().__init__(cfg, modality)
        self.annotations = Path(annotations)
        coco = self._read_json()
        default_root = self.annotations.parent / "images"
        self.root = Path(cfg.root) if cfg.root else default_root if default_root.is_dir() else self.annotations.parent
        # annotations written by `dinomed datasets prepare` point into its untouched source folder too
        self.limit = None if cfg.root else prepared_root(self.annotations)
        categories = sorted(coco["categories"], key=lambda c: c["id"])
        if cfg.label_map:
            self.class_names, label_of = class_index((), cfg.label_map)
        else:  # category id order, not alphabetical: ids in COCO files are the published class order
            self.class_names = [str(c["name"]) for c in categories]
            label_of = {name: i for i, name in enumerate(self.class_names)}
        category = {c["id"]: c["name"] for c in categories}
        images = {img["id"]: img for img in coco["images"]}
        self.has_split = any(img.get("split") for img in coco["images"])
        by_image: dict[Any, list[dict[str, Any]]] = {}
        for ann in coco["annotations"]:
            if ann.get("image_id") not in images:
                raise DataError(self.annotations, f"annotation {ann.get('id')} refers to image id {ann.get('image_id')}, "
                                "which is not in 'images'")
            if ann.get("category_id") not in category:
                raise DataError(self.annotations, f"annotation {ann.get('id')} has category_id {ann.get('category_id')}, "
                                f"not one of {sorted(category)}")
            by_image.setdefault(ann["image_id"], []).append(ann)
        for image_id, anns in by_image.items():
            entry = images[image_id]
            self.records += self._checked(lambda: self._crops(entry, anns, category, label_of))
        if not self.records:
            raise DataError(self.annotations, f"no usable boxes (skipped: {self.skipped})")

    def _read_json(self) -> dict[str, Any]:
        if not self.annotations.is_file():
            raise DataError(self.annotations, "COCO annotation file not found")
        try:
            coco = json.loads(self.annotations.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(self.annotations, f"not valid JSON ({err})") from None
        missing = [key for key in ("images", "annotations", "categories") if key not in coco]
        if missing:
            raise DataError(self.annotations, f"not a COCO file: missing key(s) {missing}")
        return coco

    def _crops(self, entry: dict[str, Any], anns: list[dict[str, Any]], category: dict[int, str],
               label_of: dict[str, int]) -> list[Record]:
        name = str(entry["file_name"])
        split = self._image_split(entry)
        path = _inside(self.root, name, self.annotations, f"image id {entry['id']}", self.limit)
        if not path.is_file():
            raise DataError(path, f"image file not found (image id {entry['id']} in {self.annotations})")
        count_frames(path)
        width, height = entry.get("width"), entry.get("height")
        if not width or not height:
            from PIL import Image

            with Image.open(path) as img:
                width, height = img.size
        records = []
        pad, min_size = self.cfg.coco_padding, self.cfg.coco_min_size
        for ann in anns:
            x, y, w, h = (float(v) for v in ann["bbox"])
            if ann.get("iscrowd") or max(w, h) < min_size:
                continue
            box = [max(0, int(np.floor(x - pad * w))), max(0, int(np.floor(y - pad * h))),
                   min(int(width), int(np.ceil(x + w + pad * w))), min(int(height), int(np.ceil(y + h + pad * h)))]
            meta = {"key": f"{name}#box{ann.get('id')}", "box": box, "annotation_id": ann.get("id"),
                    "category": category[ann["category_id"]]}
            label = label_id(label_of, category[ann["category_id"]], self.annotations, f"annotation {ann.get('id')}")
            records.append(Record(str(path), label, group=name, meta=meta, split=split))
        return records

    def _image_split(self, entry: dict[str, Any]) -> str | None:
        """An image's ``split`` field (canonical name); with any image carrying one, every image must."""
        if not self.has_split:
            return None
        value = str(entry.get("split") or "")
        if canonical_split(value) is None:
            raise DataError(self.annotations, f"image id {entry['id']} ({entry.get('file_name')}) has split "
                            f"'{value}'; expected train, val or test (synonyms: {', '.join(sorted(SPLIT_SYNONYMS))}) "
                            "on every image once one image has a split")
        return canonical_split(value)

    def load(self, record: Record) -> dict[str, Any]:
        image, meta = self.read(record.image, None)
        x0, y0, x1, y1 = record.meta["box"]
        if y1 > image.shape[0] or x1 > image.shape[1]:
            raise DataError(record.image, f"box {record.meta['box']} lies outside the {image.shape[1]}x{image.shape[0]} image")
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        return {"image": crop, "label": record.label,
                "meta": {**meta, **record.meta, "path": record.image, "group": record.group, "split": record.split,
                         "modality": self.modality}}


def describe_source(cfg: DataConfig, modality: str, count: int) -> str:
    """One console line naming the data a run reads (so synthetic data is never taken for the user's)."""
    if cfg.uses_phantom:
        size = "x".join(str(s) for s in cfg.phantom.size)
        return (f"Data: the built-in {modality} phantom ({count} synthetic images, {size} px); set data.root, "
                "data.manifest or data.annotations to train on your images.")
    where = {"folder": cfg.root, "manifest": cfg.manifest, "coco": cfg.annotations}[cfg.source]
    return f"Data: {cfg.source} {where} ({count} images)."


def build_dataset(data_cfg: DataConfig, modality: str) -> ImageDataset:
    """The dataset a recipe's ``data`` section describes; no root/manifest/annotations -> the modality's phantom."""
    cfg = data_cfg
    if cfg.uses_phantom:
        from dinomed.data.phantoms import PhantomDataset

        return PhantomDataset(modality, cfg.phantom.count, cfg.phantom.size, cfg.phantom.seed, channels=cfg.channels)
    if cfg.source == "folder":
        return FolderDataset(cfg.root, cfg, modality)  # type: ignore[arg-type]  # DataConfig checks root is set
    if cfg.source == "manifest":
        manifest = Path(cfg.manifest)  # type: ignore[arg-type]
        if not manifest.is_file():  # a prepared dataset named directly: `data.manifest: cvc-clinicdb`
            manifest = resolve_prepared(cfg.manifest)  # type: ignore[arg-type]
        return ManifestDataset(manifest, cfg, modality)
    return CocoCropDataset(cfg.annotations, cfg, modality)  # type: ignore[arg-type]


def _rows(numbers: list[int], shown: int = 10) -> str:
    """``3, 7, 12 (+4 more)``: row numbers for an error message."""
    more = f" (+{len(numbers) - shown} more)" if len(numbers) > shown else ""
    return ", ".join(map(str, numbers[:shown])) + more
