"""Adapters: models from other libraries through the ``fmbench_resolve_model`` hook.

- ``ts:FILE.pt`` — a TorchScript model (``torch.jit.save``), loaded on the CPU.
- ``smp:ARCH/ENCODER`` — a segmentation-models-pytorch model (``smp:Unet/resnet18``,
  ``smp:FPN/tu-convnext_atto``), random encoder weights, one input channel.
- ``timm:MODEL`` — a timm backbone (``features_only``) with a small FPN-style head.
- ``mmseg:CONFIG.py`` — an mmsegmentation 1.x config (needs the ``mmseg`` extra).

Each returns an ``nn.Module`` that follows the fmbench model contract; ``--model-arg
classes=N`` sets the number of output channels of the smp and timm models (default 1, read
with a sigmoid).  Weights come from ``--checkpoint`` like any other model.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fmbench import hookimpl
from fmbench.errors import ModelLoadError

from .zoo import PadCrop


def _suggest(name: str, known, kind: str, listing: bool = True) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    if not listing:
        return hint
    shown = ", ".join(known) if len(known) <= 15 else ", ".join(known[:15]) + f", ... ({len(known)} in all)"
    return f"{hint} (known {kind}: {shown})"


class TorchScriptModel(nn.Module):
    """A loaded TorchScript module; a ``{"out": logits}`` or tuple output is unwrapped."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if isinstance(out, dict):
            out = out["out"]
        elif isinstance(out, (tuple, list)):
            out = out[0]
        return out


def torchscript(path: str) -> nn.Module:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelLoadError(f"TorchScript file {file} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch 2.x deprecates TorchScript, still loads it
            net = torch.jit.load(str(file), map_location="cpu")
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{file} could not be loaded as TorchScript (torch.jit.save): {first}") from exc
    return TorchScriptModel(net)


def smp_architectures() -> dict[str, type]:
    import segmentation_models_pytorch as smp

    return {n: c for n, c in vars(smp).items() if inspect.isclass(c) and issubclass(c, nn.Module)}


def _check_timm_name(name: str, what: str) -> None:
    import timm

    if not timm.is_model(name):
        hint = _suggest(name, timm.list_models(), "timm models", listing=False)
        raise ModelLoadError(f"unknown timm model {name!r} in {what}{hint} (see timm.list_models())")


def smp_model(rest: str, args: dict) -> nn.Module:
    from segmentation_models_pytorch.encoders import get_encoder_names

    arch, sep, encoder = rest.partition("/")
    if not sep or not arch or not encoder:
        raise ModelLoadError(f"model reference 'smp:{rest}': expected smp:ARCH/ENCODER, e.g. smp:Unet/resnet18")
    archs = smp_architectures()
    if arch not in archs:
        raise ModelLoadError(f"unknown smp architecture {arch!r}" + _suggest(arch, archs, "architectures"))
    if encoder.startswith("tu-"):
        _check_timm_name(encoder[3:], f"smp encoder {encoder!r}")
    elif encoder not in get_encoder_names():
        raise ModelLoadError(f"unknown smp encoder {encoder!r}"
                             + _suggest(encoder, get_encoder_names(), "encoders")
                             + "; timm encoders are named tu-MODEL")
    args = {"classes": 1, **args}
    try:
        net = archs[arch](encoder_name=encoder, encoder_weights=None, in_channels=1, **args)
    except Exception as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        raise ModelLoadError(f"could not construct smp.{arch}(encoder_name={encoder!r}, {shown}): "
                             f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from exc
    return PadCrop(net, 32)


class TimmSegmenter(nn.Module):
    """A timm feature pyramid with an FPN-lite head: 1x1 lateral projections summed from
    coarse to fine, a 3x3 conv, a 1x1 classifier, bilinear upsampling to input size."""

    def __init__(self, name: str, classes: int = 1, channels: int = 64, **kwargs):
        super().__init__()
        import timm

        self.backbone = timm.create_model(name, pretrained=False, features_only=True, in_chans=1, **kwargs)
        chans = self.backbone.feature_info.channels()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in chans)
        self.fuse = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(channels, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        y = self.lateral[-1](feats[-1])
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            y = F.interpolate(y, size=f.shape[-2:], mode="bilinear", align_corners=False) + lat(f)
        y = self.classifier(self.fuse(y))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def timm_model(name: str, args: dict) -> nn.Module:
    _check_timm_name(name, f"'timm:{name}'")
    try:
        net = TimmSegmenter(name, **args)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelLoadError(f"could not build timm model {name!r} with features_only=True, in_chans=1"
                             f"{''.join(f', {k}={v!r}' for k, v in args.items())}: {type(exc).__name__}: {first}") from exc
    return PadCrop(net, max(net.backbone.feature_info.reduction()))


def mmseg_model(config: str, args: dict) -> nn.Module:
    try:
        import mmseg  # noqa: F401
    except ImportError as exc:
        raise ModelLoadError(
            f"'mmseg:{config}' needs mmsegmentation, which is not installed: install the extra with "
            f"`pip install 'fmbench[mmseg]'` (mmcv 2.x builds from source if no wheel fits your torch)"
        ) from exc
    # Building and wrapping mmseg models is not written yet: it must be verified against real
    # mmseg configs (UNet, SegFormer), which needs mmcv, and mmcv is not installed here.
    raise ModelLoadError(f"'mmseg:{config}': the mmsegmentation adapter is not implemented yet (issue 6)")


SCHEMES = {"ts": lambda rest, args: torchscript(rest) if not args else _no_args("ts", args),
           "smp": smp_model, "timm": timm_model, "mmseg": mmseg_model}


def _no_args(scheme: str, args: dict):
    raise ModelLoadError(f"{scheme}: models take no --model-arg (got {', '.join(sorted(args))})")


@hookimpl
def fmbench_resolve_model(ref, args):
    scheme, _, rest = ref.partition(":")
    handler = SCHEMES.get(scheme)
    if handler is None:
        return None
    if not rest:
        raise ModelLoadError(f"model reference {ref!r}: nothing after '{scheme}:'")
    return handler(rest, dict(args))
