"""What the segmentation methods share: the Method contract with masks as targets (B, H, W),
255 ignored; a U-Net by default; cross-entropy with an optional Dice term; the pseudo-mask
loss of the weak-to-strong family and its class-wise confidence thresholds."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...metrics import IGNORE
from ..base import Method, gather_batch


class SegMethod(Method):
    """The learning rate follows the classification methods' cosine (Method.lr_factor), not the
    poly schedule of UniMatch, SSL4MIS and CPS's code, lr (1 - k/K)^0.9: from random weights in
    1,000 steps poly lost on shapes (50 labels, seed 0; test mIoU supervised 0.360 against 0.429
    with cosine, fixmatch 0.443 against 0.490; docs/benchmarks.md). Poly's mean rate over a run
    is 0.53 of the peak, cosine's 0.71."""

    task = "segment"
    labeled_views = ("weak",)

    @classmethod
    def default_model_for(cls, shape, cfg):
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
    def pseudo_loss(logits: torch.Tensor, target: torch.Tensor, keep: torch.Tensor, valid: torch.Tensor
                    ) -> torch.Tensor:
        """UniMatch's unlabeled loss: per-pixel cross-entropy against the pseudo-mask where `keep`
        (the confidence reached its threshold), summed and divided by the number of valid pixels
        (pixels inside the image, not the padding of the crop)."""
        ce = F.cross_entropy(logits.float(), target, reduction="none")
        return (ce * (keep & valid)).sum() / valid.sum().clamp_min(1)

    @staticmethod
    def pseudo_masks(logits: torch.Tensor):
        """Confidence and class of each pixel from detached logits."""
        conf, target = logits.detach().float().softmax(1).max(1)
        return conf, target

    def init_class_conf(self) -> None:
        """The state of `confident`'s class-wise thresholds: a buffer `class_conf` at 1/C."""
        self.register_buffer("class_conf", torch.full((self.num_classes,), 1.0 / self.num_classes))

    def class_sums(self, values: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(2, C): per class, the sum of `values` and the count over the valid pixels labeled c."""
        v, t = valid.flatten().float(), target.flatten()
        sums = torch.zeros(2, self.num_classes, device=values.device)
        sums[0].scatter_add_(0, t, values.flatten().float() * v)
        sums[1].scatter_add_(0, t, v)
        return sums

    def confident(self, conf: torch.Tensor, target: torch.Tensor, valid: torch.Tensor):
        """The pixels whose pseudo-label counts, and their logs. With `hp.classwise`, class-wise
        thresholds: per class c, `class_conf` is an EMA (momentum `hp.class_momentum`) of the mean
        confidence of the valid pixels labeled c (AEL's confidence bank, Hu et al. 2021, Sec.
        3.2), starting at 1/C and updated from this batch first when training, gathered over the
        processes under torchrun; a pixel counts where its confidence reaches threshold x
        class_conf[c] / max(class_conf) (FreeMatch's self-adaptive class thresholds, Wang et al.
        2023, Eq. 6-7; FreeMatch's class term, the mean probability of c over all samples, is
        in segmentation the class's share of the pixels and would rank classes by frequency,
        not by how well they are learned). The best-learned class keeps the threshold; a class
        the network is less sure of is admitted at a lower confidence, so that one threshold
        over pixels does not admit almost only the majority class. The momentum is 0.99 where
        FreeMatch's is 0.999 over 2^20 steps: at 0.999 a 1,000-step run would end with 37% of the
        1/C start still in the average. Without `hp.classwise`, one threshold.
        Logs `mask_rate` (share of the valid pixels kept) and `mask_rate_c<i>` (share of the
        valid pixels labeled i that are kept; 0 in a batch with none)."""
        tau = self.hp.threshold
        if self.hp.classwise:
            if self.training:
                sums = gather_batch(self.class_sums(conf, target, valid).unsqueeze(0))[0].sum(0)
                m = self.hp.class_momentum
                update = m * self.class_conf + (1 - m) * sums[0] / sums[1].clamp_min(1)
                self.class_conf.copy_(torch.where(sums[1] > 0, update, self.class_conf))
            keep = conf >= (tau * self.class_conf / self.class_conf.max())[target]
        else:
            keep = conf >= tau
        keep = keep & valid
        counts = self.class_sums(keep, target, valid)
        rates = counts[0] / counts[1].clamp_min(1)
        logs = {"mask_rate": keep.float().sum() / valid.sum().clamp_min(1)}
        logs.update({f"mask_rate_c{i}": rates[i] for i in range(self.num_classes)})
        return keep, logs
