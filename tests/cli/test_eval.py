"""``dinomed eval knn|linear``, ``attention``, ``pca`` and ``report`` on a tiny OCT phantom (ViT-Ti, 64 px)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm

from dinomed.cli import main
from dinomed.models.backbones import BackboneSpec, save_backbone


def _tiny(tmp_path: Path) -> list[str]:
    sets = ["data.phantom.count=24", "data.phantom.size=[64,64]", "augment.global_size=64", "data.num_workers=0",
            "train.device=cpu", f"eval.cache_dir={tmp_path / 'cache'}", "eval.linear_epochs=5"]
    return [arg for s in sets for arg in ("--set", s)]


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_eval_knn_random_baseline_prints_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "knn.json"
    code, stdout, err = _run(["eval", "knn", "--backbone", "random", "--recipe", "oct", "--quick", *_tiny(tmp_path),
                              "--json", str(out)], capsys)
    assert code == 0, err
    assert "balanced accuracy" in stdout and "random init" in stdout
    assert json.loads(out.read_text())["method"] == "knn"


def test_eval_linear_and_unknown_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, err = _run(["eval", "linear", "-b", "random", "-r", "oct", "--quick", *_tiny(tmp_path)], capsys)
    assert code == 0, err
    assert "best_lr" in stdout
    code, _, err = _run(["eval", "knn", "-b", "random", "-r", "oct", "--set", "eval.knn_kk=3"], capsys)
    assert code == 2 and "did you mean 'eval.knn_k'" in err


def test_attention_and_pca_write_pngs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--backbone", "random", "--recipe", "oct", "--count", "2", *_tiny(tmp_path)]
    code, stdout, err = _run(["attention", *base, "--out", str(tmp_path / "att")], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "att").iterdir()) == ["attention_000.png", "attention_001.png"]
    code, _, err = _run(["pca", *base, "--out", str(tmp_path / "pca"), "--foreground", "0"], capsys)
    assert code == 0, err
    assert (tmp_path / "pca" / "pca.png").read_bytes().startswith(b"\x89PNG")


def test_attention_on_a_cnn_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cnn = timm.create_model("resnet10t", pretrained=False, num_classes=0, in_chans=1)
    save_backbone(cnn, BackboneSpec("resnet10t", {"num_classes": 0, "in_chans": 1}), tmp_path / "cnn")
    code, _, err = _run(["attention", "-b", str(tmp_path / "cnn"), "-r", "oct", "-n", "1", *_tiny(tmp_path),
                         "-o", str(tmp_path / "att")], capsys)
    assert code == 2 and "no ViT self-attention" in err


def test_report_lists_missing_pieces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = _run(["report", str(tmp_path), "--out", str(tmp_path / "r.html")], capsys)
    assert code == 0 and "missing training" in stdout and (tmp_path / "r.html").is_file()
