"""Image folders, one folder per class (`read_image_folder`), as a folder or a .tar / .tar.gz
archive of one (`Files`)."""
from __future__ import annotations

import os
import tarfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Callable

from ...errors import Problems, UserError
from ..decode import is_hidden, is_image, skip_notes, walk_folder
from ..listing import Entry, decode_splits, one_entry_per_file
from ..types import Format, Source


def _member_name(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


class Files:
    """A folder (`walk_folder`) or a tar archive seen as a flat list of relative file paths. In an
    archive, hidden members are skipped as in a folder, and links to files or folders inside it
    are followed."""

    def __init__(self, root: Path, problems: Problems, notes: list[str]):
        self.root = root
        self._targets: dict[str, str] = {}
        if root.is_dir():
            self._real, self.dirs = walk_folder(root, problems, notes)
            self.paths, self._bytes = list(self._real), None
            return
        # one pass in archive order: a gzip stream cannot seek back, so reading members in
        # any other order decompresses the archive again for each file (hours for CIFAR-10)
        data, links, dirs, hidden = {}, {}, set(), set()
        hidden_files = 0
        try:
            with tarfile.open(root) as tar:
                for m in tar:
                    name = _member_name(m.name).rstrip("/")
                    parts = name.split("/")
                    cut = next((k for k, p in enumerate(parts) if is_hidden(p)), None)
                    if cut is not None:
                        if cut < len(parts) - 1 or m.isdir():
                            hidden.add("/".join(parts[:cut + 1]))
                        else:
                            hidden_files += 1
                    elif m.isfile():
                        data[name] = tar.extractfile(m).read()
                    elif m.issym():
                        links[name] = os.path.normpath(os.path.join(os.path.dirname(name), m.linkname))
                    elif m.islnk():
                        links[name] = _member_name(m.linkname)
                    elif m.isdir():
                        dirs.add(name)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise UserError(f"{root}: not a readable tar archive ({e}); check the file is complete")
        broken = []
        for name, target in sorted(links.items()):
            for _ in range(8):  # a link to a link
                if target not in links:
                    break
                target = links[target]
            inside = [] if target in data else [n for n in data if n.startswith(target + "/")]
            if target in data:
                data[name], self._targets[name] = data[target], target
            elif inside:  # a link to a folder: its files under the link's name
                dirs.add(name)
                for n in inside:
                    data[name + n[len(target):]], self._targets[name + n[len(target):]] = data[n], n
            else:
                broken.append(name)
        skip_notes(notes, hidden, hidden_files, [], broken)
        names = sorted(data)
        top = {n.split("/")[0] for n in names}  # one top folder wrapping everything: strip it
        if len(top) == 1 and all("/" in n for n in names) and not {"train", "test"} & top:
            cut = len(next(iter(top))) + 1
            data = {n[cut:]: b for n, b in data.items()}
            self._targets = {n[cut:]: t[cut:] for n, t in self._targets.items()}
            dirs = {d[cut:] for d in dirs if len(d) > cut}
        self._bytes, self.paths, self.dirs = data, sorted(data), dirs

    def reader(self, rel: str) -> Callable[[], bytes]:
        if self._bytes is None:
            return lambda: (self.root / rel).read_bytes()
        return lambda: self._bytes[rel]

    def display(self, rel: str) -> str:
        return str(self.root / rel)

    def identity(self, rel: str) -> str:
        """The file behind `rel`: its real path, or in an archive the member a link points to."""
        if self._bytes is None:
            return self._real[rel]
        return self._targets.get(rel, rel)


def read_image_folder(spec: str, problems: Problems, classes: list[str] | None = None,
                      image_size: int | None = None) -> Source:
    """`train/<class>/*`, optional `test/<class>/*` and `val/<class>/*`, optional
    `unlabeled/**` or `train/unlabeled/**`; or just `<class>/*` at the top (then everything is
    training data). Links are followed and hidden files and folders skipped (`walk_folder`)."""
    root = Path(spec)
    notes: list[str] = []
    files = Files(root, problems, notes)
    top = {p.split("/")[0] for p in files.paths}
    layout = "train" in top
    entries: list[Entry] = []
    skipped, outside, unlabeled_in = 0, [], Counter()
    for rel in files.paths:
        parts = rel.split("/")
        if not is_image(rel):
            skipped += 1
            continue
        split, label = "train", None
        if parts[0] == "unlabeled" and len(parts) >= 2:
            label = ""
        elif parts[0] in ("train", "test", "val") and len(parts) >= 3:
            split, label = parts[0], parts[1]
        elif not layout and len(parts) >= 2 and parts[0] not in ("test", "val"):
            label = parts[0]
        if label is None:
            outside.append(rel)
            continue
        if label == "unlabeled":
            unlabeled_in[split] += 1
            if split != "train":
                continue
            label = ""
        entries.append(Entry(split, rel, label, files.display(rel), files.identity(rel)))
    for split in ("test", "val"):
        if unlabeled_in[split]:
            problems.add(f"{root / split / 'unlabeled'}: {unlabeled_in[split]} images without labels in the {split} "
                         "split, which cannot be scored; move them to unlabeled/ or into class folders")
    if unlabeled_in["train"]:
        notes.append(f"read train/unlabeled/ as {unlabeled_in['train']} unlabeled images (not a class)")
    if outside:
        notes.append(f"skipped {len(outside)} images outside the class folders (first: {outside[0]}); "
                     f"a class is a folder, {'train/' if layout else ''}<class>/")
    if skipped:
        notes.append(f"skipped {skipped} files that are not images (by extension)")
    base = "train/" if layout else ""
    with_images = {"/".join(e.key.split("/")[:2 if layout else 1]) for e in entries}
    for d in sorted(files.dirs):
        cls = d[len(base):] if d.startswith(base) else ""
        if cls and "/" not in cls and cls not in ("unlabeled", "test", "val") and d not in with_images:
            problems.add(f"{root / d}: class folder has no images; add images or remove the folder")
    found = sorted({e.label for e in entries if e.label})
    if classes is None:
        classes = found
    else:
        for c in sorted(set(found) - set(classes)):
            problems.add(f"{root}: folder '{c}' is not one of --classes {','.join(classes)}")
    if not classes:
        raise UserError(f"{root}: no class folders with images found; expected train/<class>/*.png "
                        "(or <class>/*.png)")
    entries = one_entry_per_file(entries, lambda e: e.where, problems)
    splits, on_disk = decode_splits(entries, {c: i for i, c in enumerate(classes)}, files.reader, files.display,
                                     problems, notes, image_size)
    if "train" not in splits or len(splits["train"].x) == 0:
        raise UserError(f"{root}: no readable training images")
    return Source(root.name, "image folder" + (" (tar)" if not root.is_dir() else ""), classes,
                  splits["train"], splits.get("test"), splits.get("val"),
                  flip=splits["train"].x.shape[1] == 3, notes=notes, size_on_disk=on_disk)


def detect(spec: str) -> bool:
    p = Path(spec)
    if p.is_file():
        return p.name.lower().endswith((".tar", ".tar.gz", ".tgz"))
    return p.is_dir() and ((p / "train").is_dir() or any(d.is_dir() for d in p.iterdir()))


FORMAT = Format("folder", "classify", "a classification image folder (class subfolders)", detect,
                read_image_folder)
