"""Small frozen records that plugins return from the registration hooks.

A plugin says *what* it offers with these; the host (:mod:`fmbench.plugins`) fills in
``plugin`` with the name of the plugin that returned the spec, so every registered name knows
where it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Weights:
    """Trained weights for one model on one dataset.

    ``path`` is a local file (absolute, or relative to ``package`` when that is set, so
    weights can ship inside a plugin package); ``sha256`` is checked before loading;
    ``command`` is the exact command that reproduces the file; ``url`` is optional.
    """

    path: str
    sha256: str
    command: str
    package: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: ``factory(**defaults, **user_args)`` returns an ``nn.Module``.

    The module must follow the model contract (see :mod:`fmbench.model`): input
    ``(B, 1, H, W)`` float32 in [0, 1], output logits ``(B, C, H, W)`` at input size.
    ``weights`` maps a dataset name to the trained :class:`Weights` for that dataset.
    """

    name: str
    summary: str
    factory: Callable[..., Any]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    paper: str = ""
    weights: Mapping[str, Weights] = field(default_factory=dict)
    plugin: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: ``factory(split=..., image_size=...)`` returns a dataset.

    The returned object follows :class:`fmbench.data.Dataset`.  ``synthetic`` datasets give
    noise-free expected-photon images (the protocol adds the reference noise); real datasets
    give measured images.
    """

    name: str
    summary: str
    factory: Callable[..., Any]
    splits: tuple[str, ...] = ("train", "val", "test")
    synthetic: bool = True
    plugin: str = ""


@dataclass(frozen=True)
class CorruptionSpec:
    """A registered corruption: ``factory()`` returns a :class:`fmbench.corruption.Corruption`.

    ``levels`` are the severities it accepts, in order of increasing severity;
    ``level_label`` formats one for people (``"SNR 2"``).  ``geometric`` corruptions resample
    the image and transform the mask with nearest-neighbour interpolation.
    """

    name: str
    summary: str
    factory: Callable[..., Any]
    levels: tuple[float, ...]
    family: str = ""
    level_label: str = "{level:g}"
    geometric: bool = False
    plugin: str = ""

    def label(self, level: float) -> str:
        return self.level_label.format(level=level)


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: ``factory(**params)`` returns a :class:`fmbench.attack.Attack`.

    ``norms`` lists the threat models it supports (``"linf"``, ``"l2"``).
    """

    name: str
    summary: str
    factory: Callable[..., Any]
    norms: tuple[str, ...] = ("linf",)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    plugin: str = ""
