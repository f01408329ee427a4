"""Datasets as fmbench sees them, batching, and the fixed input normalisation.

A dataset is any object with ``name``, ``synthetic`` (images are noise-free expected photon
counts, so the protocol adds the reference noise; otherwise images are measured), ``__len__``
and ``__getitem__`` returning a :class:`Sample`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol as _Protocol

import numpy as np
import torch

from .errors import DataError


@dataclass
class Sample:
    """One image: ``image`` is ``(H, W)`` float32, ``mask`` is ``(H, W)`` bool foreground."""

    id: str
    image: np.ndarray
    mask: np.ndarray


class Dataset(_Protocol):
    name: str
    synthetic: bool

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


@dataclass
class Batch:
    """A batch of same-size images: ``image`` ``(B, 1, H, W)`` float32, ``mask`` ``(B, H, W)`` bool."""

    index: int
    ids: list[str]
    image: torch.Tensor
    mask: torch.Tensor


def check_sample(sample: Sample, where: str) -> None:
    """Shapes and dtypes at the boundary, with the offending sample named."""
    img, mask = sample.image, sample.mask
    if img.ndim != 2:
        raise DataError(f"{where}: image {sample.id} has shape {tuple(img.shape)}, expected (H, W)")
    if mask.shape != img.shape:
        raise DataError(
            f"{where}: mask of {sample.id} is {mask.shape[0]}x{mask.shape[1]} but the image is "
            f"{img.shape[0]}x{img.shape[1]}"
        )
    if not np.isfinite(img).all():
        raise DataError(f"{where}: image {sample.id} contains NaN or infinite values")


def iter_batches(dataset: Dataset, n_images: int, batch_size: int) -> Iterator[Batch]:
    """Batches of consecutive images; a batch is cut early where the image size changes,
    so batch composition depends only on (dataset, n_images, batch_size)."""
    n = min(n_images, len(dataset))
    if n == 0:
        raise DataError(f"dataset {dataset.name!r} has no images")
    index, pending = 0, []  # type: tuple[int, list[Sample]]

    def flush():
        nonlocal index, pending
        batch = Batch(
            index=index,
            ids=[s.id for s in pending],
            image=torch.from_numpy(np.stack([s.image for s in pending]).astype(np.float32, copy=False))[:, None],
            mask=torch.from_numpy(np.stack([s.mask for s in pending]).astype(bool, copy=False)),
        )
        index += 1
        pending = []
        return batch

    for i in range(n):
        sample = dataset[i]
        check_sample(sample, f"dataset {dataset.name!r}")
        if pending and (sample.image.shape != pending[0].image.shape or len(pending) == batch_size):
            yield flush()
        pending.append(sample)
    if pending:
        yield flush()


def normalize(y: torch.Tensor, low: float = 1.0, high: float = 99.8) -> torch.Tensor:
    """Percentile normalisation to [0, 1], per image (as CSBDeep and Cellpose do).

    ``(y - p_low) / (p_high - p_low)`` with the ``low`` and ``high`` percentiles of each
    image (nearest-rank), then clipped to [0, 1] so every model sees the same input range
    and attack budgets mean the same thing everywhere.  A constant image maps to zeros.
    """
    flat = y.flatten(1)
    n = flat.shape[1]
    k_lo = min(max(int(round(low / 100 * (n - 1))) + 1, 1), n)
    k_hi = min(max(int(round(high / 100 * (n - 1))) + 1, 1), n)
    lo = flat.kthvalue(k_lo, dim=1).values
    hi = flat.kthvalue(k_hi, dim=1).values
    shape = (-1,) + (1,) * (y.dim() - 1)
    scale = (hi - lo).clamp_min(torch.finfo(y.dtype).tiny).reshape(shape)
    return ((y - lo.reshape(shape)) / scale).clamp_(0.0, 1.0)
