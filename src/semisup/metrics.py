"""Segmentation metrics from a confusion matrix kept on the device: mean IoU with the ignore
value excluded, per-class IoU, pixel accuracy, and Dice for two-class data."""
from __future__ import annotations

import torch

from .data.types import IGNORE  # the ignore value of masks in memory, defined by the data layer


def confusion(pred: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """(k, k) counts, rows the true class, columns the predicted one; ignored pixels skipped."""
    keep = target != IGNORE
    idx = target[keep].long() * k + pred[keep].long()
    return torch.bincount(idx, minlength=k * k).view(k, k)


def seg_scores(conf: torch.Tensor, classes: list[str]) -> dict:
    """Mean IoU over the classes present in the ground truth or the predictions (a class in
    neither has no defined IoU and is left out of the mean, as in the usual protocol's running
    confusion over the whole split), per-class IoU, pixel accuracy; Dice of class 1 where
    there are two classes."""
    conf = conf.double()
    tp = conf.diag()
    gt, pr = conf.sum(1), conf.sum(0)
    union = gt + pr - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
    out = {"miou": float(iou.nanmean()) if (union > 0).any() else 0.0,
           "pixel_accuracy": float(tp.sum() / conf.sum().clamp_min(1)),
           "iou": {c: (None if v != v else round(float(v), 4)) for c, v in zip(classes, iou.tolist())}}
    if len(classes) == 2:
        out["dice"] = float(2 * tp[1] / (gt[1] + pr[1]).clamp_min(1))
    return out


def feature_stats(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance (float64) of features (N, D)."""
    f = f.double()
    return f.mean(0), torch.cov(f.t()).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2) (Heusel et al. 2017's FID, in
    whatever feature space the statistics come from), in float64 through symmetric
    eigendecompositions, so no SciPy and no complex parts."""
    vals, vecs = torch.linalg.eigh(cov1)
    root1 = (vecs * vals.clamp_min(0).sqrt()) @ vecs.t()
    middle = root1 @ cov2 @ root1
    tr_cross = torch.linalg.eigvalsh((middle + middle.t()) / 2).clamp_min(0).sqrt().sum()
    return float(((mu1 - mu2) ** 2).sum() + cov1.trace() + cov2.trace() - 2 * tr_cross)
