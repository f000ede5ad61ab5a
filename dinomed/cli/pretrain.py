"""``dinomed pretrain`` and ``dinomed recipes``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.syntax import Syntax
from rich.table import Table

from dinomed.cli.app import QUICK_HELP, SET_HELP, app, console
from dinomed.config import load_yaml
from dinomed.recipe import available_recipes, find_recipe, load_recipe


@app.command()
def pretrain(
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="Recipe YAML path or built-in name (oct, endoscopy, thermal)."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    quick: bool = typer.Option(False, "--quick", help=QUICK_HELP),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory."),
) -> None:
    """DINO self-supervised pretraining; exports the teacher backbone as safetensors."""
    from dinomed.ssl.trainer import pretrain as run_pretrain

    if recipe is None and resume is None:
        raise ValueError("give --recipe RECIPE for a new run or --resume RUN_DIR to continue one")
    if recipe is not None and resume is not None:
        raise ValueError("--resume continues a run with its stored config; do not pass --recipe with it")
    result = run_pretrain(recipe, set_, quick=quick, resume=resume, console=console)
    if not result.metrics["finished"]:
        raise typer.Exit(130)


@app.command()
def recipes(name: Optional[str] = typer.Argument(None, help="Show this recipe fully resolved.")) -> None:
    """List the built-in recipes, or show one with every default filled in."""
    if name is not None:
        console.print(Syntax(load_recipe(name).to_yaml(), "yaml"))
        return
    table = Table(title="Built-in recipes (use --recipe NAME or a path; add --quick for a CPU-sized run)")
    for column in ("name", "modality", "description", "file"):
        table.add_column(column)
    for recipe_name in available_recipes():
        path = find_recipe(recipe_name)
        data = load_yaml(path)
        table.add_row(recipe_name, str(data.get("modality", "")), str(data.get("description", "")), str(path))
    console.print(table)
