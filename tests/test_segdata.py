"""The segmentation data layer: folder layouts, CamVid, dataset cards, mask kinds, problems,
the built-in `shapes`, and the `semisup data` report."""
import re

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHARED, blobs, save_png
from semisup.data.check import report
from semisup.data.sources import detect_task, load_source
from semisup.errors import UserError

H, W = 12, 16


def masks_for(n, k=3, seed=1):
    """Index masks (n, H, W) with values 0..k-1 and a few ignored (255) pixels."""
    m = np.random.default_rng(seed).integers(0, k, (n, H, W)).astype(np.uint8)
    m[:, 0, :3] = 255
    return m


def write_pairs(img_dir, msk_dir, n, start=0, masks=None, ext=".jpg"):
    x, _ = blobs(n, 2, size=16)
    masks = masks_for(n) if masks is None else masks
    for i in range(n):
        img_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i, :H]).save(img_dir / f"{start + i:04d}{ext}")
        save_png(msk_dir / f"{start + i:04d}.png", masks[i])
    return masks


def test_pool_layout_with_unlabeled(tmp_path):
    m = write_pairs(tmp_path / "images", tmp_path / "masks", 6)
    x, _ = blobs(3, 2, size=16)
    for i in range(3):
        save_png(tmp_path / "unlabeled" / f"u{i}.png", x[i, :H])
    assert detect_task(str(tmp_path)) == "segment"
    src = load_source(str(tmp_path))
    assert src.task == "segment" and src.kind == "segmentation folder"
    assert src.test is None and src.val is None and src.shape == (3, H, W)
    assert src.classes == ["0", "1", "2"] and src.ignore_index == 255 and len(src.palette) == 3
    assert src.train.y.tolist() == [0] * 6 + [-1] * 3
    assert torch.equal(src.train.masks[:6], torch.from_numpy(m))  # exact, 255 stays ignore
    assert (src.train.masks[6:] == 255).all()  # unlabeled images: all pixels ignored
    assert src.train.masks.dtype == torch.uint8 and src.train.names[0] == "images/0000.jpg"


def test_per_split_layout(tmp_path):
    write_pairs(tmp_path / "train" / "images", tmp_path / "train" / "masks", 6)
    write_pairs(tmp_path / "val" / "images", tmp_path / "val" / "masks", 2, start=10)
    write_pairs(tmp_path / "test" / "images", tmp_path / "test" / "masks", 3, start=20)
    save_png(tmp_path / "train" / "unlabeled" / "u.png", blobs(1, 1, size=16)[0][0, :H])
    src = load_source(str(tmp_path))
    assert [len(s.y) for s in (src.train, src.val, src.test)] == [7, 2, 3]
    assert int((src.train.y == -1).sum()) == 1 and (src.test.y == 0).all()
    assert src.test.masks.shape == (3, H, W)


def test_camvid_layout(tmp_path):
    m = masks_for(4, k=12)
    m[m == 255] = 11  # values 0..11: the SegNet classes, 11 = void
    write_pairs(tmp_path / "train", tmp_path / "trainannot", 4, masks=m, ext=".png")
    write_pairs(tmp_path / "test", tmp_path / "testannot", 2, masks=m[:2], ext=".png")
    src = load_source(str(tmp_path))
    assert src.kind == "CamVid folder" and src.classes[0] == "Sky" and len(src.classes) == 11
    assert src.ignore_index == 11 and src.palette[3] == (128, 64, 128)
    want = np.where(m == 11, 255, m)
    assert torch.equal(src.train.masks, torch.from_numpy(want))
    assert len(src.test.y) == 2 and src.val is None
    write_pairs(tmp_path / "val", tmp_path / "elsewhere", 1, ext=".png")  # val/ without valannot/
    with pytest.raises(UserError, match=r"valannot: no such folder beside .*val; add the masks there"):
        load_source(str(tmp_path))


def test_camvid_layout_other_values_is_index_folder(tmp_path):
    m = masks_for(3, k=14)
    write_pairs(tmp_path / "train", tmp_path / "trainannot", 3, masks=m, ext=".png")
    src = load_source(str(tmp_path))
    assert src.classes == [str(i) for i in range(14)] and src.ignore_index == 255


