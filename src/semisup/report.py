"""Plots of a run: loss and accuracy against steps."""
from __future__ import annotations

from pathlib import Path


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
    for k in ("test_accuracy", "val_accuracy", "mask_rate", "pseudo_label_accuracy"):
        if k in rows[-1]:
            b.plot(steps, [r.get(k) for r in rows], label=k.replace("_", " "))
    b.set_xlabel("step"), b.set_ylim(0, 1), b.legend(), b.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = Path(path).with_name(Path(path).name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


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
    tmp = Path(path).with_name(Path(path).name + ".tmp.png")
    img.save(tmp)
    tmp.replace(path)
