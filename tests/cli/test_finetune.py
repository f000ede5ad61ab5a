"""``dinomed finetune / predict / merge`` on tiny phantoms: artefacts written, one-line actionable errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dinomed.cli import main

TINY = ["finetune.image_size=32", "finetune.epochs=1", "finetune.batch_size=4", "data.phantom.count=24",
        "data.phantom.size=[32,32]", "data.num_workers=0", "model.arch=vit_tiny_patch16_224"]
SETS = [arg for item in TINY for arg in ("--set", item)]
DPT_DETAIL = ["--set", "finetune.decoder=dpt", "--set", "finetune.detail=true", "--set", "finetune.head_hidden=16"]


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{err}"
    return lines[0]


@pytest.fixture(scope="module", params=[[], DPT_DETAIL], ids=["fusion", "dpt-detail"])
def run_dir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    out = tmp_path_factory.mktemp("cli") / "seg"
    main(["finetune", "--recipe", "endoscopy", "--task", "seg", "--labels", "0.5", "--lora", "--out", str(out), *SETS,
          *request.param])
    return out


def test_finetune_predict_merge(run_dir: Path, tmp_path: Path, run_cli) -> None:
    assert (run_dir / "metrics.json").is_file() and (run_dir / "model" / "adapter" / "adapter_config.json").is_file()
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(images / f"f{i}.png")
    code, out, _ = run_cli(["predict", "--model", str(run_dir), "--input", str(images), "--out", str(tmp_path / "pred")])
    assert code == 0 and "2 prediction(s)" in out
    mask = np.array(Image.open(tmp_path / "pred" / "f0_mask.png"))
    assert mask.shape == (36, 44) and (tmp_path / "pred" / "f1_overlay.png").is_file()
    code, out, _ = run_cli(["merge", str(run_dir), "--out", str(tmp_path / "merged")])
    assert code == 0 and (tmp_path / "merged" / "backbone.safetensors").is_file()


def test_existing_run_dir_is_refused_and_untouched(run_dir: Path, run_cli) -> None:
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    code, _, err = run_cli(["finetune", "--recipe", "endoscopy", "--out", str(run_dir), *SETS])
    assert code == 1 and "already holds a run" in _one_line(err) and "nothing was overwritten" in err
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("args,expected", [
    (["finetune", "--recipe", "endoscopy", "--lora", "--full"], "choose one of --lora, --full, --frozen"),
    (["finetune"], "--recipe RECIPE"),
    (["finetune", "--recipe", "endoscopy", "--labels", "some"], "--labels some: expected a count"),
    (["finetune", "--recipe", "endoscopy", "--task", "segment"], "segment"),
    (["finetune", "--recipe", "oct", "--task", "depth"], "task 'depth' needs a depth"),
    (["predict", "--model", "no/such/run", "--input", ".", "--out", "x"], "no/such/run"),
])
def test_one_line_errors(args: list[str], expected: str, tmp_path: Path, run_cli) -> None:
    out = ["--out", str(tmp_path / "run"), *SETS] if args[0] == "finetune" and len(args) > 1 else []
    code, _, err = run_cli([*args, *out])
    assert code == 1 and expected in _one_line(err)
    assert not (tmp_path / "run").exists(), "a run that could not start left its directory behind"


def test_failed_start_leaves_out_reusable(tmp_path: Path, run_cli) -> None:
    """A bad label budget fails before training; the same --out then works (no stale splits.json)."""
    out = ["--out", str(tmp_path / "run"), *SETS]
    code, _, err = run_cli(["finetune", "--recipe", "endoscopy", "--labels", "10000", *out])
    assert code == 1 and "larger than" in _one_line(err)
    code, _, _ = run_cli(["finetune", "--recipe", "endoscopy", "--labels", "4", *out])
    assert code == 0 and (tmp_path / "run" / "metrics.json").is_file()
