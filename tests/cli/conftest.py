"""Shared helper for CLI tests: run ``dinomed`` in-process and capture exit code, stdout and stderr."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dinomed.cli import main

RunCli = Callable[[list[str]], tuple[int, str, str]]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> RunCli:
    def run(args: list[str]) -> tuple[int, str, str]:
        try:
            main(args)
            code = 0
        except SystemExit as exit_:
            code = exit_.code or 0
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
