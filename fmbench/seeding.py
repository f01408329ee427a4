"""Seeds derived from names, so every random draw can be replayed on its own.

The generator for one (protocol seed, dataset, image id, condition) is the same whatever
batch the image sits in, whichever conditions ran before, and whether the run was resumed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, stable across processes and platforms."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & (2**63 - 1)


def generators(seed: int, ids: Sequence[str], condition: str, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One ``torch.Generator`` per image, seeded from (seed, image id, condition)."""
    device = torch.device(device)
    out = []
    for image_id in ids:
        g = torch.Generator(device=device)
        g.manual_seed(derive_seed(seed, image_id, condition))
        out.append(g)
    return out


def randn_per_image(shape: Sequence[int], gens: list[torch.Generator], device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal draws of ``(B, *shape)``, image ``b`` from ``gens[b]``."""
    return torch.stack([torch.randn(shape, generator=g, device=device, dtype=dtype) for g in gens])


def rand_per_image(shape: Sequence[int], gens: list[torch.Generator], device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform [0, 1) draws of ``(B, *shape)``, image ``b`` from ``gens[b]``."""
    return torch.stack([torch.rand(shape, generator=g, device=device, dtype=dtype) for g in gens])


def poisson_per_image(rate: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
    """Poisson draws with per-element ``rate`` of shape ``(B, ...)``, image ``b`` from ``gens[b]``."""
    return torch.stack([torch.poisson(rate[b], generator=g) for b, g in enumerate(gens)])
