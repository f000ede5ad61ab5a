"""The typer application every command module registers on, and the one-line error reporting."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="dinomed",
    help="DINO pretraining and LoRA fine-tuning of ViTs for OCT, endoscopy and thermal imagery.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

SET_HELP = "Override a recipe key, e.g. --set optim.lr=1e-4 (repeatable)."
QUICK_HELP = "CPU-sized profile: ViT-Ti, small crops, a few hundred steps."
