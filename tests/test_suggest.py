"""`semisup suggest` (which images to label next) and `semisup train --add-labels` (the labels come
back): on tiny digits and shapes runs, in this process."""
import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import FAST, assert_user_error, cli

from semisup.suggest import PICKS_HEADER, STRATEGIES, suggest

# digits' `cnn` (flexmatch's default run there takes `cnn_small`, which 30 steps leave guessing a few classes)
TINY = ["--steps", "30", "--batch-size", "16", "--unlabeled-ratio", "2", "--eval-every", "30", "--save-every", "30",
        "--model", "cnn", "--quiet", "--device", "cpu"]
pytestmark = pytest.mark.usefixtures("one_thread")


def _train(out, *args):
    from semisup.api import train
    from semisup.cli import build_parser

    a = build_parser(["train"]).parse_args(["train", *TINY, *map(str, args)])
    given = {k: v for k, v in vars(a).items() if k not in ("command", "out")}
    train(given, out=str(out))
    return out


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("digits") / "run")


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _labeled(run):
    return {int(r["index"]) for r in _read(run / "labels.csv")}


def _hidden():
    from semisup.data.formats.builtin import read_digits
    from semisup.errors import Problems

    return read_digits("digits", Problems()).train


def _model_outputs(run, index):
    """The run's probabilities and features of training images `index`."""
    from semisup.api import load_run
    from semisup.data.views import to_unit

    model, _, _ = load_run(str(run))
    with torch.no_grad():
        f = model.features(to_unit(_hidden().x[index]))
        return model.head(f).softmax(1), f


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_suggest_writes_ranked_unlabeled_picks(digits_run, tmp_path, strategy):
    rows = suggest(str(digits_run), 20, strategy, seed=0, out=str(tmp_path / "p"))
    assert len(rows) == 20
    index = [r["index"] for r in rows]
    assert len(set(index)) == 20 and not set(index) & _labeled(digits_run)
    score = [r["score"] for r in rows]
    if strategy in ("margin", "random"):
        assert score == sorted(score)
    elif strategy in ("entropy", "disagreement", "kcenter"):  # k-center: the distance at each pick
        assert score == sorted(score, reverse=True)
    written = _read(tmp_path / "p" / "picks.csv")
    assert tuple(written[0]) == PICKS_HEADER and [int(r["index"]) for r in written] == index
    assert all(r["label"] == "" and r["path"] == f"digits:train:{r['index']}" and r["predicted"] in
               [str(c) for c in range(10)] and r["reason"] for r in written)
    assert (tmp_path / "p" / "picks.png").stat().st_size > 0


def test_the_default_strategy_is_typiclust_for_classification(digits_run):
    assert suggest(str(digits_run), 6, seed=0) == suggest(str(digits_run), 6, "typiclust", seed=0)


def test_diverse_strategies_spread_and_margin_finds_uncertain(digits_run):
    picks = {s: [r["index"] for r in suggest(str(digits_run), 20, s, seed=0)] for s in
             ("margin", "kcenter", "badge", "typiclust", "random")}

    def spread(index):
        f = _model_outputs(digits_run, index)[1]
        return torch.pdist(f).mean().item()

    def margin(index):
        top = _model_outputs(digits_run, index)[0].topk(2, 1).values
        return (top[:, 0] - top[:, 1]).mean().item()

    assert spread(picks["kcenter"]) > spread(picks["margin"])
    assert spread(picks["badge"]) > spread(picks["margin"])
    assert margin(picks["margin"]) < margin(picks["random"])
    # TypiClust: one typical image per k-means cluster, so confident picks spread over the classes
    assert margin(picks["typiclust"]) > margin(picks["margin"])
    classes = _model_outputs(digits_run, picks["typiclust"])[0].argmax(1)
    assert len(set(classes.tolist())) >= 7, classes
    assert suggest(str(digits_run), 20, "badge", seed=0) == suggest(str(digits_run), 20, "badge", seed=0)


def test_suggest_errors(digits_run, tmp_path, capsys):
    out = tmp_path / "p"
    assert_user_error(cli(capsys, "suggest", digits_run, "--n", "0", "--out", out), "--n 0")
    assert_user_error(cli(capsys, "suggest", tmp_path / "nope", "--out", out), "nope", "no such run folder")
    stopped = tmp_path / "stopped"
    shutil.copytree(digits_run, stopped)
    (stopped / "summary.json").unlink()
    assert_user_error(cli(capsys, "suggest", stopped, "--out", out), "stopped before it finished", "--resume")
    gen = tmp_path / "gen"
    shutil.copytree(digits_run, gen)
    for name in ("best.pt", "last.pt"):
        ckpt = torch.load(gen / "checkpoints" / name, weights_only=False)
        ckpt["meta"]["task"] = "generate"
        torch.save(ckpt, gen / "checkpoints" / name)
    assert_user_error(cli(capsys, "suggest", gen, "--out", out), "generation run")
    assert not out.exists()  # nothing written
    r = cli(capsys, "suggest", digits_run, "--n", "5", "--strategy", "margin", "--out", out)
    assert r.returncode == 0 and "wrote 5 picks" in r.stdout
    rows = _read(out / "picks.csv")
    rows[0]["label"] = "3"
    _write(out / "picks.csv", rows)
    assert_user_error(cli(capsys, "suggest", digits_run, "--out", out), "labels filled in", "--add-labels")


