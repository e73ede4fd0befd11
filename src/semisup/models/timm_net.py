"""Any timm backbone (Wightman, pytorch-image-models) as a semisup classifier: `features` is the
network's `InputNorm` and then the timm model with its classifier removed (`num_classes=0`: the
pooled feature vector), `head` a linear layer to the classes, so every method that reads
`features` / `head` (sgan, remixmatch, the generation methods) works on it. The weights'
`pretrained_cfg` (mean, std, input size) travels with the network; timm is imported only when
such a model is built."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import UserError, first_line
from .norm import InputNorm


def timm_names(pattern: str = "") -> list[str]:
    """The architectures timm can build, matching `pattern` (fnmatch, e.g. "resnet*")."""
    import timm

    return timm.list_models(pattern or "*")


def is_timm_name(name: str) -> bool:
    try:
        import timm
    except ImportError:  # timm (and torchvision) not installed: only the project's own networks
        return False
    return timm.is_model(name)


def is_transformer(name: str) -> bool:
    """Whether `name` is one of timm's vision transformers (ViT, DeiT, BEiT, EVA, Swin), the
    backbones USB's fine-tuning recipe, layer decay included, was made for."""
    if not is_timm_name(name):
        return False
    from timm.models import is_model_in_modules

    return is_model_in_modules(name, ["vision_transformer", "vision_transformer_hybrid", "deit", "beit", "eva",
                                      "swin_transformer"])


class TimmClassifier(nn.Module):
    def __init__(self, name: str, in_channels: int, num_classes: int, image_size: tuple[int, int]):
        super().__init__()
        import timm

        try:  # ViT-like models fix their patch grid at build time; CNNs take no img_size
            net = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels,
                                    img_size=tuple(image_size))
        except TypeError:
            net = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels)
        self.arch = name
        self.pretrained_cfg = dict(net.pretrained_cfg)
        self.features = nn.Sequential(InputNorm(in_channels), net)
        self.feature_dim = net.num_features
        self.head = nn.Linear(net.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_timm(name: str, shape: tuple[int, int, int], num_classes: int) -> TimmClassifier:
    """The timm network `name` for images of `shape`; one that cannot take them (a ViT whose patch
    does not divide the size, too small an image) is a UserError found by one forward here."""
    c, h, w = shape
    try:
        model = TimmClassifier(name, c, num_classes, (h, w))
        was = model.training
        with torch.no_grad():
            model.eval()(torch.zeros(2, c, h, w))
        model.train(was)
    except Exception as e:  # noqa: BLE001 (timm raises AssertionError, RuntimeError, ValueError, ...)
        raise UserError(f"--model {name}: timm cannot build it for {w}x{h} images with {c} channels "
                        f"({first_line(e)[:160]}); pass --image-size (e.g. 32 or 224) or choose another model") from None
    return model


def layer_scales(model: nn.Module, decay: float) -> dict[int, float]:
    """id(parameter) -> learning-rate scale under layer-wise decay (Clark et al. 2020, ELECTRA; BEiT;
    USB's `layer_decay`): timm's grouping of the backbone into blocks (`group_matcher`), the block
    i from the top at decay^i, the head above them at 1. Empty for decay 1 and for networks
    without a timm backbone (their parameters all learn at --lr)."""
    if decay == 1.0 or not isinstance(model, TimmClassifier):
        return {}
    from timm.optim import param_groups_layer_decay

    groups = param_groups_layer_decay(model.features[1], weight_decay=0.0, layer_decay=decay)
    return {id(p): g["lr_scale"] for g in groups for p in g["params"]}


def pretrained_input_size(model: str | None, pretrained: str | None) -> int | None:
    """The square side the pretrained weights were trained at (timm's `pretrained_cfg`
    input_size): the tag's for a timm tag or TAG=FILE, the architecture's default tag's for a
    file or run folder under a timm --model; None where there is no such config."""
    from pathlib import Path

    if not pretrained or not model or not is_timm_name(model.split(":")[-1]):
        return None
    from timm.models import get_pretrained_cfg

    tag = model.split(":")[-1] if Path(pretrained).exists() else pretrained.partition("=")[0]
    try:
        cfg = get_pretrained_cfg(tag)
    except RuntimeError:  # an unknown tag: the loader says so
        return None
    return int(cfg.input_size[-1]) if cfg is not None and cfg.input_size else None
