"""The classification methods compute their papers' (and reference code's) formulas: each test
builds the method on fixed tensors and checks one quantity against the formula written out."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from semisup.api import prepare, resolve
from semisup.methods import METHODS
from semisup.methods.base import Batch, mixup


class Fixed(nn.Module):
    """A 'network' whose logits for image i are row i of a table (the image's first pixel holds
    i), with a BatchNorm-free linear head so that gradients exist."""

    feature_dim = 4

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table.clone())

    def forward(self, x):
        return self.table[x[:, 0, 0, 0].long()]


def _batch(n_lab: int, n_unl: int, views: dict[str, list[int]], progress: float = 1.0) -> Batch:
    def imgs(rows):
        x = torch.zeros(len(rows), 1, 2, 2)
        x[:, 0, 0, 0] = torch.tensor(rows, dtype=torch.float)
        return x

    return Batch({"weak": imgs(list(range(n_lab)))}, torch.arange(n_lab) % 3,
                 {k: imgs(v) for k, v in views.items()}, progress=progress)


@pytest.mark.parametrize("name", ["pi_model", "mean_teacher"])
def test_consistency_loss_is_the_squared_error_averaged_over_classes(name):
    """USB's consistency_loss(..., 'mse') and Laine & Aila's 1/(C|B|): the mean over images and
    classes of (p_student - p_target)^2, times the weight at the end of the ramp."""
    torch.manual_seed(0)
    k, n, nu = 10, 4, 6
    table = torch.randn(n + 2 * nu, k) * 3
    cls = METHODS["classify"][name]
    m = cls(Fixed(table), k)
    if name == "mean_teacher":
        m.teacher.decay = 0.0  # the teacher takes the student's weights: the same table
    batch = _batch(n, nu, {"weak": list(range(n, n + nu)), "weak2": list(range(n + nu, n + 2 * nu))})
    out = m.step(batch)
    p_target = table[n:n + nu].softmax(-1)
    p_student = table[n + nu:].softmax(-1)
    expected = m.hp.lambda_u * ((p_student - p_target) ** 2).mean()
    assert out["loss_unsup"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_softmatch_pseudo_label_is_the_raw_argmax_and_the_prior_starts_at_the_first_batch():
    """The authors' code (USB softmatch.py): alignment feeds only the weight; the label is the
    argmax of the unaligned weak-view prediction. DistAlignEMAHook starts p_model at the first
    batch's mean."""
    k, nu, n = 4, 8, 2
    # a skewed state: most images lean hard to class 0, so dividing by the prior moves the two
    # that lean only a little to class 1
    weak = torch.tensor([[2.0, 0, 0, 0]] * 6 + [[1.0, 0.9, 0, 0]] * 2)
    table = torch.cat([torch.zeros(n, k), weak, torch.zeros(nu, k)])
    m = METHODS["classify"]["softmatch"](Fixed(table), k)
    batch = _batch(n, nu, {"weak": list(range(n, n + nu)), "strong": list(range(n + nu, n + 2 * nu))})
    out = m.step(batch)
    raw = weak.softmax(-1)
    assert torch.equal(out["pseudo_label"], raw.argmax(-1))
    assert torch.allclose(m.p_model, raw.mean(0), atol=1e-6)
    aligned = raw / m.p_model
    assert not torch.equal(aligned.argmax(-1), raw.argmax(-1)), "the test state must be one where they differ"


def test_flexmatch_masks_with_the_thresholds_before_the_step():
    """USB's FlexMatchThresholdingHook: the mask comes from classwise_acc as it stood, then the
    table is updated. At the first step nothing is learned, so every threshold is 0 and every
    image counts, even though the confident ones then enter the table."""
    k, n, nu = 3, 2, 4
    weak = torch.tensor([[9.0, 0, 0], [9.0, 0, 0], [9.0, 0, 0], [2.0, 0, 0]])  # the last one 0.79 confident
    table = torch.cat([torch.zeros(n, k), weak, torch.zeros(nu, k)])
    m = METHODS["classify"]["flexmatch"](Fixed(table), k, num_unlabeled=nu)
    batch = _batch(n, nu, {"weak": list(range(n, n + nu)), "strong": list(range(n + nu, n + 2 * nu))})
    batch.u_index = torch.arange(nu)
    out = m.step(batch)
    assert out["mask"].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert m.selected.tolist() == [0, 0, 0, -1]
    # the next step sees class 0 learned (beta = 3 / max(3, 1)): its threshold is tau * 1 / (2 - 1)
    assert m.class_thresholds()[0].item() == pytest.approx(0.95)


