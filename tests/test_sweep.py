"""`semisup sweep` (how many labels) and `semisup report` on the built-in digits, in tiny runs: the
runs and the report are made, the page needs no network and shows the runs' own numbers, a second
sweep trains nothing, bad input is one line and writes nothing."""
import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import assert_user_error, cli, semisup

TINY = ["--steps", "20", "--batch-size", "16", "--unlabeled-ratio", "2", "--eval-every", "10", "--save-every", "10"]
LABELS, METHODS = [20, 50], ["supervised", "fixmatch"]


class Page(HTMLParser):
    """The links (src, href) of a page and the cells of its table id="runs"."""

    def __init__(self):
        super().__init__()
        self.links, self.rows, self._table, self._cell = [], [], None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.links += [a[k] for k in ("src", "href") if a.get(k) is not None]
        if tag == "table":
            self._table = a.get("id")
        elif tag == "tr" and self._table == "runs":
            self.rows.append([])
        elif tag == "td" and self._table == "runs":
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append(self._cell.strip())
            self._cell = None
        elif tag == "table":
            self._table = None


def page(path: Path) -> Page:
    p = Page()
    p.feed(path.read_text())
    return p


def assert_local(html: Path) -> Page:
    """Every src and href is a relative path to a file that exists; no style or script from elsewhere."""
    p = page(html)
    assert p.links
    for link in p.links:
        assert not re.match(r"^([a-z]+:|//)", link), link
        assert (html.parent / link).is_file(), link
    text = html.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text
    return p


@pytest.fixture(scope="module")
def swept(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("sweep") / "labels"
    from semisup.sweep import sweep

    lines = []
    r = sweep("digits", LABELS, ["fixmatch"], [0], {k.lstrip("-").replace("-", "_"): int(v)
                                                    for k, v in zip(TINY[::2], TINY[1::2])}, out, log=lines.append)
    return out, r, lines


def test_sweep_runs_and_report(swept):
    out, r, lines = swept
    assert r["trained"] == 4 and r["finished"] == 0  # the supervised baseline added to --methods
    names = sorted(p.name for p in (out / "runs").iterdir())
    assert names == sorted(f"{m}-n{n}-s0" for m in METHODS for n in LABELS)
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 4 and len(lines) == 4
    for row in rows:
        summary = json.loads((out / row["run"] / "summary.json").read_text())
        assert row["test_accuracy"] == summary["metrics"]["test_accuracy"]
        assert row["best"] == summary["metrics"]["best_test_accuracy"]
        assert row["num_labeled"] == row["labels"] == summary["num_labeled"]
        assert (row["gain"] is None) == (row["method"] == "supervised")
    for png in ("accuracy.png", "training-fixmatch.png"):
        assert (out / png).stat().st_size > 1000
    p = assert_local(out / "report.html")
    assert {"accuracy.png", "training-fixmatch.png"} <= set(p.links)


def test_report_shows_the_runs_numbers(swept):
    from semisup.sweep import gain_pct, pct

    out, _, _ = swept
    shown = {(c[0], int(c[1]), int(c[2])): c for c in page(out / "report.html").rows if c}
    assert len(shown) == 4
    base = {}
    for run in (out / "runs").iterdir():
        s = json.loads((run / "summary.json").read_text())
        c = shown[s["method"], s["num_labeled"], s["seed"]]
        assert c[4] == pct(s["metrics"]["test_accuracy"]) == f"{100 * s['metrics']['test_accuracy']:.2f}"
        assert c[5] == pct(s["metrics"]["best_test_accuracy"])
        assert c[7] == f"{s['timing']['train_seconds']:.1f}"
        if s["method"] == "supervised":
            base[s["num_labeled"]] = s["metrics"]["test_accuracy"]
    for (m, n, _), c in shown.items():
        if m != "supervised":
            acc = json.loads((out / "runs" / f"{m}-n{n}-s0" / "summary.json").read_text())["metrics"]["test_accuracy"]
            assert c[6] == gain_pct(acc - base[n])


def test_second_sweep_trains_nothing(swept, capsys):
    out, _, _ = swept
    before = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/summary.json")}
    t0 = time.time()
    r = cli(capsys, "sweep", "--labels", ",".join(map(str, LABELS)), "--methods", "fixmatch", "--out", out, *TINY)
    assert r.returncode == 0, r.stderr
    assert time.time() - t0 < 15
    assert "0 trained, 0 resumed, 4 finished already" in r.stdout
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/summary.json")} == before
    assert_local(out / "report.html")


def test_sweep_resumes_an_interrupted_run(swept, capsys):
    """A run that stopped after a checkpoint (no summary.json) is resumed, the others skipped."""
    out, _, _ = swept
    run = out / "runs" / "fixmatch-n20-s0"
    (run / "summary.json").unlink()
    r = cli(capsys, "sweep", "--labels", ",".join(map(str, LABELS)), "--methods", "fixmatch", "--out", out, *TINY)
    assert r.returncode == 0, r.stderr
    assert "0 trained, 1 resumed, 3 finished already" in r.stdout
    assert (run / "summary.json").exists()


@pytest.mark.parametrize("args,words", [
    (["--labels", "10,x"], ["--labels", "whole numbers"]),
    (["--labels", "10,0"], ["--labels", "whole numbers"]),
    (["--labels", "10", "--methods", "supervised,magic"], ["--method magic", "unknown method"]),
    (["--labels", "10,5000"], ["--labels 5000", "has only"]),
    (["--labels", "10", "--seeds", "a"], ["--seeds", "whole numbers"]),
    (["--labels", "10", "--steps", "0"], ["--steps 0"]),
])
def test_sweep_errors(tmp_path, capsys, args, words):
    out = tmp_path / "sweep"
    r = cli(capsys, "sweep", "--out", out, *args)
    assert_user_error(r, *words)
    assert not out.exists()  # nothing written


def test_sweep_refuses_other_folders_and_changed_options(swept, tmp_path, capsys):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("x")
    assert_user_error(cli(capsys, "sweep", "--labels", "10", "--out", other), "not a sweep folder", "todo.txt")
    out, _, _ = swept
    r = cli(capsys, "sweep", "--labels", "20", "--methods", "fixmatch", "--out", out, *TINY[:-2], "--save-every", "5")
    assert_user_error(r, "--save-every 10", "asks 5")


def test_report_of_a_run(swept, capsys):
    out, _, _ = swept
    run = out / "runs" / "fixmatch-n50-s0"
    r = cli(capsys, "report", run)
    assert r.returncode == 0, r.stderr
    html = run / "report" / "report.html"
    p = assert_local(html)
    assert {"curves.png", "confusion.png", "wrong.png"} <= set(p.links)
    text = html.read_text()
    assert 'id="confusion"' in text and "most confident mistakes" in text
    cells = re.findall(r'<table id="confusion">(.*?)</table>', text, re.S)[0]
    counts = [int(v) for row in re.findall(r"<tr>(.*?)</tr>", cells, re.S)[1:]
              for v in re.findall(r'<td class="n">(\d+)</td>', row)[:10]]
    summary = json.loads((run / "summary.json").read_text())
    assert sum(counts) == summary["num_test"]  # every test image in the matrix
    other = out / "elsewhere"
    r = cli(capsys, "report", run, "--out", other)
    assert r.returncode == 0 and (other / "report.html").exists()
    assert_local(other / "report.html")


def test_report_errors(tmp_path):
    assert_user_error(semisup("report", tmp_path / "nothing"), "no such run folder")
