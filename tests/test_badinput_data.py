"""Bad and awkward input for the data layer, built on the fly: phone photos (EXIF orientation),
16-bit images, hidden and linked folders, stray mask values, leaks between splits, NPZ and CSV
mistakes, images too small for a model, photo folders too large for memory, and the odd image
kinds (CMYK, transparency, animation). Each case asserts what the user gets: the right pixels,
or one line that names the file and says what to do."""
import io
import re
import tarfile
import weakref

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_user_error, blobs, save_png, semisup
from semisup.data import decode as sources
from semisup.data.check import report
from semisup.data.sources import decode_images, load_source
from semisup.errors import Problems, UserError


def one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def halves(w: int, h: int, channels: int = 3) -> np.ndarray:
    """(h, w, c): the left half bright, the right half dark."""
    a = np.full((h, w, channels), 20, np.uint8)
    a[:, : w // 2] = 230
    return a


def save_exif(path, arr, orientation=6, fmt=None):
    """An image whose EXIF says how to turn it for display (6: turn 90 degrees clockwise)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr.squeeze() if arr.shape[-1] == 1 else arr).save(path, format=fmt, exif=exif, quality=95)


def make_tar(folder, dest):
    with tarfile.open(dest, "w") as t:
        t.add(folder, arcname=folder.name)
    return dest


# ----------------------------------------------------------------------------- item 3: EXIF
@pytest.mark.parametrize("reader", ["folder", "csv", "tar"])
def test_exif_orientation_applied_by_every_reader(tmp_path, reader):
    root = tmp_path / "phone"
    rows = []
    for i, c in enumerate(["a", "a", "b", "b"]):
        save_exif(root / "train" / c / f"{i}.jpg", halves(16, 8))  # stored 16 wide, 8 high
        rows.append(f"train/{c}/{i}.jpg,{c}")
    spec = root
    if reader == "csv":
        spec = root / "list.csv"
        spec.write_text("\n".join(rows) + "\n")
    elif reader == "tar":
        spec = make_tar(root, tmp_path / "phone.tar")
    src = load_source(str(spec))
    assert src.shape == (3, 16, 8)  # shown 8 wide, 16 high
    x = src.train.x.float()
    assert (x[:, :, :8].mean() - x[:, :, 8:].mean()) > 150  # the left side went to the top
    assert any("EXIF orientation" in n for n in src.notes)


def test_exif_orientation_lets_a_mask_drawn_on_the_shown_photo_match(tmp_path):
    for i in range(4):
        save_exif(tmp_path / "images" / f"{i}.jpg", halves(16, 12))  # shown 12 wide, 16 high
        save_png(tmp_path / "masks" / f"{i}.png", np.full((16, 12), i % 2, np.uint8))
    src = load_source(str(tmp_path))
    assert src.shape == (3, 16, 12) and src.train.masks.shape == (4, 16, 12)


def test_exif_orientation_of_a_mask_follows_the_same_rule(tmp_path):
    m = np.zeros((12, 16), np.uint8)
    m[:, :8] = 1  # stored 16 wide, 12 high: left half class 1
    for i in range(3):
        save_png(tmp_path / "images" / f"{i}.png", np.full((16, 12, 3), 90, np.uint8))
        save_exif(tmp_path / "masks" / f"{i}.png", m[..., None], fmt="PNG")
    src = load_source(str(tmp_path))
    assert src.train.masks.shape == (3, 16, 12)
    assert (src.train.masks[:, :8] == 1).all() and (src.train.masks[:, 8:] == 0).all()


# ----------------------------------------------------------------------------- item 4: 16 bits
def _gradient16():
    return (np.arange(256, dtype=np.uint32) * 257).reshape(16, 16)  # 0 .. 65535


@pytest.mark.parametrize("kind", ["png16", "tiff32"])
def test_16_bit_images_are_scaled_by_bit_depth(tmp_path, kind):
    g = _gradient16()
    for i, c in enumerate("aabb"):
        p = tmp_path / "train" / c / f"{i}.{'png' if kind == 'png16' else 'tif'}"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(g.astype(np.uint16 if kind == "png16" else np.int32)).save(p)
    src = load_source(str(tmp_path))
    assert src.shape == (1, 16, 16)
    assert src.train.x[0, 0].flatten().tolist() == list(range(256))  # v >> 8, not 0, 255, 255, ...
    assert any("16-bit" in n for n in src.notes)


def test_16_bit_segmentation_images_scaled_and_16_bit_masks_kept(tmp_path):
    g = _gradient16().astype(np.uint16)
    for i in range(3):
        (tmp_path / "images").mkdir(exist_ok=True)
        Image.fromarray(g).save(tmp_path / "images" / f"{i}.png")
        (tmp_path / "masks").mkdir(exist_ok=True)
        Image.fromarray((np.arange(256) % 3).reshape(16, 16).astype(np.uint16)).save(tmp_path / "masks" / f"{i}.png")
    assert Image.open(tmp_path / "masks" / "0.png").mode == "I;16"
    src = load_source(str(tmp_path))
    assert src.train.x[0, 0].flatten().tolist() == list(range(256))
    assert src.train.masks[0].flatten().tolist() == (np.arange(256) % 3).tolist()  # class indices, not scaled


# ----------------------------------------------------------------------------- item 5: folders
def test_train_unlabeled_is_unlabeled_not_a_class(image_folder):
    (image_folder / "unlabeled").rename(image_folder / "train" / "unlabeled")
    src = load_source(str(image_folder))
    assert src.classes == ["cat", "dog", "owl"]
    assert int((src.train.y == -1).sum()) == 6


def test_symlinked_class_folder_is_followed_and_loops_end(image_folder, tmp_path):
    (image_folder / "train" / "owl").rename(tmp_path / "owls")
    (image_folder / "train" / "owl").symlink_to(tmp_path / "owls")
    (image_folder / "train" / "cat" / "again").symlink_to(image_folder / "train")  # a loop
    src = load_source(str(image_folder))
    assert src.classes == ["cat", "dog", "owl"] and int((src.train.y == 2).sum()) == 8
    assert any("again" in n and "loop" in n for n in src.notes)


def test_hidden_folders_and_mac_files_are_not_classes(image_folder):
    x, _ = blobs(3, 1, seed=5)
    save_png(image_folder / "train" / ".ipynb_checkpoints" / "0-checkpoint.png", x[0])
    save_png(image_folder / "train" / "cat" / ".ipynb_checkpoints" / "1-checkpoint.png", x[1])
    save_png(image_folder / "__MACOSX" / "train" / "cat" / "._0.png", x[2])
    (image_folder / "train" / "cat" / "._0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    src = load_source(str(image_folder))
    assert src.classes == ["cat", "dog", "owl"] and len(src.train.y) == 30
    assert any(".ipynb_checkpoints" in n and "__MACOSX" in n for n in src.notes)


def test_test_unlabeled_is_a_problem(image_folder):
    save_png(image_folder / "test" / "unlabeled" / "t.png", blobs(1, 1, seed=7)[0][0])
    with pytest.raises(UserError) as e:
        load_source(str(image_folder))
    assert "test/unlabeled" in one_line(e) and "move" in str(e.value)


def test_segmentation_skips_hidden_folders(tmp_path):
    x, _ = blobs(4, 2, size=16)
    for i in range(3):
        save_png(tmp_path / "images" / f"{i}.png", x[i])
        save_png(tmp_path / "masks" / f"{i}.png", np.full((16, 16), i % 2, np.uint8))
    save_png(tmp_path / "images" / ".ipynb_checkpoints" / "0-checkpoint.png", x[3])
    src = load_source(str(tmp_path))
    assert len(src.train.y) == 3


# ----------------------------------------------------------------------------- item 6: mask values
def seg_folder(root, n=8, k=3):
    x, _ = blobs(n, 2, size=16)
    m = np.random.default_rng(1).integers(0, k, (n, 16, 16)).astype(np.uint8)
    for i in range(n):
        save_png(root / "images" / f"{i:04d}.png", x[i])
        save_png(root / "masks" / f"{i:04d}.png", m[i])
    return m


def test_stray_mask_value_leaving_a_gap_is_a_problem(tmp_path):
    m = seg_folder(tmp_path)
    m[2, 3:8, 3:8] = 40  # one 5x5 patch of 40 in one mask
    save_png(tmp_path / "masks" / "0002.png", m[2])
    with pytest.raises(UserError) as e:
        load_source(str(tmp_path))
    msg = one_line(e)
    assert "0002.png" in msg and "40" in msg and "--classes" in msg and "card" in msg
    text = report(str(tmp_path))
    assert "problems: 1" in text and "0002.png" in text
    assert load_source(str(tmp_path), classes=[str(i) for i in range(41)]).classes[-1] == "40"  # classes given


def test_anti_aliased_binary_masks_are_a_problem_with_a_hint(tmp_path):
    m = (seg_folder(tmp_path) == 1).astype(np.uint8) * 255
    m[0, 5, 5:8] = 128
    for i in range(len(m)):
        save_png(tmp_path / "masks" / f"{i:04d}.png", m[i])
    with pytest.raises(UserError) as e:
        load_source(str(tmp_path))
    assert "0000.png" in one_line(e) and "0 and 255" in str(e.value)


def test_rare_contiguous_mask_value_is_a_note(tmp_path):
    m = seg_folder(tmp_path)
    m[5, 0, 0] = 3  # one pixel of class 3
    save_png(tmp_path / "masks" / "0005.png", m[5])
    src = load_source(str(tmp_path))  # not an error: a small class can be real
    assert src.classes == ["0", "1", "2", "3"]
    assert any("value 3" in n and "0005.png" in n for n in src.notes)


# ----------------------------------------------------------------------------- item 7: leaks, NPZ
def csv_set(root, lines):
    x, _ = blobs(6, 2, seed=3)
    for i in range(6):
        save_png(root / f"{i}.png", x[i])
    (root / "m.csv").write_text("path,label,split\n" + "\n".join(lines) + "\n")
    return root / "m.csv"


def test_csv_row_in_train_and_test_is_an_error(tmp_path):
    p = csv_set(tmp_path, ["0.png,a", "1.png,b", "2.png,a", "3.png,b", "4.png,a,test", "0.png,a,test"])
    with pytest.raises(UserError) as e:
        load_source(str(p))
    assert "0.png" in one_line(e) and "test" in str(e.value)
    src = load_source(str(p), strict=False)
    assert len(src.problems) == 1 and len(src.train.y) == 3 and len(src.test.y) == 2  # listed once, kept in test


def test_one_file_in_train_and_test_is_an_error_and_a_copy_a_note(image_folder):
    import shutil

    (image_folder / "test" / "cat" / "link.png").symlink_to(image_folder / "train" / "cat" / "0.png")
    with pytest.raises(UserError) as e:
        load_source(str(image_folder))
    msg = one_line(e)
    assert "link.png" in msg and "0.png" in msg and "train" in msg
    assert "problems: 1" in report(str(image_folder))  # `semisup data` and training agree
    (image_folder / "test" / "cat" / "link.png").unlink()
    shutil.copy(image_folder / "train" / "cat" / "0.png", image_folder / "test" / "cat" / "copy.png")
    src = load_source(str(image_folder))  # two files of one picture, or two blank frames: said, not refused
    assert any("test/cat/copy.png = train/cat/0.png" in n for n in src.notes)


def test_segmentation_file_in_two_splits_is_an_error(tmp_path):
    x, _ = blobs(6, 2, size=16)
    for i in range(6):
        split = "train" if i < 4 else "test"
        save_png(tmp_path / split / "images" / f"{i}.png", x[i])
        save_png(tmp_path / split / "masks" / f"{i}.png", np.full((16, 16), i % 2, np.uint8))
    (tmp_path / "test" / "images" / "0.png").symlink_to(tmp_path / "train" / "images" / "0.png")
    save_png(tmp_path / "test" / "masks" / "0.png", np.zeros((16, 16), np.uint8))
    with pytest.raises(UserError) as e:
        load_source(str(tmp_path))
    assert "0.png" in one_line(e) and "in train and in test" in str(e.value)


def test_npz_test_images_copied_from_train_are_an_error(tmp_path):
    x, y = blobs(10, 2)
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x[:2], y_test=y[:2])
    with pytest.raises(UserError) as e:
        load_source(str(tmp_path / "d.npz"))
    assert "x_test" in one_line(e) and "index 0" in str(e.value)


def test_one_file_with_two_labels_is_a_problem(tmp_path):
    p = csv_set(tmp_path, ["0.png,a", "1.png,b", "2.png,a", "3.png,b", "0.png,b"])
    with pytest.raises(UserError) as e:
        load_source(str(p))
    msg = one_line(e)
    assert "0.png" in msg and "'a'" in msg and "'b'" in msg


@pytest.mark.parametrize("test_shape", [(3, 10, 10, 3), (3, 12, 12)])
def test_npz_test_split_of_another_shape_is_a_problem(tmp_path, test_shape):
    x, y = blobs(8, 2)
    xt = np.random.default_rng(4).integers(0, 255, test_shape).astype(np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=xt, y_test=np.array([0, 1, 0]))
    with pytest.raises(UserError) as e:
        load_source(str(tmp_path / "d.npz"))
    assert "'x_test'" in one_line(e) and "'x'" in str(e.value)
    src = load_source(str(tmp_path / "d.npz"), strict=False)
    assert len(src.problems) == 1 and src.test is None


def test_npz_uint8_labels_with_255_for_unlabeled(tmp_path):
    x, y = blobs(300, 3)
    y = y.astype(np.uint8)
    y[10:] = 255
    np.savez(tmp_path / "d.npz", x=x, y=y)
    src = load_source(str(tmp_path / "d.npz"), strict=False)
    assert len(src.problems) == 1 and "-1" in src.problems[0] and "int64" in src.problems[0]
    assert len(src.classes) == 3  # not 256
    with pytest.raises(UserError) as e:
        load_source(str(tmp_path / "d.npz"))
    assert "-1 marks unlabeled" in one_line(e)


# ----------------------------------------------------------------------------- item 10
@pytest.mark.parametrize("fmt", ["npz", "csv"])
def test_no_labeled_images_is_a_problem(tmp_path, fmt):
    x, _ = blobs(6, 2)
    if fmt == "npz":
        spec = tmp_path / "d.npz"
        np.savez(spec, x=x, y=np.full(6, -1))
    else:
        spec = csv_set(tmp_path, [f"{i}.png," for i in range(6)])
    text = report(str(spec))
    assert "problems: 1" in text and "no labeled images" in text
    with pytest.raises(UserError) as e:
        load_source(str(spec))
    assert "no labeled images" in one_line(e) and "--classes" in str(e.value)


def test_images_too_small_for_the_model(tmp_path):
    from semisup.api import prepare, resolve

    x, y = blobs(20, 2, size=3)
    np.savez(tmp_path / "tiny.npz", x=x, y=y)
    with pytest.raises(UserError) as e:
        prepare(resolve({"data": str(tmp_path / "tiny.npz"), "method": "supervised"}))
    msg = one_line(e)
    assert "3x3" in msg and "cnn" in msg and "4x4" in msg and "--image-size" in msg
    data, _, method = prepare(resolve({"data": str(tmp_path / "tiny.npz"), "method": "supervised", "image_size": 8}))
    assert data.source.shape == (3, 8, 8)  # upsampled
    r = semisup("train", "--data", tmp_path / "tiny.npz", "--method", "supervised", "--out", tmp_path / "run",
                "--steps", "2", "--quiet")
    assert_user_error(r, "3x3", "--image-size")
    assert not (tmp_path / "run").exists()


def test_model_minimum_sizes_are_measured():
    from semisup.models import MODELS, SEG_MODELS, SIZED, build_model, build_seg_model

    for name, entry in {**MODELS, **SIZED}.items():
        s = entry.min_size
        m = build_model(name, (3, s, s), 2).eval()
        with torch.no_grad():
            m(torch.rand(1, 3, s, s))
        if s > 1:
            with pytest.raises(UserError, match=rf"{s - 1}x{s - 1}.*--model {name}"):
                build_model(name, (3, s - 1, s - 1), 2)
            raw = (entry.build((3, s - 1, s - 1), 2) if name in SIZED else entry.build(3, 2)).eval()
            with pytest.raises(RuntimeError), torch.no_grad():  # the minimum is tight: one pixel less fails
                raw(torch.rand(1, 3, s - 1, s - 1))
    for name, entry in SEG_MODELS.items():  # segmentation decoders upsample to the input: any size
        net = build_seg_model(name, (3, entry.min_size, entry.min_size), 2).eval()
        with torch.no_grad():
            assert net(torch.rand(1, 3, entry.min_size, entry.min_size)).shape[-2:] == (entry.min_size,) * 2


# ----------------------------------------------------------------------------- item 14: CSV headers
@pytest.mark.parametrize("header,row", [
    ("\ufeffpath,label", "{p},{c}"),  # Excel's byte-order mark
    ("filepath,class", "{p},{c}"),
    ("img,y", "{p},{c}"),
    ("file_name,target", "{p},{c}"),
    ("label,path", "{c},{p}"),  # any order
    ("class,set,image_path", "{c},train,{p}"),
])
def test_csv_headers(tmp_path, header, row):
    x, _ = blobs(4, 2)
    lines = [header]
    for i in range(4):
        save_png(tmp_path / f"{i}.png", x[i])
        lines.append(row.format(p=f"{i}.png", c="ab"[i % 2]))
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    src = load_source(str(tmp_path / "m.csv"))
    assert src.classes == ["a", "b"] and src.train.y.tolist() == [0, 1, 0, 1]


def test_csv_unknown_header_says_what_it_must_be(tmp_path):
    csv = csv_set(tmp_path, [])
    csv.write_text("picture,kind\n0.png,a\n1.png,b\n")
    with pytest.raises(UserError) as e:
        load_source(str(csv))
    msg = one_line(e)
    assert "header" in msg and "path" in msg and "label" in msg and "line 1" in msg
    csv.write_text("path,species\n0.png,a\n1.png,b\n")  # a path column, and no label column it knows
    with pytest.raises(UserError) as e:
        load_source(str(csv))
    assert "no label column" in one_line(e) and "species" in str(e.value)


def test_zero_byte_csv(tmp_path):
    (tmp_path / "m.csv").write_bytes(b"")
    with pytest.raises(UserError) as e:
        load_source(str(tmp_path / "m.csv"))
    assert "empty" in one_line(e)


# ----------------------------------------------------------------------------- item 15: photos
def photo_folder(root, n=4, size=(300, 200)):
    rng = np.random.default_rng(0)
    for i in range(n):
        p = root / "train" / "ab"[i % 2] / f"{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(p)
    return root


def test_large_photos_get_a_bounded_default_size(tmp_path):
    from semisup.api import prepare, resolve

    root = photo_folder(tmp_path / "photos")
    src = load_source(str(root))
    assert src.shape == (3, 224, 224) and src.size_on_disk == (200, 300)
    assert any("224" in n and "--image-size" in n for n in src.notes)
    cfg = resolve({"data": str(root), "method": "supervised", "model": "cnn_small"})
    prepare(cfg)
    assert cfg["image_size"] == 224  # in the run's config: eval and a rerun read the photos alike
    text = report(str(root))
    assert re.search(r"memory: 4 images x 3 x 224 x 224 = [\d.]+ [KMG]B as uint8 \(at the stored size 300x200: ", text)


def test_image_size_for_classification(tmp_path, image_folder):
    from semisup.api import prepare, resolve

    cfg = resolve({"data": str(image_folder), "image_size": 16, "method": "supervised"})
    data, _, _ = prepare(cfg)
    assert data.source.shape == (3, 16, 16) and data.test.x.shape[1:] == (3, 16, 16)
    assert load_source("digits", image_size=16).shape == (1, 16, 16)  # arrays too


def test_resize_keeps_aspect_and_predict_uses_the_same_rule(tmp_path):
    a = np.zeros((12, 24, 3), np.uint8)
    a[:, 6:18] = 200  # the centre square bright, the sides dark
    for i, c in enumerate("ab"):
        save_png(tmp_path / "train" / c / f"{i}.png", a)
    src = load_source(str(tmp_path), image_size=12)
    assert (src.train.x == 200).all()  # centre crop, not squeezed
    x, keep = decode_images([("f", (tmp_path / "train" / "a" / "0.png").read_bytes)], Problems(), [],
                            size=(12, 12), channels=3)
    assert torch.equal(x[0], src.train.x[0])


def test_decoding_streams_one_image_at_a_time(tmp_path, monkeypatch):
    data = io.BytesIO()
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(data, format="PNG")
    alive, peak = [0], [0]
    real = sources._decode

    def counting(*a, **k):
        im = real(*a, **k)
        alive[0] += 1
        peak[0] = max(peak[0], alive[0])
        weakref.finalize(im, lambda: alive.__setitem__(0, alive[0] - 1))
        return im

    monkeypatch.setattr(sources, "_decode", counting)
    monkeypatch.setattr(sources, "WORKERS", 2)
    for size in [(6, 4), None]:  # the size given (predict, test splits), or found from the images
        x, keep = decode_images([(str(i), data.getvalue) for i in range(64)], Problems(), [], size=size)
        assert x.shape[:2] == (64, 3) and peak[0] <= 4  # two decoding threads: never all 64 images at once


# ----------------------------------------------------------------------------- other image kinds
def _save(path, im, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)


def test_odd_image_kinds_load_as_they_look(tmp_path):
    def one(name, im, **kw):
        _save(tmp_path / "train" / "a" / name, im, **kw)
    one("cmyk.jpg", Image.new("CMYK", (8, 8), (0, 255, 255, 0)), quality=100)  # red
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 1] = 255  # green where fully transparent: shown as nothing, not green
    rgba[:4, ..., 0], rgba[:4, ..., 3] = 255, 255  # the top half opaque red
    rgba[:4, ..., 1] = 0
    one("alpha.png", Image.fromarray(rgba))
    pal = Image.fromarray(np.array([[0, 1] * 4] * 8, np.uint8), mode="P")
    pal.putpalette([255, 255, 255, 255, 0, 0] + [0] * 762)  # index 0 white but transparent, 1 red
    one("pal.png", pal, transparency=0)
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    one("anim.gif", frames[0], save_all=True, append_images=frames[1:])
    save_png(tmp_path / "train" / "b" / "x.png", np.zeros((8, 8, 3), np.uint8))
    src = load_source(str(tmp_path))
    img = {n.split("/")[-1]: src.train.x[i].permute(1, 2, 0).int() for i, n in enumerate(src.train.names)}
    assert (abs(img["cmyk.jpg"] - torch.tensor([255, 0, 0])) < 8).all()
    assert (img["alpha.png"][:4] == torch.tensor([255, 0, 0])).all() and (img["alpha.png"][4:] == 0).all()
    assert (img["pal.png"][:, 0::2] == 0).all() and (img["pal.png"][:, 1::2] == torch.tensor([255, 0, 0])).all()
    assert (abs(img["anim.gif"] - torch.tensor([255, 0, 0])) < 8).all()  # the first frame
    assert any("transparen" in n for n in src.notes)


def test_huge_image_is_a_problem_not_a_traceback(image_folder):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)  # 400 million pixels, claimed
    (image_folder / "train" / "cat" / "scan.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    with pytest.raises(UserError) as e:
        load_source(str(image_folder))
    assert "scan.png" in one_line(e) and "400000000 pixels" in str(e.value)


def test_a_large_image_is_a_note_not_a_two_line_warning(image_folder):
    """Between Pillow's warning size and twice it, an image is read: stderr gets no warning, the report a note."""
    import subprocess
    import sys

    code = ("from PIL import Image; Image.MAX_IMAGE_PIXELS = 100\n"  # the 12x12 images (144 px) are "large"
            "from semisup.cli import main; import sys; main(['data', sys.argv[1]])")
    r = subprocess.run([sys.executable, "-c", code, str(image_folder)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "note: read 30 images of over 89 million pixels" in r.stdout, r.stdout


def test_tar_with_links_hidden_members_and_a_broken_link(tmp_path):
    x, _ = blobs(4, 2, seed=9)
    root = tmp_path / "set"
    for i in range(3):
        save_png(root / "train" / "a" / f"{i}.png", x[i])
    save_png(root / "extra" / "3.png", x[3])
    (root / "train" / "b").mkdir()
    (root / "train" / "b" / "3.png").symlink_to("../../extra/3.png")
    (root / "train" / "a" / "gone.png").symlink_to("nowhere.png")
    save_png(root / "__MACOSX" / "train" / "a" / "._0.png", x[0])
    src = load_source(str(root))
    assert src.classes == ["a", "b"] and any("gone.png" in n for n in src.notes)
    (root / "train" / "a" / "gone.png").unlink()
    tsrc = load_source(str(make_tar(root, tmp_path / "set.tar")))
    assert tsrc.classes == ["a", "b"] and torch.equal(tsrc.train.x, src.train.x)


def test_cli_data_reports_memory_and_image_size(tmp_path):
    root = photo_folder(tmp_path / "photos", n=2)
    r = semisup("data", root, "--image-size", "64")
    assert r.returncode == 0, r.stderr
    assert "64x64 pixels" in r.stdout and "memory: 2 images x 3 x 64 x 64" in r.stdout
