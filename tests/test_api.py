"""The public API's one convention: recipe first, overrides as a mapping or KEY=VALUE list (kept exactly),
``console=`` on everything that prints, typed results, completion that sees the whole API."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import yaml
from rich.console import Console

import dinomed
from dinomed import api
from dinomed.config import parse_override
from dinomed.data.phantoms import write_phantom_dataset

TINY = {"model.arch": "vit_tiny_patch16_224", "model.out_dim": 64, "model.hidden_dim": 32, "model.bottleneck_dim": 16,
        "augment.global_size": 32, "augment.local_crops": 2, "augment.local_size": 16, "train.batch_size": 4,
        "train.max_steps": 1, "data.num_workers": 0, "train.num_threads": 1}
PURE_LOADERS = {"load_backbone", "load_model", "load_recipe"}  # print nothing, so take no console


def test_a_hash_in_a_path_survives_mapping_and_command_line_overrides(tmp_path: Path) -> None:
    images = write_phantom_dataset("oct", tmp_path / "oct #1", 12, size=(32, 32)).parent / "images"
    run = dinomed.pretrain("oct", quick=True, console=Console(quiet=True), overrides={
        **TINY, "data.source": "folder", "data.root": str(images), "train.output_dir": str(tmp_path / "runs")})
    saved = yaml.safe_load((run.run_dir / "config.yaml").read_text(encoding="utf-8"))
    assert saved["data"]["root"] == str(images) and "#1" in saved["data"]["root"]
    assert run.metrics["finished"]
    assert parse_override("data.root=/data/oct #1") == (["data", "root"], "/data/oct #1")
    assert parse_override("optim.lr=0.001")[1] == 0.001 and parse_override("data.columns={group: x}")[1] == {"group": "x"}


def test_mapping_and_list_overrides_give_the_same_recipe() -> None:
    as_list = dinomed.load_recipe("oct", overrides=["optim.lr=0.001", "data.columns={group: patient}", "train.max_steps=5"])
    as_map = dinomed.load_recipe("oct", overrides={"optim.lr": 0.001, "data.columns": {"group": "patient"}, "train.max_steps": 5})
    assert as_list == as_map


def test_every_api_call_takes_the_recipe_first_and_a_console() -> None:
    for name in api.__all__:
        params = inspect.signature(getattr(api, name)).parameters
        forwards = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())  # knn_eval -> evaluate
        if name not in PURE_LOADERS and not forwards:
            assert "console" in params and params["console"].kind is inspect.Parameter.KEYWORD_ONLY, name
        if "overrides" in params:
            assert next(iter(params)) == "recipe" and params["overrides"].kind is inspect.Parameter.KEYWORD_ONLY, name


def test_completion_sees_the_whole_api_and_the_result_types() -> None:
    names = dir(dinomed)
    expected = {*api.__all__, "PretrainResult", "FinetuneResult", "TuneResult", "EvalResult", "Recipe",
                "register_modality", "register_head", "TaskHead", "TrainingDiverged"}
    assert expected <= set(names) and expected <= set(dinomed.__all__)
    for name in expected:
        assert getattr(dinomed, name) is not None
    assert dinomed.finetune is api.finetune and dinomed.tune is api.tune  # not shadowed by a sub-package


def test_import_is_light_and_changes_nothing_in_the_process() -> None:
    code = ("import os, sys; before = dict(os.environ); import dinomed; "
            "assert dict(os.environ) == before, set(os.environ) ^ set(before); "
            "assert 'torch' not in sys.modules and 'albumentations' not in sys.modules")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "OMP_WAIT_POLICY")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
