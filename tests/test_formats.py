"""The format registry: one module per format, each detecting its own sample and reading it to
the pixels, labels and masks written; and the data layer's imports, which form no cycle and
reach nothing of semisup downstream of the data."""
import ast
import csv
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, save_png, write_idx
from semisup.data import sources
from semisup.data.formats import FORMATS
from semisup.data.formats.segfolder import CAMVID_CLASSES
from semisup.data.shapes import SPLITS, make_shapes
from semisup.data.types import IGNORE, Format, Source, Split
from semisup.errors import UserError

DATA = ROOT / "src" / "semisup" / "data"
H, W = 5, 6


# ----------------------------------------------------------------------------- imports
def _module(path: Path) -> str:
    parts = ["semisup", *path.relative_to(ROOT / "src" / "semisup").with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """The semisup modules `path` imports, at the top or inside functions."""
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("semisup")}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if target.startswith("semisup"):
                out.add(target)  # `from . import a` imports the package, then its submodule a
                out |= {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known}
    return out


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A path of imports that comes back to its start, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(path: list[str]) -> list[str] | None:
        state[path[-1]] = 1
        for t in sorted((graph[path[-1]] & set(graph)) - {path[-1]}):
            if state.get(t) == 1:
                return path[path.index(t):] + [t]
            found = None if t in state else visit(path + [t])
            if found:
                return found
        state[path[-1]] = 2
        return None

    for n in sorted(graph):
        found = None if n in state else visit([n])
        if found:
            return found
    return None


def test_data_imports_form_no_cycle_and_stay_in_the_data_layer():
    files = sorted(DATA.rglob("*.py"))
    known = {_module(p) for p in files}
    graph = {_module(p): _imports(p, known) for p in files}
    for name, targets in graph.items():
        outside = {t for t in targets if not t.startswith("semisup.data")} - {"semisup.errors"}
        assert not outside, f"{name} imports {outside}: the data layer imports nothing downstream of it"
    assert "semisup.data.formats" in graph["semisup.data.sources"]  # the graph is read, not empty
    assert "semisup.data.formats.segfolder" in graph["semisup.data.formats.card"]
    assert _cycle(graph) is None, "import cycle: " + " -> ".join(_cycle(graph) or [])


def test_the_mask_ignore_value_lives_in_the_data_layer():
    from semisup import metrics

    assert metrics.IGNORE is IGNORE == 255


# ----------------------------------------------------------------------------- samples
def _images(n: int, seed: int, channels: int = 3) -> np.ndarray:
    """n distinct random images (n, H, W, channels) uint8."""
    return np.random.default_rng(seed).integers(0, 256, (n, H, W, channels)).astype(np.uint8)


def _chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


def _by_name(items: dict[str, tuple]) -> dict:
    """Expected per file name: (image (C, H, W), label, mask or None)."""
    return {k: (_chw(v[0]), v[1], None if v[2] is None else torch.from_numpy(v[2])) for k, v in items.items()}


def _folder(root: Path) -> dict:
    x = _images(7, 1)
    files = {"train/a/0.png": 0, "train/a/1.png": 0, "train/b/2.png": 1, "train/b/3.png": 1,
             "test/a/4.png": 0, "test/b/5.png": 1, "unlabeled/6.png": -1}
    for i, rel in enumerate(files):
        save_png(root / rel, x[i])
    splits = {"train": {}, "test": {}}
    for i, (rel, y) in enumerate(files.items()):
        splits["test" if rel.startswith("test/") else "train"][rel] = (x[i], y, None)
    return {"classes": ["a", "b"], "splits": {s: _by_name(v) for s, v in splits.items()}}


