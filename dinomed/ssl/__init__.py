"""DINO self-supervised pretraining: loss, teacher EMA, schedules, optimiser helpers and collapse monitor."""

from dinomed.ssl.dino import DINOLoss
from dinomed.ssl.ema import update_teacher
from dinomed.ssl.monitor import collapse_stats, collapse_verdict
from dinomed.ssl.schedules import build_schedules, cosine_schedule

__all__ = ["DINOLoss", "update_teacher", "build_schedules", "cosine_schedule", "collapse_stats", "collapse_verdict"]
