"""Collapse statistics against direct formulas, and verdicts on synthetic healthy / uniform / one-dim outputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dinomed.ssl.monitor import collapse_stats, collapse_verdict, is_collapsing

K, B, D = 256, 32, 48
T_TEACHER, T_STUDENT = 0.04, 0.1


def _healthy(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    teacher = [torch.randn(B, K, generator=gen) * 0.1 for _ in range(2)]
    student = [torch.randn(B, K, generator=gen) * 0.3 for _ in range(4)]
    return teacher, student, torch.zeros(1, K), torch.randn(2 * B, D, generator=gen)


def _uniform():
    center = torch.randn(1, K)
    teacher = [center.expand(B, K).clone() for _ in range(2)]  # centring cancels everything
    student = [torch.full((B, K), 0.7) for _ in range(4)]
    return teacher, student, center, torch.ones(2 * B, D)


def _one_dim():
    logits = torch.zeros(B, K)
    logits[:, 3] = 5.0  # every sample puts its mass on prototype 3
    teacher = [logits.clone() for _ in range(2)]
    student = [logits.clone() for _ in range(4)]
    return teacher, student, torch.zeros(1, K), torch.ones(2 * B, D) + 1e-4 * torch.randn(2 * B, D)


def _record(case, step: int = 100) -> dict:
    teacher, student, center, emb = case
    stats = collapse_stats(teacher, student, center, T_TEACHER, T_STUDENT, emb)
    return {"step": step, **stats, "log_k": math.log(K), "embed_dim": D}


def test_stats_match_direct_formulas() -> None:
    teacher, student, center, emb = _healthy()
    stats = collapse_stats(teacher, student, center, T_TEACHER, T_STUDENT, emb)
    probs = [F.softmax((t - center) / T_TEACHER, dim=-1) for t in teacher]
    entropies = [-(p * p.log()).sum(-1) for p in probs]
    mean_p = torch.cat(probs).mean(0)
    kls = [
        F.kl_div(F.log_softmax(s / T_STUDENT, -1), p, reduction="batchmean")
        for i, p in enumerate(probs) for v, s in enumerate(student) if v != i
    ]
    unit = emb / emb.norm(dim=-1, keepdim=True)
    assert stats["teacher_entropy"] == pytest.approx(torch.cat(entropies).mean().item(), rel=1e-5)
    assert stats["teacher_batch_entropy"] == pytest.approx(-(mean_p * mean_p.log()).sum().item(), rel=1e-5)
    assert stats["kl"] == pytest.approx(torch.stack(kls).mean().item(), rel=1e-4)
    expected_std = torch.sqrt(((unit - unit.mean(0)) ** 2).mean(0)).mean().item()
    assert stats["teacher_std"] == pytest.approx(expected_std, rel=1e-5)
    assert stats["teacher_std"] == pytest.approx(1 / math.sqrt(D), rel=0.15)  # unit Gaussian directions


def test_synthetic_cases_get_the_right_verdict() -> None:
    healthy, uniform, one_dim = _record(_healthy()), _record(_uniform()), _record(_one_dim())
    assert uniform["teacher_entropy"] == pytest.approx(math.log(K), abs=1e-4) and abs(uniform["kl"]) < 1e-4
    assert one_dim["teacher_batch_entropy"] < 1e-3 and one_dim["teacher_entropy"] < 1e-3

    assert collapse_verdict([healthy])[0] == "healthy"
    verdict, why = collapse_verdict([healthy] + [uniform] * 5)
    assert verdict == "uniform collapse" and f"{math.log(K):.3f}" in why
    assert collapse_verdict([one_dim] * 3)[0] == "one-dimension collapse"
    assert is_collapsing(healthy) is None
    assert "uniform collapse" in is_collapsing(uniform) and "step 100" in is_collapsing(uniform)
    assert "one-dimension collapse" in is_collapsing(one_dim)


def test_verdict_reads_only_the_end_of_the_run() -> None:
    early_collapse = [_record(_uniform(), step) for step in range(10)]
    recovered = [_record(_healthy(seed), 10 + seed) for seed in range(5)]
    assert collapse_verdict(early_collapse + recovered)[0] == "healthy"
    assert collapse_verdict(recovered + early_collapse)[0] == "uniform collapse"


def test_embedding_collapse_alone_is_flagged() -> None:
    record = _record(_healthy())
    record["teacher_std"] = 0.01 / math.sqrt(D)
    verdict, why = collapse_verdict([record])
    assert verdict != "healthy" and "embeddings" in why


def test_missing_keys_are_named() -> None:
    record = _record(_healthy())
    del record["kl"]
    with pytest.raises(KeyError, match="kl"):
        collapse_verdict([record])
    with pytest.raises(ValueError, match="no records"):
        collapse_verdict([])