def make_samples(tmp: Path) -> dict[str, tuple[str, str, dict]]:
    """format name -> (spec, the Source's kind, what it must read: classes and, per split, the
    images, labels and masks written, by file name or as arrays)."""
    out = {}
    out["digits"] = ("digits", "built-in", {"classes": [str(i) for i in range(10)]})
    shapes_x, shapes_m = make_shapes(sum(SPLITS.values()))
    cut = np.cumsum(list(SPLITS.values()))[:-1]
    arrays = {s: (torch.from_numpy(x).permute(0, 3, 1, 2), torch.zeros(len(x), dtype=torch.long), torch.from_numpy(m))
              for s, x, m in zip(SPLITS, np.split(shapes_x, cut), np.split(shapes_m, cut))}
    out["shapes"] = ("shapes", "built-in", {"classes": ["background", "circle", "square", "triangle", "ring"],
                                            "arrays": arrays})

    d = tmp / "idx"
    d.mkdir()
    gray = _images(10, 2, channels=1)[..., 0]
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 1], np.uint8)
    write_idx(d / "train-images-idx3-ubyte", gray[:6])
    write_idx(d / "train-labels-idx1-ubyte", y[:6])
    write_idx(d / "t10k-images-idx3-ubyte", gray[6:], gz=False)
    write_idx(d / "t10k-labels-idx1-ubyte", y[6:], gz=False)
    t = lambda a, b: (torch.from_numpy(gray[a:b, None].copy()), torch.from_numpy(y[a:b].astype(np.int64)), None)
    out["idx"] = (str(d), "IDX directory", {"classes": ["0", "1", "2"], "arrays": {"train": t(0, 6), "test": t(6, 10)}})

    x = _images(6, 3)
    ny = np.array([0, 1, -1, 1, 0, 1])
    np.savez(tmp / "d.npz", x=x[:4], y=ny[:4], x_test=x[4:], y_test=ny[4:], classes=np.array(["cat", "dog"]))
    n = lambda a, b: (torch.from_numpy(x[a:b].transpose(0, 3, 1, 2).copy()), torch.from_numpy(ny[a:b]), None)
    out["npz"] = (str(tmp / "d.npz"), "NPZ", {"classes": ["cat", "dog"], "arrays": {"train": n(0, 4), "test": n(4, 6)}})

    x = _images(5, 4)
    rows = [("0.png", "b", "train"), ("1.png", "a", "train"), ("2.png", "", "train"), ("3.png", "a", "val"),
            ("4.png", "b", "test")]
    with open(tmp / "m.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["split", "image", "class"])  # any order of the columns
        for name, label, split in rows:
            save_png(tmp / "imgs" / name, x[int(name[0])])
            w.writerow([split, f"imgs/{name}", label])
    splits = {s: _by_name({str(tmp / "imgs" / name): (x[int(name[0])], {"a": 0, "b": 1}.get(label, -1), None)
                           for name, label, sp in rows if sp == s}) for s in ("train", "val", "test")}
    out["csv"] = (str(tmp / "m.csv"), "CSV manifest", {"classes": ["a", "b"], "splits": splits})

    out["folder"] = (str(tmp / "pets"), "image folder", _folder(tmp / "pets"))
    with tarfile.open(tmp / "pets.tar.gz", "w:gz") as tar:
        for p in sorted((tmp / "pets").rglob("*.png")):
            tar.add(p, arcname=str(p.relative_to(tmp / "pets")))
    out["folder (tar)"] = (str(tmp / "pets.tar.gz"), "image folder (tar)", _folder(tmp / "pets"))

    x = _images(4, 5)
    m = np.random.default_rng(6).integers(0, 3, (4, H, W)).astype(np.uint8)
    m[:, 0, 0] = IGNORE
    for i in range(4):
        save_png(tmp / "seg" / "images" / f"{i}.png", x[i])
        save_png(tmp / "seg" / "masks" / f"{i}.png", m[i])
    out["segfolder"] = (str(tmp / "seg"), "segmentation folder",
                        {"classes": ["0", "1", "2"],
                         "splits": {"train": _by_name({f"images/{i}.png": (x[i], 0, m[i]) for i in range(4)})}})

    x = _images(4, 7)
    m = np.random.default_rng(8).integers(0, 11, (4, H, W)).astype(np.uint8)
    m[:, 0, 0] = 11  # CamVid's void: ignored
    splits = {}
    for s, idx in (("train", range(3)), ("val", range(3, 4))):
        for i in idx:
            save_png(tmp / "camvid" / s / f"{i}.png", x[i])
            save_png(tmp / "camvid" / f"{s}annot" / f"{i}.png", m[i])
        splits[s] = _by_name({f"{s}/{i}.png": (x[i], 0, np.where(m[i] == 11, IGNORE, m[i]).astype(np.uint8))
                              for i in idx})
    out["camvid"] = (str(tmp / "camvid"), "CamVid folder", {"classes": CAMVID_CLASSES, "splits": splits})

    x = _images(3, 9)
    palette = [[0, 0, 0], [200, 0, 0], [0, 200, 0]]
    m = np.random.default_rng(10).integers(0, 3, (3, H, W)).astype(np.uint8)
    m[:, 0, 0] = IGNORE
    colours = np.array(palette + [[255, 255, 255]] * 253, np.uint8)  # index 255: the ignore colour
    for i in range(3):
        save_png(tmp / "road" / "img" / f"{i}.png", x[i])
        save_png(tmp / "road" / "ann" / f"{i}.png", colours[m[i]])
    (tmp / "road" / "card.yaml").write_text(yaml.safe_dump(
        {"classes": ["bg", "road", "car"], "palette": palette, "ignore": [255, 255, 255],
         "train": {"images": "img", "masks": "ann"}}))
    out["card"] = (str(tmp / "road" / "card.yaml"), "dataset card",
                   {"classes": ["bg", "road", "car"],
                    "splits": {"train": _by_name({f"img/{i}.png": (x[i], 0, m[i]) for i in range(3)})}})
    return out


def _format_of(sample: str) -> str:
    return {"camvid": "segfolder", "folder (tar)": "folder"}.get(sample, sample)


def _assert_reads(src: Source, expected: dict) -> None:
    assert src.classes == expected["classes"]
    for name, want in expected.get("arrays", {}).items():
        s = getattr(src, name)
        assert torch.equal(s.x, want[0]) and torch.equal(s.y, want[1]), name
        assert (s.masks is None) == (want[2] is None) and (want[2] is None or torch.equal(s.masks, want[2])), name
    for name, files in expected.get("splits", {}).items():
        s = getattr(src, name)
        assert sorted(s.names) == sorted(files), name
        for i, file in enumerate(s.names):
            x, y, mask = files[file]
            assert torch.equal(s.x[i], x) and int(s.y[i]) == y, file
            assert (s.masks is None) == (mask is None) and (mask is None or torch.equal(s.masks[i], mask)), file
    written = expected.get("arrays") or expected.get("splits")
    if written:
        assert {n for n in ("train", "val", "test") if getattr(src, n) is not None} == set(written)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return make_samples(tmp_path_factory.mktemp("formats"))


def test_the_registry_lists_each_format_once_with_what_it_needs():
    names = [f.name for f in FORMATS]
    assert len(set(names)) == len(names)
    assert set(names) == {"digits", "shapes", "idx", "npz", "csv", "folder", "segfolder", "card"}
    for f in FORMATS:
        assert isinstance(f, Format) and f.task in ("classify", "segment") and f.looks and callable(f.read)
        assert f.detect("/no/such/path") is False  # a detector never raises on what does not exist


def test_each_format_detects_its_own_sample_and_no_earlier_one_claims_it(samples):
    for sample, (spec, _, _) in samples.items():
        fmt = sources.find_format(spec)
        assert fmt is not None and fmt.name == _format_of(sample), sample
        assert sources.detect(spec) == fmt.name and sources.detect_task(spec) == fmt.task
    assert {_format_of(s) for s in samples} == {f.name for f in FORMATS}  # every format has a sample


@pytest.mark.parametrize("sample", ["digits", "shapes", "idx", "npz", "csv", "folder", "folder (tar)",
                                    "segfolder", "camvid", "card"])
def test_load_source_reads_what_each_sample_holds(samples, sample):
    spec, kind, expected = samples[sample]
    src = sources.load_source(spec)
    assert src.kind == kind and src.task == sources.detect_task(spec) and not src.problems
    _assert_reads(src, expected)
    if sample == "digits":  # the 1,797 images of scikit-learn's digits, scaled to 0..255, split 80/20
        from sklearn.datasets import load_digits

        d = load_digits()
        want = sorted(r + [t] for r, t in zip(np.round(d.images * (255 / 16)).astype(np.uint8).reshape(
            len(d.images), -1).tolist(), d.target.tolist()))  # each image with its digit
        got = torch.cat([torch.cat([s.x.reshape(len(s.x), -1), s.y[:, None]], 1) for s in (src.train, src.test)])
        assert sorted(got.tolist()) == want and len(src.test.x) == round(0.2 * len(d.images))


def test_a_format_added_to_the_registry_is_detected_and_read(tmp_path):
    """Adding a format is a Format in the registry: detect, detect_task and load_source find it."""
    (tmp_path / "a.txt").write_text("x")

    def read(spec, problems, classes=None, image_size=None):
        return Source("a", "text", ["0"], Split(torch.zeros(2, 1, 3, 3, dtype=torch.uint8), torch.tensor([0, -1])))

    fmt = Format("text", "classify", "a text file", lambda spec: spec.endswith(".txt"), read)
    with pytest.raises(UserError, match="unknown file type"):
        sources.detect(str(tmp_path / "a.txt"))
    FORMATS.insert(0, fmt)
    try:
        assert sources.detect(str(tmp_path / "a.txt")) == "text"
        assert sources.load_source(str(tmp_path / "a.txt")).kind == "text"
        with pytest.raises(UserError, match=r"--task segment: .*a\.txt looks like a text file;"):
            sources.load_source(str(tmp_path / "a.txt"), task="segment")
    finally:
        FORMATS.remove(fmt)
