"""The checks of ``benchmarks/gpu_check.sh`` (run it, not this file): the CUDA path users train on, end to end.

Every check prints one line ``PASS|FAIL|SKIP <check>: <detail>`` and the script exits 1 when any check failed.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console

import dinomed
from dinomed.data.phantoms import write_phantom_dataset
from dinomed.engine import load_checkpoint
from dinomed.recipe import load_recipe
from dinomed.ssl.trainer import DINOTrainer

RESULTS = Path(__file__).resolve().parent / "results" / "gpu_check.md"
QUIET = Console(quiet=True)
QUICK = {"train.max_steps": 20, "train.probe_every": 10, "data.num_workers": 4}
LINES: list[str] = []


def report(status: str, check: str, detail: str) -> None:
    line = f"{status} {check}: {detail}"
    print(line, flush=True)
    LINES.append(line)


def check(name: str, run: Callable[[], str]) -> None:
    try:
        report("PASS", name, run())
    except Exception as err:  # noqa: BLE001 - a check's failure is reported, the others still run
        report("FAIL", name, f"{type(err).__name__}: {err}")


def pretrain(work: Path, precision: str) -> str:
    run = dinomed.pretrain("oct", quick=True, console=QUIET, overrides={
        **QUICK, "train.precision": precision, "train.output_dir": str(work), "train.run_name": f"quick-{precision}"})
    assert run.metrics["finished"], run.metrics
    return (f"{run.metrics['step']} steps, {run.metrics['img_per_s']:.0f} img/s, verdict {run.metrics['verdict']}, "
            f"collapse {run.metrics['collapse']}")


def kill_and_resume(work: Path) -> str:
    sets = [f"--set={k}={v}" for k, v in {**QUICK, "train.max_steps": 60, "train.checkpoint_every": 10,
                                          "train.output_dir": work, "train.run_name": "killed"}.items()]
    proc = subprocess.Popen([sys.executable, "-m", "dinomed", "pretrain", "--recipe", "oct", "--quick", *sets],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = work / "killed" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.is_file() and load_checkpoint(checkpoint)["step"] >= 20:
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(checkpoint)["step"]
    resumed = dinomed.pretrain(resume=work / "killed", console=QUIET)
    assert resumed.metrics["finished"] and resumed.metrics["step"] == 60, resumed.metrics
    return f"killed at step {killed_at} (SIGKILL), resumed to step 60"


def finetune_and_predict(work: Path) -> str:
    result = dinomed.finetune("endoscopy", task="seg", backbone="random", quick=True, console=QUIET,
                              out=work / "seg", overrides={"finetune.max_steps": 2, "data.num_workers": 2})
    frames = write_phantom_dataset("endoscopy", work / "frames", 4, size=(112, 112)).parent / "images"
    predicted = dinomed.predict(result.run_dir, frames, work / "predictions", console=QUIET)
    assert len(predicted.files) == 4
    return f"2-step LoRA seg, test dice {result.metrics['test']['dice']:.3f}; 4 masks predicted"


def ddp(work: Path) -> str:
    sets = [f"--set={k}={v}" for k, v in {**QUICK, "train.output_dir": work, "train.run_name": "ddp"}.items()]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                           "dinomed", "pretrain", "--recipe", "oct", "--quick", *sets],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return "2 processes (NCCL), quick pretrain finished"


def throughput(precision: str, steps: int) -> str:
    """ViT-S/16, 2x224 + 8x96 crops, batch 64, K=65536: the optimisation step alone, on synthetic crops."""
    recipe = load_recipe("oct", overrides={"train.batch_size": 64, "train.precision": precision,
                                           "train.probe_every": 0, "data.phantom.count": 64})
    with tempfile.TemporaryDirectory() as tmp:
        trainer = DINOTrainer(recipe, Path(tmp), console=QUIET)
        aug, device = recipe.augment, trainer.engine.device
        crops = [torch.randn(64, 1, aug.global_size, aug.global_size, device=device) for _ in range(aug.global_crops)]
        crops += [torch.randn(64, 1, aug.local_size, aug.local_size, device=device) for _ in range(aug.local_crops)]
        for _ in range(3):
            trainer.train_step(crops)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(crops)
        torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / steps
    return (f"ViT-S/16 2x224+8x96 batch 64 {precision}: {64 / seconds:.0f} img/s, "
            f"peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20, help="timed steps of the throughput check")
    args = parser.parse_args()
    report("INFO", "device", f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}, torch {torch.__version__}, "
           f"bf16 {'supported' if torch.cuda.is_bf16_supported() else 'not supported'}")
    with tempfile.TemporaryDirectory(prefix="dinomed-gpu-") as tmp:
        work = Path(tmp)
        check("pretrain fp16", lambda: pretrain(work, "fp16"))
        if torch.cuda.is_bf16_supported():
            check("pretrain bf16", lambda: pretrain(work, "bf16"))
        else:
            report("SKIP", "pretrain bf16", "this GPU has no bf16")
        check("kill -9 + resume", lambda: kill_and_resume(work))
        check("LoRA fine-tune + predict", lambda: finetune_and_predict(work))
        if torch.cuda.device_count() >= 2:
            check("DDP 2 processes", lambda: ddp(work))
        else:
            report("SKIP", "DDP 2 processes", "one GPU")
        for precision in ("fp16", "bf16") if torch.cuda.is_bf16_supported() else ("fp16",):
            check(f"throughput {precision}", lambda p=precision: throughput(p, args.steps))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(f"# GPU check ({time.strftime('%Y-%m-%d %H:%M')})\n\n```\n" + "\n".join(LINES) + "\n```\n",
                       encoding="utf-8")
    sys.exit(1 if any(line.startswith("FAIL") for line in LINES) else 0)


if __name__ == "__main__":
    main()
