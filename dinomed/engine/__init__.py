"""What every training loop shares: device and precision, the optimisation step, processes, run directories,
checkpoints, progress bars and clean stopping. Both :mod:`dinomed.ssl` and :mod:`dinomed.finetuning` run on it.
"""

from dinomed.engine.checkpoint import load_checkpoint, save_checkpoint
from dinomed.engine.device import PRECISIONS, Precision, resolve_device
from dinomed.engine.engine import Engine
from dinomed.engine.process import ProcessContext, require_single_process
from dinomed.engine.progress import progress_bar
from dinomed.engine.runs import (
    CONFIG_FILE,
    INIT_FILE,
    METRICS_FILE,
    RESUMABLE,
    SUMMARY_FILE,
    MetricsLog,
    check_resumable,
    default_run_name,
    new_run_dir,
    read_metrics,
    run_config,
)
from dinomed.engine.signals import StopRequest, Stopped
from dinomed.engine.step import Optimization, TrainingDiverged

__all__ = ["CONFIG_FILE", "Engine", "INIT_FILE", "METRICS_FILE", "MetricsLog", "Optimization", "PRECISIONS",
           "Precision", "ProcessContext", "RESUMABLE", "SUMMARY_FILE", "StopRequest", "Stopped", "TrainingDiverged",
           "check_resumable", "default_run_name", "load_checkpoint", "new_run_dir", "progress_bar", "read_metrics",
           "require_single_process", "resolve_device", "run_config", "save_checkpoint"]
