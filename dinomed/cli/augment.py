"""``dinomed augment-preview``: look at a recipe's DINO views before pretraining on them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dinomed.cli.app import QUICK_HELP, SET_HELP, app, console


@app.command("augment-preview")
def augment_preview(
    recipe: str = typer.Option(..., "--recipe", "-r", help="Recipe file or built-in name (oct, endoscopy, thermal)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Image folder or .csv/.json manifest replacing the "
                                        "recipe's data source."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    quick: bool = typer.Option(False, "--quick", help=QUICK_HELP),
    out: Path = typer.Option(Path("augment_preview.png"), "--out", "-o", help="PNG file to write."),
    samples: int = typer.Option(4, "--samples", min=1, help="Number of images (grid rows)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Augmentation seed of the first row."),
) -> None:
    """Save a grid of original images with their global and local crops, to check the augmentations by eye."""
    from dinomed.api import augment_preview as run

    run(recipe, overrides=set_, quick=quick, data=data, out=out, samples=samples, seed=seed, console=console)
