"""The two-class "cells" folder data set of docs/benchmarks.md: 64x64 RGB images, foreground =
ellipses of random colour, background = an unevenly lit noisy field with rectangles of random
colour as distractors; binary masks (0 background, 255 cell) in `images/` + `masks/` folders,
400 train / 50 val / 100 test. Foreground is the minority class (10.7% of the pixels),
and colour tells nothing: a cell is told from a distractor by its outline.

    python bench/cells.py [OUT]          # default: bench/out/cells-data
    semisup train --task segment --data OUT --labels 20
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 64
SPLITS = {"train": 400, "val": 50, "test": 100}


def cell_image(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image (H, W, 3) uint8 and its mask (H, W) uint8, 0/255."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    # uneven lighting: a random linear ramp plus a broad bright spot, on a random base colour
    base = rng.uniform(60, 160, 3)
    ramp = rng.uniform(-0.8, 0.8, 2) @ np.stack([xx - SIZE / 2, yy - SIZE / 2]).reshape(2, -1)
    cy, cx = rng.uniform(0, SIZE, 2)
    spot = 50 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (SIZE / 3) ** 2))
    img = base + (ramp.reshape(SIZE, SIZE) + spot)[..., None]
    for _ in range(rng.integers(1, 4)):  # distractors: rectangles, background
        h, w = rng.integers(5, 18, 2)
        y0, x0 = rng.integers(0, SIZE - h), rng.integers(0, SIZE - w)
        img[y0:y0 + h, x0:x0 + w] = rng.uniform(0, 255, 3)
    mask = np.zeros((SIZE, SIZE), bool)
    for _ in range(rng.integers(1, 5)):  # cells: rotated ellipses
        cy, cx = rng.uniform(8, SIZE - 8, 2)
        a, b = rng.uniform(5, 13), rng.uniform(4, 9)
        t = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
        v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        inside = (u / a) ** 2 + (v / b) ** 2 <= 1
        img[inside] = rng.uniform(0, 255, 3)
        mask |= inside
    img = img + rng.normal(0, 18, img.shape)
    return img.clip(0, 255).astype(np.uint8), mask.astype(np.uint8) * 255


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "out" / "cells-data")
    rng = np.random.default_rng(0)
    fg = []
    for split, n in SPLITS.items():
        for d in ("images", "masks"):
            (out / split / d).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, mask = cell_image(rng)
            Image.fromarray(img).save(out / split / "images" / f"{i:04d}.png")
            Image.fromarray(mask).save(out / split / "masks" / f"{i:04d}.png")
            fg.append(mask.mean() / 255)
    print(f"{out}: {sum(SPLITS.values())} images, foreground {100 * np.mean(fg):.1f}% of the pixels")


if __name__ == "__main__":
    main()