def _write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_add_labels_round_trip(digits_run, tmp_path, capsys):
    picks = tmp_path / "picks.csv"
    suggest(str(digits_run), 12, "badge", seed=0, out=str(tmp_path))
    rows = _read(picks)
    truth = _hidden().y
    for r in rows[:10]:  # filled with the hidden labels, two left for later
        r["label"] = str(int(truth[int(r["index"])]))
    wrong = int(rows[0]["index"])
    rows[0]["label"] = str((int(truth[wrong]) + 1) % 10)  # the user's label wins over the data's
    _write(picks, rows)
    out = tmp_path / "run2"
    r = cli(capsys, "train", *TINY, "--out", out, "--add-labels", picks)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    first = json.loads((digits_run / "summary.json").read_text())["num_labeled"]
    assert summary["num_labeled"] == first + 10 and summary["labels_by_round"] == [first, 10]
    labels = _read(out / "labels.csv")
    added = [x for x in labels if x["round"] == "1"]
    assert len(added) == 10 and all(x["source"] == str(picks) for x in added)
    assert {int(x["index"]): x["class"] for x in added} == {int(x["index"]): x["label"] for x in rows[:10]}
    assert {int(x["index"]) for x in labels if x["round"] == "0"} == _labeled(digits_run)
    again = suggest(str(out), 20, "margin", seed=0)
    assert not {r["index"] for r in again} & {int(x["index"]) for x in labels}


def test_add_labels_errors(digits_run, tmp_path, capsys):
    suggest(str(digits_run), 3, "margin", seed=0, out=str(tmp_path))
    rows = _read(tmp_path / "picks.csv")
    out = tmp_path / "run"
    bad = tmp_path / "bad.csv"
    _write(bad, [{**rows[0], "label": "seven"}])
    assert_user_error(cli(capsys, "train", *TINY, "--out", out, "--add-labels", bad), "bad.csv", "line 2",
                      "'seven'", "not a class")
    moved = tmp_path / "moved.csv"
    _write(moved, [{**rows[0], "label": "1", "path": "digits:train:99999"}])
    assert_user_error(cli(capsys, "train", *TINY, "--out", out, "--add-labels", moved), "moved.csv", "data changed")
    assert_user_error(cli(capsys, "train", *TINY, "--out", out, "--add-labels", tmp_path / "none.csv"),
                      "none.csv", "no such file")
    assert not out.exists()


def test_segmentation_runs(tmp_path, capsys):
    run = tmp_path / "seg"
    r = cli(capsys, "train", "--data", "shapes", "--labels", "10", "--steps", "2", "--batch-size", "2",
            "--eval-every", "2", "--save-every", "2", "--quiet", "--device", "cpu", "--out", run)
    assert r.returncode == 0, r.stderr
    rows = suggest(str(run), 5, "entropy", seed=0, pool_limit=200, out=str(tmp_path / "p"))
    assert len(rows) == 5 and [r["score"] for r in rows] == sorted([r["score"] for r in rows], reverse=True)
    assert not {r["index"] for r in rows} & {int(x["index"]) for x in _read(run / "labels.csv")}
    assert_user_error(cli(capsys, "suggest", run, "--strategy", "badge", "--out", tmp_path / "q"),
                      "strategy badge is for classification runs", "use entropy or margin for segmentation")
    r = cli(capsys, "suggest", run, "--n", "3", "--pool-limit", "50", "--out", tmp_path / "d")  # its default: entropy
    assert r.returncode == 0 and "(entropy)" in r.stdout, r.stderr
    labels = tmp_path / "l.csv"
    _write(labels, [{"index": "0", "path": "", "label": "circle"}])
    assert_user_error(cli(capsys, "train", "--data", "shapes", "--steps", "2", "--out", tmp_path / "r2",
                          "--add-labels", labels), "--add-labels", "classification runs")
    assert not (tmp_path / "q").exists() and not (tmp_path / "r2").exists()


def test_image_folder_paths(image_folder, tmp_path, capsys):
    """picks.csv names the files; --add-labels checks the path against the index."""
    run = tmp_path / "run"
    assert cli(capsys, "train", "--data", image_folder, "--labels-per-class", "4", "--out", run, *FAST).returncode == 0
    suggest(str(run), 4, "kcenter", out=str(tmp_path / "p"))
    rows = _read(tmp_path / "p" / "picks.csv")
    assert len(rows) == 4 and all(Path(r["path"]).is_file() for r in rows)
    assert_user_error(cli(capsys, "suggest", run, "--out", image_folder / "picks"), "inside the data folder")
    assert not (image_folder / "picks").exists()
    for r in rows:
        r["label"] = "owl"
    _write(tmp_path / "p" / "picks.csv", rows)
    r = cli(capsys, "train", "--data", image_folder, "--labels-per-class", "4", "--out", tmp_path / "run2",
            "--add-labels", tmp_path / "p" / "picks.csv", *FAST)
    assert r.returncode == 0, r.stderr
    added = [x for x in _read(tmp_path / "run2" / "labels.csv") if x["round"] == "1"]
    assert [(x["index"], x["class"]) for x in added] == [(x["index"], "owl") for x in rows]
    rows[0]["path"] = rows[1]["path"]
    _write(tmp_path / "p" / "picks.csv", rows)
    assert_user_error(cli(capsys, "train", "--data", image_folder, "--labels-per-class", "4", "--out", tmp_path / "r3",
                          "--add-labels", tmp_path / "p" / "picks.csv", *FAST), "picks.csv, line 2", "data changed")
    assert not (tmp_path / "r3").exists()
