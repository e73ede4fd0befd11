"""Views made on the device, for whole batches at once, with kornia's tensor ops.

`weak`: a random shift of up to 12.5% of the side (and a horizontal flip where the data
allows one). `strong`: the weak view, then RandAugment as FixMatch uses it (Sohn et al. 2020,
Table 12: two ops drawn per image from 14, each with a random magnitude) and Cutout.
Every image gets its own draw; nothing loops over images and nothing waits on the host.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import kornia
import torch
import torch.nn.functional as F

# the FixMatch RandAugment pool (the geometric ones are folded into one affine warp)
COLOR_OPS = ("identity", "autocontrast", "equalize", "brightness", "color", "contrast",
             "sharpness", "posterize", "solarize")
GEOM_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
OPS = COLOR_OPS + GEOM_OPS


def _blend(x: torch.Tensor, degenerate: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance: degenerate + f * (x - degenerate), f per image."""
    return (degenerate + f.view(-1, 1, 1, 1) * (x - degenerate)).clamp_(0, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return kornia.color.rgb_to_grayscale(x) if x.shape[1] == 3 else x


def _affine(x: torch.Tensor, angle, shear_x, shear_y, tx, ty, flip, pad: str) -> torch.Tensor:
    """One warp per batch: flip, rotate (degrees), shear and translate (pixels) about the centre."""
    b, _, h, w = x.shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    a = torch.deg2rad(angle)
    cos, sin = torch.cos(a), torch.sin(a)
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rot = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1),
                       torch.stack([zero, zero, one], -1)], 1)
    shear = torch.stack([torch.stack([one, shear_x, zero], -1), torch.stack([shear_y, one, zero], -1),
                         torch.stack([zero, zero, one], -1)], 1)
    fl = torch.diag_embed(torch.stack([1 - 2 * flip, one, one], -1))
    center = torch.eye(3, device=x.device).repeat(b, 1, 1)
    center[:, 0, 2], center[:, 1, 2] = cx, cy
    back = torch.eye(3, device=x.device).repeat(b, 1, 1)
    back[:, 0, 2], back[:, 1, 2] = -cx, -cy
    m = center @ rot @ shear @ fl @ back
    m[:, 0, 2] += tx
    m[:, 1, 2] += ty
    return _warp(x, m, pad)


def _warp(x: torch.Tensor, m: torch.Tensor, pad: str) -> torch.Tensor:
    """kornia's `warp_affine(x, m[:, :2], (h, w), padding_mode=pad)` (bilinear, align_corners), with
    the sampling grid from one matrix product of the pixel grid and every image's matrix: kornia's
    eager path makes it from eight whole-grid products and sums, and `F.affine_grid` from a batched
    product of tiny matrices (3.5 and 4.0 ms for 224 MNIST images on 2 CPU threads; this, 0.1 ms)."""
    b, c, h, w = x.shape
    to_unit = torch.tensor([[2 / max(w - 1, 1), 0, -1], [0, 2 / max(h - 1, 1), -1], [0, 0, 1]],
                           device=x.device, dtype=m.dtype)
    theta = (to_unit @ torch.linalg.inv(m) @ torch.linalg.inv(to_unit))[:, :2]  # output pixel -> input, in [-1, 1]
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=m.dtype) if w > 1 else torch.zeros(1, device=x.device)
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=m.dtype) if h > 1 else torch.zeros(1, device=x.device)
    pixels = torch.stack([xs.repeat(h), ys.repeat_interleave(w), torch.ones(h * w, device=x.device)], 1)
    grid = (theta.reshape(b * 2, 3) @ pixels.T).view(b, 2, h, w).permute(0, 2, 3, 1)  # x, y last, as a view
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode=pad, align_corners=True)


