"""Command line: one-line actionable errors, recipe catalogue, python -m entry point."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dinomed.cli import main




def test_unknown_override_key_is_one_line_error(run_cli) -> None:
    code, _, err = run_cli(["pretrain", "--recipe", "recipes/oct.yaml", "--set", "bogus.key=1"])
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "bogus" in lines[0] and "unknown key" in lines[0]


def test_typo_gets_a_suggestion(run_cli) -> None:
    code, _, err = run_cli(["pretrain", "--recipe", "oct", "--set", "optim.lrr=1"])
    assert code == 1 and "did you mean 'optim.lr'" in err


def test_pretrain_needs_recipe_or_resume(run_cli) -> None:
    code, _, err = run_cli(["pretrain"])
    assert code == 1 and "--recipe" in err


def test_recipes_lists_and_shows(capsys: pytest.CaptureFixture[str]) -> None:
    main(["recipes"])
    listing = capsys.readouterr().out
    assert all(name in listing for name in ("oct", "endoscopy", "thermal"))
    main(["recipes", "thermal"])
    shown = capsys.readouterr().out
    assert "modality: thermal" in shown and "out_dim: 65536" in shown


def test_python_dash_m_entry_point() -> None:
    done = subprocess.run([sys.executable, "-m", "dinomed", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "pretrain" in done.stdout


@pytest.mark.parametrize("args,usage,message", [
    (["pretrain", "--recipe", "oct", "--bogus"], "Usage: dinomed pretrain", "No such option: --bogus"),
    (["frobnicate"], "Usage: dinomed", "No such command 'frobnicate'"),
    (["finetune", "--labels"], "Usage: dinomed finetune", "Option '--labels' requires an argument"),
    (["merge"], "Usage: dinomed merge", "Missing argument"),
])
def test_usage_errors_print_the_usage_and_exit_2_without_a_traceback(args, usage, message) -> None:
    done = subprocess.run([sys.executable, "-m", "dinomed", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 2 and usage in done.stderr and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
