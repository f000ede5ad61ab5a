"""``dinomed eval knn|linear``, ``dinomed attention``, ``dinomed pca`` and ``dinomed report``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from dinomed.cli.app import QUICK_HELP, SET_HELP, app, console

eval_app = typer.Typer(help="Frozen-feature evaluation: weighted kNN or a linear probe on grouped splits.",
                       no_args_is_help=True)
app.add_typer(eval_app, name="eval")

BACKBONE_HELP = "Exported backbone (weights file, export folder or pretrain run dir) or 'random' for the baseline."
RECIPE_HELP = "Recipe (names the data and architecture); default: the run dir's config.yaml."


def _print_result(result) -> None:  # noqa: ANN001 - EvalResult, imported lazily
    splits = list(result.metrics)
    table = Table(title=f"{result.method} — {result.backbone_source} — {result.recipe}")
    table.add_column("metric")
    for split in splits:
        table.add_column(f"{split} (n={result.split_sizes[split]})", justify="right")
    table.add_row("top-1", *[f"{result.metrics[s]['top1']:.3f}" for s in splits])
    table.add_row("balanced accuracy", *[f"{result.metrics[s]['balanced_accuracy']:.3f}" for s in splits])
    for name in result.class_names:
        recalls = [result.metrics[s]["per_class_recall"][name] for s in splits]
        table.add_row(f"recall {name}", *["—" if r is None else f"{r:.3f}" for r in recalls])
    console.print(table)
    settings = {k: v for k, v in result.params.items() if not isinstance(v, dict)}
    cache = result.cache_file or "not cached (the transform has no stable identity)"
    console.print(f"settings: {settings}; features {'from cache' if result.cached else 'extracted'}: {cache}")


def _run(method: str, backbone: str, recipe: Optional[str], set_: list[str], quick: bool,
         json_out: Optional[Path]) -> None:
    from dinomed.api import evaluate

    result = evaluate(recipe, backbone=backbone, method=method, overrides=set_, quick=quick, out=json_out,
                      console=console)
    _print_result(result)
    console.print_json(json.dumps(result.to_dict()))


@eval_app.command("knn")
def knn(
    backbone: str = typer.Option(..., "--backbone", "-b", help=BACKBONE_HELP),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help=RECIPE_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    quick: bool = typer.Option(False, "--quick", help=QUICK_HELP),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the result here (a run dir backbone "
                                            "writes RUN_DIR/eval/knn.json anyway)."),
) -> None:
    """Weighted kNN (k=20, T=0.07) on L2-normalised CLS features; train split is the memory bank."""
    _run("knn", backbone, recipe, set_, quick, json_out)


@eval_app.command("linear")
def linear(
    backbone: str = typer.Option(..., "--backbone", "-b", help=BACKBONE_HELP),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help=RECIPE_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    quick: bool = typer.Option(False, "--quick", help=QUICK_HELP),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the result here."),
) -> None:
    """Linear probe on frozen features; learning rate swept and chosen on the val split."""
    _run("linear", backbone, recipe, set_, quick, json_out)


@app.command()
def attention(
    backbone: str = typer.Option(..., "--backbone", "-b", help=BACKBONE_HELP),
    input_: Optional[Path] = typer.Option(None, "--input", "-i", help="Image file or folder; default: the recipe's data."),
    out: Path = typer.Option(Path("attention"), "--out", "-o", help="Folder for the PNGs."),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help=RECIPE_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    count: int = typer.Option(8, "--count", "-n", min=1, help="Images to draw."),
    keep: Optional[float] = typer.Option(None, "--keep", min=0.0, max=1.0, help="Attention mass kept by the masks (0.6)."),
) -> None:
    """Last-block CLS attention per head, its 60 %-mass masks, and Jaccard vs ground-truth masks when present."""
    from dinomed.api import attention_maps

    attention_maps(recipe, backbone=backbone, inputs=input_, out=out, overrides=set_, count=count, keep=keep,
                   console=console)


@app.command()
def pca(
    backbone: str = typer.Option(..., "--backbone", "-b", help=BACKBONE_HELP),
    input_: Optional[Path] = typer.Option(None, "--input", "-i", help="Image file or folder; default: the recipe's data."),
    out: Path = typer.Option(Path("pca"), "--out", "-o", help="Folder for pca.png."),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help=RECIPE_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    count: int = typer.Option(8, "--count", "-n", min=1, help="Images in the grid."),
    foreground: Optional[float] = typer.Option(None, "--foreground", help="Keep patches whose standardised first "
                                               "component exceeds this (DINOv2 foreground), e.g. 0."),
) -> None:
    """First three PCA components of patch features as RGB (DINOv2-style)."""
    from dinomed.api import pca_maps

    pca_maps(recipe, backbone=backbone, inputs=input_, out=out, overrides=set_, count=count, foreground=foreground,
             console=console)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="Pretrain (or fine-tune) run directory."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file; default RUN_DIR/report.html."),
    samples: int = typer.Option(4, "--samples", min=1, help="Images in the attention and PCA sections."),
) -> None:
    """One self-contained HTML report (opens offline): config, curves, collapse, eval, attention, PCA, fine-tuning."""
    from dinomed.api import build_report

    build_report(run_dir, out, samples=samples, console=console)
