"""Class-conditional generation: a generator p(x|y) learned with a classifier p(y|x) from
classification data. The classifier is scored and selected as in classification; where every
training label is known, each evaluation also scores the generator (`evaluator.GenEvaluator`)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError
from .classify import Classify


class Generate(Classify):
    name = "generate"
    noun = "generation"
    defaults = dict(method="triple_gan")
    suggest_strategies = ()
    no_suggest = ("a generation run; `semisup suggest` ranks images for a classification run (or, with margin or "
                  "entropy, a segmentation run)")

    def evaluator(self, data, device, seed: int):
        from ..evaluator import GenEvaluator

        return GenEvaluator(data, device, seed)

    def summary_line(self, summary: dict) -> str:
        m = summary["metrics"]
        if "local_fid" in m:
            gen = (f", conditional accuracy {m['conditional_accuracy']:.4f}, local FID {m['local_fid']:.2f} "
                   f"(floor {m['local_fid_floor']:.2f})")
        else:
            gen = f"; generation metrics unavailable: {summary['evaluator']['unavailable']}"
        return super().summary_line(summary) + gen

    def sample(self, run_dir: str, ckpt: dict, per_class: int, out: str | None, seed: int):
        """Images from the generator, `per_class` of each class from noise drawn from `seed`: a PNG
        grid with one row per class (OUT ending in .png, the default RUN_DIR/sample_grid.png), or
        OUT/<class>/<i>.png."""
        from ..engine.runfolder import atomic_write, check_writable
        from ..methods import get_method
        from ..report import save_grid

        if per_class < 1:
            raise UserError(f"--per-class {per_class}: must be at least 1")
        meta = ckpt["meta"]
        cfg, k = meta["config"], len(meta["classes"])
        cls = get_method(cfg["method"], self.name)
        shape = (meta["channels"], *meta["size"])
        hp = cls.Hyper(**{f.name: cfg[f.name] for f in cls.hyper_fields()})
        method = cls(self.build_model(meta["model"], shape, k), k, hp, shape=shape)
        method.load_state_dict(ckpt["method"])
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(k).repeat_interleave(per_class)
        x = method.generate(y, torch.randn(len(y), method.z_dim, generator=g))
        dest = Path(out) if out else Path(run_dir) / "sample_grid.png"
        check_writable(dest.parent if dest.suffix.lower() == ".png" else dest, f"--out {dest}")
        if dest.suffix.lower() == ".png":
            if dest.is_dir():
                raise UserError(f"--out {dest}: is a folder; give a .png file name for the grid, or a folder name "
                                "without .png for one file per image")
            dest.parent.mkdir(parents=True, exist_ok=True)
            save_grid(x, dest, nrow=per_class)
            return dest, len(x)
        from PIL import Image

        _check_sample_folder(dest, meta["classes"])
        for i, (img, c) in enumerate(zip(x, y.tolist())):
            folder = dest / meta["classes"][c]
            folder.mkdir(parents=True, exist_ok=True)
            arr = (img.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
            pic = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
            atomic_write(folder / f"{i % per_class:04d}.png", lambda p: pic.save(p, format="PNG"))
        return dest, len(x)


def _check_sample_folder(dest: Path, classes: list[str]) -> None:
    """Refuse, before writing, a folder holding anything but what `sample` writes there
    (<class>/<NNNN>.png): its images would be replaced or mixed with the user's files."""
    import re

    if dest.exists() and not dest.is_dir():
        raise UserError(f"--out {dest}: is a file; give a folder, or a .png file name for a grid")
    if not dest.is_dir():
        return
    ours = re.compile(r"\d{4}\.png")
    for p in sorted(dest.rglob("*")):
        rel = p.relative_to(dest).parts
        if not (len(rel) == 1 and rel[0] in classes and p.is_dir()) and not (
                len(rel) == 2 and rel[0] in classes and ours.fullmatch(rel[1]) and p.is_file()):
            raise UserError(f"--out {dest}: holds {p}, which `semisup sample` did not write; choose a new or empty "
                            "folder")
