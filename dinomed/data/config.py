"""Recipe section ``data``: where images come from, how they are read and how intensities map to [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass

from dinomed.config import option

DATA_SOURCES = ("auto", "phantom", "folder", "manifest", "coco")
INTENSITY_MODES = ("auto", "window", "percentile", "thermal")
MANIFEST_ROLES = ("image", "label", "mask", "depth", "group", "split")
IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".nii", ".nii.gz"]


@dataclass
class PhantomConfig:
    """Built-in synthetic data used when a recipe names no data root."""

    count: int = option(1024, "number of generated images", min=1)
    size: tuple[int, int] = option((224, 224), "generated image height and width in pixels", min=32)
    seed: int = option(0, "generator seed; sample i is a pure function of (seed, i)")


def _check_range(name: str, pair: tuple[float, float] | None) -> None:
    if pair is not None and not pair[0] < pair[1]:
        raise ValueError(f"{name} must be [low, high] with low < high, got {list(pair)}")


@dataclass
class DataConfig:
    """Where the images come from: the user's files, or the built-in phantom of the modality when none are named."""

    source: str = option(
        "auto", "dataset type. auto: manifest when data.manifest is set, coco when data.annotations is, folder when "
        "only data.root is, else the built-in phantom; an explicit phantom with a path set is an error (your data "
        "is never silently replaced by synthetic images)", choices=DATA_SOURCES)
    root: str | None = option(
        None, "folder holding the images (folder source); for manifest/coco, the folder image paths are relative to "
        "(default: the manifest's folder; for coco its images/ sub-folder when present)"
    )
    manifest: str | None = option(
        None, "CSV/JSON manifest (columns image, label, mask, depth, group, + split), or the name of a dataset made by "
        "`dinomed datasets prepare`"
    )
    annotations: str | None = option(None, "COCO json (source: coco): each box becomes one labelled object crop")
    columns: dict[str, str] = option(
        {}, "manifest column names that differ from the standard ones, role -> column, e.g. {group: sequence}"
    )
    label_map: dict[str, int] = option(
        {}, "class name -> label id (ids 0..K-1; several names may share an id); empty = sorted names found"
    )
    extensions: list[str] = option(list(IMAGE_EXTENSIONS), "file suffixes read by the folder source (lower case)")
    folder_labels: bool = option(True, "folder source: first-level sub-folders are class names (torchvision ImageFolder)")
    channels: int = option(1, "channels fed to the model: 1 (grayscale) or 3 (RGB)", choices=(1, 3))
    intensity: str = option(
        "auto", "how raw values map to [0, 1]: auto (bit depth; DICOM/NIfTI: VOI window else percentiles), window, "
        "percentile, thermal (counts -> degC -> temperature_window)", choices=INTENSITY_MODES
    )
    window: tuple[float, float] | None = option(None, "intensity: window — [low, high] in raw/physical units (e.g. HU)")
    percentiles: tuple[float, float] = option(
        (0.5, 99.5), "per-image percentiles mapped to 0 and 1 (intensity: percentile, and auto for DICOM/NIfTI without a window)",
        min=0.0, max=100.0,
    )
    nifti_axis: int = option(2, "NIfTI volumes are cut into 2D slices along this voxel axis", choices=(0, 1, 2))
    thermal_gain: float = option(
        0.01, "radiometric calibration: degC = gain * counts + offset (default: 0.01 K per count, FLIR TLinear high-res)"
    )
    thermal_offset: float = option(-273.15, "radiometric calibration offset in degC (default: Kelvin -> Celsius)")
    temperature_window: tuple[float, float] = option(
        (20.0, 40.0), "intensity: thermal — [low, high] degC mapped to [0, 1] (skin/body range by default)"
    )
    depth_scale: float = option(1.0, "metres per stored depth unit (e.g. 0.001 for 16-bit PNG depth in mm)", min=0.0)
    coco_padding: float = option(0.1, "context added around each COCO box, as a fraction of its width/height per side", min=0.0)
    coco_min_size: int = option(4, "COCO boxes whose longer side is below this many pixels are left out", min=1)
    split_file: str | None = option(None, "JSON split file: written by the first run, reused (and checked) by later runs")
    val_fraction: float = option(
        0.15, "fraction of images in the validation split (whole groups); ignored when the data carries its own "
        "split, except to draw val from its train part when it has no val rows", min=0.0, max=0.9)
    test_fraction: float = option(
        0.2, "fraction of images in the test split (whole groups); ignored when the data carries its own split",
        min=0.0, max=0.9)
    labelled: int | float | None = option(
        None, "labelled images taken from the train split: an integer N images, or a fraction (0, 1] per class; "
        "null = every labelled train image", min=0.0
    )
    split_seed: int = option(0, "seed of the grouped split and of the labelled subset")
    allow_group_leaks: bool = option(
        False, "use the data's own split even when a group (patient / sequence) appears in two of its parts "
        "(a warning instead of an error; the test score is then optimistic)")
    pretrain_splits: list[str] = option(
        ["train", "val"], "the parts of the split (the data's own, else grouped) that pretraining reads; the test "
        "part is held out by default so that evaluating on it afterwards is honest", choices=("train", "val", "test"))
    min_size: int = option(8, "smallest image side accepted, in pixels (one patch of the finest ViT, /8; raise it "
                           "to your model's patch); smaller images are an error naming the file (skipped with "
                           "on_error: skip)", min=1)
    on_error: str = option("raise", "unreadable file: 'raise' stops, 'skip' drops it and reports", choices=("raise", "skip"))
    num_workers: int = option(2, "DataLoader worker processes", min=0)
    phantom: PhantomConfig = option(default_factory=PhantomConfig)

    @property
    def uses_phantom(self) -> bool:
        """True when the built-in phantom is the data."""
        return self.source == "phantom"

    def _resolve_source(self) -> None:
        named = {"manifest": self.manifest, "coco": self.annotations}
        if self.source == "auto":
            given = [source for source, value in named.items() if value]
            if len(given) > 1:
                raise ValueError("both data.manifest and data.annotations are set; set data.source to the one to read")
            self.source = given[0] if given else "folder" if self.root else "phantom"
        elif self.source == "phantom":
            paths = [f"data.{k}" for k in ("root", "manifest", "annotations") if getattr(self, k)]
            if paths:
                raise ValueError(f"source is phantom but {', '.join(paths)} is set: the run would train on synthetic "
                                 "images, not on your files; set data.source=auto (it picks the source from the "
                                 "path) or drop the path")

    def __post_init__(self) -> None:
        self._resolve_source()
        if self.source == "folder" and not self.root:
            raise ValueError("source 'folder' needs root: the folder holding the images")
        if self.source == "manifest" and not self.manifest:
            raise ValueError("source 'manifest' needs manifest: a CSV or JSON file")
        if self.source == "coco" and not self.annotations:
            raise ValueError("source 'coco' needs annotations: a COCO json file")
        if self.intensity == "window" and self.window is None:
            raise ValueError("intensity 'window' needs window: [low, high]")
        _check_range("window", self.window)
        _check_range("percentiles", self.percentiles)
        _check_range("temperature_window", self.temperature_window)
        unknown = sorted(set(self.columns) - set(MANIFEST_ROLES))
        if unknown:
            raise ValueError(f"columns: unknown role(s) {unknown}; valid roles are {list(MANIFEST_ROLES)}")
        ids = sorted(set(self.label_map.values()))
        if ids and ids != list(range(len(ids))):
            raise ValueError(f"label_map ids must be 0..K-1 without gaps, got {ids}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must leave a train split, got {self.val_fraction} + {self.test_fraction}"
            )
        if not self.pretrain_splits:
            raise ValueError("pretrain_splits must name at least one of train, val, test")
        if self.thermal_gain == 0:
            raise ValueError("thermal_gain must be non-zero")
