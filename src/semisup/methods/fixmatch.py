from dataclasses import dataclass

from ..options import BOOL, POSITIVE, SHARE, WEIGHT
from .base import Batch, Method, WeakStrongHyper, option


@dataclass
class FixMatchHyper(WeakStrongHyper):
    threshold: float = option(0.95, "confidence above which a weak-view prediction becomes a pseudo-label (tau)",
                              check=SHARE)
    lambda_u: float = option(1.0, "weight of the unlabeled loss (lambda_u)", check=WEIGHT)
    temperature: float = option(1.0, "sharpening temperature of soft pseudo-labels; 1 with hard labels", check=POSITIVE)
    hard_label: bool = option(True, "train on the argmax (True) or on the sharpened distribution", check=BOOL)


class FixMatch(Method):
    """FixMatch (Sohn et al. 2020, Eq. 2-4): l = l_s + lambda_u * l_u, with
    l_u = 1/(mu B) sum 1(max q_b >= tau) H(argmax q_b, p(y | A(u_b))), q_b = p(y | alpha(u_b)):
    the weak view's confident prediction supervises the strong view.
    Paper defaults: tau 0.95, lambda_u 1, mu 7, B 64, SGD-nesterov lr 0.03, cosine decay, EMA 0.999.
    As in the paper, labeled, weak and strong images go through the network as one batch, so
    BatchNorm sees them together; the weak logits are detached. `--weak-pass separate` gives
    the weak view a no-grad pass of its own (its own BatchNorm batch statistics, no backward):
    1.4-1.9x the float32 WRN-28-2 step on the CPU, and on digits 96.99% against 96.55% (seeds
    0-4, 1,000 steps); the digits default uses it (docs/benchmarks.md, Speed)."""

    name = "fixmatch"
    paper = "Sohn et al. 2020, FixMatch: simplifying semi-supervised learning with consistency and confidence"
    Hyper = FixMatchHyper
    unlabeled_views = ("weak", "strong")
    cpu_bf16 = True  # digits, seeds 0-4, and MNIST-100: accuracy held (docs/benchmarks.md, Speed)

    def step(self, batch: Batch):
        lx, weak, strong = self.weak_strong_logits(batch)
        probs = (weak / self.hp.temperature).softmax(-1)
        conf, pl = probs.max(-1)
        mask = (conf >= self.hp.threshold).float()
        target = pl if self.hp.hard_label else probs
        out = self.pseudo_label_losses(lx, batch.y, strong, target, mask, self.hp.lambda_u)
        out["pseudo_label"] = pl
        return out
