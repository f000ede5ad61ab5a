"""``dinomed tune`` on a tiny phantom: a resumable study, best.yaml and a tested final model; bad spaces fail first."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import RunCli

TINY = ["finetune.image_size=32", "finetune.epochs=2", "finetune.batch_size=4", "data.phantom.count=48",
        "data.phantom.size=[32,32]", "data.num_workers=0", "model.arch=vit_tiny_patch16_224", "tune.folds=2",
        "tune.space={lr: {low: 1.0e-4, high: 1.0e-2, log: true}}"]
SETS = [arg for item in TINY for arg in ("--set", item)]


def test_tune_command_searches_retrains_and_resumes(tmp_path: Path, run_cli: RunCli) -> None:
    args = ["tune", "--recipe", "endoscopy", "--task", "seg", "--labels", "16", "--out", str(tmp_path / "run"), *SETS]
    code, out, err = run_cli([*args, "--trials", "1"])
    assert code == 0, err
    assert "Done:" in out and (tmp_path / "run" / "best.yaml").is_file()
    summary = json.loads((tmp_path / "run" / "tune.json").read_text())
    assert summary["states"]["COMPLETE"] == 1 and 0 <= summary["final"]["test"]["dice"] <= 1
    code, out, err = run_cli([*args, "--trials", "2", "--no-retrain"])  # same study: one more trial
    assert code == 0, err
    assert "1 finished trial(s), running 1 more" in " ".join(out.split())


def test_tune_command_rejects_an_unknown_parameter_before_training(tmp_path: Path, run_cli: RunCli) -> None:
    code, _, err = run_cli(["tune", "--recipe", "endoscopy", "--labels", "16", "--out", str(tmp_path / "run"), *SETS,
                            "--set", "tune.space={learning_rate: {low: 1.0e-4, high: 1.0e-2}}"])
    assert code != 0 and "space.learning_rate: unknown parameter" in err
    assert not (tmp_path / "run").exists()
