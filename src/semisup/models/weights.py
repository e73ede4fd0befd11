"""Weights from elsewhere into a network: a state dict from a file (`read_state_dict`: .safetensors,
or torch.save's .pt/.pth/.bin, raw or under "state_dict" or "model"), matched key by key into a
part of the network (`load_weights`), for segmentation's `--init` (the encoder) and
classification's `--pretrained` (the backbone, `load_pretrained`: a file, a semisup run folder,
a timm tag or an hf-hub id)."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..errors import UserError, first_line
from .norm import InputNorm, input_norm, set_input_norm

PREFIXES = ("module.", "encoder.", "backbone.", "model.", "features.")
SAVE_HINT = "save one with torch.save(model.state_dict(), path) or safetensors.torch.save_file"


def read_state_dict(path, where: str) -> dict[str, torch.Tensor]:
    """The tensors of a weights file; one line naming `where` when it is not one."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{where}: no such file; give the path of a state dict saved with "
                        "torch.save(model.state_dict(), path)")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(p))
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (truncated, not a zip or pickle, objects other than tensors...)
        raise UserError(f"{where}: cannot be read as a PyTorch state dict ({first_line(e)[:120]}); {SAVE_HINT}") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    items = obj.items() if isinstance(obj, dict) else ()
    tensors = {k: v for k, v in items if isinstance(k, str) and torch.is_tensor(v)}
    if not tensors:
        raise UserError(f"{where}: is not a state dict (a dict of tensors, raw or under 'state_dict' or 'model'); "
                        f"{SAVE_HINT}")
    return tensors


def load_weights(module: nn.Module, tensors: dict[str, torch.Tensor], where: str, what: str,
                 inner: str = "") -> tuple[int, bool]:
    """Loads `tensors` into `module`; returns (tensors loaded, whether the input statistics came
    with them). Leading "module.", "encoder.", "backbone.", "model." and "features." are stripped
    where that makes a key match (a whole model's or a DDP checkpoint's state dict), and `inner`
    is put in front where that does (a timm state dict into the timm part of a classifier); keys
    the module lacks (a classifier's, a decoder's) are ignored; every key of the module must be
    there with its shape. A 3-channel first convolution goes into a network of C input channels as
    its mean over the RGB channels, repeated C times and scaled by 3 / C: a C-channel image whose
    channels equal a gray level then gets the response the RGB network gives that gray image (for
    one channel, the sum over RGB, as timm's `adapt_input_conv`). The input statistics (an
    `InputNorm`) come with the weights where the file has them for as many channels; else the
    module keeps the ones it has."""
    own = module.state_dict()
    norm = {f"{n}.{b}" for n, m in module.named_modules() if isinstance(m, InputNorm) for b in ("mean", "std")}
    found = {}
    for k, v in tensors.items():
        while k not in own and inner + k not in own and k.startswith(PREFIXES):
            k = k.split(".", 1)[1]
        k = k if k in own else inner + k
        if k in own:
            found[k] = v
    if not set(found) - norm:
        raise UserError(f"{where}: none of its {len(tensors)} keys match {what}; "
                        f"expected names like {', '.join(list(own)[:3])} (its first: {next(iter(tensors))})")
    for k in norm & set(found):
        if found[k].shape != own[k].shape:
            del found[k]
    missing = [k for k in own if k not in found and k not in norm and not k.endswith("num_batches_tracked")]
    if missing:
        raise UserError(f"{where}: lacks {len(missing)} of the {len(own)} tensors of {what}, "
                        f"the first {missing[0]}; save the whole network of the same architecture")
    first_conv = next(n for n, m in module.named_modules() if isinstance(m, nn.Conv2d)) + ".weight"
    if first_conv in found:
        w, mine = found[first_conv], own[first_conv]
        c = mine.shape[1]
        if w.ndim == 4 and w.shape[1] == 3 and c != 3 and w[:, :1].shape == mine[:, :1].shape:
            found[first_conv] = w.mean(1, keepdim=True).repeat(1, c, 1, 1) * (3 / c)
    for k, v in found.items():
        if v.shape != own[k].shape:
            raise UserError(f"{where}: {k} has shape {tuple(v.shape)} but {what} has "
                            f"{tuple(own[k].shape)}; use weights of the same architecture and input channels")
    module.load_state_dict(found, strict=False)
    return len(found), bool(norm & set(found))


def _run_weights(folder: Path, where: str, keep: str = "") -> dict[str, torch.Tensor]:
    """The evaluated weights of a semisup run folder, less the head (or only those under `keep`)."""
    from ..engine.runfolder import load_checkpoint

    for name in ("best.pt", "last.pt"):
        if (folder / "checkpoints" / name).is_file():
            tensors = {k: v for k, v in load_checkpoint(folder / "checkpoints" / name)["model"].items()
                       if not k.startswith("head.") and k.startswith(keep)}
            if not tensors:
                raise UserError(f"{where}: the run's network has no {keep.rstrip('.')}; give a segmentation run "
                                "(or, for a classifier's backbone, its weights file)")
            return tensors
    raise UserError(f"{where}: a folder without checkpoints/best.pt or last.pt; give a semisup run folder, "
                    "a weights file, or a timm tag such as resnet50.a1_in1k")


