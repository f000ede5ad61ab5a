"""Command line: ``dinomed <command>``; each command module is a thin shell over the Python API."""

from __future__ import annotations

import sys

from dinomed.cli import pretrain as _pretrain  # noqa: F401  (registers commands)
from dinomed.cli import eval as _eval  # noqa: F401
from dinomed.cli import finetune as _finetune  # noqa: F401
from dinomed.cli import tune as _tune  # noqa: F401
from dinomed.cli import augment as _augment  # noqa: F401
from dinomed.cli import datasets as _datasets  # noqa: F401
from dinomed.cli.app import app, err_console
from dinomed.config import ConfigError

# Errors a user can act on: printed as one line, exit status 2, no traceback.
USER_ERRORS = (ConfigError, ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError, KeyError)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``dinomed`` console script and ``python -m dinomed``."""
    try:
        app(args=argv, prog_name="dinomed", standalone_mode=False)
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(2)
    except SystemExit:
        raise
    except Exception as err:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, click.exceptions.Abort):
            sys.exit(130)
        raise
