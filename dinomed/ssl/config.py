"""Recipe sections ``dino``, ``optim`` and ``train`` for DINO pretraining (reference defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from dinomed.config import option
from dinomed.engine.device import PRECISIONS
from dinomed.engine.loggers import LOGGERS


@dataclass
class DINOConfig:
    """Self-distillation hyper-parameters of facebookresearch/dino's main_dino.py."""

    student_temp: float = option(0.1, "student softmax temperature", min=1e-4)
    teacher_temp: float = option(0.04, "teacher temperature after warm-up", min=1e-4)
    warmup_teacher_temp: float = option(0.04, "teacher temperature at step 0", min=1e-4)
    warmup_teacher_temp_epochs: int | None = option(
        None, "epochs of linear teacher temperature warm-up. null: 0 when continuing from model.init (a trained "
        "teacher is already sharp, and a warmer one would blur the targets it gives), else the reference's 30 epochs, "
        "at most 30 % of train.epochs", min=0)
    center_momentum: float = option(0.9, "EMA momentum of the teacher output centre", min=0.0, max=1.0)
    momentum_teacher: float = option(0.996, "base teacher EMA momentum, raised to 1 by a cosine", min=0.0, max=1.0)
    freeze_last_layer: int = option(1, "epochs during which the head's last layer gets no update", min=0)
    koleo_weight: float = option(
        0.0, "weight of DINOv2's KoLeo regulariser on the student's global-crop CLS (0 = the DINO reference)", min=0.0
    )


@dataclass
class OptimConfig:
    """AdamW with linear warm-up + cosine lr and cosine weight decay."""

    lr: float = option(0.0005, "peak lr at batch 256; scaled linearly by batch_size / 256", min=0.0)
    min_lr: float = option(1e-6, "lr at the end of the cosine", min=0.0)
    warmup_epochs: float = option(10, "epochs of linear lr warm-up", min=0.0)
    weight_decay: float = option(0.04, "weight decay at step 0", min=0.0)
    weight_decay_end: float = option(0.4, "weight decay at the last step (cosine)", min=0.0)
    clip_grad: float = option(3.0, "per-parameter gradient norm clip; 0 disables", min=0.0)
    layer_decay: float | None = option(
        None, "layer-wise lr decay (BEiT, DINOv2 fine-tuning): block i of L trains at lr x decay^(L-i), the patch "
        "embedding at decay^(L+1), the last norm and the head at the full lr. null: 0.75 when continuing from "
        "model.init (early layers hold the generic edges and textures worth keeping), 1 (off) from random init",
        min=0.0, max=1.0)


@dataclass
class TrainConfig:
    """Run control: length, batch, device, logging, probing and checkpoint cadence."""

    epochs: int = option(100, "training epochs", min=1)
    batch_size: int = option(
        64, "images per step per process; under torchrun the global batch is batch_size x processes, and the lr "
        "scales with the global batch (optim.lr is given at batch 256)", min=1)
    max_steps: int | None = option(None, "stop after this many steps; the schedules still span all epochs", min=1)
    seed: int = option(0, "seed for model init, data order and augmentation")
    device: str = option("auto", "'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'")
    precision: str = option(
        "auto", "fp32, fp16 (CUDA, with a grad scaler), bf16, or auto: bf16 on GPUs that support it, else fp16 on "
        "CUDA, fp32 on the CPU. Losses, centre, softmaxes and monitors stay fp32", choices=PRECISIONS)
    output_dir: str = option("runs", "parent folder of run directories")
    run_name: str | None = option(None, "run directory name; default <recipe>-<timestamp>")
    checkpoint_every: int = option(200, "steps between checkpoints (one is always written at the end)", min=1)
    log_every: int = option(10, "steps between metrics.jsonl records", min=1)
    num_threads: int | None = option(None, "CPU threads for torch; default all cores", min=1)
    loggers: list[str] = option(
        [], "live curves besides metrics.jsonl, in pretraining and fine-tuning: tensorboard (RUN_DIR/tensorboard; "
        'pip install "dinomed[tensorboard]")', choices=LOGGERS)
    probe_every: int = option(
        50, "steps between probes of the teacher on a fixed set of the run's images (RankMe, kNN when labelled, "
        "attention Jaccard when masked, CKA to model.init), written with the next metrics record; 0 turns probing off",
        min=0)
    probe_images: int = option(256, "images in the probe set (RankMe needs more images than embedding dims)", min=8)
    stop_when_not_learning: bool = option(
        False, "stop early (checkpoint and export kept) when the probes say the run is not learning after the lr "
        "warm-up: see dinomed.ssl.probes.quality_verdict")
    freeze_backbone_epochs: float | None = option(
        None, "epochs (fractions allowed) at the start during which only the DINO head trains (backbone lr 0). null: "
        "when model.init brings no DINO head, min(1, 0.1 x train.epochs) (a fresh head's random targets would "
        "otherwise push large gradients into a trained backbone; a tenth of the run at most, so short adaptation "
        "runs still adapt); 0 when the init brings its own head (a dinomed run, DINO's full checkpoint) and from "
        "random init", min=0.0)
