"""Backbones by name: the project's own (`MODELS`, `SIZED`) and any timm architecture
(`timm_net`). Each returns logits of images in [0, 1], which its first layer normalises
(`norm.InputNorm`); `features` gives the pooled feature vector that the classification head
reads. Segmentation networks
(`SEG_MODELS`, `build_seg_model`) keep the `SegNet` interface of `unet.py`; `load_encoder`
puts saved weights into their encoder."""
from __future__ import annotations

import re
from typing import Callable, NamedTuple

from ..errors import UserError
from .cnn import SmallCNN
from .cgan import M1M2Classifier, ProjDiscriminator
from .cnn13 import CNN13
from .deeplab import DeepLabV3Plus
from .gan import ConvDiscriminator, MLPDiscriminator
from .timm_net import build_timm, is_timm_name
from .unet import SegNet, UNet
from .weights import load_weights, read_state_dict
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
    "cnn_small_s2d": Entry(lambda c, k: SmallCNN(c, k, width=16, space_to_depth=True), 7),
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
    """The network `name` for images of `shape` (C, H, W): one of the project's (`MODELS`,
    `SIZED`) or any timm architecture (`timm_net`); too small images are an error."""
    if name in SIZED:
        _check_size(name, SIZED[name], shape, {**MODELS, **SIZED})
        return SIZED[name].build(shape, num_classes)
    if name not in MODELS:
        if is_timm_name(name):
            return build_timm(name, shape, num_classes)
        raise UserError(f"--model {name}: unknown model; choose one of {', '.join([*MODELS, *SIZED])} or a timm "
                        "architecture (`semisup models` lists them)")
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
    """The segmentation network `name`: one of `SEG_MODELS`, unet<N>, or DECODER:ENCODER, a U-Net
    or DeepLabV3+ decoder on a timm encoder (`timm_seg`)."""
    if ":" in name:
        from .timm_seg import build_timm_seg

        model = build_timm_seg(*name.split(":", 1), shape, num_classes)
    elif name in SEG_MODELS:
        _check_size(name, SEG_MODELS[name], shape, SEG_MODELS)
        model = SEG_MODELS[name].build(shape[0], num_classes)
    elif m := _UNET_N.fullmatch(name):
        _check_size(name, SEG_MODELS["unet"], shape, SEG_MODELS)
        model = UNet(shape[0], num_classes, width=int(m.group(1)))
    elif is_timm_name(name):
        raise UserError(f"--model {name}: a timm classifier; as a segmentation encoder put it under a decoder: "
                        f"--model unet:{name} or deeplabv3plus:{name}")
    else:
        raise UserError(f"--model {name}: unknown segmentation model; choose one of "
                        f"unet, unet<N> (width N, e.g. unet32), {', '.join(n for n in SEG_MODELS if n != 'unet')}, "
                        "or unet:ENCODER / deeplabv3plus:ENCODER with a timm encoder (e.g. unet:resnet18)")
    model.name = name
    return model


def load_encoder(model: SegNet, path) -> int:
    """Loads a state dict from a file (`weights.read_state_dict`) into `model.encoder`, key by key
    (`weights.load_weights`: prefixes stripped, every encoder tensor required, a 3-channel first
    convolution adapted to C channels, input statistics where the file has them), and returns
    the number of tensors loaded."""
    where = f"--init {path}"
    name = getattr(model, "name", type(model).__name__)
    n, _ = load_weights(model.encoder, read_state_dict(path, where), where, f"the encoder of {name}")
    model.encoder_source = str(path)
    return n
