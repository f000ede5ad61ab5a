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
from dinomed.extras import MissingExtra  # noqa: E402
from dinomed.tuning.run import NoTrialCompleted  # noqa: E402

# Errors a user can act on (bad recipe, data, weights; a diverged run): one line, exit status 1, no traceback.
# Usage errors (unknown option or command, missing argument) are click's: its usage message and exit status 2.
USER_ERRORS = (ConfigError, ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError,
               KeyError, TrainingDiverged, NoTrialCompleted, MissingExtra)


def _is(err: BaseException, name: str) -> bool:
    """Whether ``err`` is click's ``name`` exception, from click itself or the copy a typer release vendors."""
    return any(cls.__name__ == name for cls in type(err).__mro__)


def _usage_context(argv: list[str]) -> object | None:
    """The click context of the command ``argv`` names (some parser errors carry none, so no usage line)."""
    import typer

    group = typer.main.get_command(app)
    top = group.context_class(group, info_name="dinomed")
    name = next((a for a in argv if not a.startswith("-")), None)
    command = group.get_command(top, name) if name else None
    return command.context_class(command, info_name=name, parent=top) if command else top


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``dinomed`` console script and ``python -m dinomed``."""
    try:
        code = app(args=argv, prog_name="dinomed", standalone_mode=False)
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(1)
    except Exception as err:
        if _is(err, "ClickException"):  # usage errors: click's usage message, exit status 2
            if _is(err, "UsageError") and err.ctx is None:
                err.ctx = _usage_context(sys.argv[1:] if argv is None else argv)
            err.show()
            sys.exit(err.exit_code)
        if _is(err, "Abort"):  # Ctrl-C outside a training loop (which saves and exits 130 itself)
            sys.exit(130)
        raise
    if isinstance(code, int) and code:
        sys.exit(code)
