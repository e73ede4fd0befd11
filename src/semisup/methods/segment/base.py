"""What the segmentation methods share: the Method contract with masks as targets (B, H, W),
255 ignored; a U-Net by default; cross-entropy with an optional Dice term; the pseudo-mask
loss of the weak-to-strong family."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...metrics import IGNORE
from ..base import Method


class SegMethod(Method):
    task = "segment"
    labeled_views = ("weak",)

    @classmethod
    def default_model(cls, shape):
        return "unet"

    def sup_loss(self, logits: torch.Tensor, masks: torch.Tensor, dice: float = 0.0) -> torch.Tensor:
        """Cross-entropy over the pixels that are not ignored, plus `dice` times the soft Dice
        loss (Milletari et al. 2016) averaged over the classes present in the batch."""
        loss = F.cross_entropy(logits.float(), masks, ignore_index=IGNORE)
        if dice > 0:
            keep = (masks != IGNORE).unsqueeze(1)
            p = logits.float().softmax(1) * keep
            t = F.one_hot(masks.clamp(max=self.num_classes - 1), self.num_classes).permute(0, 3, 1, 2) * keep
            inter, total = (p * t).sum((0, 2, 3)), (p + t).sum((0, 2, 3))
            present = t.sum((0, 2, 3)) > 0
            loss = loss + dice * (1 - 2 * inter[present] / total[present].clamp_min(1e-6)).mean()
        return loss

    @staticmethod
    def pseudo_loss(logits: torch.Tensor, target: torch.Tensor, conf: torch.Tensor, valid: torch.Tensor,
                    threshold: float) -> torch.Tensor:
        """UniMatch's unlabeled loss: per-pixel cross-entropy against the pseudo-mask where the
        confidence reaches the threshold, summed and divided by the number of valid pixels
        (pixels inside the image, not the padding of the crop)."""
        ce = F.cross_entropy(logits.float(), target, reduction="none")
        return (ce * ((conf >= threshold) & valid)).sum() / valid.sum().clamp_min(1)

    @staticmethod
    def pseudo_masks(logits: torch.Tensor):
        """Confidence and class of each pixel from detached logits."""
        conf, target = logits.detach().float().softmax(1).max(1)
        return conf, target
