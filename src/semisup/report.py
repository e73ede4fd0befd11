"""Plots of a run: loss and accuracy against steps; image grids; segmentation overlays. Each
file is written atomically (`atomic_write`): a reader or a killed run never sees half a PNG."""
from __future__ import annotations

from pathlib import Path

from .engine.runfolder import atomic_write


def plot_curves(rows: list[dict], path: Path, title: str = "") -> None:
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for k in sorted(k for k in rows[-1] if k.startswith("loss")):
        a.plot(steps, [r.get(k) for r in rows], label=k)
    a.set_xlabel("step"), a.set_ylabel("training loss"), a.legend(), a.set_yscale("log")
    for k in ("test_accuracy", "val_accuracy", "test_miou", "val_miou", "mask_rate", "pseudo_label_accuracy"):
        if k in rows[-1]:
            b.plot(steps, [r.get(k) for r in rows], label=k.replace("_", " "))
    b.set_xlabel("step"), b.set_ylim(0, 1), b.legend(), b.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    try:
        atomic_write(Path(path), lambda p: fig.savefig(p, dpi=100, format="png"))
    finally:
        plt.close(fig)


def save_grid(images, path: Path, nrow: int = 10, pad: int = 1) -> None:
    """Images N x C x H x W in [0, 1] as one PNG grid of `nrow` per row, written atomically."""
    import numpy as np
    from PIL import Image

    x = images.detach().float().clamp(0, 1).cpu().numpy()
    n, c, h, w = x.shape
    rows = -(-n // nrow)
    grid = np.ones((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), dtype=np.float32)
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = x[i]
    arr = (grid.transpose(1, 2, 0) * 255).round().astype(np.uint8)
    img = Image.fromarray(arr[..., 0] if c == 1 else arr[..., :3])
    atomic_write(Path(path), lambda p: img.save(p, format="PNG"))


def save_contact_sheet(images, titles: list[str], path: Path, ncol: int = 10) -> None:
    """uint8 images N x C x H x W as a sheet of thumbnails, `ncol` a row, each under its title,
    written atomically (`semisup suggest`'s picks.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    ncol = max(1, min(ncol, n))
    nrow = max(1, -(-n // ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.4 * ncol, 1.6 * nrow), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles):
        a = img.permute(1, 2, 0).cpu().numpy()
        gray = a.shape[2] == 1
        ax.imshow(a[..., 0] if gray else a[..., :3], cmap="gray" if gray else None, vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    try:
        atomic_write(Path(path), lambda p: fig.savefig(p, dpi=100, format="png"))
    finally:
        plt.close(fig)


def colorize(masks, palette):
    """Index masks (..., H, W) as RGB uint8 (..., H, W, 3); ignored pixels (255) are gray."""
    import numpy as np

    lut = np.full((256, 3), 128, dtype=np.uint8)
    lut[:len(palette)] = np.asarray(palette, dtype=np.uint8)
    return lut[np.asarray(masks)]


def save_seg_examples(images, masks, preds, palette, path: Path) -> None:
    """One row per image: the image, its ground truth, the prediction (uint8 N x C x H x W
    images, N x H x W masks), written atomically."""
    import numpy as np
    from PIL import Image

    x = np.asarray(images).transpose(0, 2, 3, 1)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, -1)
    gap = lambda r: np.full((r.shape[0], 2, 3), 255, np.uint8)  # noqa: E731
    rows = [np.concatenate([x[i], gap(x[i]), colorize(masks[i], palette), gap(x[i]), colorize(preds[i], palette)], 1)
            for i in range(len(x))]
    grid = np.concatenate([np.concatenate([r, np.full((2, r.shape[1], 3), 255, np.uint8)]) for r in rows])
    atomic_write(Path(path), lambda p: Image.fromarray(grid).save(p, format="PNG"))
