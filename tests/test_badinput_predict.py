"""Bad input to `predict` and `eval`: nothing lost, nothing silently wrong. Predict writes every
readable image and lists the rest; segmentation masks never land on an input or on a file an
earlier predict did not write, and keep the images' relative paths; eval finds its data from
anywhere and scores the run's own test split, or says what changed."""
import csv
import io
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_user_error, blobs, cli, save_png, semisup

from semisup.api import eval_run, predict, predict_masks, train

QUICK = {"method": "supervised", "steps": 6, "batch_size": 8, "eval_every": 3, "save_every": 3, "quiet": True}


def files_of(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A classification run trained with a relative data path, then the project moved: pets/c0, pets/c1
    (30 blobs, no test split, so 3 of each class held out) and runs/r."""
    root = tmp_path_factory.mktemp("project")
    x, y = blobs(30, 2, size=8)
    for i in range(30):
        save_png(root / "was" / "pets" / f"c{y[i]}" / f"{i}.png", x[i])
    here = os.getcwd()
    os.chdir(root / "was")
    try:
        train({**QUICK, "data": "pets"}, out="runs/r")
    finally:
        os.chdir(here)
    (root / "was").rename(root / "moved")
    return root / "moved"


@pytest.fixture
def proj(project, tmp_path, monkeypatch):
    """A copy of the moved project to change, as the working directory."""
    p = tmp_path / "p"
    shutil.copytree(project, p)
    monkeypatch.chdir(p)
    return p


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    rng = np.random.default_rng(0)
    for i in range(10):
        m = np.zeros((16, 16), np.uint8)
        m[4:12, 4:12] = 1
        x = rng.integers(0, 60, (16, 16, 3)).astype(np.uint8)
        x[m == 1] = 220
        save_png(root / "data" / "images" / f"{i}.png", x)
        save_png(root / "data" / "masks" / f"{i}.png", m[..., None])
    train({**QUICK, "data": str(root / "data"), "task": "segment", "steps": 2, "batch_size": 2, "eval_every": 2,
           "save_every": 2, "model": "unet8"}, out=str(root / "run"))
    return root / "run"


def pictures(folder, n=3, size=8, seed=1):
    x, _ = blobs(n, 2, size=size, seed=seed)
    for i in range(n):
        save_png(folder / f"p{i}.png", x[i])
    return [folder / f"p{i}.png" for i in range(n)]


# ---------------------------------------------------------------------------- classification predict
def test_predict_lists_unreadable_images_and_predicts_the_rest(project, tmp_path, capsys):
    imgs = tmp_path / "imgs"
    pictures(imgs)
    save_png(imgs / "gray_and_larger.png", np.full((20, 13, 1), 200, np.uint8))  # resized, converted
    (imgs / "corrupt.png").write_bytes(b"\x89PNG not really")
    (imgs / "empty.jpg").write_bytes(b"")
    r = cli(capsys, "predict", project / "runs" / "r", imgs)
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == ["path", "class", "confidence", "error"] and len(rows) == 7
    by_name = {os.path.basename(row[0]): row for row in rows[1:]}
    assert by_name["gray_and_larger.png"][1] in ("c0", "c1") and by_name["gray_and_larger.png"][3] == ""
    assert by_name["corrupt.png"][1:3] == ["", ""] and "not a readable image" in by_name["corrupt.png"][3]
    assert "empty file" in by_name["empty.jpg"][3]
    err = r.stderr.splitlines()
    assert any("corrupt.png" in line for line in err) and any("empty.jpg" in line for line in err)
    assert err[-1].endswith("2 of 6 images could not be read (listed above, and with an error in the CSV)")


def test_predict_strict_still_writes_every_row_then_exits_2(project, tmp_path):
    imgs = tmp_path / "imgs"
    pictures(imgs, n=2)
    (imgs / "corrupt.png").write_bytes(b"garbage")
    r = semisup("predict", project / "runs" / "r", imgs, "--out", tmp_path / "p.csv", "--strict")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    rows = list(csv.reader(open(tmp_path / "p.csv")))
    assert len(rows) == 4 and [bool(row[3]) for row in rows[1:]] == [True, False, False]
    assert "1 of 3 images could not be read" in r.stderr and "--strict" in r.stderr


def test_predict_with_no_readable_image_is_one_line(project, tmp_path, capsys):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"y")
    r = cli(capsys, "predict", project / "runs" / "r", tmp_path / "a.png", tmp_path / "b.png", "--out",
            tmp_path / "p.csv")
    assert_user_error(r, "none of the 2 images could be read", "a.png")
    assert not (tmp_path / "p.csv").exists()


def test_predict_skips_hidden_files_and_folders_as_training_does(project, tmp_path, capsys):
    imgs = tmp_path / "imgs"
    pictures(imgs, n=2)
    (imgs / "._p0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    for d in ("__MACOSX", ".ipynb_checkpoints"):
        (imgs / d).mkdir()
        (imgs / d / "p0.png").write_bytes(b"not an image")
    r = cli(capsys, "predict", project / "runs" / "r", imgs)
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader(io.StringIO(r.stdout)))[1:]
    assert sorted(os.path.basename(row[0]) for row in rows) == ["p0.png", "p1.png"] and all(not row[3] for row in rows)


def test_predict_csv_in_a_new_folder_is_made(project, tmp_path, capsys):
    pics = pictures(tmp_path / "imgs", n=1)
    r = cli(capsys, "predict", project / "runs" / "r", pics[0], "--out", tmp_path / "new" / "sub" / "p.csv")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "new" / "sub" / "p.csv").read_text().startswith("path,class,confidence,error")


@pytest.mark.parametrize("where,words", [("folder", ["is a folder", "file name"]),
                                         ("input", ["is one of the input images"]),
                                         ("under_a_file", ["is a file, not a folder"])])
def test_predict_csv_out_that_cannot_be_the_csv(project, tmp_path, capsys, where, words):
    pics = pictures(tmp_path / "imgs", n=2)
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    out = {"folder": tmp_path / "folder", "input": pics[1], "under_a_file": tmp_path / "notes.txt" / "p.csv"}[where]
    before = files_of(tmp_path)
    assert_user_error(cli(capsys, "predict", project / "runs" / "r", *pics, "--out", out), "--out", *words)
    assert files_of(tmp_path) == before


def test_predict_stdout_quotes_paths_with_commas(project, tmp_path, capsys):
    pictures(tmp_path / "a,b", n=1)
    r = cli(capsys, "predict", project / "runs" / "r", tmp_path / "a,b")
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert r.returncode == 0 and rows[1][0] == str(tmp_path / "a,b" / "p0.png") and len(rows[1]) == 4


def test_a_missing_path_or_an_empty_folder_is_listed_not_fatal(project, tmp_path):
    pics = pictures(tmp_path / "imgs", n=1)
    (tmp_path / "empty").mkdir()
    rows = predict(str(project / "runs" / "r"), [str(pics[0]), str(tmp_path / "gone.png"), str(tmp_path / "empty")])
    assert [(os.path.basename(r[0]), bool(r[1]), bool(r[3])) for r in rows] == [
        ("p0.png", True, False), ("gone.png", False, True), ("empty", False, True)]
    assert "no such image or folder" in rows[1][3] and "no image files" in rows[2][3]


# ---------------------------------------------------------------------------- run folders
def test_a_run_folder_that_stopped_before_its_first_checkpoint(tmp_path, capsys):
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    (tmp_path / "r" / "config.yaml").write_text("steps: 6\n")
    pics = pictures(tmp_path / "imgs", n=1)
    assert_user_error(cli(capsys, "predict", tmp_path / "r", pics[0]), "before it saved a checkpoint")


def test_checkpoint_last_asked_where_only_best_exists(project, tmp_path, capsys):
    shutil.copytree(project / "runs" / "r", tmp_path / "r")
    (tmp_path / "r" / "checkpoints" / "last.pt").unlink()
    assert_user_error(cli(capsys, "eval", tmp_path / "r", "--checkpoint", "last"), "only best.pt",
                      "--checkpoint best")


def test_checkpoint_best_asked_where_only_last_exists_says_so(proj):
    (proj / "runs" / "r" / "checkpoints" / "best.pt").unlink()
    r = eval_run("runs/r")
    assert r["checkpoint"].endswith("last.pt") and any("no best.pt" in n for n in r["notes"])


def test_a_checkpoint_that_semisup_did_not_write(tmp_path, capsys):
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "r" / "checkpoints" / "best.pt")
    assert_user_error(cli(capsys, "eval", tmp_path / "r"), "not a checkpoint that `semisup train` wrote")


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_a_checkpoint_from_before_networks_normalised_their_input(proj, capsys, command):
    """A run whose networks took normalised images (its method state holds the views' pixel_mean)
    cannot be read by this version's networks: one line says so (`runfolder.load_checkpoint`, which
    --resume reads with too), and its files stay as they were."""
    for name in ("best.pt", "last.pt"):
        path = proj / "runs" / "r" / "checkpoints" / name
        ckpt = torch.load(path, weights_only=False)
        ckpt["method"]["pixel_mean"] = torch.zeros(1, 3, 1, 1)
        torch.save(ckpt, path)
    before = files_of(proj / "runs")
    args = {"eval": ["eval", "runs/r", "--data", "pets"], "predict": ["predict", "runs/r", "pets"]}[command]
    assert_user_error(cli(capsys, *args), "older semisup", "normalise their own input", "retrain")
    assert files_of(proj / "runs") == before


# ---------------------------------------------------------------------------- segmentation predict
def seg_images(folder, names, seed=0):
    rng = np.random.default_rng(seed)
    for n in names:
        p = folder / n
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (12 + len(n), 15, 3), dtype=np.uint8)).save(p)


@pytest.mark.parametrize("inside", [False, True])
def test_masks_never_go_into_an_input_folder(seg_run, tmp_path, capsys, inside):
    seg_images(tmp_path / "in", ["a.png", "b.jpg"])
    before = files_of(tmp_path / "in")
    out = tmp_path / "in" / "masks" if inside else tmp_path / "in"
    r = cli(capsys, "predict", seg_run, tmp_path / "in", "--out", out)
    assert_user_error(r, "--out", "the input folder")
    assert files_of(tmp_path / "in") == before


def test_a_mask_never_replaces_an_input_image(seg_run, tmp_path, capsys):
    seg_images(tmp_path / "pics", ["a.png"])
    before = files_of(tmp_path / "pics")
    assert_user_error(cli(capsys, "predict", seg_run, tmp_path / "pics" / "a.png", "--out", tmp_path / "pics"),
                      "is an input image")
    assert files_of(tmp_path / "pics") == before


def test_masks_keep_the_images_relative_paths(seg_run, tmp_path):
    seg_images(tmp_path / "in", ["a/img.png", "b/img.jpg", "top.png"])
    predict_masks(str(seg_run), [str(tmp_path / "in")], str(tmp_path / "out"))
    for m in ("a/img.png", "a/img_overlay.png", "b/img.png", "b/img_overlay.png", "top.png"):
        assert (tmp_path / "out" / m).exists(), m
    assert Image.open(tmp_path / "out" / "b" / "img.png").size == (15, 12 + len("b/img.jpg"))  # its own size


def test_images_given_by_name_from_two_folders_keep_their_folders(seg_run, tmp_path):
    seg_images(tmp_path, ["x/img.png", "y/img.png"])
    predict_masks(str(seg_run), [str(tmp_path / "x" / "img.png"), str(tmp_path / "y" / "img.png")],
                  str(tmp_path / "out"))
    assert (tmp_path / "out" / "x" / "img.png").exists() and (tmp_path / "out" / "y" / "img.png").exists()


def test_images_that_share_a_name_keep_their_extension_and_say_so(seg_run, tmp_path, capsys):
    seg_images(tmp_path / "in", ["0000.jpg", "0000.png", "z.png", "z_overlay.png"])
    r = cli(capsys, "predict", seg_run, tmp_path / "in", "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "wrote 4 masks" in r.stdout
    written = set(files_of(tmp_path / "out"))
    assert {"0000_jpg.png", "0000_png.png", "0000_jpg_overlay.png", "z_png.png", "z_overlay_png.png"} <= written
    assert "0000.png" not in written and "0000_jpg.png" in r.stderr and "would write the same file" in r.stderr


def test_an_unreadable_image_is_listed_and_the_rest_get_masks(seg_run, tmp_path, capsys):
    seg_images(tmp_path / "in", ["a.png", "c.png"])
    (tmp_path / "in" / "b.png").write_bytes(b"broken")
    (tmp_path / "in" / "._a.png").write_bytes(b"AppleDouble")
    r = cli(capsys, "predict", seg_run, tmp_path / "in", "--out", tmp_path / "out", "--strict")
    assert r.returncode == 2 and "1 of 3 images could not be read" in r.stderr, r.stderr
    assert (tmp_path / "out" / "a.png").exists() and (tmp_path / "out" / "c.png").exists()
    rows = list(csv.reader(open(tmp_path / "out" / "predictions.csv")))
    assert rows[0] == ["path", "mask", "overlay", "error"] and len(rows) == 4
    assert [bool(row[3]) for row in rows[1:]] == [False, True, False] and rows[2][1] == ""


def test_a_second_predict_replaces_its_own_masks_and_says_so(seg_run, tmp_path, capsys):
    seg_images(tmp_path / "in", ["a.png", "b.png"])
    assert cli(capsys, "predict", seg_run, tmp_path / "in", "--out", tmp_path / "out").returncode == 0
    r = cli(capsys, "predict", seg_run, tmp_path / "in", "--out", tmp_path / "out")
    assert r.returncode == 0 and "replacing 2 from an earlier predict" in r.stdout, r.stdout + r.stderr


def test_a_file_in_out_that_predict_did_not_write_is_not_replaced(seg_run, tmp_path, capsys):
    seg_images(tmp_path / "in", ["a.png"])
    seg_images(tmp_path / "out", ["a.png"], seed=5)  # the user's own file, named like a mask
    before = files_of(tmp_path / "out")
    assert_user_error(cli(capsys, "predict", seg_run, tmp_path / "in", "--out", tmp_path / "out"),
                      "semisup predict did not write", "a.png")
    assert files_of(tmp_path / "out") == before


def test_a_masks_out_that_is_a_file(seg_run, tmp_path, capsys):
    seg_images(tmp_path / "in", ["a.png"])
    (tmp_path / "out").write_text("mine")
    assert_user_error(cli(capsys, "predict", seg_run, tmp_path / "in", "--out", tmp_path / "out"), "is a file")
    assert (tmp_path / "out").read_text() == "mine"


# ---------------------------------------------------------------------------- eval
def test_eval_finds_the_data_of_a_moved_project_from_anywhere(project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = eval_run(str(project / "runs" / "r"))
    assert r["images"] == 6 and "held out" in r["data"] and r["notes"] == []


def test_eval_with_its_data_nowhere_says_give_data(proj, tmp_path, capsys):
    shutil.rmtree(proj / "pets")
    assert_user_error(cli(capsys, "eval", "runs/r"), "its training data pets", "--data PATH")


def test_eval_after_images_were_added_scores_the_runs_own_test_split(proj):
    x, y = blobs(8, 2, size=8, seed=7)
    for i in range(8):
        save_png(proj / "pets" / f"c{y[i]}" / f"new{i}.png", x[i])
    r = eval_run("runs/r")
    assert r["images"] == 6 and any("added to or removed" in n and "own 6 test images" in n for n in r["notes"])


@pytest.mark.parametrize("change,words", [("remove", ["1 of its 6 test images is gone"]),
                                          ("edit", ["all there but their pixels or labels differ"])])
def test_eval_refuses_when_a_test_image_is_gone_or_changed(proj, capsys, change, words):
    test_file = torch.load(proj / "runs" / "r" / "checkpoints" / "best.pt", weights_only=False)["meta"][
        "test_split"]["files"][0]
    p = proj / "pets" / test_file
    if change == "remove":
        p.unlink()
    else:
        save_png(p, np.zeros((8, 8, 3), np.uint8))
    assert_user_error(cli(capsys, "eval", "runs/r"), "the data changed since this run trained", *words)


@pytest.mark.parametrize("copy", [False, True])
def test_eval_data_that_is_the_training_data_scores_its_test_split(proj, copy):
    if copy:
        shutil.copytree(proj / "pets", proj / "pets_copy")
    r = eval_run("runs/r", "pets_copy" if copy else "pets")
    assert r["images"] == 6 and any("test split" in n for n in r["notes"]), r


def test_eval_of_a_run_without_a_recorded_test_split_says_so(proj):
    for name in ("best.pt", "last.pt"):
        p = proj / "runs" / "r" / "checkpoints" / name
        ckpt = torch.load(p, weights_only=False)
        for k in ("test_split", "data_path"):
            ckpt["meta"].pop(k)
        torch.save(ckpt, p)
    r = eval_run("runs/r")
    assert r["images"] == 6 and any("does not record its test split" in n for n in r["notes"])