def test_card_with_rgb_palette_masks(tmp_path):
    palette = [(0, 0, 0), (128, 64, 128), (64, 0, 128)]
    idx = masks_for(5)
    rgb = np.array(palette + [(255, 255, 255)], np.uint8)[np.where(idx == 255, 3, idx)]
    x, _ = blobs(5, 2, size=16)
    for i in range(5):
        save_png(tmp_path / "imgs" / f"{i}.png", x[i, :H])
        save_png(tmp_path / "ann" / f"{i}.png", rgb[i])
    save_png(tmp_path / "extra" / "e.png", x[0, :H])
    card = tmp_path / "road.yaml"
    card.write_text("classes: [background, road, car]\nignore: [255, 255, 255]\n"
                    "palette: [[0,0,0],[128,64,128],[64,0,128]]\n"
                    "train: {images: imgs, masks: ann}\nunlabeled: extra\n")
    src = load_source(str(card))
    assert src.kind == "dataset card" and src.name == "road" and src.classes == ["background", "road", "car"]
    assert src.palette == palette
    assert torch.equal(src.train.masks[:5], torch.from_numpy(idx)) and src.train.y.tolist() == [0] * 5 + [-1]
    rgb[2, 4, 4] = (1, 2, 3)  # a colour the palette does not have
    save_png(tmp_path / "ann" / "2.png", rgb[2])
    with pytest.raises(UserError, match=r"ann/2\.png: colour \(1, 2, 3\) is not in the card's palette"):
        load_source(str(card))


@pytest.mark.parametrize("text, key", [
    ("classes: [a, b]\ntrain: {images: imgs, masks: ann}\ncolours: 3\n", "colours"),
    ("classes: [a, b]\ntrain: {images: imgs, masks: nowhere}\n", "train.masks"),
    ("classes: a\ntrain: {images: imgs, masks: ann}\n", "classes"),
    ("classes: [a, b]\nignore: -3\ntrain: {images: imgs, masks: ann}\n", "ignore"),
    ("classes: [a, b]\npalette: [[0,0,0]]\ntrain: {images: imgs, masks: ann}\n", "palette"),
    ("classes: [a, b]\ntrain: imgs\n", "train"),
    ("classes: [a, b]\n", "train"),
    ("- a list\n", "a dataset card is a mapping"),
    ("classes: [a, b\n", "not a readable YAML"),
])
def test_card_validation(tmp_path, text, key):
    write_pairs(tmp_path / "imgs", tmp_path / "ann", 2, masks=masks_for(2, k=2))
    (tmp_path / "c.yml").write_text(text)
    with pytest.raises(UserError, match=rf"c\.yml: '?{key}") as e:
        load_source(str(tmp_path / "c.yml"))
    assert "\n" not in str(e.value)


def test_card_index_masks_with_own_ignore(tmp_path):
    m = masks_for(3, k=2)
    m[m == 255] = 9  # this data set marks void with 9
    write_pairs(tmp_path / "imgs", tmp_path / "ann", 3, masks=m)
    (tmp_path / "c.yaml").write_text("classes: [a, b]\nignore: 9\ntrain: {images: imgs, masks: ann}\n")
    src = load_source(str(tmp_path / "c.yaml"))
    assert src.ignore_index == 9 and torch.equal(src.train.masks, torch.from_numpy(np.where(m == 9, 255, m)))


