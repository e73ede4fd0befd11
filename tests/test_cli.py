"""The command line as a new user meets it: errors are one line, exit 2, nothing written."""
import json
import subprocess
import sys

import pytest

from conftest import FAST, assert_user_error, blobs, save_png, semisup


@pytest.mark.parametrize("args,words", [
    (["--data", "no/such/dir"], ["no/such/dir", "no such file"]),
    (["--method", "magic"], ["--method magic", "unknown method", "fixmatch"]),
    (["--model", "resnet9000"], ["--model resnet9000", "unknown model"]),
    (["--labels-per-class", "1000"], ["--labels-per-class 1000", "has only"]),
    (["--method", "supervised", "--threshold", "0.5"], ["--threshold", "not an option of method 'supervised'"]),
    (["--steps", "0"], ["--steps 0"]),
    (["--steps", "ten"], ["--steps", "invalid int"]),
])
def test_train_errors(tmp_path, args, words):
    out = tmp_path / "run"
    r = semisup("train", "--out", out, *FAST, *args)
    assert_user_error(r, *words)
    assert not out.exists()  # nothing half-written


def test_bad_data_errors(image_folder, tmp_path):
    out = tmp_path / "run"
    (image_folder / "train" / "dog" / "zero.png").write_bytes(b"")
    r = semisup("train", "--data", image_folder, "--out", out, *FAST)
    assert_user_error(r, "zero.png", "empty file")
    assert not out.exists()
    (image_folder / "train" / "dog" / "zero.png").unlink()
    (image_folder / "train" / "yak").mkdir()
    assert_user_error(semisup("train", "--data", image_folder, "--out", out, *FAST), "yak", "no images")
    assert not out.exists()


def test_csv_errors(tmp_path):
    x, _ = blobs(2, 2)
    save_png(tmp_path / "a.png", x[0])
    (tmp_path / "m.csv").write_text("a.png,x\ngone.png,y\n")
    assert_user_error(semisup("train", "--data", tmp_path / "m.csv", "--out", tmp_path / "r", *FAST),
                      "gone.png", "does not exist")
    assert not (tmp_path / "r").exists()


def test_config_errors(tmp_path):
    (tmp_path / "c.yaml").write_text("lerning_rate: 0.1\n")
    assert_user_error(semisup("train", "--config", tmp_path / "c.yaml", "--out", tmp_path / "r"), "lerning_rate")
    assert_user_error(semisup("train", "--config", tmp_path / "none.yaml"), "none.yaml")


def test_train_eval_predict_and_reproduce(image_folder, tmp_path):
    out = tmp_path / "run"
    r = semisup("train", "--data", image_folder, "--out", out, "--seed", "1", *FAST)
    assert r.returncode == 0, r.stderr
    assert f"run folder: {out}" in r.stdout and "test accuracy" in r.stdout
    for f in ("config.yaml", "metrics.jsonl", "summary.json", "checkpoints/last.pt", "checkpoints/best.pt",
              "curves.png"):
        assert (out / f).exists(), f
    s = json.loads((out / "summary.json").read_text())
    for k in ("task", "method", "data", "num_labeled", "num_unlabeled", "steps", "seed"):
        assert k in s
    # the unlabeled pool: the 6 unlabeled images and the 24 labeled ones (FixMatch's include_lb_to_ulb)
    assert s["num_labeled"] == 24 and s["num_unlabeled"] == 30 and s["steps"] == 6
    assert 0 <= s["metrics"]["test_accuracy"] <= 1 and s["metrics"]["best_test_accuracy"] >= 0
    assert s["timing"]["train_seconds"] > 0 and s["timing"]["images_per_second"] > 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in rows] == [3, 6]
    assert {"test_accuracy", "loss", "mask_rate", "images_per_second"} <= set(rows[-1])

    # a finished run is not overwritten, and says what to do
    assert_user_error(semisup("train", "--data", image_folder, "--out", out, *FAST), "already holds", "--overwrite")
    assert (out / "summary.json").exists()

    # config.yaml reproduces the run
    r2 = semisup("train", "--config", out / "config.yaml", "--out", tmp_path / "again")
    assert r2.returncode == 0, r2.stderr
    s2 = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert s2["metrics"]["test_accuracy"] == s["metrics"]["test_accuracy"]
    assert (tmp_path / "again" / "metrics.jsonl").read_text().count("\n") == 2

    e = semisup("eval", out)
    assert e.returncode == 0, e.stderr
    assert "accuracy" in e.stdout

    p = semisup("predict", out, image_folder / "test", "--out", tmp_path / "preds.csv")
    assert p.returncode == 0, p.stderr
    lines = (tmp_path / "preds.csv").read_text().splitlines()
    assert lines[0] == "path,class,confidence,error" and len(lines) == 10
    path, cls, conf, error = lines[1].split(",")
    assert cls in ("cat", "dog", "owl") and 0 < float(conf) <= 1 and error == ""
    assert_user_error(semisup("predict", out, tmp_path / "nothing.png"), "nothing.png")


def test_methods_and_data_commands(image_folder):
    r = semisup("methods")
    assert r.returncode == 0
    listed = {line.split()[0] for line in r.stdout.splitlines() if line.strip()}
    for m in ("supervised", "pseudo_label", "pi_model", "mean_teacher", "vat", "mixmatch", "uda",
              "remixmatch", "fixmatch", "flexmatch", "freematch", "softmatch", "sgan"):
        assert m in listed, m
    verbose = semisup("methods", "--verbose").stdout
    for opt in ("--threshold", "--mixup-alpha", "--vat-eps", "--lambda-rot", "--z-dim"):
        assert opt in verbose, opt
    (image_folder / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    r = semisup("data", image_folder)
    assert r.returncode == 0, r.stderr
    assert "image folder (detected)" in r.stdout and "cat" in r.stdout and "unlabeled" in r.stdout
    assert "broken.jpg" in r.stdout and "problems: 1" in r.stdout


def test_a_reader_that_stops_reading_is_not_a_traceback():
    """`semisup predict RUN photos/ | head`: the pipe closes before semisup is done writing."""
    p = subprocess.Popen([sys.executable, "-m", "semisup", "methods", "--verbose"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p.stdout.close()  # the reader is gone before the first line
    err = p.stderr.read()
    p.wait(timeout=60)
    assert p.returncode == 141 and err == "", err
