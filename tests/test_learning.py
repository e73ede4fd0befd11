"""Does it learn? On the built-in digits with 4 labels per class, one method of each family
beats the labeled-only baseline in the same steps: fixmatch (confidence thresholds) by at
least 3 points, mixmatch (mixing) by at least 3 points, sgan (the GAN route) at all."""
import json

import pytest

from semisup.api import train


@pytest.fixture(scope="module")
def supervised_acc(tmp_path_factory):
    summary, _ = train({"method": "supervised", "quiet": True}, out=str(tmp_path_factory.mktemp("sup") / "run"))
    return summary["metrics"]["test_accuracy"]


@pytest.mark.slow
def test_fixmatch_beats_supervised_on_digits(tmp_path, supervised_acc):
    summary, out = train({"method": "fixmatch", "quiet": True}, out=str(tmp_path / "fixmatch"))
    acc = summary["metrics"]["test_accuracy"]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 1000
    assert acc >= supervised_acc + 0.03, (acc, supervised_acc)
    assert acc >= 0.95, acc


@pytest.mark.slow
def test_mixmatch_beats_supervised_on_digits(tmp_path, supervised_acc):
    summary, _ = train({"method": "mixmatch", "quiet": True}, out=str(tmp_path / "mixmatch"))
    assert summary["metrics"]["test_accuracy"] >= supervised_acc + 0.03, (summary["metrics"], supervised_acc)


def test_pseudo_label_runs_and_reports_pseudo_label_accuracy(tmp_path):
    summary, out = train({"method": "pseudo_label", "steps": 40, "threshold": 0.5, "eval_every": 20,
                          "quiet": True}, out=str(tmp_path / "pl"))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert 0 < rows[-1]["mask_rate"] <= 1
    assert 0 <= rows[-1]["pseudo_label_accuracy"] <= 1
    assert summary["metrics"]["test_accuracy"] > 0.3  # 40 steps on 40 labels already beat chance (0.1)


@pytest.mark.slow
def test_sgan_beats_supervised_on_digits(tmp_path, supervised_acc):
    """The GAN route: the discriminator, trained as a K+1-class classifier against a
    feature-matching generator, classifies better than the labeled-only baseline
    (seeds 0-2 measured: 95.8, 93.0, 94.7 against 91.1, 88.3, 92.2; with the labeled images in the
    unlabeled pool and a constant rate, one thread, AVX2 machine: 95.54, 94.99, 92.48 against
    91.09, 88.30, 91.09; seed 0 of that code on the earlier machine, two threads: 93.04 against
    91.09). On an AVX-512 machine the same seed ends at 91.36 against 90.81: there the discriminator wins
    the game (D(fake) 0.001 from step 500 on) and the gain shrinks to two test images. The bar
    is the claim, better than supervised by at least one test image (1/359), which every
    machine measured meets; the margin is in docs/benchmarks.md."""
    summary, out = train({"method": "sgan", "quiet": True}, out=str(tmp_path / "sgan"))
    assert summary["metrics"]["test_accuracy"] >= supervised_acc + 1 / 359 - 1e-6, (summary["metrics"], supervised_acc)
    assert (out / "samples.png").exists()
