"""The evaluation protocol: a frozen, versioned description of what a run measures.

A protocol fixes the split and number of images, the image size, the reference condition
(mixed Poisson-Gaussian noise at ``reference_snr``), the camera model, the input
normalisation, the corruptions with their severities, the attacks with their budgets, the
metrics and the seed.  Its content hash goes into every result, so two results are compared
only when they were made under the same protocol.  Protocols are registered by plugins
(``fmbench_protocols``); the core names none.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ProtocolError

# the tier a command means when it names none (its newest released version)
DEFAULT_TIER = "quick"

if TYPE_CHECKING:  # names for annotations only
    from .plugins import Registry


@dataclass(frozen=True)
class CorruptionEntry:
    """One corruption of the protocol and the severities it is evaluated at."""

    name: str
    levels: tuple[float, ...]


@dataclass(frozen=True)
class AttackEntry:
    """One attack of the protocol: budgets ``eps`` in the [0, 1] input space, a norm, and
    fixed attack parameters (``params``, a tuple of ``(key, value)`` pairs so it stays
    hashable).  ``label`` names the condition family; by default ``name`` (``name-l2`` for
    the L2 norm)."""

    name: str
    eps: tuple[float, ...]
    norm: str = "linf"
    params: tuple[tuple[str, Any], ...] = ()
    label: str = ""

    @property
    def family(self) -> str:
        if self.label:
            return self.label
        return self.name if self.norm == "linf" else f"{self.name}-{self.norm}"


@dataclass(frozen=True)
class Camera:
    """The detector of the simulated microscope.

    ``read_noise_e`` is the Gaussian read noise in electrons (rms; 1.6 e- is typical of a
    scientific CMOS camera), ``offset_adu`` the dark offset added to every pixel.  Gain is 1
    ADU per electron.
    """

    read_noise_e: float = 1.6
    offset_adu: float = 100.0


PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Protocol:
    """A versioned evaluation protocol.  ``id`` is ``NAME-vVERSION`` (plus ``+variant`` for
    a user-customised copy, which never ranks with the original)."""

    name: str
    version: int
    description: str
    n_images: int
    image_size: int
    reference_snr: float
    corruptions: tuple[CorruptionEntry, ...]
    attacks: tuple[AttackEntry, ...]
    split: str = "test"
    seed: int = 0
    metrics: tuple[str, ...] = ("iou", "dice")
    camera: Camera = field(default_factory=Camera)
    normalization: tuple[float, float] = (1.0, 99.8)
    # ``metrics`` and ``datasets`` are read by nothing (every run scores IoU and Dice, on the
    # dataset it is given); they stay in the records of version 1 because they are part of its
    # hash, and are left out of the content (and hash) of later versions
    datasets: tuple[str, ...] = ()
    variant: str = ""
    plugin: str = ""
    # the generator version a bare dataset name means under this protocol (``(("nucleus", 2),)``:
    # ``nucleus`` is ``nucleus@2``); left out of the content when empty, as in version 1
    data_versions: tuple[tuple[str, int], ...] = ()
    # a draft version is run by its id (``quick-v2``) but not yet by its tier name (``quick``),
    # until its reference leaderboard exists; not part of the content (flipping it changes no hash)
    draft: bool = False
    # the model's arithmetic: "fp32", or "bf16" (autocast mixed precision, ``--amp bf16``: a
    # variant, never ranked with fp32 results; its measured tolerance is in docs/scale.md); left
    # out of the content at fp32, so no hash changes
    precision: str = "fp32"

    @property
    def id(self) -> str:
        base = f"{self.name}-v{self.version}"
        return f"{base}+{self.variant}" if self.variant else base

    def content(self) -> dict[str, Any]:
        """Everything that defines the protocol, as plain JSON-able data."""
        data = dataclasses.asdict(self)
        data.pop("plugin")
        data.pop("draft")
        if not self.data_versions:
            data.pop("data_versions")
        if self.precision == "fp32":
            data.pop("precision")
        if self.version >= 2:
            data.pop("metrics")
            data.pop("datasets")
        return json.loads(json.dumps(data))

    def dataset_ref(self, ref: str) -> str:
        """A bare dataset name with the generator version this protocol pins (``nucleus`` ->
        ``nucleus@2`` under the v2 protocols); any other reference as it is."""
        if ":" in ref or "@" in ref:
            return ref
        return next((f"{ref}@{v}" for name, v in self.data_versions if name == ref), ref)

    @property
    def hash(self) -> str:
        blob = json.dumps(self.content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def customized(self, **overrides: Any) -> "Protocol":
        """A copy with some fields changed, marked as a variant (its hash differs)."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if not overrides:
            return self
        for key in overrides:
            if key not in {"n_images", "seed", "image_size", "split", "corruptions", "attacks", "precision", "reference_snr"}:
                raise ProtocolError(f"protocol field {key!r} cannot be overridden")
        overrides = checked_overrides(overrides)
        if overrides.get("precision", "fp32") not in PRECISIONS:
            raise ProtocolError(f"precision must be one of {', '.join(PRECISIONS)}, got {overrides['precision']!r}")
        labels = {}
        if "corruptions" in overrides:
            overrides["corruptions"], labels["corruptions"] = self._subset(
                self.corruptions, overrides["corruptions"], "corruption", lambda e: e.name)
        if "attacks" in overrides:
            overrides["attacks"], labels["attacks"] = self._subset(
                self.attacks, overrides["attacks"], "attack", lambda e: e.family)
        changed = {k: v for k, v in overrides.items() if getattr(self, k) != v}
        if not changed:
            return self
        variant = ",".join(f"{k}={labels.get(k, v)}" for k, v in sorted(changed.items()))
        if self.variant:
            variant = f"{self.variant},{variant}"
        return dataclasses.replace(self, variant=variant, **changed)

    def _subset(self, entries: tuple[Any, ...], names: list[str], kind: str,
                key: Callable[[Any], str]) -> tuple[tuple[Any, ...], str]:
        """The entries named in ``names`` (a list, or ``["none"]`` for none), in protocol order."""
        names = [n for n in names if n]
        if names == ["none"]:
            return (), "none"
        have = {key(e): e for e in entries}
        for n in names:
            if n not in have:
                raise ProtocolError(
                    f"protocol {self.id} has no {kind} {n!r} (it has: {', '.join(have) or 'none'})")
        return tuple(e for e in entries if key(e) in names), "+".join(n for n in have if n in names)

    def validate(self, registry: Registry) -> None:
        """Check every corruption, level, attack, norm and budget against the registry."""
        if self.n_images < 1:
            raise ProtocolError(f"protocol {self.id}: n_images must be >= 1, got {self.n_images}")
        if not self.reference_snr > 0:
            raise ProtocolError(f"protocol {self.id}: reference_snr must be > 0")
        for c in self.corruptions:
            levels = registry.corruption(c.name).levels
            bad = [lv for lv in c.levels if lv not in levels]
            if bad:
                raise ProtocolError(
                    f"protocol {self.id}: corruption {c.name!r} has no severity "
                    f"{bad[0]:g} (it accepts {', '.join(f'{v:g}' for v in levels)})"
                )
        families = set()
        for entry in self.attacks:
            spec = registry.attack(entry.name)
            if entry.norm not in spec.norms:
                raise ProtocolError(
                    f"protocol {self.id}: attack {entry.name!r} does not support norm "
                    f"{entry.norm!r} (it supports {', '.join(spec.norms)})"
                )
            if entry.family in families:
                raise ProtocolError(f"protocol {self.id}: attack family {entry.family!r} twice")
            families.add(entry.family)
            try:
                registry.build_attack(entry)
            except TypeError as exc:
                raise ProtocolError(f"protocol {self.id}: attack {entry.family!r} does not accept its "
                                    f"parameters {dict(entry.params)}: {exc}") from None
            for eps in entry.eps:
                check_eps(eps, entry.norm, where=f"protocol {self.id}, attack {entry.family!r}")


