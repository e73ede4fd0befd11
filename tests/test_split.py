import pytest
import torch

from semisup.data.sources import load_source
from semisup.data.split import make_semidata
from semisup.errors import UserError


@pytest.fixture(scope="module")
def digits():
    return load_source("digits")


def test_labels_per_class(digits):
    d = make_semidata(digits, labels_per_class=4, seed=0)
    assert len(d.labeled) == 40
    assert torch.bincount(d.labeled_targets, minlength=10).tolist() == [4] * 10
    assert len(d.labeled) + len(d.unlabeled) == len(digits.train.y)
    assert not set(d.labeled.tolist()) & set(d.unlabeled.tolist())


def test_labels_total_is_balanced(digits):
    d = make_semidata(digits, labels=25, seed=3)
    counts = torch.bincount(d.labeled_targets, minlength=10)
    assert counts.sum() == 25 and counts.max() - counts.min() <= 1


def test_labeled_fraction_is_that_share_of_each_class(digits):
    """Digits' classes are uneven (126-152 training images): a share per class, so 1.0 labels
    every image rather than asking a class for more than it has."""
    per_class = torch.bincount(digits.train.y, minlength=10)
    assert per_class.min() < per_class.max()
    whole = make_semidata(digits, labeled_fraction=1.0, seed=0)
    assert torch.equal(torch.bincount(whole.labeled_targets, minlength=10), per_class)
    tenth = make_semidata(digits, labeled_fraction=0.1, seed=0)
    assert torch.bincount(tenth.labeled_targets, minlength=10).tolist() == [round(0.1 * n) for n in per_class.tolist()]


def test_seed_decides_the_draw(digits):
    a = make_semidata(digits, labels_per_class=4, seed=0).labeled
    b = make_semidata(digits, labels_per_class=4, seed=0).labeled
    c = make_semidata(digits, labels_per_class=4, seed=1).labeled
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_too_many_labels(digits):
    with pytest.raises(UserError, match=r"class '\d' has only \d+ labeled training images"):
        make_semidata(digits, labels_per_class=500)


def test_stats_come_from_labeled_images(digits):
    d = make_semidata(digits, labels_per_class=4, seed=0)
    x = digits.train.x[d.labeled].float() / 255
    assert torch.allclose(d.mean, x.mean((0, 2, 3)))


def test_holdout_when_no_test_split(image_folder):
    import shutil

    shutil.rmtree(image_folder / "test")
    src = load_source(str(image_folder))
    d = make_semidata(src)
    assert "held out" in d.test_name and len(d.test.y) > 0
    # held-out images are neither labeled nor unlabeled training images
    assert len(d.labeled) + len(d.unlabeled) + len(d.test.y) == len(src.train.y)