def _shift_whole(x: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor, flip: torch.Tensor, p: int,
                 pad: str) -> torch.Tensor:
    """`_affine` for a flip and whole-pixel shifts of at most `p` (< the side) only, by indexing
    instead of a bilinear warp: the warp's images with its sampling positions on the pixel grid
    exactly (the warp's own land within 4e-6 of them), 3x faster on a CPU. Each image is padded
    by p, then read at its own offsets."""
    b, _, h, w = x.shape
    xp = F.pad(x, (p, p, p, p), mode="reflect" if pad == "reflection" else "constant")
    j = torch.arange(w, device=x.device)
    src = j - tx.view(-1, 1)
    cols = torch.where(flip.view(-1, 1), w - 1 - src, src) + p
    rows = torch.arange(h, device=x.device) - ty.view(-1, 1) + p
    idx = torch.arange(b, device=x.device).view(-1, 1, 1)
    return xp.permute(0, 2, 3, 1)[idx, rows.view(b, h, 1), cols.view(b, 1, w)].permute(0, 3, 1, 2)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 images as float in [0, 1]: the evaluation view ("none") of every task."""
    return x.float().div_(255)


@dataclass
class ViewMaker:
    """Turns a batch of uint8 images into float views in [0, 1] named by the method (the network
    normalises its input itself: models/norm.py)."""

    flip: bool = False  # horizontal flips keep the class (natural images, not digits)
    translate: float = 0.125  # weak shift, as a share of the side
    pad: str = "zeros"  # "reflection" for natural images (FixMatch), "zeros" for digits
    ra_ops: int = 2  # RandAugment: ops per image
    cutout: float = 0.5  # largest Cutout side, as a share of the image side
    geometry: float = 1.0  # scale of RandAugment's rotate/shear/translate magnitudes

    def __call__(self, x: torch.Tensor, view: str) -> torch.Tensor:
        """`view` is none, weak or strong; a trailing digit names another draw of the same
        kind (weak2: a second weak view of the same images)."""
        x = to_unit(x)
        view = view.rstrip("0123456789")
        if view == "weak":
            x = self.weak(x)
        elif view == "strong":
            x = self.strong(x)
        elif view != "none":
            raise ValueError(f"unknown view {view!r}")
        return x

    def make(self, x: torch.Tensor, views: tuple[str, ...], target: torch.Tensor | None = None):
        """The named views of a uint8 batch, each its own draw; the targets pass unchanged (the
        segmentation view maker warps masks with the images)."""
        return {v: self(x, v) for v in views}, target

    def _shift(self, x: torch.Tensor, extra=None) -> torch.Tensor:
        b, _, h, w = x.shape
        dev = x.device
        r = lambda lim: (torch.rand(b, device=dev) * 2 - 1) * lim  # noqa: E731
        tx = torch.round(r(self.translate * w))
        ty = torch.round(r(self.translate * h))
        flip = (torch.rand(b, device=dev) < 0.5).float() if self.flip else torch.zeros(b, device=dev)
        p = math.ceil(self.translate * max(h, w))  # the largest whole-pixel shift drawn
        if extra is None and p < min(h, w):
            return _shift_whole(x, tx.long(), ty.long(), flip.bool(), p, self.pad)
        zero = torch.zeros(b, device=dev)
        angle, sx, sy, etx, ety = extra if extra is not None else (zero,) * 5
        return _affine(x, angle, sx, sy, tx + etx * w, ty + ety * h, flip, self.pad)

    def weak(self, x: torch.Tensor) -> torch.Tensor:
        return self._shift(x)

    def strong(self, x: torch.Tensor, subsets: bool | None = None) -> torch.Tensor:
        """`subsets` (default: on a CPU) computes each colour op only on the images that drew it
        and writes them back; otherwise every op runs on the whole batch and `torch.where` keeps
        the drawn ones, which needs no host sync on a GPU. The two give the same images."""
        b, c, h, w = x.shape
        dev = x.device
        subsets = dev.type == "cpu" if subsets is None else subsets
        if subsets:
            x = x.clone()  # written in place, op by op, below
        picks = torch.randint(len(OPS), (b, self.ra_ops), device=dev)
        on = {op: (picks == i).any(1) for i, op in enumerate(OPS)}
        u = lambda lo, hi: lo + (hi - lo) * torch.rand(b, device=dev)  # noqa: E731
        sign = lambda: torch.where(torch.rand(b, device=dev) < 0.5, -1.0, 1.0)  # noqa: E731

        def apply(op: str, f) -> torch.Tensor:
            """x with op f(images, their positions) on the images that drew op."""
            if not subsets:
                return torch.where(on[op].view(-1, 1, 1, 1), f(x, slice(None)), x)
            i = on[op].nonzero().squeeze(1)
            return x.index_copy_(0, i, f(x[i], i)) if len(i) else x  # x: this call's own copy

        def autocontrast(y, i):
            lo, hi = y.amin((2, 3), keepdim=True), y.amax((2, 3), keepdim=True)
            return torch.where(hi > lo, (y - lo) / (hi - lo).clamp_min(1e-6), y)

        # colour ops, in the pool's order; each op's random factors are drawn for the whole batch
        x = apply("autocontrast", autocontrast)
        x = apply("equalize", lambda y, i: kornia.enhance.equalize(y))
        f = u(0.05, 0.95)
        x = apply("brightness", lambda y, i: _blend(y, torch.zeros_like(y), f[i]))
        if c == 3:
            f = u(0.05, 0.95)
            x = apply("color", lambda y, i: _blend(y, _gray(y).expand_as(y), f[i]))
        f = u(0.05, 0.95)
        x = apply("contrast", lambda y, i: _blend(y, _gray(y).mean((1, 2, 3), keepdim=True).expand_as(y), f[i]))
        f = u(0.05, 0.95)
        x = apply("sharpness", lambda y, i: kornia.enhance.sharpness(y, f[i]))
        bits = torch.randint(4, 9, (b,), device=dev)
        x = apply("posterize", lambda y, i: kornia.enhance.posterize(y, bits[i]))
        f = u(0.0, 1.0)
        x = apply("solarize", lambda y, i: kornia.enhance.solarize(y, f[i]))
        # geometric ops, with the weak view's shift and flip, in one warp
        z = lambda op, v: v * on[op]  # noqa: E731
        g = self.geometry
        geom = (z("rotate", u(-30, 30) * g), z("shear_x", u(-0.3, 0.3) * g), z("shear_y", u(-0.3, 0.3) * g),
                z("translate_x", sign() * u(0, 0.3) * g), z("translate_y", sign() * u(0, 0.3) * g))
        x = self._shift(x, geom)
        # Cutout: a grey square of side up to `cutout` of the image, anywhere, on every image
        side = u(0, self.cutout) * h
        cy, cx = u(0, h), u(0, w)
        ys = torch.arange(h, device=dev).view(1, h, 1)
        xs = torch.arange(w, device=dev).view(1, 1, w)
        hole = ((ys - cy.view(-1, 1, 1)).abs() <= side.view(-1, 1, 1) / 2) & \
               ((xs - cx.view(-1, 1, 1)).abs() <= side.view(-1, 1, 1) / 2)
        return x.masked_fill(hole.unsqueeze(1), 0.5)


def view_maker_for(data, **overrides) -> ViewMaker:
    """Per-dataset defaults: natural (colour) images flip and reflect-pad; digits do neither.
    On tiny images (under 16 px) Cutout's largest hole is a quarter of the side, not half:
    a half-side hole on an 8x8 digit erases a quarter of it (on digits, 97.1% against 96.7%,
    seeds 0-2: docs/benchmarks.md)."""
    natural = data.source.flip
    opts = dict(flip=natural, pad="reflection" if natural else "zeros")
    if min(data.source.shape[1:]) < 16:
        opts["cutout"] = 0.25
    opts.update({k: v for k, v in overrides.items() if v is not None})
    return ViewMaker(**opts)
