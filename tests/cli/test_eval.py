"""``dinomed eval knn|linear``, ``attention``, ``pca`` and ``report`` on a tiny OCT phantom (ViT-Ti, 64 px)."""

from __future__ import annotations

import json
from pathlib import Path

import timm

from dinomed.models.backbones import BackboneSpec, save_backbone


def _tiny(tmp_path: Path) -> list[str]:
    sets = ["data.phantom.count=24", "data.phantom.size=[64,64]", "augment.global_size=64", "data.num_workers=0",
            "train.device=cpu", f"eval.cache_dir={tmp_path / 'cache'}", "eval.linear_epochs=5"]
    return [arg for s in sets for arg in ("--set", s)]




def test_eval_knn_random_baseline_prints_table_and_json(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "knn.json"
    code, stdout, err = run_cli(["eval", "knn", "--backbone", "random", "--recipe", "oct", "--quick", *_tiny(tmp_path),
                              "--json", str(out)])
    assert code == 0, err
    assert "balanced accuracy" in stdout and "random init" in stdout
    assert json.loads(out.read_text())["method"] == "knn"


def test_eval_linear_and_unknown_key(tmp_path: Path, run_cli) -> None:
    code, stdout, err = run_cli(["eval", "linear", "-b", "random", "-r", "oct", "--quick", *_tiny(tmp_path)])
    assert code == 0, err
    assert "best_lr" in stdout
    code, _, err = run_cli(["eval", "knn", "-b", "random", "-r", "oct", "--set", "eval.knn_kk=3"])
    assert code == 1 and "did you mean 'eval.knn_k'" in err


def test_attention_and_pca_write_pngs(tmp_path: Path, run_cli) -> None:
    base = ["--backbone", "random", "--recipe", "oct", "--count", "2", *_tiny(tmp_path)]
    code, stdout, err = run_cli(["attention", *base, "--out", str(tmp_path / "att")])
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "att").iterdir()) == ["attention_000.png", "attention_001.png"]
    code, _, err = run_cli(["pca", *base, "--out", str(tmp_path / "pca"), "--foreground", "0"])
    assert code == 0, err
    assert (tmp_path / "pca" / "pca.png").read_bytes().startswith(b"\x89PNG")


def test_attention_on_a_cnn_is_a_one_line_error(tmp_path: Path, run_cli) -> None:
    cnn = timm.create_model("resnet10t", pretrained=False, num_classes=0, in_chans=1)
    save_backbone(cnn, BackboneSpec("resnet10t", {"num_classes": 0, "in_chans": 1}), tmp_path / "cnn")
    code, _, err = run_cli(["attention", "-b", str(tmp_path / "cnn"), "-r", "oct", "-n", "1", *_tiny(tmp_path),
                         "-o", str(tmp_path / "att")])
    assert code == 1 and "is neither a Vision Transformer" in err and "nor a NAT" in err


def test_report_lists_missing_pieces(tmp_path: Path, run_cli) -> None:
    code, stdout, _ = run_cli(["report", str(tmp_path), "--out", str(tmp_path / "r.html")])
    assert code == 0 and "missing training" in stdout and (tmp_path / "r.html").is_file()
