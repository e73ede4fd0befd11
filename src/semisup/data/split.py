"""SemiData: a source with its labeled subset drawn from the seed and the rest unlabeled."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from ..errors import UserError
from .types import Source, Split


@dataclass
class SemiData:
    source: Source
    labeled: torch.Tensor  # indices into source.train
    unlabeled: torch.Tensor  # the rest of the training images
    test: Split  # the reported split
    val: Split | None  # the selection split, when there is one
    test_name: str  # where `test` came from: "test", "val", or "held out from train"
    mean: torch.Tensor  # per-channel statistics of the labeled images, in [0, 1]
    std: torch.Tensor
    # the labeling round of each labeled image (0: the draw, k: the k-th --add-labels file) and the
    # name of each round ("draw", then the files); None: every labeled image is from the draw
    rounds: torch.Tensor | None = None
    round_names: list[str] = field(default_factory=lambda: ["draw"])

    @property
    def labels_by_round(self) -> list[int]:
        """How many labeled images each round brought (the draw first)."""
        if self.rounds is None:
            return [len(self.labeled)]
        return torch.bincount(self.rounds, minlength=len(self.round_names)).tolist()

    @property
    def classes(self) -> list[str]:
        return self.source.classes

    @property
    def images(self) -> torch.Tensor:
        return self.source.train.x

    @property
    def hidden_targets(self) -> torch.Tensor:
        """True classes of the training images (-1 unknown), for reporting pseudo-label
        accuracy only: training never reads them for unlabeled images. Segmentation: the masks."""
        return self.source.train.y if self.source.train.masks is None else self.source.train.masks

    @property
    def labeled_targets(self) -> torch.Tensor:
        return self.source.train.y[self.labeled]


def _per_class(y: torch.Tensor, k: int) -> list[torch.Tensor]:
    return [(y == c).nonzero().flatten() for c in range(k)]


def make_semidata(src: Source, labels: int | None = None, labels_per_class: int | None = None,
                  seed: int = 0, holdout: float = 0.2, labeled_fraction: float | None = None,
                  include_labeled: bool = False) -> SemiData:
    """Draw the labeled subset, class-balanced, from `seed` (a CPU generator: the same on every
    process). Without `labels`/`labels_per_class`/`labeled_fraction`, every labeled training
    image is used. Segmentation draws whole images with masks, uniformly. The unlabeled pool is
    the other training images, and the labeled ones too with `include_labeled` (their labels
    unread there, as FixMatch's and USB's `include_lb_to_ulb`)."""
    given = [n for n, v in (("--labels", labels), ("--labels-per-class", labels_per_class),
                            ("--labeled-fraction", labeled_fraction)) if v is not None]
    if len(given) > 1:
        raise UserError(f"{' and '.join(given)}: give one of them, not both")
    if labeled_fraction is not None and not 0 < labeled_fraction <= 1:
        raise UserError(f"--labeled-fraction {labeled_fraction}: must be in (0, 1]")
    if src.train.masks is not None:  # images with masks: whole images are drawn
        return _seg_semidata(src, labels, labels_per_class, labeled_fraction, seed, holdout, include_labeled)
    k = len(src.classes)
    y = src.train.y
    train_idx = torch.arange(len(y))
    test, val, test_name = src.test, src.val, "test"
    if test is None and val is not None:
        test, val, test_name = val, None, "val"
    if test is None:  # hold out a fixed, class-stratified share of the labeled training images
        g = torch.Generator().manual_seed(0)
        held = torch.cat([idx[torch.randperm(len(idx), generator=g)][:max(1, round(holdout * len(idx)))]
                          for idx in _per_class(y, k) if len(idx) > 1])
        keep = torch.ones(len(y), dtype=torch.bool)
        keep[held] = False
        test = Split(src.train.x[held], y[held])
        train_idx = keep.nonzero().flatten()
        test_name = f"held out from train ({holdout:.0%} of each class)"
    ytr = y[train_idx]
    pools = _per_class(ytr, k)
    if given:
        if labeled_fraction is not None:  # that share of each class (stratified): 1.0 labels them all
            per = torch.tensor([max(1, round(labeled_fraction * len(p))) if len(p) else 0 for p in pools])
            opt = f"--labeled-fraction {labeled_fraction}"
        elif labels is not None:
            if labels < k:
                raise UserError(f"--labels {labels}: need at least one per class ({k} classes)")
            per = torch.full((k,), labels // k, dtype=torch.long)
            extra = torch.randperm(k, generator=torch.Generator().manual_seed(seed + 7919))[: labels % k]
            per[extra] += 1
            opt = f"--labels {labels}"
        else:
            if labels_per_class < 1:
                raise UserError(f"--labels-per-class {labels_per_class}: must be at least 1")
            per = torch.full((k,), labels_per_class, dtype=torch.long)
            opt = f"--labels-per-class {labels_per_class}"
        g = torch.Generator().manual_seed(seed)
        chosen = []
        for c, pool in enumerate(pools):
            if len(pool) < per[c]:
                raise UserError(f"{opt}: class '{src.classes[c]}' has only {len(pool)} labeled training "
                                f"images (asked for {int(per[c])}); ask for fewer")
            chosen.append(pool[torch.randperm(len(pool), generator=g)[: int(per[c])]])
        labeled = train_idx[torch.cat(chosen)]
    else:
        labeled = train_idx[ytr >= 0]
    if len(labeled) == 0:
        raise UserError(f"{src.name}: no labeled training images; label some or give class folders")
    return _semidata(src, train_idx, labeled, test, val, test_name, include_labeled)


def _seg_semidata(src: Source, labels, labels_per_class, fraction, seed: int, holdout: float,
                  include_labeled: bool) -> SemiData:
    if labels_per_class is not None:
        raise UserError("--labels-per-class: segmentation draws whole images; use --labels N or --labeled-fraction F")
    y = src.train.y
    train_idx = torch.arange(len(y))
    test, val, test_name = src.test, src.val, "test"
    if test is None and val is not None:
        test, val, test_name = val, None, "val"
    if test is None:  # hold out a fixed share of the images with masks
        masked = (y >= 0).nonzero().flatten()
        held = masked[torch.randperm(len(masked), generator=torch.Generator().manual_seed(0))]
        held = held[:max(1, round(holdout * len(masked)))]
        test = Split(src.train.x[held], y[held], masks=src.train.masks[held])
        keep = torch.ones(len(y), dtype=torch.bool)
        keep[held] = False
        train_idx = keep.nonzero().flatten()
        test_name = f"held out from train ({holdout:.0%} of the images with masks)"
    pool = train_idx[y[train_idx] >= 0]
    n = len(pool)
    if fraction is not None:
        n = max(1, round(fraction * len(pool)))
    elif labels is not None:
        if not 1 <= labels <= len(pool):
            raise UserError(f"--labels {labels}: there are {len(pool)} training images with masks; "
                            f"ask for 1 to {len(pool)}")
        n = labels
    if len(pool) == 0:
        raise UserError(f"{src.name}: no training images with masks; add masks or a masks/ folder")
    labeled = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:n]]
    return _semidata(src, train_idx, labeled, test, val, test_name, include_labeled)


def _semidata(src: Source, train_idx, labeled, test, val, test_name: str, include_labeled: bool) -> SemiData:
    """The rest of the training images (and the labeled ones with `include_labeled`) are the
    unlabeled pool; the statistics are the labeled images' per-channel mean and std."""
    mask = torch.zeros(len(src.train.x), dtype=torch.bool)
    mask[train_idx] = True
    mask[labeled] = include_labeled
    x = src.train.x[labeled].float().div_(255)
    mean, std = x.mean((0, 2, 3)), x.std((0, 2, 3)).clamp_min(1e-3)
    return SemiData(src, labeled, mask.nonzero().flatten(), test, val, test_name, mean, std)


def add_labels(data: SemiData, index: torch.Tensor, targets: torch.Tensor, rounds: torch.Tensor,
               round_names: list[str], include_labeled: bool) -> SemiData:
    """`data` with the training images `index` labeled `targets` (a user's labels, used even where
    the source has a label of its own) joined to the drawn labeled set, round `rounds` each, and
    left in the unlabeled pool only with `include_labeled`, as the drawn ones are. The images
    must be in the training pool (not held out for testing) and not labeled yet."""
    y = data.source.train.y.clone()
    y[index] = targets
    src = replace(data.source, train=replace(data.source.train, y=y))
    train_idx = torch.cat([data.labeled, data.unlabeled]).unique()
    labeled = torch.cat([data.labeled, index])
    out = _semidata(src, train_idx, labeled, data.test, data.val, data.test_name, include_labeled)
    out.rounds = torch.cat([torch.zeros(len(data.labeled), dtype=torch.long), rounds.long()])
    out.round_names = ["draw", *round_names]
    return out
