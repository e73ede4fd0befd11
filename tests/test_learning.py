"""Does it learn? On the built-in digits with 4 labels per class, fixmatch beats the
labeled-only baseline by at least 3 points of test accuracy in the same steps."""
import json

import pytest

from semisup.api import train


@pytest.mark.slow
def test_fixmatch_beats_supervised_on_digits(tmp_path):
    acc = {}
    for method in ("supervised", "fixmatch"):
        summary, out = train({"method": method, "quiet": True}, out=str(tmp_path / method))
        acc[method] = summary["metrics"]["test_accuracy"]
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        assert rows[-1]["step"] == 1000
    assert acc["fixmatch"] >= acc["supervised"] + 0.03, acc
    assert acc["fixmatch"] >= 0.95, acc


def test_pseudo_label_runs_and_reports_pseudo_label_accuracy(tmp_path):
    summary, out = train({"method": "pseudo_label", "steps": 40, "threshold": 0.5, "eval_every": 20,
                          "quiet": True}, out=str(tmp_path / "pl"))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert 0 < rows[-1]["mask_rate"] <= 1
    assert 0 <= rows[-1]["pseudo_label_accuracy"] <= 1
    assert summary["metrics"]["test_accuracy"] > 0.3  # 40 steps on 40 labels already beat chance (0.1)