def load_pretrained(model: nn.Module, spec: str) -> str:
    """`--pretrained SPEC` into a classifier's backbone (`features`; the head stays new): a weights
    file, a semisup run folder (its evaluated weights, input statistics included), or for a timm
    model a timm tag (`resnet18.a1_in1k`) or `hf-hub:ID`, fetched by timm (from its cache when
    there is no network), or `TAG=FILE`: that tag's pretrained config (mean, std) with the
    weights read from a local file (timm's `pretrained_cfg_overlay`), for weights downloaded
    elsewhere. A file without input statistics takes the architecture's pretrained config
    (timm's `pretrained_cfg` mean and std), as the weights were trained with; returns where the
    statistics came from."""
    where = f"--pretrained {spec}"
    timm_net = getattr(model, "pretrained_cfg", None) is not None
    what = f"--model {getattr(model, 'arch', type(model).__name__)}"
    p = Path(spec)
    if p.is_dir() or p.is_file():
        tensors = _run_weights(p, where) if p.is_dir() else read_state_dict(p, where)
        _, stats = load_weights(model.features, tensors, where, what, inner="1." if timm_net else "")
        if stats:
            return "the weights"
        if timm_net:
            cfg = model.pretrained_cfg
            set_input_norm(model, *(_channels(cfg[k], input_norm(model).mean.shape[1]) for k in ("mean", "std")))
            return "the architecture's pretrained config"
        return "the training images"
    if not timm_net:
        raise UserError(f"{where}: no such file or folder; a timm tag or hf-hub: id needs a timm --model "
                        "(e.g. --model resnet18), and the project's own networks take a file or a run folder")
    net = _timm_fetch(spec, model.features[0].mean.shape[1], where)
    load_weights(model.features, net.state_dict(), where, what, inner="1.")
    cfg = net.pretrained_cfg
    set_input_norm(model, *(_channels(cfg[k], input_norm(model).mean.shape[1]) for k in ("mean", "std")))
    model.pretrained_cfg = dict(cfg)
    return "the weights' pretrained config"


def _timm_fetch(spec: str, channels: int, where: str, **kw) -> nn.Module:
    """timm's network with the weights `spec` names (a tag, hf-hub:ID, or TAG=FILE: the tag's
    config with the weights of a local file), classifier removed; the failures are one line."""
    import timm

    tag, _, file = spec.partition("=")
    if file:
        if not Path(file).is_file():
            raise UserError(f"{where}: {file}: no such file; TAG=FILE reads the weights of the timm tag from a "
                            "local file")
        kw["pretrained_cfg_overlay"] = {"file": str(Path(file).resolve())}
    try:
        return timm.create_model(tag, pretrained=True, in_chans=channels, **(kw or {"num_classes": 0}))
    except (RuntimeError, OSError) as e:  # OSError: no network and no cached file
        if "Unknown model" in str(e) or "Invalid pretrained tag" in str(e):
            raise UserError(f"{where}: timm has no such weights ({first_line(e)[:120]}); `semisup models` lists "
                            "the architectures, timm.list_pretrained() the tags") from None
        raise UserError(f"{where}: cannot fetch the weights ({first_line(e)[:120]}); download them where there "
                        "is a network (timm.create_model(NAME, pretrained=True) fills the Hugging Face cache, or "
                        "save the state dict to a file) and pass the file, TAG=FILE or that cache (HF_HOME)") from None


def load_seg_pretrained(model: nn.Module, spec: str) -> str:
    """Segmentation's `--pretrained SPEC` into `model.encoder`: a weights file (as --init), a
    semisup segmentation run folder (its encoder, input statistics included), or for a timm
    encoder (`--model unet:resnet50`) a timm tag, hf-hub:ID or TAG=FILE, built by timm as the
    same `features_only` pyramid. Returns where the input statistics came from."""
    where = f"--pretrained {spec}"
    enc = model.encoder
    what = f"the encoder of --model {getattr(model, 'name', type(model).__name__)}"
    timm_enc = getattr(enc, "pretrained_cfg", None) is not None
    p = Path(spec)
    if p.is_dir() or p.is_file():
        tensors = _run_weights(p, where, keep="encoder.") if p.is_dir() else read_state_dict(p, where)
        _, stats = load_weights(enc, tensors, where, what, inner="net." if timm_enc else "")
        model.encoder_source = str(p)
        if stats or not timm_enc:
            return "the weights" if stats else "the training images"
        cfg = enc.pretrained_cfg
    elif not timm_enc:
        raise UserError(f"{where}: no such file or folder; a timm tag or hf-hub: id needs a timm encoder "
                        "(--model unet:resnet18), and the project's own networks take a file or a run folder")
    else:
        stride = {"output_stride": enc.output_stride} if enc.output_stride else {}
        net = _timm_fetch(spec, enc.input.mean.shape[1], where, features_only=True, **stride)
        load_weights(enc.net, net.state_dict(), where, what)
        model.encoder_source = spec
        cfg = net.pretrained_cfg
    set_input_norm(enc, *(_channels(cfg[k], enc.input.mean.shape[1]) for k in ("mean", "std")))
    return "the weights' pretrained config"


def _channels(values, c: int) -> list[float]:
    """A config's RGB statistics for C channels (their mean for C != 3)."""
    v = [float(x) for x in values]
    return v if len(v) == c else [sum(v) / len(v)] * c
