"""Is pretraining learning anything, and is a continued run forgetting its init? Measured on a probe set.

The collapse monitor (:mod:`dinomed.ssl.monitor`) answers "did it collapse?"; these probes answer "is it useful?"
on a fixed set of the run's own images, seen through the eval transform, every ``train.probe_every`` steps:

* ``rankme``: the effective rank of the teacher's CLS embeddings (RankMe, Garrido et al. 2023: exp of the entropy of
  the normalised singular values), a label-free signal that tracks downstream accuracy across SSL runs; drawn
  against the same measure for a random-init backbone of the architecture (``rankme_random``).
* ``knn``: when the images carry labels, weighted-kNN balanced accuracy of the half of the probe groups that is held
  out against the other half (k=20, T=0.07, DINO's protocol), against the random init (``knn_random``).
* ``jaccard``: when they carry masks, the best head's Jaccard of the last-block attention (60 % mass) against them,
  against the random init (``jaccard_random``).
* ``cka_init`` / ``cos_init``: in a continued run, linear CKA (Kornblith et al. 2019) and the mean cosine of each
  image's CLS embedding between the current teacher and the init: the forgetting monitor.

Example:
    >>> probes = Probes.build(dataset, recipe, arch_spec)       # once, at step 0
    >>> record.update(probes.measure(teacher.backbone))         # every train.probe_every steps
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dinomed.data.records import ImageDataset
from dinomed.eval.attention import (
    has_attention_maps,
    jaccard_summary,
    last_block_attention,
    mask_jaccards,
    mass_masks,
    upsample,
)
from dinomed.eval.knn import knn_classify
from dinomed.eval.metrics import balanced_accuracy

__all__ = ["ProbeSet", "Probes", "rankme", "linear_cka", "probe_indices", "is_forgetting", "quality_line",
           "quality_verdict"]

KNN_K, KNN_T, KEEP = 20, 0.07, 0.6
# Forgetting warning: the teacher's CLS geometry has moved far from the init's (linear CKA below this) while the
# DINO loss has not fallen yet (still above this fraction of the first loss): the init is being overwritten before
# the new objective pays anything back.
FORGET_CKA, LOSS_STILL_HIGH = 0.6, 0.9
# The verdict: a probe counts as better than random init when it beats the random-init value by this margin
# (kNN, Jaccard: absolute; RankMe: relative). Set from the runs in the README ("Is it learning?").
MARGINS = {"knn": 0.02, "jaccard": 0.01, "rankme": 0.05}
LEARNING, NOT_LEARNING, UNKNOWN = "learning", "not learning", "unknown"


def rankme(embeddings: torch.Tensor, eps: float = 1e-7) -> float:
    """Effective rank ``exp(-sum p_k log p_k)`` with ``p = sigma / ||sigma||_1 + eps`` (Garrido et al. 2023)."""
    sigma = torch.linalg.svdvals(embeddings.double())
    p = sigma / sigma.sum().clamp_min(eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two feature matrices of the same images (Kornblith et al. 2019); 1 = same geometry."""
    x, y = x.double() - x.double().mean(0), y.double() - y.double().mean(0)
    cross = (y.T @ x).norm() ** 2
    return float(cross / ((x.T @ x).norm() * (y.T @ y).norm()).clamp_min(1e-12))


def probe_indices(items: Sized, count: int, seed: int) -> list[int]:
    """``count`` positions in ``items`` (a dataset, a split; all if fewer) drawn without replacement, seeded: the
    same images every probe."""
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(len(items), size=min(count, len(items)), replace=False).tolist())


@dataclass
class ProbeSet:
    """The probe images at the model's input size, their labels / masks when every one has them, and which half
    of the groups is the kNN memory bank (the other half is held out)."""

    images: torch.Tensor
    labels: torch.Tensor | None
    masks: torch.Tensor | None
    bank: torch.Tensor

    @classmethod
    def from_dataset(cls, dataset: ImageDataset, indices: Sequence[int], transform: Callable[..., Any]) -> "ProbeSet":
        images, labels, masks, groups = [], [], [], []
        for i in indices:
            sample = dataset[i]
            out = transform(sample["image"], **({"mask": sample["mask"]} if sample.get("mask") is not None else {}))
            images.append(out["image"])
            labels.append(sample.get("label"))
            masks.append(out.get("mask"))
            groups.append(dataset.groups()[i])
        order = sorted(set(groups))
        held_out = set(order[1::2])  # whole groups, so a patient's images never sit on both sides
        has_labels = all(label is not None for label in labels) and len({*labels}) > 1
        return cls(torch.stack(images), torch.tensor(labels) if has_labels else None,
                   torch.stack([m > 0 for m in masks]) if all(m is not None for m in masks) else None,
                   torch.tensor([g not in held_out for g in groups]))


