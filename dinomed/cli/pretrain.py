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
    init: Optional[Path] = typer.Option(None, "--init", help="Start from existing weights (continued pretraining): "
                                        "a dinomed run or export, a timm checkpoint, or an official DINO / DINOv2 file."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory."),
) -> None:
    """DINO self-supervised pretraining; exports the teacher backbone as safetensors."""
    from dinomed.api import pretrain as run

    if recipe is None and resume is None:
        raise ValueError("give --recipe RECIPE for a new run or --resume RUN_DIR to continue one")
    result = run(recipe, overrides=set_, quick=quick, init=init, resume=resume, console=console)
    if result.stopped is not None:
        raise typer.Exit(result.stopped)


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
