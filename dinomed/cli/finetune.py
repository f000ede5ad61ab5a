"""``dinomed finetune``, ``dinomed predict`` and ``dinomed merge``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dinomed.cli.app import QUICK_HELP, SET_HELP, app, console

TASK_HELP = "seg, depth, cls or a registered head (default: the recipe's finetune.task)."
BACKBONE_HELP = "Pretrain run dir, export folder, checkpoint file or 'random' (default: the recipe's finetune.backbone)."


def budget(text: Optional[str]) -> int | float | None:
    """'50' -> 50 images, '0.1' -> 10 % of the train split."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"--labels {text}: expected a count (50) or a fraction (0.1)") from None


@app.command()
def finetune(
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="Recipe YAML path or built-in name."),
    task: Optional[str] = typer.Option(None, "--task", help=TASK_HELP),
    backbone: Optional[str] = typer.Option(None, "--backbone", "-b", help=BACKBONE_HELP),
    labels: Optional[str] = typer.Option(None, "--labels", help="Labelled train images: a count (50) or a fraction (0.1)."),
    lora: bool = typer.Option(False, "--lora", help="LoRA adapters + head (the default)."),
    full: bool = typer.Option(False, "--full", help="Train every backbone weight (comparison)."),
    frozen: bool = typer.Option(False, "--frozen", help="Frozen backbone, head only (linear-probe style)."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    quick: bool = typer.Option(False, "--quick", help=QUICK_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory to create."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory."),
) -> None:
    """Fine-tune a backbone with a segmentation, depth or classification head (LoRA, full or frozen)."""
    from dinomed.api import finetune as run

    if sum([lora, full, frozen]) > 1:
        raise ValueError("choose one of --lora, --full, --frozen")
    if recipe is None and resume is None:
        raise ValueError("give --recipe RECIPE for a new run or --resume RUN_DIR to continue one")
    mode = "full" if full else "frozen" if frozen else "lora" if lora else None
    result = run(recipe, task=task, backbone=backbone, labels=budget(labels), mode=mode, overrides=set_, quick=quick,
                 out=out, resume=resume, console=console)
    if result.stopped is not None:
        raise typer.Exit(result.stopped)
    console.print(f"Done: {result.run_dir}  val {result.metrics['val']}  test {result.metrics['test']}")


@app.command()
def predict(
    model: Path = typer.Option(..., "--model", "-m", help="Fine-tuning run directory."),
    input: Path = typer.Option(..., "--input", "-i", help="An image or a folder of images."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for masks / depth maps / class probabilities."),
) -> None:
    """Masks (PNG + overlay), depth maps (16-bit PNG + preview) or class probabilities (predictions.csv)."""
    from dinomed.api import predict as run

    run(model, input, out, console=console)


@app.command()
def export(
    run: Path = typer.Argument(..., help="Fine-tuning run directory (or its model/ folder)."),
    onnx: Path = typer.Option(..., "--onnx", help="ONNX file to write (needs: pip install \"dinomed[deploy]\")."),
) -> None:
    """Export a fine-tuned model as ONNX for onnxruntime: LoRA merged, dynamic batch, preprocessing in metadata."""
    from dinomed.api import export as run_export

    run_export(run, onnx=onnx, console=console)


@app.command()
def merge(
    run: Path = typer.Argument(..., help="Fine-tuning run directory (LoRA)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for backbone.safetensors + backbone.json."),
) -> None:
    """Fold LoRA adapters into a plain backbone loadable by load_backbone and plain timm."""
    from dinomed.api import merge as run_merge

    run_merge(run, out, console=console)
