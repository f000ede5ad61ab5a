"""Recipe sections ``dino``, ``optim`` and ``train`` for DINO pretraining (reference defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from dinomed.config import option


@dataclass
class DINOConfig:
    """Self-distillation hyper-parameters of facebookresearch/dino's main_dino.py."""

    student_temp: float = option(0.1, "student softmax temperature", min=1e-4)
    teacher_temp: float = option(0.04, "teacher temperature after warm-up", min=1e-4)
    warmup_teacher_temp: float = option(0.04, "teacher temperature at step 0", min=1e-4)
    warmup_teacher_temp_epochs: int = option(0, "epochs of linear teacher temperature warm-up", min=0)
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


@dataclass
class TrainConfig:
    """Run control: length, batch, device, logging and checkpoint cadence."""

    epochs: int = option(100, "training epochs", min=1)
    batch_size: int = option(64, "images per step (per process)", min=1)
    max_steps: int | None = option(None, "stop after this many steps; the schedules still span all epochs", min=1)
    seed: int = option(0, "seed for model init, data order and augmentation")
    device: str = option("auto", "'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'")
    amp: bool = option(True, "fp16 autocast + grad scaler on CUDA (ignored on CPU)")
    output_dir: str = option("runs", "parent folder of run directories")
    run_name: str | None = option(None, "run directory name; default <recipe>-<timestamp>")
    checkpoint_every: int = option(200, "steps between checkpoints (one is always written at the end)", min=1)
    log_every: int = option(10, "steps between metrics.jsonl records", min=1)
    num_threads: int | None = option(None, "CPU threads for torch; default all cores", min=1)
