"""NAT vs ViT scaling: forward + backward time and peak memory as the image side grows.

Neighbourhood attention costs O(pixels x k^2), global self-attention O(tokens^2); this measures what that means
for ``nat_mini`` (dinomed's pure-PyTorch NAT, stride 4, kernel 7) and timm's ``vit_tiny_patch16_224``
(``dynamic_img_size=True``, stride 16) on this machine, batch 8, 3 channels, 2 torch threads.

Per configuration (model, side), a fresh Python process builds the model (``num_classes=0``, no drop path) and a
random batch, runs one warm-up step, then ``--repeats`` timed steps of ``forward -> mean of squares ->
backward``; the table gives the median wall-clock time of a step and the median CPU time (user + system, both
threads) it used. On this shared 2-core machine the wall clock moves with how much of the second core the step
gets (other jobs share it), while the CPU time measures the work itself; ratios and growth use the CPU time.
The system part of it is mostly page faults on large fresh allocations.

Memory: Linux's peak resident set size (``VmHWM``) of that process after the steps, minus its resident size
(``VmRSS``) once model and batch exist, with the peak reset (``/proc/self/clear_refs``) at that point: the extra
memory the steps needed at their high point (activations kept for backward, gradients, kernel workspaces, the
allocator's slack), as the operating system sees it. A fresh process per configuration keeps one
configuration's high-water mark out of the next one's numbers; ``tracemalloc`` would miss torch's native
allocations.

Usage: ``python benchmarks/bench_nat.py [--sides 64 128 192 256 384 512] [--batch 8] [--repeats 3]``; writes
``benchmarks/results/nat_scaling.md``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as dinomed/__init__.py: spinning threads skew CPU timings

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "nat_scaling.md"
THREADS = 2
MODELS = ("nat", "vit")
LABELS = {"nat": "NAT", "vit": "ViT"}


def _status_kb(key: str) -> int:
    return int(re.search(rf"{key}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(model_name: str, side: int, batch: int, repeats: int) -> dict[str, float]:
    """Median forward+backward wall and CPU ms, and extra peak MB, of one configuration (in a fresh process)."""
    import timm
    import torch

    import dinomed.models.nat  # noqa: F401 - registers nat_mini with timm

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    if model_name == "nat":
        model = timm.create_model("nat_mini", pretrained=False, num_classes=0, drop_path_rate=0.0)
    else:
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=side,
                                  dynamic_img_size=True)
    model.train()
    images = torch.randn(batch, 3, side, side)
    return {**timed_steps(model, lambda: model(images).square().mean(), repeats),
            "params": sum(p.numel() for p in model.parameters())}


def timed_steps(model: Any, loss: Callable[[], Any], repeats: int) -> dict[str, float]:
    """Median wall and CPU ms of ``repeats`` forward + backward steps (after one warm-up step: allocator, index
    tables) and the extra peak MB they needed over the resident set before them."""
    baseline_kb = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    wall, cpu = [], []
    for step in range(repeats + 1):
        model.zero_grad(set_to_none=True)
        start, start_cpu = time.perf_counter(), _cpu_seconds()
        loss().backward()
        if step:
            wall.append(time.perf_counter() - start)
            cpu.append(_cpu_seconds() - start_cpu)
    return {"ms": 1e3 * statistics.median(wall), "cpu_ms": 1e3 * statistics.median(cpu),
            "mb": (_status_kb("VmHWM") - baseline_kb) / 1024}


def run_child(model_name: str, side: int, batch: int, repeats: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", model_name, "--sides", str(side), "--batch", str(batch),
               "--repeats", str(repeats)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{model_name} at {side} px failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _growth(rows: dict[int, dict[str, dict[str, float]]]) -> list[str]:
    """Time and memory growth for each doubling of the side (4x the tokens: linear cost grows 4x)."""
    lines = []
    for side in sorted(rows):
        if 2 * side in rows:
            big, small = rows[2 * side], rows[side]
            parts = [f"{LABELS[name]} CPU time x{big[name]['cpu_ms'] / small[name]['cpu_ms']:.1f} "
                     f"(wall x{big[name]['ms'] / small[name]['ms']:.1f}), "
                     f"memory x{big[name]['mb'] / small[name]['mb']:.1f}" for name in MODELS]
            lines.append(f"- {side} -> {2 * side} px (4x tokens): " + "; ".join(parts))
    return lines


def _parallelism(rows: dict[int, dict[str, dict[str, float]]]) -> float:
    results = [r for row in rows.values() for r in row.values()]
    return sum(r["cpu_ms"] for r in results) / sum(r["ms"] for r in results)


def table(rows: dict[int, dict[str, dict[str, float]]]) -> list[str]:
    header = ("side", "tokens NAT stage 0 / ViT", "NAT ms", "NAT CPU ms", "NAT MB", "ViT ms", "ViT CPU ms", "ViT MB",
              "CPU time NAT/ViT")
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for side, row in sorted(rows.items()):
        nat, vit = row["nat"], row["vit"]
        lines.append(f"| {side} | {(side // 4) ** 2} / {(side // 16) ** 2} | {nat['ms']:.0f} | {nat['cpu_ms']:.0f} | "
                     f"{nat['mb']:.0f} | {vit['ms']:.0f} | {vit['cpu_ms']:.0f} | {vit['mb']:.0f} | "
                     f"{nat['cpu_ms'] / vit['cpu_ms']:.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[64, 128, 192, 256, 384, 512],
                        help="image sides in pixels (multiples of 16 for the ViT)")
    parser.add_argument("--batch", type=int, default=8, help="images per step")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--child", choices=MODELS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.sides[0], args.batch, args.repeats)))
        return
    import torch

    bad = [s for s in args.sides if s % 16]
    if bad:
        raise SystemExit(f"--sides must be multiples of 16 (the ViT patch size), got {bad}")
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    started = time.perf_counter()
    rows: dict[int, dict[str, dict[str, float]]] = {}
    for side in args.sides:
        rows[side] = {name: run_child(name, side, args.batch, args.repeats) for name in MODELS}
        print(f"{side} px: " + ", ".join(f"{n} {r['ms']:.0f} ms ({r['cpu_ms']:.0f} CPU) {r['mb']:.0f} MB"
                                         for n, r in rows[side].items()), flush=True)
    command = "python benchmarks/bench_nat.py " + " ".join(sys.argv[1:])
    params = {name: rows[args.sides[0]][name]["params"] for name in MODELS}
    report = [
        "# NAT vs ViT: forward + backward cost as the image grows",
        "",
        (f"Written on {datetime.datetime.now():%Y-%m-%d %H:%M} by `{command.strip()}` in "
         f"{time.perf_counter() - started:.0f} s ({os.cpu_count()} CPU cores, torch {torch.__version__}, "
         f"{THREADS} threads; load average {load} at the start)."),
        (f"`nat_mini` (dinomed, {params['nat'] / 1e6:.1f}M params, stride 4, kernel 7) vs `vit_tiny_patch16_224` "
         f"(timm, {params['vit'] / 1e6:.1f}M params, stride 16, `dynamic_img_size=True`), both without classifier, "
         f"batch {args.batch}, 3 channels, training mode, median of {args.repeats} steps after a warm-up."),
        ("ms = median wall clock per step, CPU ms = median user + system time per step (both threads); MB = peak "
         "resident memory of a fresh process during the steps minus its resident memory once model and batch "
         "exist (see the script's docstring)."),
        "",
        *table(rows),
        "",
        ("Growth per doubling of the side (4x the tokens: a cost linear in pixels grows 4x, the attention "
         "matrices of self-attention 16x):"),
        "",
        *_growth(rows),
        "",
        (f"CPU time / wall time over all configurations: {_parallelism(rows):.2f} (2 would mean both threads busy "
         "throughout; near 1, the steps got about one core's worth of time from the shared machine, so the absolute "
         "times are close to single-core ones)."),
        "",
        ("Why the ViT's growth stays well below 16x up to 512 px: per token, a ViT block spends 12 D^2 "
         "multiply-adds in its linear layers and 2 N D in its attention matrices, equal at N = 6 D = 1152 tokens "
         "(about 540 px for D = 192), so up to 512 px the linear layers still carry most of the cost and the "
         "quadratic term shows as the growth above 4x. NAT's attention "
         "per pixel is fixed by its window (each 8x8 query tile scores (8 + 7 - 1)^2 keys), so its cost stays "
         "proportional to the pixels at any size; its higher absolute cost comes from running at stride 4 "
         f"(16x the tokens of a stride-16 ViT) with {params['nat'] / params['vit']:.1f}x the parameters."),
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(report), encoding="utf-8")
    print("\n".join(report))


if __name__ == "__main__":
    main()
