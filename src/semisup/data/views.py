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


# Three colour ops of kornia 0.9's, in fewer tensor ops (its argument checks, dtype and device
# moves are per call): on 32 MNIST images (the share of 224 that draws one op) equalize 0.81 ->
# 0.47 ms, sharpness 0.75 -> 0.36, posterize 0.27 -> 0.08; tests/test_views.py holds them to
# kornia's images.
def _equalize(x: torch.Tensor) -> torch.Tensor:
    """PIL's ImageOps.equalize of each channel of each image, on the 8-bit levels (x * 255).long():
    a level maps to (the count below it + step // 2) // step, step = (count - the top level's
    count) // 255; a channel whose step is 0 stays as it is (kornia.enhance.equalize). As kornia
    0.9.2 reads them, 255 is raised by 2^-21 (relative) in float32 and float64, so that k / 255
    rounded a unit low (x * (1 / 255), as CUDA divides) still reads level k, not k - 1."""
    b, c, h, w = x.shape
    scale = 255 * (1 + 2 ** -21) if x.dtype in (torch.float32, torch.float64) else 255
    level = (x * scale).long().view(b * c, h * w)
    ones = torch.ones(b * c, h * w, device=x.device)  # float32 counts: exact to 2^24 pixels a channel
    hist = torch.zeros(b * c, 256, device=x.device).scatter_add_(1, level, ones)
    step = torch.div(hist.sum(1, keepdim=True) - hist.gather(1, level.amax(1, keepdim=True)), 255, rounding_mode="floor")
    lut = torch.div(hist.cumsum(1) - hist + torch.div(step, 2, rounding_mode="floor"), step.clamp(min=1),
                    rounding_mode="floor").clamp_(0, 255)
    return torch.where(step > 0, lut.gather(1, level).div_(255).to(x.dtype), x.reshape(b * c, -1)).view(b, c, h, w)


def _sharpness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance.Sharpness (kornia.enhance.sharpness): blend with the image smoothed by
    the 3x3 kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 (a 3x3 box sum plus 4x the centre), its
    border pixels unsmoothed. Images of at least 3x3."""
    smooth = x.clone()
    smooth[..., 1:-1, 1:-1] = (F.avg_pool2d(x, 3, 1) * 9 + 4 * x[..., 1:-1, 1:-1]).div_(13).clamp_(0, 1)
    return _blend(x, smooth, f)


def _posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """PIL's ImageOps.posterize (kornia.enhance.posterize): the top `bits` bits (per image) of the
    8-bit levels (x * 255) truncated; 8 bits keep the image as it is."""
    keep = (255 << (8 - bits)).to(torch.uint8).view(-1, 1, 1, 1)
    kept = ((x * 255).to(torch.uint8) & keep).to(x.dtype).div_(255)
    return torch.where(bits.view(-1, 1, 1, 1) < 8, kept, x)


def _affine(x: torch.Tensor, angle, shear_x, shear_y, tx, ty, flip, pad: str) -> torch.Tensor:
    """Flip, rotate (degrees), shear and translate (pixels) about the centre, per image, in one
    bilinear warp: kornia's `warp_affine` (align_corners) of the matrix T C R S F C^-1 (T the
    translation, C the move to the centre, F the flip), whose sampling grid is built here from the
    2x2 inverse in closed form and one matrix product with the pixel grid, in about 20 ops on
    (b,) vectors: kornia's eager grid took 3.5 ms for 224 MNIST images on 2 CPU threads; five
    composed 3x3 matrices and batched inverses, 0.79 ms for 96 digits, this 0.61 (0.04 of it the
    sampling itself)."""
    b, _, h, w = x.shape
    a = torch.deg2rad(angle)
    cos, sin, fl = torch.cos(a), torch.sin(a), 1 - 2 * flip
    # A = R S F, then its inverse: an output pixel p reads the input at A^-1 (p - c - t) + c
    a11, a12 = (cos - sin * shear_y) * fl, cos * shear_x - sin
    a21, a22 = (sin + cos * shear_y) * fl, sin * shear_x + cos
    det = a11 * a22 - a12 * a21
    i11, i12, i21, i22 = a22 / det, -a12 / det, -a21 / det, a11 / det
    cx, cy = (w - 1) / 2, (h - 1) / 2
    ox, oy = cx + tx, cy + ty  # where the centre goes
    # the sampling positions in grid_sample's [-1, 1] (align_corners): k * pixel - 1, per axis
    kx, ky = 2 / max(w - 1, 1), 2 / max(h - 1, 1)
    theta = torch.stack([i11 * kx, i12 * kx, (cx - i11 * ox - i12 * oy) * kx - 1,
                         i21 * ky, i22 * ky, (cy - i21 * ox - i22 * oy) * ky - 1], 1).view(b * 2, 3)
    xs = torch.arange(w, device=x.device, dtype=theta.dtype)
    ys = torch.arange(h, device=x.device, dtype=theta.dtype)
    pixels = torch.stack([xs.repeat(h), ys.repeat_interleave(w), torch.ones(h * w, device=x.device)])
    grid = (theta @ pixels).view(b, 2, h, w).permute(0, 2, 3, 1)  # x, y last, as a view
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
        x = apply("equalize", lambda y, i: _equalize(y))
        f = u(0.05, 0.95)
        x = apply("brightness", lambda y, i: _blend(y, torch.zeros_like(y), f[i]))
        if c == 3:
            f = u(0.05, 0.95)
            x = apply("color", lambda y, i: _blend(y, _gray(y).expand_as(y), f[i]))
        f = u(0.05, 0.95)
        x = apply("contrast", lambda y, i: _blend(y, _gray(y).mean((1, 2, 3), keepdim=True).expand_as(y), f[i]))
        f = u(0.05, 0.95)
        x = apply("sharpness", lambda y, i: _sharpness(y, f[i]))
        bits = torch.randint(4, 9, (b,), device=dev)
        x = apply("posterize", lambda y, i: _posterize(y, bits[i]))
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
