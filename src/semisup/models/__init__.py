"""Backbones by name. Each takes (in_channels, num_classes) and returns logits of images in
[0, 1], which its first layer normalises (`norm.InputNorm`); `features` gives the pooled
feature vector that the classification head reads. Segmentation networks
(`SEG_MODELS`, `build_seg_model`) keep the `SegNet` interface of `unet.py`; `load_encoder`
puts saved weights into their encoder."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.nn as nn

from ..errors import UserError, first_line
from .cnn import SmallCNN
from .cgan import M1M2Classifier, ProjDiscriminator
from .cnn13 import CNN13
from .deeplab import DeepLabV3Plus
from .gan import ConvDiscriminator, MLPDiscriminator
from .norm import InputNorm
from .unet import SegNet, UNet
from .wrn import WideResNet


class Entry(NamedTuple):
    """A registered network: how to build it, and the smallest square image (pixels a side) its
    forward takes, measured by running it on sizes 1 to 32 in train and eval mode (the pooling
    layers of the small CNNs need 4 px; below that PyTorch fails deep inside the forward)."""
    build: Callable
    min_size: int = 1


MODELS = {
    "cnn": Entry(lambda c, k: SmallCNN(c, k, width=32), 4),
    "cnn_small": Entry(lambda c, k: SmallCNN(c, k, width=16), 4),
    "wrn28_2": Entry(lambda c, k: WideResNet(c, k, depth=28, widen=2)),
    "cnn13": Entry(lambda c, k: CNN13(c, k), 4),
    "gan_cnn": Entry(lambda c, k: ConvDiscriminator(c, k, width=32)),
    "gan_cnn96": Entry(lambda c, k: ConvDiscriminator(c, k, width=96)),
    "cgan_d": Entry(lambda c, k: ProjDiscriminator(c, k), 4),
}
# models that need the image size, built with (shape, num_classes)
SIZED = {"mlp_gan": Entry(lambda shape, k: MLPDiscriminator(shape[0] * shape[1] * shape[2], k, shape[0])),
         "m1m2": Entry(lambda shape, k: M1M2Classifier(shape[0] * shape[1] * shape[2], k, shape[0]))}


def _check_size(name: str, entry: Entry, shape: tuple[int, int, int], registry: dict[str, Entry]) -> None:
    h, w = shape[1:]
    if min(h, w) < entry.min_size:
        others = [n for n, e in registry.items() if e.min_size <= min(h, w)]
        raise UserError(f"images are {w}x{h} pixels, smaller than --model {name} takes (at least "
                        f"{entry.min_size}x{entry.min_size}); pass --image-size {max(entry.min_size, 8)} or more to "
                        f"upsample them, or choose another --model ({', '.join(others[:4])} take this size)")


def default_model(image_size: int) -> str:
    """Compute grows with pixels, so the width shrinks as images grow: `cnn` below 16 px
    (digits), `cnn_small` from 16 to 31 px (MNIST: 4x faster a step than `cnn`, 98.9% with
    100 labels), WRN-28-2 from 32 px."""
    return "cnn" if image_size < 16 else "cnn_small" if image_size < 32 else "wrn28_2"


def build_model(name: str, shape: tuple[int, int, int], num_classes: int):
    """The network `name` for images of `shape` (C, H, W); too small images are an error."""
    if name in SIZED:
        _check_size(name, SIZED[name], shape, {**MODELS, **SIZED})
        return SIZED[name].build(shape, num_classes)
    if name not in MODELS:
        raise UserError(f"--model {name}: unknown model; choose one of {', '.join([*MODELS, *SIZED])}")
    _check_size(name, MODELS[name], shape, {**MODELS, **SIZED})
    return MODELS[name].build(shape[0], num_classes)


SEG_MODELS = {  # every size from 1 px works: the decoders upsample to the input's size
    "unet": Entry(lambda c, k: UNet(c, k, width=16)),
    "deeplabv3plus": Entry(lambda c, k: DeepLabV3Plus(c, k, depth=18)),
    "deeplabv3plus_r50": Entry(lambda c, k: DeepLabV3Plus(c, k, depth=50)),
    "deeplabv3plus_r101": Entry(lambda c, k: DeepLabV3Plus(c, k, depth=101)),
}
_UNET_N = re.compile(r"unet([1-9][0-9]*)")  # unet<N>: a U-Net of width N (the paper's is unet64)


def build_seg_model(name: str, shape: tuple[int, int, int], num_classes: int) -> SegNet:
    if name in SEG_MODELS:
        _check_size(name, SEG_MODELS[name], shape, SEG_MODELS)
        model = SEG_MODELS[name].build(shape[0], num_classes)
    elif m := _UNET_N.fullmatch(name):
        _check_size(name, SEG_MODELS["unet"], shape, SEG_MODELS)
        model = UNet(shape[0], num_classes, width=int(m.group(1)))
    else:
        raise UserError(f"--model {name}: unknown segmentation model; choose one of "
                        f"unet, unet<N> (width N, e.g. unet32), {', '.join(n for n in SEG_MODELS if n != 'unet')}")
    model.name = name
    return model


_PREFIXES = ("module.", "encoder.", "backbone.")


def load_encoder(model: SegNet, path) -> int:
    """Loads a state dict saved with `torch.save` (raw, or under "state_dict" or "model") into
    `model.encoder` and returns the number of tensors loaded. Leading "module.", "encoder." and
    "backbone." are stripped where that makes a key match, so a whole model's or a DDP
    checkpoint's state dict works; keys the encoder lacks (`fc.*`, a decoder's) are ignored;
    every key of the encoder must be there with its shape. A 3-channel first convolution goes
    into a network of C input channels as its mean over the RGB channels, repeated C times and
    scaled by 3 / C: a C-channel image whose channels equal a gray level then gets the response
    the RGB network gives that gray image (for one channel, the sum over RGB, as timm's
    `adapt_input_conv`). The encoder's input statistics (its `InputNorm`) come with the weights
    where the file has them for as many channels; else the encoder keeps the ones it has (the
    training data's)."""
    where = f"--init {path}"
    if not Path(path).is_file():
        raise UserError(f"{where}: no such file; give the path of a state dict saved with "
                        "torch.save(model.state_dict(), path)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (truncated, not a zip or pickle, objects other than tensors...)
        raise UserError(f"{where}: cannot be read as a PyTorch state dict ({first_line(e)[:120]}); "
                        "save one with torch.save(model.state_dict(), path)") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    items = obj.items() if isinstance(obj, dict) else ()
    tensors = {k: v for k, v in items if isinstance(k, str) and torch.is_tensor(v)}
    if not tensors:
        raise UserError(f"{where}: is not a state dict (a dict of tensors, raw or under 'state_dict' or 'model'); "
                        "save one with torch.save(model.state_dict(), path)")
    own = model.encoder.state_dict()
    norm = {f"{n}.{b}" for n, m in model.encoder.named_modules() if isinstance(m, InputNorm) for b in ("mean", "std")}
    found = {}
    for k, v in tensors.items():
        while k not in own and k.startswith(_PREFIXES):
            k = k.split(".", 1)[1]
        if k in own:
            found[k] = v
    name = getattr(model, "name", type(model).__name__)
    if not set(found) - norm:
        raise UserError(f"{where}: none of its {len(tensors)} keys match the encoder of {name}; "
                        f"expected names like {', '.join(list(own)[:3])} (its first: {next(iter(tensors))})")
    for k in norm & set(found):
        if found[k].shape != own[k].shape:
            del found[k]
    missing = [k for k in own if k not in found and k not in norm and not k.endswith("num_batches_tracked")]
    if missing:
        raise UserError(f"{where}: lacks {len(missing)} of the {len(own)} tensors of the encoder of {name}, "
                        f"the first {missing[0]}; save the whole encoder of the same architecture")
    first_conv = next(n for n, m in model.encoder.named_modules() if isinstance(m, nn.Conv2d)) + ".weight"
    w, mine = found[first_conv], own[first_conv]
    c = mine.shape[1]
    if w.ndim == 4 and w.shape[1] == 3 and c != 3 and w[:, :1].shape == mine[:, :1].shape:
        found[first_conv] = w.mean(1, keepdim=True).repeat(1, c, 1, 1) * (3 / c)
    for k, v in found.items():
        if v.shape != own[k].shape:
            raise UserError(f"{where}: {k} has shape {tuple(v.shape)} but the encoder of {name} has "
                            f"{tuple(own[k].shape)}; use weights of the same architecture and input channels")
    model.encoder.load_state_dict(found, strict=False)
    model.encoder_source = str(path)
    return len(found)