def test_binary_masks(tmp_path):
    m = (masks_for(4, k=2) == 1).astype(np.uint8) * 255
    write_pairs(tmp_path / "images", tmp_path / "masks", 4, masks=m)
    src = load_source(str(tmp_path))
    assert src.classes == ["background", "foreground"] and src.ignore_index is None
    assert torch.equal(src.train.masks, torch.from_numpy(m // 255))


def test_p_mode_masks(tmp_path):
    m = masks_for(3, k=4)
    write_pairs(tmp_path / "images", tmp_path / "masks", 3, masks=m)
    for i in range(3):  # palette images: the values are the palette indices, not the colours
        im = Image.fromarray(m[i], mode="P")
        im.putpalette([v for c in range(256) for v in ((c * 37) % 256, (c * 91) % 256, 200)])
        im.save(tmp_path / "masks" / f"{i:04d}.png")
    assert Image.open(tmp_path / "masks" / "0000.png").mode == "P"
    assert torch.equal(load_source(str(tmp_path)).train.masks, torch.from_numpy(m))


def test_mixed_sizes_resize_images_and_masks(tmp_path):
    m = write_pairs(tmp_path / "images", tmp_path / "masks", 4)
    big = np.kron(m[0], np.ones((2, 2), np.uint8))  # the same mask at twice the size
    save_png(tmp_path / "images" / "big.png", np.zeros((2 * H, 2 * W, 3), np.uint8))
    save_png(tmp_path / "masks" / "big.png", big)
    src = load_source(str(tmp_path))
    assert src.shape == (3, H, W) and any("resized 1 of 5" in n for n in src.notes)
    assert torch.equal(src.train.masks[src.train.names.index("images/big.png")], torch.from_numpy(m[0]))


def _problem_cases():
    def size(root):
        save_png(root / "masks" / "0001.png", np.zeros((H + 2, W), np.uint8))
        return r"0001\.png: mask is 16x14 pixels but its image 0001\.jpg is 16x12"

    def values(root):  # with the classes given (a card, --classes), other values are errors
        save_png(root / "masks" / "0002.png", np.full((H, W), 40, np.uint8))
        return r"0002\.png: mask values 40 are not classes \(0\.\.2\)"

    def no_mask(root):
        (root / "masks" / "0003.png").unlink()
        return r"0003\.jpg: no mask .* add its mask or move it to unlabeled/"

    def no_image(root):
        (root / "images" / "0004.jpg").unlink()
        return r"0004\.png: mask without an image"

    def bad_image(root):
        (root / "images" / "0000.jpg").write_bytes(b"not a jpeg")
        return r"0000\.jpg: not a readable image"

    def bad_mask(root):
        (root / "masks" / "0005.png").write_bytes(b"")
        return r"0005\.png: empty file"

    def empty(root):
        (root / "unlabeled").mkdir()
        return r"unlabeled: no image files in this folder"

    def rgb_no_palette(root):
        save_png(root / "masks" / "0001.png", np.random.default_rng(0).integers(0, 3, (H, W, 3), dtype=np.uint8))
        return r"0001\.png: a colour \(RGB\) mask, and no palette"

    return [size, values, no_mask, no_image, bad_image, bad_mask, empty, rgb_no_palette]


@pytest.mark.parametrize("spoil", _problem_cases(), ids=lambda f: f.__name__)
def test_problems_strict_and_report(tmp_path, spoil):
    write_pairs(tmp_path / "images", tmp_path / "masks", 8)
    pattern = spoil(tmp_path)
    classes = ["a", "b", "c"]
    with pytest.raises(UserError, match=pattern) as e:
        load_source(str(tmp_path), classes=classes)
    assert "\n" not in str(e.value)
    src = load_source(str(tmp_path), strict=False, classes=classes)  # `semisup data` lists it instead
    assert len(src.problems) == 1 and re.search(pattern, src.problems[0])
    text = report(str(tmp_path), classes)
    assert "problems: 1" in text and re.search(pattern, text)


def test_shapes_builtin():
    a, b = load_source("shapes"), load_source("shapes")
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.masks, b.test.masks)  # fixed seed
    assert a.task == "segment" and a.kind == "built-in" and a.flip and a.shape == (3, 48, 48)
    assert [len(s.y) for s in (a.train, a.val, a.test)] == [1000, 100, 200] and (a.train.y == 0).all()
    assert len(a.palette) == len(a.classes) == 5
    for s in (a.train, a.val, a.test):  # every class in every split, nothing outside the classes
        counts = torch.bincount(s.masks.flatten().long(), minlength=len(a.classes))
        assert len(counts) == len(a.classes) and (counts > 0).all()
    # colour does not give the class away: each shape class covers many colours
    img = a.train.x.permute(0, 2, 3, 1)[a.train.masks == 1].float()
    assert img.std(0).min() > 40


def test_report_segmentation(tmp_path):
    write_pairs(tmp_path / "images", tmp_path / "masks", 4)
    save_png(tmp_path / "unlabeled" / "u.png", blobs(1, 1, size=16)[0][0, :H])
    text = report(str(tmp_path))
    assert "segmentation" in text and "problems: none" in text
    lines = {ln.split()[0]: ln for ln in text.splitlines()[1:] if ln.strip()}
    assert lines["with"].split()[-1] == "4" and lines["without"].split()[-1] == "1"
    assert lines["ignored"].split()[-1] == f"{100 * 3 / (H * W):.2f}%"  # 3 ignored pixels per mask
    shares = [float(lines[c].split()[-1].rstrip("%")) for c in ("0", "1", "2")]
    assert abs(sum(shares) - 100) < 0.05


def test_shared_camvid():
    root = SHARED / "camvid-240x180"
    if not (root / "trainannot").is_dir():
        pytest.skip("../shared/data/camvid-240x180 is absent")
    src = load_source(str(root), task="segment")
    assert len(src.classes) == 11 and src.ignore_index == 11 and src.shape == (3, 180, 240)
    assert [len(s.y) for s in (src.train, src.val, src.test)] == [367, 101, 233]
    assert float((src.train.masks == 255).float().mean()) > 0
    assert int(src.train.masks[src.train.masks != 255].max()) == 10


def test_task_detection_and_mismatch(image_folder, tmp_path):
    assert detect_task(str(image_folder)) == "classify" and detect_task("digits") == "classify"
    assert load_source(str(image_folder), task="classify").task == "classify"
    with pytest.raises(UserError, match=r"--task segment: .*pets looks like a classification image folder"):
        load_source(str(image_folder), task="segment")
    with pytest.raises(UserError, match=r"--task segment: digits looks like a built-in classification"):
        load_source("digits", task="segment")
    with pytest.raises(UserError, match=r"--task classify: shapes looks like segmentation data"):
        load_source("shapes", task="classify")
    with pytest.raises(UserError, match="no such file or folder"):
        load_source(str(tmp_path / "nope"), task="segment")