def check_eps(eps: float, norm: str, where: str) -> None:
    """An L-inf budget lives in [0, 1] (the input range); an L2 budget must be >= 0."""
    if norm == "linf" and not 0.0 <= eps <= 1.0:
        raise ProtocolError(f"{where}: L-inf budget eps={eps:g} is outside [0, 1]")
    if norm == "l2" and not eps >= 0.0:
        raise ProtocolError(f"{where}: L2 budget eps={eps:g} must be >= 0")
    if norm not in ("linf", "l2"):
        raise ProtocolError(f"{where}: unsupported norm {norm!r} (use 'linf' or 'l2')")


def eps_label(eps: float, norm: str = "linf") -> str:
    """``2/255`` for an L-inf budget on the 1/255 grid, otherwise the plain number."""
    k = eps * 255
    if norm == "linf" and abs(k - round(k)) < 1e-6:
        return f"{round(k)}/255"
    return f"{eps:g}"


def checked_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Protocol overrides of the right types, one clear error each: whole numbers for
    ``n_images``/``seed``/``image_size``; lists of names for ``corruptions``/``attacks``, where one
    string is read as the CLI reads it (``"noise, sib"``) rather than letter by letter."""
    out = dict(overrides)
    for key in ("n_images", "seed", "image_size"):
        if out.get(key) is not None and (not isinstance(out[key], int) or isinstance(out[key], bool)):
            raise ProtocolError(f"{key} must be a whole number, got {out[key]!r}")
    for key in ("corruptions", "attacks"):
        if isinstance(out.get(key), str):
            out[key] = [n.strip() for n in out[key].split(",")]
        elif out.get(key) is not None and (not isinstance(out[key], (list, tuple))
                                           or not all(isinstance(n, str) for n in out[key])):
            raise ProtocolError(f"{key} must be a list of names, got {out[key]!r}")
    return out
