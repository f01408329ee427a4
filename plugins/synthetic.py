"""A lazily generated synthetic dataset: every image is a pure function of
(dataset, split, index, seed, generator version)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fmbench import DataError, Sample, derive_seed

SPLIT_SIZES = {"train": 2000, "val": 64, "test": 256}


class SyntheticDataset:
    """``generate(rng, image_size) -> (image float32, mask bool)`` called with an RNG seeded
    from (name, version, split, index, seed).  Splits draw from disjoint seed streams because
    the split is part of every seed."""

    synthetic = True

    def __init__(self, name: str, version: int, generate: Callable, split: str, image_size: int = 256,
                 seed: int = 0, length: int | None = None):
        if split not in SPLIT_SIZES:
            raise DataError(f"dataset {name!r} has no split {split!r} (splits: {', '.join(SPLIT_SIZES)})")
        if image_size < 32:
            raise DataError(f"dataset {name!r}: image_size must be >= 32, got {image_size}")
        self.name = name
        self.version = version
        self.split = split
        self.image_size = image_size
        self.seed = seed
        self._generate = generate
        self._length = SPLIT_SIZES[split] if length is None else length

    @property
    def ref(self) -> str:
        """How results name this data: ``nucleus`` for version 1, ``nucleus@2`` for version 2."""
        return self.name if self.version == 1 else f"{self.name}@{self.version}"

    def __len__(self) -> int:
        return self._length

    def seed_of(self, index: int) -> int:
        return derive_seed("fmbench-synthetic", self.name, self.version, self.split, index, self.seed)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self._length:
            raise IndexError(index)
        rng = np.random.default_rng(self.seed_of(index))
        image, mask = self._generate(rng, self.image_size)
        return Sample(id=f"{self.split}/{index:05d}", image=image.astype(np.float32), mask=mask.astype(bool))
