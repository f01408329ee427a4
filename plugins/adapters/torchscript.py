"""``ts:FILE.pt``: a TorchScript model (``torch.jit.save``), loaded on the CPU."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from fmbench import ModelLoadError


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
    try:
        file = Path(path).expanduser()
        found = file.is_file()
    except (RuntimeError, OSError, ValueError) as exc:
        raise ModelLoadError(f"ts:{path}: not a usable path ({exc})") from None
    if not found:
        raise ModelLoadError(f"TorchScript file {file} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch 2.x deprecates TorchScript, still loads it
            net = torch.jit.load(str(file), map_location="cpu")
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{file} could not be loaded as TorchScript (torch.jit.save): {first}") from exc
    return TorchScriptModel(net)
