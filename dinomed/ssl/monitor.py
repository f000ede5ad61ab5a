"""Collapse diagnostics for DINO pretraining.

DINO can fail in two ways (Caron et al. 2021, Sec. 5.3 / Fig. 7): without enough sharpening the teacher output goes
**uniform** (entropy ``ln K``, and the student matches it, KL 0); without enough centring **one dimension**
dominates (every sample puts its mass on the same prototype, so even the batch-mean distribution has entropy ~0).
Either way the loss can look fine while the backbone learns nothing, so we log the quantities that tell them apart
and the spread of the teacher's normalised CLS embedding (SimSiam's check, Chen & He 2021: a healthy embedding of
unit vectors has per-dimension std ~ ``1/sqrt(d)``; a collapsed one ~0).

Example:
    >>> stats = collapse_stats(teacher_out, student_out, loss_fn.center, 0.04, 0.1, teacher_cls)
    >>> collapse_verdict(records)  # ("healthy", "teacher entropy 6.1 of ln K = 8.3 nats, ...")
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from dinomed.ssl.dino import multicrop_cross_entropy

__all__ = ["collapse_stats", "collapse_verdict", "is_collapsing"]

# Uniform collapse: the teacher is within this many nats of the uniform distribution (perplexity >= ~95% of K, so it
# no longer prefers any prototype) ...
UNIFORM_ENTROPY_GAP = 0.05
# ... and the student already matches it (KL in nats): nothing is left to distil. A random-init head is still
# ~1 nat below ln K and its KL is well above this, so a run's first steps do not trigger it.
UNIFORM_KL = 0.01
# One-dimension collapse: the batch-mean teacher distribution has entropy below ln 2, i.e. fewer than two prototypes
# are in use across the whole batch (the per-sample entropy is at most this, by concavity of entropy).
ONE_DIM_BATCH_ENTROPY = math.log(2.0)
# Embedding collapse: per-dimension std of the L2-normalised teacher CLS below this fraction of 1/sqrt(d), the value
# for unit vectors spread uniformly on the sphere; at that point all images map to nearly the same direction.
STD_FRACTION = 0.05
# collapse_verdict averages the last records of a run, so one noisy log step does not decide it.
VERDICT_WINDOW = 5

HEALTHY, UNIFORM, ONE_DIM = "healthy", "uniform collapse", "one-dimension collapse"
RECORD_KEYS = ("teacher_entropy", "teacher_batch_entropy", "kl", "teacher_std", "log_k", "embed_dim")


@torch.no_grad()
def collapse_stats(
    teacher_out: Sequence[torch.Tensor],
    student_out: Sequence[torch.Tensor],
    center: torch.Tensor,
    teacher_temp: float,
    student_temp: float,
    teacher_embeddings: torch.Tensor,
) -> dict[str, float]:
    """Entropies (nats), KL and embedding spread of one step; ``center`` is the one the loss used at that step.

    Returns ``teacher_entropy`` (mean per-sample entropy of the centred, sharpened teacher softmax),
    ``teacher_batch_entropy`` (entropy of its batch mean), ``kl`` (mean ``KL(teacher || student)`` over the loss's
    pairs of different views) and ``teacher_std`` (mean over dims of the std over the batch of the L2-normalised
    teacher CLS embedding ``teacher_embeddings``, ``(N, d)``).
    """
    teacher_log_probs = F.log_softmax((torch.stack(list(teacher_out)).float() - center.float()) / teacher_temp, -1)
    teacher_probs = teacher_log_probs.exp()
    entropy = -(teacher_probs * teacher_log_probs).sum(-1).mean()
    mean_probs = teacher_probs.flatten(0, 1).mean(0)
    batch_entropy = -torch.special.xlogy(mean_probs, mean_probs).sum()
    # each teacher crop appears in the same number of pairs, so mean KL = mean cross-entropy - mean teacher entropy
    kl = multicrop_cross_entropy(teacher_probs, student_out, student_temp) - entropy
    unit = F.normalize(teacher_embeddings.float().flatten(0, -2), dim=-1)
    std = unit.std(dim=0, correction=0).mean()
    return {
        "teacher_entropy": entropy.item(),
        "teacher_batch_entropy": batch_entropy.item(),
        "kl": kl.item(),
        "teacher_std": std.item(),
    }


def _require_keys(record: Mapping[str, float]) -> None:
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        step = record.get("step", "?")
        raise KeyError(f"collapse diagnosis needs metrics keys {list(RECORD_KEYS)}; record at step {step} lacks "
                       f"{missing}")


def _diagnose(stats: Mapping[str, float]) -> tuple[str, str]:
    _require_keys(stats)
    log_k, entropy, batch_entropy = stats["log_k"], stats["teacher_entropy"], stats["teacher_batch_entropy"]
    kl, std = stats["kl"], stats["teacher_std"]
    spread = 1.0 / math.sqrt(stats["embed_dim"])
    numbers = (
        f"teacher entropy {entropy:.3f} of ln K = {log_k:.3f} nats, batch entropy {batch_entropy:.3f}, "
        f"KL {kl:.4f}, teacher std {std:.4f} (1/sqrt(d) = {spread:.4f})"
    )
    if log_k - entropy < UNIFORM_ENTROPY_GAP and kl < UNIFORM_KL:
        return UNIFORM, f"teacher output is uniform and the student copies it: {numbers}"
    if batch_entropy < ONE_DIM_BATCH_ENTROPY:
        return ONE_DIM, f"one prototype takes the teacher's mass for every image: {numbers}"
    if std < STD_FRACTION * spread:
        # identical embeddings give identical logits, which centring flattens to uniform unless sharpening wins
        kind = ONE_DIM if batch_entropy < 0.5 * log_k else UNIFORM
        return kind, f"teacher embeddings all point the same way: {numbers}"
    return HEALTHY, numbers


def collapse_verdict(records: Sequence[Mapping[str, float]]) -> tuple[str, str]:
    """("healthy" | "uniform collapse" | "one-dimension collapse", explanation) from the mean of the last training
    records (the step-0 probe record carries no training statistics and is skipped)."""
    training = [r for r in records if "teacher_entropy" in r]
    if not training:
        raise ValueError("collapse_verdict: no records with collapse statistics (metrics.jsonl holds none)")
    last = training[-VERDICT_WINDOW:]
    for record in last:
        _require_keys(record)
    mean = {k: sum(float(r[k]) for r in last) / len(last) for k in RECORD_KEYS}
    verdict, why = _diagnose(mean)
    return verdict, f"{why} (mean of the last {len(last)} record(s))"


def is_collapsing(record: Mapping[str, float]) -> str | None:
    """A console warning when one metrics record already shows collapse, else ``None``."""
    verdict, why = _diagnose(record)
    if verdict == HEALTHY:
        return None
    return f"possible {verdict} at step {record.get('step', '?')}: {why}"
