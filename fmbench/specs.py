"""Small frozen records that plugins return from the registration hooks.

A plugin says *what* it offers with these; the host (:mod:`fmbench.plugins`) fills in
``plugin`` with the name of the plugin that returned the spec, so every registered name knows
where it came from.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


def _summary(cls: type, summary: str | None) -> str:
    text = summary or getattr(cls, "summary", "") or (inspect.getdoc(cls) or "").split("\n\n")[0]
    return " ".join(text.split())


def init_defaults(cls: Callable[..., Any], skip: tuple[str, ...] = ("self", "norm", "registry")) -> dict[str, Any]:
    """The keyword defaults of a class's constructor (or a factory's signature)."""
    target: Any = cls.__init__ if isinstance(cls, type) else cls  # type: ignore[misc]
    params = inspect.signature(target).parameters.values()
    return {p.name: p.default for p in params if p.name not in skip and p.default is not inspect.Parameter.empty}


def wants_registry(factory: Callable[..., Any]) -> bool:
    """Whether a factory takes the registry (``registry=`` keyword): an attack built from other
    registered attacks, say.  The host passes it; no plugin reads a process-wide registry."""
    target: Any = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    return "registry" in inspect.signature(target).parameters


@dataclass(frozen=True)
class Weights:
    """Trained weights for one model on one dataset.

    ``path`` is a local file: relative to ``package`` when that is set (weights shipped inside
    a plugin package), else absolute or relative to the user cache (``$FMBENCH_CACHE/weights``).
    ``sha256`` pins the file's bytes; ``state_sha256`` pins the tensors of an fmbench checkpoint
    (names, shapes, dtypes, values: :func:`fmbench.model.state_sha256`), which is what the
    training ``command`` reproduces exactly — torch writes a random id into every file, so
    the bytes of a re-made file differ.  Give one or both; both are checked before use.
    ``url`` is optional: a missing file is downloaded from it into the cache and checked.
    ``val_iou`` is the registered weights' validation IoU: training is deterministic on one
    machine but not across CPU types, so a checkpoint re-made by ``command`` elsewhere, whose
    tensors differ, is accepted *by measurement* when its recorded validation IoU lies within
    :data:`fmbench.weights.REPRODUCED_VAL_TOLERANCE` of it (a visible note, recorded in results).
    ``convergence`` pins the training's convergence record (state, best step, stop step), which
    decides between *undertrained* and *architecture-limited* in the tables.
    """

    path: str
    sha256: str
    command: str
    package: str | None = None
    url: str | None = None
    state_sha256: str | None = None
    val_iou: float | None = None
    convergence: tuple[str, int, int] | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: ``factory(**defaults, **user_args)`` returns an ``nn.Module``.

    The module must follow the model contract (see :mod:`fmbench.model`): input
    ``(B, 1, H, W)`` float32 in [0, 1], output logits ``(B, C, H, W)`` at input size.
    ``weights`` maps a dataset name to the trained :class:`Weights` for that dataset.  A model
    listing weights, or with ``needs_weights`` (the reference zoo, trained by fmbench itself),
    is evaluated by name only with weights for the dataset, a ``--checkpoint`` or an explicit
    ``--random-init``; a model with neither is taken to load its own weights in its factory.
    """

    name: str
    summary: str
    factory: Callable[..., Any]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    paper: str = ""
    weights: Mapping[str, Weights] = field(default_factory=dict)
    plugin: str = ""
    needs_weights: bool = False
    # per-architecture changes to the zoo's version-2 training recipe (``{"lr": 1e-3}``),
    # recorded in every checkpoint's recipe and in docs/zoo.md; version 1's recipe is fixed
    recipe: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: ``factory(split=..., image_size=...)`` returns a dataset.

    The returned object follows :class:`fmbench.data.Dataset`.  ``synthetic`` datasets give
    noise-free expected-photon images (the protocol adds the reference noise); real datasets
    give measured images.

    ``versions`` are the generator versions a synthetic dataset offers (``name@2`` selects one;
    the factory then gets ``version=2``); the bare name is the first, so results computed on it
    stay reproducible when a later version is added.
    """

    name: str
    summary: str
    factory: Callable[..., Any]
    splits: tuple[str, ...] = ("train", "val", "test")
    synthetic: bool = True
    plugin: str = ""
    versions: tuple[int, ...] = (1,)


@dataclass(frozen=True)
class CorruptionSpec:
    """A registered corruption: ``factory()`` returns a :class:`fmbench.corruption.Corruption`.

    ``levels`` are the severities it accepts, in order of increasing severity;
    ``level_label`` formats one for people (``"SNR 2"``).  ``geometric`` corruptions resample
    the image and transform the mask with nearest-neighbour interpolation.  ``exposure``
    corruptions change only the detector's exposure, and their level *is* the SNR (the noise
    family; training's ``noise-aug`` draws from them).  :meth:`of` builds the spec from the
    corruption class's own attributes, so nothing is declared twice.
    """

    name: str
    summary: str
    factory: Callable[..., Any]
    levels: tuple[float, ...]
    family: str = ""
    level_label: str = "{level:g}"
    geometric: bool = False
    plugin: str = ""
    exposure: bool = False
    # what people call it ("space-invariant blur"); the name when not given
    title: str = ""

    def label(self, level: float) -> str:
        return self.level_label.format(level=level)

    def condition_label(self, level: float) -> str:
        """``space-invariant blur, PSF ×4``: the title and the level, as tables show it."""
        return f"{self.title or self.name}, {self.label(level)}"

    @classmethod
    def of(cls, corruption: Any, summary: str | None = None, **overrides: Any) -> "CorruptionSpec":
        """The spec of a :class:`fmbench.Corruption` subclass, from its ``name``, ``levels``,
        ``family``, ``level_label``, ``geometric``, ``exposure`` and ``summary`` (or the first
        paragraph of its docstring)."""
        fields = dict(name=corruption.name, summary=_summary(corruption, summary), factory=corruption,
                      levels=tuple(corruption.levels), family=getattr(corruption, "family", "") or corruption.name,
                      level_label=getattr(corruption, "level_label", "{level:g}"),
                      geometric=bool(getattr(corruption, "geometric", False)),
                      exposure=bool(getattr(corruption, "exposure", False)),
                      title=getattr(corruption, "title", "") or "")
        return cls(**{**fields, **overrides})


@dataclass(frozen=True)
class LabelNoiseSpec:
    """A registered label-noise model: ``factory()`` returns a :class:`fmbench.LabelNoise`
    (``noise(mask, severity, rng) -> mask``); ``severities`` the gallery's and the study's,
    in increasing order; ``unit`` what a severity counts."""

    name: str
    summary: str
    factory: Callable[..., Any]
    severities: tuple[float, ...]
    default_severity: float = 1.0
    unit: str = ""
    plugin: str = ""
    max_severity: float = float("inf")  # larger severities are refused (they mean nothing more)
    whole_severity: bool = False  # only whole-number severities (pixels) are accepted

    @classmethod
    def of(cls, noise: Any, **overrides: Any) -> "LabelNoiseSpec":
        fields = dict(name=noise.name, summary=_summary(noise, getattr(noise, "summary", None) or None),
                      factory=noise, severities=tuple(noise.severities),
                      default_severity=float(noise.default_severity), unit=getattr(noise, "unit", ""),
                      max_severity=float(getattr(noise, "max_severity", float("inf"))),
                      whole_severity=bool(getattr(noise, "whole_severity", False)))
        return cls(**{**fields, **overrides})


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: ``factory(**params)`` returns a :class:`fmbench.attack.Attack`.

    ``norms`` lists the threat models it supports (``"linf"``, ``"l2"``); ``defaults`` the
    parameters it takes and their default values.  :meth:`of` builds the spec from the attack
    class itself (``name``, ``norms``, ``summary`` and its constructor's defaults), so nothing
    is declared twice.  A factory with a ``registry`` parameter receives the registry.
    """

    name: str
    summary: str
    factory: Callable[..., Any]
    norms: tuple[str, ...] = ("linf",)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    plugin: str = ""

    @classmethod
    def of(cls, attack: Any, summary: str | None = None, **overrides: Any) -> "AttackSpec":
        """The spec of a :class:`fmbench.Attack` subclass."""
        fields = dict(name=attack.name, summary=_summary(attack, summary), factory=attack,
                      norms=tuple(getattr(attack, "norms", ("linf",))), defaults=init_defaults(attack))
        return cls(**{**fields, **overrides})

    def build(self, registry: Any, norm: str, **params: Any) -> Any:
        """An attack instance in ``norm`` with ``params`` (the registry passed when wanted)."""
        extra = {"registry": registry} if wants_registry(self.factory) else {}
        return self.factory(norm=norm, **params, **extra)
