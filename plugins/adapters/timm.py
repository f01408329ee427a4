"""``timm:MODEL``: a timm backbone (``features_only``) with a small FPN-style head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fmbench import ModelLoadError

from ..zoo import PadCrop
from ._common import _suggest


def _check_timm_name(name: str, what: str) -> None:
    import timm

    if not timm.is_model(name):
        hint = _suggest(name, timm.list_models(), "timm models", listing=False)
        raise ModelLoadError(f"unknown timm model {name!r} in {what}{hint} (see timm.list_models())")


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
