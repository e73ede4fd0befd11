import numpy as np
import pytest
import torch

from conftest import blobs, save_png, write_idx
from semisup.data.sources import detect, load_source
from semisup.errors import UserError


def test_digits_builtin():
    src = load_source("digits")
    assert src.kind == "built-in"
    assert len(src.train.y) + len(src.test.y) == 1797
    assert len(src.test.y) == 359 and src.shape == (1, 8, 8)
    assert src.train.x.dtype == torch.uint8 and int(src.train.x.max()) == 255
    assert not src.flip  # a flipped digit is another symbol
    again = load_source("digits")  # the 80/20 split is fixed
    assert torch.equal(again.test.y, src.test.y)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_directory(tmp_path, gz):
    x = np.random.default_rng(0).integers(0, 255, (20, 6, 5), dtype=np.uint8)
    y = (np.arange(20) % 4).astype(np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", x, gz)
    write_idx(tmp_path / "train-labels-idx1-ubyte", y, gz)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", 255 - x[:8], gz)  # not copies of training images
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", y[:8], gz)
    assert detect(str(tmp_path)) == "idx"
    src = load_source(str(tmp_path))
    assert src.shape == (1, 6, 5) and src.classes == ["0", "1", "2", "3"]
    assert torch.equal(src.train.x[:, 0], torch.from_numpy(x))
    assert src.test.y.tolist() == y[:8].tolist()


def test_idx_truncated(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 3, 3), np.uint8), gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8), gz=False)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(UserError, match="truncated"):
        load_source(str(tmp_path))


def test_image_folder(image_folder):
    src = load_source(str(image_folder))
    assert src.kind == "image folder"
    assert src.classes == ["cat", "dog", "owl"]
    assert len(src.train.y) == 30 and int((src.train.y == -1).sum()) == 6  # unlabeled/ has no class
    assert len(src.test.y) == 9 and src.shape == (3, 12, 12)
    assert src.flip


def test_image_folder_flat_and_tar(tmp_path):
    import tarfile

    x, y = blobs(6, 2, channels=1)
    for i in range(6):
        save_png(tmp_path / "flat" / f"c{y[i]}" / f"{i}.png", x[i])
    src = load_source(str(tmp_path / "flat"))
    assert src.classes == ["c0", "c1"] and src.shape == (1, 12, 12) and src.test is None
    with tarfile.open(tmp_path / "flat.tar.gz", "w:gz") as t:
        t.add(tmp_path / "flat", arcname="flat")
    tsrc = load_source(str(tmp_path / "flat.tar.gz"))
    assert torch.equal(tsrc.train.x, src.train.x) and tsrc.classes == src.classes
    cut = tmp_path / "cut.tar.gz"  # a download that stopped half-way
    cut.write_bytes((tmp_path / "flat.tar.gz").read_bytes()[:-40])
    with pytest.raises(UserError, match=r"cut\.tar\.gz: not a readable tar archive"):
        load_source(str(cut))


def test_empty_class_folder(image_folder):
    (image_folder / "train" / "emu").mkdir()
    with pytest.raises(UserError, match=r"emu: class folder has no images"):
        load_source(str(image_folder))


@pytest.mark.parametrize("content", [b"", b"not an image at all"])
def test_corrupt_or_empty_image(image_folder, content):
    bad = image_folder / "train" / "cat" / "bad.png"
    bad.write_bytes(content)
    with pytest.raises(UserError, match=r"bad\.png: (empty file|not a readable image)"):
        load_source(str(image_folder))
    report = load_source(str(image_folder), strict=False)  # `semisup data` lists it instead
    assert any("bad.png" in p for p in report.problems)


def test_mixed_sizes_are_resized(image_folder):
    save_png(image_folder / "train" / "cat" / "big.png", np.full((20, 16, 3), 200, np.uint8))
    src = load_source(str(image_folder))
    assert src.shape == (3, 12, 12)
    assert any("resized 1 of" in n for n in src.notes)


def test_csv_manifest(tmp_path):
    x, y = blobs(9, 3)
    lines = ["path,label"]
    for i in range(9):
        save_png(tmp_path / "img" / f"{i}.png", x[i])
        lines.append(f"img/{i}.png,{['a', 'b', 'c'][y[i]] if i < 6 else ''}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    src = load_source(str(tmp_path / "m.csv"))
    assert src.kind == "CSV manifest" and src.classes == ["a", "b", "c"]
    assert src.train.y.tolist() == [0, 1, 2, 0, 1, 2, -1, -1, -1]


def test_csv_missing_file_and_bad_label(tmp_path):
    x, _ = blobs(2, 2)
    save_png(tmp_path / "a.png", x[0])
    (tmp_path / "m.csv").write_text("a.png,x\nmissing.png,y\n")
    with pytest.raises(UserError, match=r"line 2: image file .*missing\.png does not exist"):
        load_source(str(tmp_path / "m.csv"))
    (tmp_path / "m.csv").write_text("a.png,zebra\n")
    with pytest.raises(UserError, match=r"label 'zebra' is not one of the classes"):
        load_source(str(tmp_path / "m.csv"), classes=["x", "y"])


def test_npz(tmp_path):
    x, y = blobs(10, 2, channels=3)
    y = y.astype(np.int64)
    y[5:] = -1
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=255 - x[:4], y_test=y[:4])  # not copies of training images
    src = load_source(str(tmp_path / "d.npz"))
    assert src.kind == "NPZ" and src.shape == (3, 12, 12)
    assert src.train.y.tolist() == y.tolist() and len(src.test.y) == 4


def test_npz_labels_outside_classes(tmp_path):
    x, _ = blobs(4, 2, channels=1)
    np.savez(tmp_path / "d.npz", x=x[..., 0], y=np.array([0, 1, 7, -1]), classes=np.array(["a", "b"]))
    with pytest.raises(UserError, match=r"outside the classes 0\.\.1"):
        load_source(str(tmp_path / "d.npz"))
    np.savez(tmp_path / "f.npz", x=x.astype(np.float32), y=np.array([0, 1, 0, 1]))
    with pytest.raises(UserError, match="uint8"):
        load_source(str(tmp_path / "f.npz"))


def test_detect_errors(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        detect(str(tmp_path / "nope"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(UserError, match="unknown file type"):
        detect(str(tmp_path / "x.txt"))
