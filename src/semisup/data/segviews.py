"""Segmentation views, batched on the device: geometry on image and mask together, colour on
the image only, and CutMix of unlabeled images with their pseudo-masks.

The recipe is UniMatch's (Yang et al. 2023, code `dataset/transform.py`): random rescale of
0.5-2.0x, a random crop of the training size (padding where the image is smaller; padded
mask pixels are ignored), horizontal flip; the strong view adds colour jitter (0.5, 0.5,
0.5, 0.25, p 0.8), grayscale (p 0.2) and Gaussian blur (sigma 0.1-2.0, p 0.5) to the weak
view's pixels, so a weak and a strong view of one image stay aligned pixel for pixel.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import kornia
import kornia.augmentation as K
import torch

from .types import IGNORE
from .views import to_unit


@dataclass
class SegViewMaker:
    """Views in [0, 1], as the classification views (the network normalises its input)."""

    crop: tuple[int, int]  # training crop (height, width)
    scale: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    _strong: torch.nn.Module | None = field(default=None, repr=False)

    def __call__(self, x: torch.Tensor, view: str = "none") -> torch.Tensor:
        """The evaluation view: the whole image."""
        if view != "none":
            raise ValueError("segmentation views are made with make(); only 'none' stands alone")
        return to_unit(x)

    def make(self, x: torch.Tensor, views: tuple[str, ...], masks: torch.Tensor | None = None):
        """One geometric draw per image shared by all `views` (weak, strong, strong2, ...) and
        the masks; returns ({view: images}, warped masks). Without masks (unlabeled
        images) the returned map is 0 inside the image and 255 where the crop fell outside it."""
        x = to_unit(x)
        if masks is None:
            masks = torch.zeros(x.shape[0], *x.shape[2:], dtype=torch.uint8, device=x.device)
        m = self._geometry(x)
        x = self._warp(x, m, "bilinear")
        # masks: nearest, and pixels from outside the image are ignored
        masks = self._warp(masks.unsqueeze(1).float() + 1, m, "nearest").squeeze(1).long() - 1
        masks = masks.masked_fill_(masks < 0, IGNORE)
        out = {}
        for v in views:
            kind = v.rstrip("0123456789")
            if kind not in ("weak", "strong"):
                raise ValueError(f"unknown view {v!r}")
            out[v] = self.strong(x) if kind == "strong" else x
        return out, masks

    def _geometry(self, x: torch.Tensor) -> torch.Tensor:
        """Source-to-crop affine matrices (B, 2, 3): rescale by s, crop at a random offset
        (the crop may hang over the edge of a rescaled image smaller than it), flip."""
        b, _, h, w = x.shape
        ch, cw = self.crop
        dev = x.device
        s = self.scale[0] + (self.scale[1] - self.scale[0]) * torch.rand(b, device=dev)
        ox = torch.rand(b, device=dev) * (s * w - cw)
        oy = torch.rand(b, device=dev) * (s * h - ch)
        flip = torch.rand(b, device=dev) < 0.5 if self.flip else torch.zeros(b, dtype=torch.bool, device=dev)
        sx = torch.where(flip, -s, s)
        tx = torch.where(flip, (cw - 1) + ox, -ox)
        zero = torch.zeros_like(s)
        return torch.stack([torch.stack([sx, zero, tx], -1), torch.stack([zero, s, -oy], -1)], 1)

    def _warp(self, x: torch.Tensor, m: torch.Tensor, mode: str) -> torch.Tensor:
        return kornia.geometry.transform.warp_affine(x, m, self.crop, mode=mode, padding_mode="zeros",
                                                     align_corners=True)

    def strong(self, x: torch.Tensor) -> torch.Tensor:
        if self._strong is None:
            c = x.shape[1]
            jitter = K.ColorJitter(0.5, 0.5, 0.5, 0.25, p=0.8) if c == 3 else K.ColorJitter(0.5, 0.5, p=0.8)
            ops = [jitter, *([K.RandomGrayscale(p=0.2)] if c == 3 else []),
                   K.RandomGaussianBlur((5, 5), (0.1, 2.0), p=0.5)]
            self._strong = torch.nn.Sequential(*ops)
        return self._strong(x).clamp(0, 1)


def cutmix_boxes(b: int, h: int, w: int, device, p: float = 0.5) -> torch.Tensor:
    """(B, H, W) bool boxes, UniMatch's `obtain_cutmix_box`: with probability p a box of
    2-40% of the area and aspect ratio 0.3-3.3 at a random place; otherwise empty."""
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(b, device=device)  # noqa: E731
    area = u(0.02, 0.4) * h * w
    ratio = torch.exp(u(torch.log(torch.tensor(0.3)).item(), torch.log(torch.tensor(1 / 0.3)).item()))
    bh = (area / ratio).sqrt().clamp(max=h)
    bw = (area * ratio).sqrt().clamp(max=w)
    y0, x0 = u(0, 1) * (h - bh), u(0, 1) * (w - bw)
    ys = torch.arange(h, device=device).view(1, h, 1)
    xs = torch.arange(w, device=device).view(1, 1, w)
    box = (ys >= y0.view(-1, 1, 1)) & (ys < (y0 + bh).view(-1, 1, 1)) & \
          (xs >= x0.view(-1, 1, 1)) & (xs < (x0 + bw).view(-1, 1, 1))
    return box & (torch.rand(b, device=device) < p).view(-1, 1, 1)


def cutmix(box: torch.Tensor, perm: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Paste, inside each image's box, the same region of image perm[i]: applied alike to
    images (B, C, H, W) and to per-pixel maps (B, H, W) such as pseudo-masks and confidences."""
    out = []
    for t in tensors:
        mask = box.unsqueeze(1) if t.ndim == 4 else box
        out.append(torch.where(mask, t[perm], t))
    return out


def seg_view_maker_for(data, image_size: int | None = None) -> SegViewMaker:
    """The crop is `--image-size` (square), by default the images' own size up to 256 px a side.
    Below 96 px the rescale range narrows to 0.8-1.25x: at half size a 5-pixel shape of the
    48-px `shapes` loses its outline (supervised U-Net, all 1,000 labels, 600 steps: test mean
    IoU 0.24 with 0.5-2.0x, 0.47 with 0.8-1.25x)."""
    h, w = data.source.shape[1:]
    crop = (image_size, image_size) if image_size else (min(h, 256), min(w, 256))
    scale = (0.8, 1.25) if min(h, w) < 96 else (0.5, 2.0)
    return SegViewMaker(crop, scale=scale, flip=data.source.flip)
