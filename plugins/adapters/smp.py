"""``smp:ARCH/ENCODER``: a segmentation-models-pytorch model, random encoder weights, one
input channel."""

from __future__ import annotations

import inspect

from torch import nn

from fmbench import ModelLoadError

from ..zoo import PadCrop
from ._common import _suggest
from .timm import _check_timm_name


def smp_architectures() -> dict[str, type]:
    import segmentation_models_pytorch as smp

    return {n: c for n, c in vars(smp).items() if inspect.isclass(c) and issubclass(c, nn.Module)}


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
