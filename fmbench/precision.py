"""Mixed precision as a protocol variant (``--amp bf16``; docs/scale.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


class Autocast(nn.Module):
    """``module`` run under ``torch.autocast`` in ``precision`` (``"bf16"``) on its input's
    device, its logits returned as float32 (metrics and losses stay in float32)."""

    def __init__(self, module: nn.Module, precision: str):
        super().__init__()
        self.module = module
        self.dtype = {"bf16": torch.bfloat16}[precision]
        if getattr(module, "fmbench_source", None):  # a package's identity stays visible
            self.fmbench_source = module.fmbench_source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, dtype=self.dtype):
            out = self.module(x)
        return out.float() if isinstance(out, torch.Tensor) else out


@contextlib.contextmanager
def in_precision(loaded: Any, precision: str) -> Iterator[None]:
    """``loaded.module`` wrapped in :class:`Autocast` for the block (float32: unchanged), then
    restored: a :class:`fmbench.LoadedModel` a user passed in comes back as it was."""
    module = loaded.module
    if precision != "fp32":
        loaded.module = Autocast(module, precision)
    try:
        yield
    finally:
        loaded.module = module
