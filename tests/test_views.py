import torch

from semisup.data import views
from semisup.data.views import ViewMaker


def make(flip=False):
    return ViewMaker(flip=flip)


def test_views_are_pixels_in_0_1():
    """Views give [0, 1] images; the network normalises them (tests/test_models.py)."""
    x = torch.randint(0, 256, (16, 1, 12, 12), dtype=torch.uint8)
    vm = make()
    none = vm(x, "none")
    assert torch.equal(none, x.float() / 255)
    for v in ("weak", "strong"):
        out = vm(x, v)
        assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
        assert out.min() >= -1e-5 and out.max() <= 1 + 1e-5


def test_weak_is_a_whole_pixel_shift_without_flip():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 16, 16, dtype=torch.uint8)
    x[:, :, 6:10, 2:5] = 255  # an asymmetric bar left of centre
    out = make()(x, "weak")
    mass = out.sum((1, 2, 3))
    assert torch.allclose(mass, torch.full_like(mass, 12.0), atol=1e-3)  # shifted, not blurred or cut
    cols = (out[:, 0].sum(1) > 0).float()
    centre = (cols * torch.arange(16)).sum(1) / cols.sum(1)
    assert (centre < 8).all()  # never mirrored to the right half
    assert len(set(centre.tolist())) > 1  # each image has its own shift


def test_flip_when_allowed():
    torch.manual_seed(0)
    x = torch.zeros(64, 3, 16, 16, dtype=torch.uint8)
    x[:, :, 6:10, 0:3] = 255
    out = make(flip=True)(x, "weak")
    cols = (out[:, 0].sum(1) > 1e-3).float()
    centre = (cols * torch.arange(16)).sum(1) / cols.sum(1)
    assert (centre > 8).any() and (centre < 8).any()


def test_strong_differs_per_image_and_from_weak():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8).repeat(32, 1, 1, 1)
    vm = ViewMaker(flip=True)
    s = vm(x, "strong")
    distinct = {tuple(v.flatten()[:50].tolist()) for v in s}
    assert len(distinct) > 25  # per-image random ops and magnitudes
    assert (s - vm(x, "weak")).abs().mean() > 0.05


def test_strong_on_the_drawn_images_only_equals_the_whole_batch_select():
    """On a CPU each RandAugment colour op runs on the images that drew it; the result is the
    GPU path's (every op on every image, then torch.where), draw for draw, grey and colour."""
    for c in (1, 3):
        x = torch.randint(0, 256, (64, c, 12, 12), dtype=torch.uint8).float() / 255
        vm = ViewMaker(flip=c == 3)
        torch.manual_seed(1)
        sub = vm.strong(x, subsets=True)
        torch.manual_seed(1)
        whole = vm.strong(x, subsets=False)
        torch.testing.assert_close(sub, whole, rtol=0, atol=1e-6)
        assert (sub - x).abs().mean() > 0.05


def kornia_affine(x, angle, shear_x, shear_y, tx, ty, flip, pad):
    """The reference warp: kornia's `warp_affine` (bilinear, align_corners) of the matrix the
    views mean, composed of 3x3 matrices: translate, to the centre, rotate, shear, flip, back."""
    import kornia

    b, _, h, w = x.shape
    eye = lambda: torch.eye(3).repeat(b, 1, 1)  # noqa: E731
    a = torch.deg2rad(angle)
    rot, shear, fl, to_c, back = eye(), eye(), eye(), eye(), eye()
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = a.cos(), -a.sin(), a.sin(), a.cos()
    shear[:, 0, 1], shear[:, 1, 0] = shear_x, shear_y
    fl[:, 0, 0] = 1 - 2 * flip
    to_c[:, 0, 2], to_c[:, 1, 2] = (w - 1) / 2 + tx, (h - 1) / 2 + ty
    back[:, 0, 2], back[:, 1, 2] = -(w - 1) / 2, -(h - 1) / 2
    m = to_c @ rot @ shear @ fl @ back
    return kornia.geometry.transform.warp_affine(x, m[:, :2], (h, w), padding_mode=pad)


def test_the_indexed_weak_shift_equals_the_bilinear_warp():
    """The weak view reads whole-pixel shifts (and flips) by indexing; kornia's bilinear warp,
    which it replaces, gives the same images, zero and reflection padding, square and not,
    shifts up to the largest drawn."""
    from semisup.data.views import _shift_whole

    torch.manual_seed(0)
    for pad in ("zeros", "reflection"):
        for h, w in ((28, 28), (12, 20), (9, 7)):
            x = torch.rand(40, 3, h, w)
            p = max(-(-h // 8), -(-w // 8))  # ceil(0.125 * side), as the view maker draws
            tx, ty = torch.randint(-p, p + 1, (40,)), torch.randint(-p, p + 1, (40,))
            flip = torch.rand(40) < 0.5
            zero = torch.zeros(40)
            warp = kornia_affine(x, zero, zero, zero, tx.float(), ty.float(), flip.float(), pad)
            fast = _shift_whole(x, tx, ty, flip, p, pad)
            torch.testing.assert_close(fast, warp, rtol=0, atol=1e-5)
            assert not torch.equal(fast, x)


def test_the_warp_equals_kornias_warp_affine():
    """The strong view's rotate/shear/translate/flip warp builds its sampling grid itself; the
    images are kornia's `warp_affine`'s (bilinear, align_corners), both paddings, odd sizes too."""
    torch.manual_seed(0)
    for pad in ("zeros", "reflection"):
        for c, h, w in ((1, 28, 28), (3, 12, 20), (1, 9, 7), (1, 8, 8)):
            x, b = torch.rand(32, c, h, w), 32
            args = (torch.rand(b) * 60 - 30, torch.rand(b) * 0.6 - 0.3, torch.rand(b) * 0.6 - 0.3,
                    torch.randn(b) * 3, torch.randn(b) * 3, (torch.rand(b) < 0.5).float())
            ours = views._affine(x, *args, pad)
            torch.testing.assert_close(ours, kornia_affine(x, *args, pad), rtol=0, atol=1e-4)
            assert (ours - x).abs().mean() > 0.01


def test_the_colour_ops_equal_kornias():
    """equalize, sharpness and posterize are computed here in fewer ops than kornia's; their
    images are kornia's: grey and colour, odd sizes, every posterize bit count, flat and
    few-level images (equalize's step 0 and its rounding), factors across [0, 1]."""
    import kornia

    torch.manual_seed(0)
    images = [torch.rand(40, 1, 8, 8), torch.rand(30, 3, 9, 7), torch.rand(20, 3, 28, 28),
              torch.randint(0, 4, (40, 1, 8, 8)).float() / 255, torch.full((5, 1, 6, 6), 0.5),
              torch.randint(0, 256, (64, 1, 5, 5), dtype=torch.uint8).float() / 255]
    for x in images:
        b = len(x)
        f = torch.rand(b)
        bits = torch.arange(b) % 9
        torch.testing.assert_close(views._equalize(x), kornia.enhance.equalize(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(views._sharpness(x, f), kornia.enhance.sharpness(x, f), rtol=0, atol=1e-6)
        torch.testing.assert_close(views._posterize(x, bits), kornia.enhance.posterize(x, bits), rtol=0, atol=0)
    assert (views._equalize(images[2]) - images[2]).abs().mean() > 0.01  # (under 255 pixels: unchanged)
