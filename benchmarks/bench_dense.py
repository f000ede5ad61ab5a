"""What a dense head costs: parameters and forward + backward time of LoRA + seg head per backbone, input size and
decoder, so a user can choose patch size, input size and decoder for segmentation / depth.

Per configuration (backbone, side, decoder) a fresh Python process builds exactly what ``dinomed finetune --lora``
builds (random-init backbone, LoRA r=4 on K and V, a 2-class seg head with ``finetune.head_hidden`` channels on 4
evenly spaced blocks / the 4 NAT stages), then times ``--repeats`` steps of ``forward -> cross-entropy ->
backward`` after one warm-up step, batch ``--batch``, 2 torch threads. Parameters are dinomed's own accounting
(:func:`dinomed.finetuning.model.parameter_report`); CPU time and peak memory are measured as in
``bench_nat.py`` (CPU time is the work itself on this shared machine; memory = peak resident set during the steps
minus resident set before them).

Usage: ``python benchmarks/bench_dense.py [--archs ...] [--sides 128 224] [--decoders fusion dpt dpt+detail]``;
writes ``benchmarks/results/dense_cost.md``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as dinomed/__init__.py: spinning threads skew CPU timings

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_nat import THREADS, timed_steps  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "dense_cost.md"
ARCHS = ("vit_tiny_patch16_224", "vit_small_patch16_224", "vit_small_patch8_224", "nat_mini")
DECODERS = {"fusion": ("fusion", False), "dpt": ("dpt", False), "dpt+detail": ("dpt", True)}


def measure(arch: str, side: int, decoder: str, hidden: int, batch: int, repeats: int) -> dict[str, float]:
    """Parameter report, median step wall / CPU ms and extra peak MB of one configuration (fresh process)."""
    import torch
    import torch.nn.functional as F

    from dinomed.finetuning.heads import build_head
    from dinomed.finetuning.model import FinetunedModel, adapt, parameter_report
    from dinomed.models.backbones import feature_levels, resolve_backbone
    from dinomed.models.lora import LoraSettings

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    kind, detail = DECODERS[decoder]
    base, _ = resolve_backbone("random", arch=arch, in_chans=3, img_size=side)
    head = build_head("seg", feature_levels(base), num_classes=2, hidden=hidden, decoder=kind,
                      detail=3 if detail else None)
    model = FinetunedModel(adapt(base, "lora", LoraSettings()), head, {}).train()
    images, masks = torch.randn(batch, 3, side, side), torch.randint(0, 2, (batch, side, side))
    return {**timed_steps(model, lambda: F.cross_entropy(model(images), masks), repeats), **parameter_report(model)}


def run_child(arch: str, side: int, decoder: str, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", "--archs", arch, "--sides", str(side), "--decoders", decoder,
               "--hidden", str(args.hidden), "--batch", str(args.batch), "--repeats", str(args.repeats)]
    result = subprocess.run(command, capture_output=True, text=True, check=False,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if result.returncode != 0:
        raise RuntimeError(f"{arch} at {side} px with {decoder} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> list[str]:
    header = ("backbone", "side", "tokens (finest map)", "decoder", "backbone M", "LoRA M", "head M",
              "of which detail M", "trainable M", "ms / step", "CPU ms / step", "peak MB")
    lines = ["| " + " | ".join(header) + " |", "|---|---:|---:|---|" + "---:|" * (len(header) - 4)]
    for r in rows:
        stride = 4 if r["arch"].startswith("nat") else int(r["arch"].split("patch")[1].split("_")[0])
        lines.append(
            f"| {r['arch']} | {r['side']} | {(r['side'] // stride) ** 2} | {r['decoder']} | "
            f"{r['backbone_frozen'] / 1e6:.2f} | {r['lora'] / 1e6:.3f} | {r['head'] / 1e6:.2f} | "
            f"{r['detail'] / 1e6:.3f} | {r['trainable'] / 1e6:.2f} | {r['ms']:.0f} | {r['cpu_ms']:.0f} | {r['mb']:.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", default=list(ARCHS))
    parser.add_argument("--sides", type=int, nargs="+", default=[128, 224], help="multiples of 16")
    parser.add_argument("--decoders", nargs="+", default=list(DECODERS), choices=list(DECODERS))
    parser.add_argument("--hidden", type=int, default=128, help="finetune.head_hidden")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.archs[0], args.sides[0], args.decoders[0], args.hidden, args.batch, args.repeats)))
        return
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    started, rows = time.perf_counter(), []
    for arch in args.archs:
        for side in args.sides:
            for decoder in args.decoders:
                rows.append({"arch": arch, "side": side, "decoder": decoder, **run_child(arch, side, decoder, args)})
                print(table(rows)[-1], flush=True)
    report = [
        "# Dense heads: parameters and cost per backbone, input size and decoder", "",
        (f"Written on {datetime.datetime.now():%Y-%m-%d %H:%M} by `python benchmarks/bench_dense.py "
         f"{' '.join(sys.argv[1:])}` in {time.perf_counter() - started:.0f} s ({os.cpu_count()} CPU cores, "
         f"{THREADS} threads, load average {load} at the start). LoRA r=4 on K and V, 2-class seg head with hidden "
         f"{args.hidden}, batch {args.batch}, median of {args.repeats} forward + backward steps after a warm-up; "
         "backbone M = frozen backbone parameters."), "",
        *table(rows), "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(report), encoding="utf-8")
    print("\n".join(report))


if __name__ == "__main__":
    main()