class Probes:
    """Measures a backbone on a :class:`ProbeSet` against the random-init values (and the init's features)."""

    def __init__(self, probe_set: ProbeSet, *, num_classes: int = 0, reference: Mapping[str, float] | None = None,
                 init_features: torch.Tensor | None = None, batch_size: int = 64) -> None:
        self.set, self.num_classes, self.batch_size = probe_set, num_classes, batch_size
        self.reference = dict(reference or {})
        self.init_features = init_features

    @torch.no_grad()
    def features(self, backbone: nn.Module) -> torch.Tensor:
        """CLS embeddings (the backbone's pooled output) of the probe images, ``(N, D)`` on the CPU."""
        device = next(backbone.parameters()).device
        return torch.cat([backbone(batch.to(device)).float().cpu() for batch in self.set.images.split(self.batch_size)])

    @torch.no_grad()
    def _jaccard(self, backbone: nn.Module) -> float:
        device = next(backbone.parameters()).device
        per_head, union = [], []
        for images, truth in zip(self.set.images.split(self.batch_size), self.set.masks.split(self.batch_size)):
            masks = upsample(mass_masks(last_block_attention(backbone, images.to(device)), KEEP), images.shape[-2:])
            for image_masks, image_truth in zip(masks.cpu(), truth):
                heads, both = mask_jaccards(image_masks, image_truth)
                per_head.append(heads)
                union.append(both)
        return float(jaccard_summary(per_head, union, KEEP)["best_head_jaccard"])

    def _knn(self, features: torch.Tensor) -> float:
        bank, labels = self.set.bank, self.set.labels
        predictions = knn_classify(features[bank], labels[bank], features[~bank], k=min(KNN_K, int(bank.sum())),
                                   T=KNN_T, num_classes=self.num_classes)
        return balanced_accuracy(predictions, labels[~bank])

    def measure(self, backbone: nn.Module, *, suffix: str = "") -> dict[str, float]:
        """The probe values of ``backbone``; ``suffix`` names them (``_random`` for the reference)."""
        mode = backbone.training
        backbone.eval()
        features = self.features(backbone)
        values = {f"rankme{suffix}": rankme(features)}
        if self.set.labels is not None and self.set.bank.any() and (~self.set.bank).any():
            values[f"knn{suffix}"] = self._knn(features)
        if self.set.masks is not None and has_attention_maps(backbone):
            values[f"jaccard{suffix}"] = self._jaccard(backbone)
        if not suffix and self.init_features is not None:
            values["cka_init"] = linear_cka(features, self.init_features)
            values["cos_init"] = float(F.cosine_similarity(features, self.init_features, dim=1).mean())
        backbone.train(mode)
        return {**values, **self.reference} if not suffix else values

    def state_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "init_features": self.init_features}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.reference = dict(state["reference"])
        self.init_features = state["init_features"]


def is_forgetting(record: Mapping[str, Any], first_loss: float | None) -> str | None:
    """A console warning when a continued run drifts from its init while the DINO loss is still high."""
    cka = record.get("cka_init")
    if cka is None or first_loss is None or cka >= FORGET_CKA or record["loss"] < LOSS_STILL_HIGH * first_loss:
        return None
    return (f"forgetting the init at step {record.get('step', '?')}: CKA to the init features {cka:.2f} while the "
            f"DINO loss is still {record['loss']:.3f} (first {first_loss:.3f}); consider a lower optim.lr, a smaller "
            "optim.layer_decay or more train.freeze_backbone_epochs")


def quality_line(record: Mapping[str, Any]) -> str:
    """The probes of one record, each against its random-init value: ``rankme 83 (rand 61)  knn 0.52 (0.41)``."""
    parts = []
    for key, fmt in (("rankme", "{:.0f}"), ("knn", "{:.2f}"), ("jaccard", "{:.2f}")):
        if key in record:
            parts.append(f"{key} {fmt.format(record[key])} (rand {fmt.format(record.get(key + '_random', float('nan')))})")
    if "cka_init" in record:
        parts.append(f"cka-init {record['cka_init']:.2f}")
    return "  ".join(parts)


def _beats_random(record: Mapping[str, Any], key: str) -> bool:
    value, random = float(record[key]), float(record[f"{key}_random"])
    margin = MARGINS[key] * (random if key == "rankme" else 1.0)
    return value > random + margin


def quality_verdict(records: Sequence[Mapping[str, Any]], after_step: int = 0) -> tuple[str, str]:
    """``(learning | not learning | unknown, evidence)`` from the last probe record after ``after_step`` (the lr
    warm-up): not learning when every probe the data allow is at or below its random-init value plus the
    :data:`MARGINS`; the label probes (kNN, Jaccard) decide when present, RankMe otherwise."""
    probed = [r for r in records if "rankme" in r and "rankme_random" in r and r.get("step", 0) > after_step]
    if not probed:
        return UNKNOWN, f"no probe after step {after_step} (train.probe_every, or a run shorter than its warm-up)"
    last = probed[-1]
    keys = [k for k in ("knn", "jaccard") if k in last and f"{k}_random" in last] or ["rankme"]
    evidence = f"step {last['step']}: " + quality_line(last)
    if any(_beats_random(last, key) for key in keys):
        return LEARNING, evidence
    return NOT_LEARNING, evidence + f" (no probe beats random init by its margin {[MARGINS[k] for k in keys]})"
