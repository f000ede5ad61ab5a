"""Evaluation metrics per task, accumulated over batches then aggregated (MONAI's pattern).

Segmentation uses MONAI's Dice, mean IoU and 95th-percentile Hausdorff distance on the foreground classes.
Depth uses the standard monocular set (Eigen et al. 2014): AbsRel, SqRel, RMSE, RMSE-log and
delta < 1.25^k, with per-image median scaling (monocular depth is known only up to scale, as in
Surgical-DINO's evaluation) and pixels outside the depth caps ignored.
Classification reports accuracy, balanced accuracy (imbalanced medical sets), macro-F1 and macro AUROC.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics import DiceMetric, HausdorffDistanceMetric, MeanIoU, ROCAUCMetric

from dinomed.eval.metrics import balanced_accuracy

def _nanmean(values: torch.Tensor) -> float:
    values = values.float().flatten()
    values = values[torch.isfinite(values)]
    return float(values.mean()) if values.numel() else float("nan")


class SegmentationMetrics:
    """Dice, IoU and HD95 over the foreground classes; images where both masks are empty are skipped."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.dice = DiceMetric(include_background=False, reduction="none", ignore_empty=True)
        self.iou = MeanIoU(include_background=False, reduction="none", ignore_empty=True)
        self.hd95 = HausdorffDistanceMetric(include_background=False, percentile=95, reduction="none")

    def update(self, logits: torch.Tensor, mask: torch.Tensor) -> None:
        pred = F.one_hot(logits.argmax(1), self.num_classes).permute(0, 3, 1, 2).float().cpu()
        target = F.one_hot(mask.long(), self.num_classes).permute(0, 3, 1, 2).float().cpu()
        self.dice(pred, target)
        self.iou(pred, target)
        both_present = (pred[:, 1:].flatten(2).amax(2) > 0) & (target[:, 1:].flatten(2).amax(2) > 0)
        if both_present.any():  # HD95 is undefined for an empty prediction or mask
            keep = both_present.all(1)
            if keep.any():
                self.hd95(pred[keep], target[keep])

    def compute(self) -> dict[str, float]:
        hd = self.hd95.get_buffer() if self.hd95.get_buffer() is not None else torch.tensor([])
        return {"dice": _nanmean(self.dice.aggregate()), "iou": _nanmean(self.iou.aggregate()),
                "hd95": _nanmean(hd) if isinstance(hd, torch.Tensor) else float("nan")}


def depth_errors(pred: np.ndarray, target: np.ndarray, *, min_depth: float, max_depth: float,
                 median_scaling: bool = True) -> dict[str, float]:
    """Depth errors of one image over pixels with ``min_depth < target <= max_depth``.

    With ``median_scaling`` the prediction is multiplied by ``median(target) / median(pred)``; both are then
    clipped to the caps, as in Monodepth2's evaluation.
    """
    pred, target = np.asarray(pred, np.float64).ravel(), np.asarray(target, np.float64).ravel()
    valid = (target > min_depth) & (target <= max_depth)
    if not valid.any():
        raise ValueError(f"no ground-truth depth inside ({min_depth}, {max_depth}] in this image")
    pred, target = pred[valid], target[valid]
    if median_scaling:
        pred = pred * np.median(target) / max(np.median(pred), 1e-12)
    pred = np.clip(pred, min_depth, max_depth)
    ratio = np.maximum(pred / target, target / pred)
    return {
        "abs_rel": float(np.mean(np.abs(pred - target) / target)),
        "sq_rel": float(np.mean((pred - target) ** 2 / target)),
        "rmse": float(np.sqrt(np.mean((pred - target) ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(pred) - np.log(target)) ** 2))),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25 ** 2)),
        "delta3": float(np.mean(ratio < 1.25 ** 3)),
    }


class DepthMetrics:
    """Mean over images of :func:`depth_errors`."""

    def __init__(self, min_depth: float, max_depth: float, median_scaling: bool = True) -> None:
        self.min_depth, self.max_depth, self.median_scaling = min_depth, max_depth, median_scaling
        self.rows: list[dict[str, float]] = []

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        for p, t in zip(pred.detach().float().cpu().numpy(), target.detach().float().cpu().numpy()):
            self.rows.append(depth_errors(p, t, min_depth=self.min_depth, max_depth=self.max_depth,
                                          median_scaling=self.median_scaling))

    def compute(self) -> dict[str, float]:
        if not self.rows:
            raise ValueError("no images evaluated")
        return {k: float(np.mean([r[k] for r in self.rows])) for k in self.rows[0]}


def macro_f1(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> float:
    """Mean F1 over the classes present in labels or predictions."""
    scores = []
    for c in range(num_classes):
        tp = int(((pred == c) & (label == c)).sum())
        fp, fn = int(((pred == c) & (label != c)).sum()), int(((pred != c) & (label == c)).sum())
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else float("nan")


class ClassificationMetrics:
    """Accuracy, balanced accuracy, macro-F1 and macro one-vs-rest AUROC (MONAI ``ROCAUCMetric``)."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.probs: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def update(self, logits: torch.Tensor, label: torch.Tensor) -> None:
        self.probs.append(logits.detach().float().softmax(1).cpu())
        self.labels.append(label.detach().long().cpu())

    def compute(self) -> dict[str, float]:
        probs, labels = torch.cat(self.probs), torch.cat(self.labels)
        pred = probs.argmax(1)
        return {"accuracy": float((pred == labels).float().mean()),
                "balanced_accuracy": balanced_accuracy(pred, labels),
                "macro_f1": macro_f1(pred, labels, self.num_classes), "auroc": macro_auroc(probs, labels)}


def macro_auroc(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean one-vs-rest AUROC (MONAI ``ROCAUCMetric``) over the classes present; NaN with a single class."""
    present = labels.unique().tolist()
    if len(present) < 2:
        return float("nan")
    scores = []
    for c in present:
        metric = ROCAUCMetric()
        metric(probs[:, c], (labels == c).long())
        scores.append(float(metric.aggregate()))
    return sum(scores) / len(scores)
