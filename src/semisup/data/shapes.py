"""The built-in `shapes` segmentation data: 48x48 RGB images of 2-5 random shapes (circle,
square, triangle, ring) on textured backgrounds, with exact masks. Colour and texture are
random per shape, so only the outline tells the class; later shapes occlude earlier ones and
the mask follows. Generated from a fixed seed in well under a second, vectorised over images;
`formats/builtin.py` reads it as a `Source`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CLASSES = ["background", "circle", "square", "triangle", "ring"]
PALETTE = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200)]
SPLITS = {"train": 1000, "val": 100, "test": 200}


def make_shapes(n: int, size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, size, size, 3) uint8, masks (n, size, size) uint8 class indices)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)

    def u(lo, hi, shape):  # float32 throughout: half the work of float64
        return rng.uniform(lo, hi, shape).astype(np.float32)

    def waves(amp: float) -> np.ndarray:  # (n, size, size): random direction, period and strength
        th, ph = u(0, np.pi, (n, 1, 1)), u(0, 2 * np.pi, (n, 1, 1))
        f = u(0.08, 0.6, (n, 1, 1))  # radians per pixel
        return u(0, amp, (n, 1, 1)) * np.sin(f * (xx * np.cos(th) + yy * np.sin(th)) + ph)

    # background: two colours blended by smooth noise, a wave and a gradient
    c0, c1 = u(0, 255, (2, n, 1, 1, 3))
    noise = F.interpolate(torch.from_numpy(u(-1, 1, (n, 1, 4, 4))),
                          size=(size, size), mode="bilinear", align_corners=True)[:, 0].numpy()
    grad = u(-1, 1, (2, n, 1, 1)) / size
    t = 0.5 + 0.4 * noise + 0.3 * waves(1.0) + grad[0] * (xx - size / 2) + grad[1] * (yy - size / 2)
    img = c0 + (c1 - c0) * np.clip(t, 0, 1)[..., None]
    bg = img.mean((1, 2), keepdims=True)
    mask = np.zeros((n, size, size), np.uint8)
    count = rng.integers(2, 6, (n, 1, 1))
    for slot in range(5):  # painted in order: a later shape occludes the earlier ones
        cls = rng.integers(1, 5, (n, 1, 1))
        cy, cx = u(4, size - 4, (2, n, 1, 1))
        r = u(5, 12, (n, 1, 1))
        rot = u(0, 2 * np.pi, (n, 1, 1))
        dy, dx = yy - cy, xx - cx
        d = np.hypot(dx, dy)
        # square and triangle: a regular n-gon of circumradius R holds the points where
        # d * cos(angle to the nearest edge's normal) < R * cos(pi / n)
        sides = np.where(cls == 2, 4, 3).astype(np.float32)
        seg = np.float32(2 * np.pi) / sides
        rp = r * np.where(cls == 2, 1.25, 1.5).astype(np.float32)
        poly = d * np.cos(np.mod(np.arctan2(dy, dx) - rot, seg) - seg / 2) < rp * np.cos(seg / 2)
        inside = np.where(cls == 1, d < r, np.where(cls == 4, (d < r) & (d > 0.5 * r), poly)) & (slot < count)
        colour = u(0, 255, (n, 1, 1, 3))
        close = np.abs(colour - bg).sum(-1, keepdims=True) < 120  # keep the shape visible
        colour = np.where(close, 255 - colour, colour)
        fill = colour * (1 + waves(0.3))[..., None]
        img = np.where(inside[..., None], fill, img)
        mask = np.where(inside, cls, mask).astype(np.uint8)
    img = img + rng.standard_normal(img.shape, np.float32) * 6
    return np.clip(img, 0, 255).round().astype(np.uint8), mask

