#!/usr/bin/env bash
# GPU check, ~5 minutes on one CUDA GPU: quick pretrain in fp16 and bf16, kill -9 + resume, a 2-step LoRA fine-tune
# and predict, a 2-process DDP run when 2 GPUs exist, and img/s + peak GPU memory for ViT-S/16 at 2x224 + 8x96,
# batch 64. Installs nothing: it uses the environment it finds (PYTHON, else .venv/bin/python, else python3).
# Prints one line per check; writes benchmarks/results/gpu_check.md. Without a CUDA device it says so and exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
if ! "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)" 2>/dev/null; then
  echo "gpu_check: no CUDA device (or no torch in $py); skipped"
  exit 0
fi
exec "$py" benchmarks/gpu_check.py "$@"
