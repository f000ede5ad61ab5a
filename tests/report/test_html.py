"""The HTML report: sections present, images decodable PNG data URIs, missing pieces listed, offline-openable."""

from __future__ import annotations

import base64
import io
import json
import math
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from dinomed.recipe import load_recipe
from dinomed.api import build_report


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "section":
            self.sections.append(values.get("id") or "")
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag in ("script", "link") or (tag == "img" and not (values.get("src") or "").startswith("data:")):
            self.external.append(tag)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _assert_images_are_pngs(page: _Page) -> None:
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert Image.open(io.BytesIO(png)).format == "PNG"


def _metrics(run_dir: Path, n: int = 6) -> None:
    lines = [json.dumps({"step": 10 * i, "epoch": 0, "loss": 5 - 0.1 * i, "lr": 1e-4, "wd": 0.04, "momentum": 0.99,
                         "teacher_temp": 0.04, "img_per_s": 30.0, "teacher_entropy": 3.0,
                         "teacher_batch_entropy": 6.0, "kl": 0.4, "teacher_std": 0.05,
                         "log_k": math.log(4096), "embed_dim": 192}) for i in range(n)]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n{\"step\": 7", encoding="utf-8")  # truncated tail


def _eval_json(run_dir: Path) -> None:
    (run_dir / "eval").mkdir()
    result = {"method": "knn", "backbone": str(run_dir), "recipe": "oct", "class_names": ["a", "b"],
              "split_sizes": {"train": 8, "val": 2, "test": 2}, "params": {"k": 8, "temperature": 0.07},
              "metrics": {"test": {"top1": 0.5, "balanced_accuracy": 0.5, "per_class_recall": {"a": 1.0, "b": 0.0}}}}
    (run_dir / "eval" / "knn.json").write_text(json.dumps(result), encoding="utf-8")


def test_partial_run_renders_what_exists_and_lists_the_rest(tmp_path: Path) -> None:
    run_dir = tmp_path / "oct-run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(load_recipe("oct", quick=True).to_yaml(), encoding="utf-8")
    _metrics(run_dir)
    _eval_json(run_dir)
    report = build_report(run_dir)
    assert report.path == run_dir / "report.html"
    assert set(report.present) == {"config", "training", "collapse", "evaluation"}
    assert set(report.missing) == {"summary", "quality", "attention", "pca", "finetune"}
    page = _parse(report.path)
    assert page.sections == ["missing", "summary", "config", "training", "collapse", "quality", "evaluation",
                             "attention", "pca", "finetune"]  # split and init: a from-scratch run without them
    assert len(page.images) == 2 and not page.external
    _assert_images_are_pngs(page)
    text = report.path.read_text(encoding="utf-8")
    assert "healthy" in text and "balanced accuracy" in text and "no exported backbone" in text


def test_empty_dir_still_gets_a_report(tmp_path: Path) -> None:
    report = build_report(tmp_path, tmp_path / "out" / "r.html")
    assert report.present == [] and "training" in report.missing
    assert _parse(report.path).sections[0] == "missing"


PRETRAIN = ["model.out_dim=256", "model.hidden_dim=64", "model.bottleneck_dim=32", "augment.global_size=32",
            "augment.local_size=16", "augment.local_crops=2", "data.phantom.count=32", "data.phantom.size=[48,48]",
            "data.num_workers=0", "train.batch_size=8", "train.epochs=2", "optim.warmup_epochs=1", "train.log_every=1",
            "train.device=cpu"]
FINETUNE = ["finetune.image_size=32", "finetune.epochs=1", "finetune.batch_size=4", "data.phantom.count=24",
            "data.phantom.size=[32,32]", "data.num_workers=0", "model.arch=vit_tiny_patch16_224"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run dir: the DINO trainer's output on a tiny OCT phantom, ``dinomed eval knn`` on it, and a LoRA
    segmentation fine-tune of its backbone in ``RUN_DIR/finetune/seg`` (~10 s on 2 cores)."""
    from dinomed.api import evaluate, finetune, pretrain

    root = tmp_path_factory.mktemp("runs")
    run = pretrain("oct", overrides=[*PRETRAIN, f"train.output_dir={root}", "train.run_name=oct-run"], quick=True)
    with pytest.warns(UserWarning, match="exceeds"):  # 32 phantom images: fewer than k=20 in the train split
        evaluate(backbone=run.run_dir, method="knn", overrides=[f"eval.cache_dir={root / 'cache'}"])
    finetune("oct", task="seg", backbone=run.run_dir, overrides=FINETUNE, out=run.run_dir / "finetune" / "seg")
    return run.run_dir


@pytest.mark.slow
def test_finished_run_has_every_section(finished_run: Path) -> None:
    report = build_report(finished_run, samples=2)
    assert report.missing == {}
    page = _parse(report.path)
    assert "missing" not in page.sections and not page.external
    assert len(page.images) >= 2 + 2 + 1  # curves + collapse, 2 attention figures, 1 PCA grid (+ fine-tune curves)
    _assert_images_are_pngs(page)
    text = report.path.read_text(encoding="utf-8")
    assert "dice" in text and "balanced accuracy" in text and "vit_tiny_patch16_224" in text


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
def test_headless_chromium_renders_offline(finished_run: Path, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no headless browser: chromium not on PATH (Debian/Ubuntu CI: apt-get install -y chromium "
                    "fonts-dejavu-core); the html.parser checks above still ran")
    report = build_report(finished_run, samples=1)
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-extensions", "--no-first-run", "--window-size=1200,2400",
                    f"--screenshot={shot}", report.path.as_uri()], check=True, timeout=120, capture_output=True)
    image = Image.open(shot).convert("L")
    assert image.size == (1200, 2400)
    assert len(image.resize((60, 120)).getcolors(60 * 120)) > 10  # more than a blank page
