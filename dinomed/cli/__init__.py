"""Command line: ``dinomed <command>``; each command module is a thin shell over :mod:`dinomed.api`."""

from __future__ import annotations

import os
import sys

# Idle OpenMP threads sleep instead of spinning: with DataLoader workers sharing a small machine's cores, spinning
# threads made a training step up to ~15x slower. Only effective before torch loads, so it is set here, for the
# command-line process only (`import dinomed` changes nothing in a user's process).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from dinomed.cli import augment as _augment  # noqa: E402,F401  (registers commands)
from dinomed.cli import datasets as _datasets  # noqa: E402,F401
from dinomed.cli import eval as _eval  # noqa: E402,F401
from dinomed.cli import finetune as _finetune  # noqa: E402,F401
from dinomed.cli import pretrain as _pretrain  # noqa: E402,F401
from dinomed.cli import tune as _tune  # noqa: E402,F401
from dinomed.cli.app import app, err_console  # noqa: E402
from dinomed.config import ConfigError  # noqa: E402
from dinomed.engine import TrainingDiverged  # noqa: E402
from dinomed.tuning.run import NoTrialCompleted  # noqa: E402

# Errors a user can act on (bad recipe, data, weights; a diverged run): one line, exit status 1, no traceback.
# Usage errors (unknown option or command, missing argument) are click's: its usage message and exit status 2.
USER_ERRORS = (ConfigError, ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError,
               KeyError, TrainingDiverged, NoTrialCompleted)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``dinomed`` console script and ``python -m dinomed``.

    The app runs in click's standalone mode, so usage errors are reported by whichever click (or typer's vendored
    copy) is installed; only dinomed's own errors reach the handler below.
    """
    try:
        app(args=argv, prog_name="dinomed")
    except SystemExit as done:  # standalone mode ends every command with SystemExit; 0 means success
        if done.code not in (0, None):
            raise
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(1)