def test_vat_clean_target_and_probes_see_the_same_batch():
    """USB's vat.py: the clean logits come from a forward of the unlabeled images alone, as the
    probes do, so KL(p(x) || p(x + d)) is 0 at d = 0. With a labeled batch of other statistics,
    a target from the joint forward is not."""
    cfg = resolve({"method": "vat", "steps": 10, "batch_size": 8, "unlabeled_ratio": 2, "quiet": True})
    data, views, m = prepare(cfg)
    m.train()
    seen = []
    import semisup.methods.vat as vat

    real = vat._kl

    def spy(target, logits):
        out = real(target, logits)
        seen.append(out.item())
        return out

    vat._kl = spy
    try:
        m.hp.vat_xi = 0.0  # the first probe is then x itself
        torch.manual_seed(0)
        x = torch.randn(8, *m.shape) * 3 + 2  # labeled images unlike the unlabeled ones
        u = torch.randn(16, *m.shape)
        m.step(Batch({"weak": x}, torch.arange(8) % 10, {"weak": u}, progress=1.0))
    finally:
        vat._kl = real
    assert abs(seen[0]) < 1e-6, seen


def test_vat_eps_is_the_same_per_pixel_at_every_image_size():
    cls = METHODS["classify"]["vat"]
    m32 = cls(nn.Linear(1, 1), 10, shape=(3, 32, 32))
    m8 = cls(nn.Linear(1, 1), 10, shape=(1, 8, 8))
    assert m32.eps() == pytest.approx(6.0)
    assert m8.eps() / math.sqrt(64) == pytest.approx(m32.eps() / math.sqrt(3072))


def test_vat_r_adv_has_norm_eps_in_the_networks_units():
    """USB's vat.py: r_adv = eps * d / ||d|| for each image, in the units the network sees (its
    InputNorm's), however small the power iteration's gradient (about 1e-12 at xi = 1e-6;
    a norm + 1e-8 in the denominator would leave 1e-4 of eps), and more adversarial than a random
    direction of the same norm."""
    from semisup.models import build_model
    from semisup.models.norm import set_input_norm
    from semisup.methods.vat import _kl

    torch.manual_seed(0)
    net = build_model("cnn", (1, 8, 8), 10).eval()
    set_input_norm(net, [0.3], [0.25])
    m = METHODS["classify"]["vat"](net, 10, shape=(1, 8, 8))
    u = torch.rand(32, 1, 8, 8)
    target = net(u).detach()
    r = m.adversarial(u, target)
    norms = (r / 0.25).flatten(1).norm(dim=1)
    moved = norms > 0  # an image whose probe is lost in float32 rounding gets no gradient
    assert moved.float().mean() > 0.8
    assert torch.allclose(norms[moved], torch.full_like(norms[moved], m.eps()), rtol=1e-4)
    rand = F.normalize(torch.randn_like(u).flatten(1), dim=1).view_as(u) * m.eps() * 0.25
    assert _kl(target, net(u + r)) > 1.5 * _kl(target, net(u + rand))


def test_mixup_draws_one_lambda_per_example():
    """The MixMatch authors' code: lambda ~ Beta(alpha, alpha) per example, max(lambda, 1 - lambda)."""
    torch.manual_seed(0)
    n = 256
    x = torch.zeros(n, 1, 1, 1)
    x[:, 0, 0, 0] = torch.arange(n).float()
    t = F.one_hot(torch.arange(n), n).float()
    mx, mt = mixup(x, t, 0.75)
    lam = mt.max(-1)[0]  # each mixed target keeps its own example with weight lambda' >= 0.5
    assert (lam >= 0.5 - 1e-6).all()
    assert lam.std() > 0.05, "one lambda for the whole batch"


def test_each_method_carries_its_papers_unlabeled_ratio():
    """USB's classic-CV configs: uratio 1 for Pi-model, Mean Teacher, VAT, Pseudo-Label, MixMatch and
    ReMixMatch; 7 for the FixMatch family and UDA."""
    for name in ("pi_model", "mean_teacher", "vat", "pseudo_label", "mixmatch", "remixmatch"):
        assert resolve({"method": name})["unlabeled_ratio"] == 1, name
    for name in ("fixmatch", "flexmatch", "freematch", "softmatch", "uda"):  # on data with no budget of its own
        assert resolve({"method": name, "data": "mnist-like.npz"})["unlabeled_ratio"] == 7, name
    assert resolve({"method": "mixmatch", "unlabeled_ratio": 3})["unlabeled_ratio"] == 3


def test_the_unlabeled_pool_includes_the_labeled_images_by_default():
    cfg = resolve({"method": "fixmatch"})
    data, _, _ = prepare(cfg)
    assert set(data.labeled.tolist()) <= set(data.unlabeled.tolist())
    data, _, _ = prepare(resolve({"method": "fixmatch", "include_labeled": False}))
    assert not set(data.labeled.tolist()) & set(data.unlabeled.tolist())
    seg = resolve({"task": "segment"})
    assert seg["include_labeled"] is False  # UniMatch's splits: labeled and unlabeled disjoint
