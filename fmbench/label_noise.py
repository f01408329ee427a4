"""Label noise: what rough annotations do to training, with the ground truth exact.

A label-noise model (a plugin: ``fmbench_label_noises`` returns :class:`fmbench.LabelNoiseSpec`)
turns an exact mask into the mask an annotator might have drawn, at a *severity* (pixels,
or a fraction of objects: each kind says).  A *setting* ``KIND:RATE[:SEVERITY]`` applies it to
exactly ``round(RATE * n)`` of the ``n`` training images, chosen by a permutation seeded by the
training seed; each noisy mask is a pure function of (seed, kind, severity, image key), so the
same setting gives the same masks on every run.  Validation and test masks stay exact.
``fmbench train --label-noise boundary:0.2:2`` records the setting in the checkpoint's recipe;
every result and entry made from it carries it, and the leaderboard never ranks it with
clean-label models.
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ProtocolError, UnknownNameError
from .seeding import derive_seed

if TYPE_CHECKING:  # names for annotations only
    from .plugins import Registry


class LabelNoise:
    """Base class: ``__call__(mask, severity, rng)`` returns the noisy mask (bool, same shape)
    of one exact ``mask`` (bool ``(H, W)``), drawing only from ``rng``.  Class attributes
    describe it to the registry: ``name``, ``severities`` (increasing), ``default_severity``,
    ``max_severity``, ``whole_severity``, ``unit`` (what a severity counts) and ``summary``."""

    name: str = ""
    severities: tuple[float, ...] = ()
    default_severity: float = 1.0
    max_severity: float = math.inf  # the largest severity that still means something
    whole_severity: bool = False  # a severity is a whole number (of pixels): 0.4 or 1.5 are refused
    unit: str = ""
    summary: str = ""

    def __call__(self, mask: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class Setting:
    """A parsed ``KIND:RATE[:SEVERITY]``."""

    kind: str
    rate: float
    severity: float

    @property
    def text(self) -> str:
        return f"{self.kind}:{self.rate:g}:{self.severity:g}"

    def describe(self, unit: str = "") -> str:
        return f"{self.kind} noise on {self.rate:.0%} of the training masks, severity {self.severity:g}{' ' + unit if unit else ''}"


def parse_setting(text: str, registry: Registry) -> Setting:
    """``boundary:0.2:2`` -> :class:`Setting` (the severity defaults to the kind's), checked
    against the registry; one clear :class:`ProtocolError` otherwise."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise ProtocolError(f"--label-noise {text!r}: expected KIND:RATE[:SEVERITY] (e.g. boundary:0.2:2)")
    try:
        spec = registry.label_noise(parts[0])
    except UnknownNameError as err:
        raise UnknownNameError(f"--label-noise {text!r}: {err}") from None
    try:
        rate = float(parts[1])
        severity = float(parts[2]) if len(parts) == 3 else float(spec.default_severity)
    except ValueError:
        raise ProtocolError(f"--label-noise {text!r}: RATE and SEVERITY must be numbers") from None
    if not 0.0 <= rate <= 1.0:
        raise ProtocolError(f"--label-noise {text!r}: RATE must lie in [0, 1] (a fraction of the training images)")
    if rate == 0:  # also -0 and 1e-400
        raise ProtocolError(f"--label-noise {text!r}: a rate of 0 is an exact-label training; drop --label-noise")
    if not severity > 0:
        raise ProtocolError(f"--label-noise {text!r}: SEVERITY must be > 0")
    if not (math.isfinite(severity) and severity <= spec.max_severity):
        raise ProtocolError(f"--label-noise {text!r}: SEVERITY of {spec.name} must be at most {spec.max_severity:g} "
                            f"({spec.unit or 'its unit'})")
    if spec.whole_severity and severity != int(severity):
        raise ProtocolError(f"--label-noise {text!r}: SEVERITY of {spec.name} must be a whole number "
                            f"({spec.unit or 'its unit'}); {severity:g} would be rounded")
    return Setting(spec.name, rate, severity)


def noisy_indices(n: int, rate: float, seed: int) -> np.ndarray:
    """Which of ``n`` training images get noisy masks: exactly ``round(rate * n)`` of them,
    chosen by a permutation seeded by the training seed (bool ``(n,)``)."""
    k = int(round(rate * n))
    order = np.random.default_rng(derive_seed("label-noise/images", seed)).permutation(n)
    chosen = np.zeros(n, bool)
    chosen[order[:k]] = True
    return chosen


def apply_setting(masks: np.ndarray, keys: list[str], setting: Setting, seed: int, registry: Registry) -> np.ndarray:
    """The training masks ``masks`` (bool ``(N, H, W)``) with ``setting`` applied: the chosen
    images' masks replaced by their noisy versions, each from its own generator."""
    noise = registry.label_noise(setting.kind).factory()
    if setting.rate > 0 and not noisy_indices(len(masks), setting.rate, seed).any():
        raise ProtocolError(f"--label-noise {setting.text}: a rate of {setting.rate:g} of {len(masks)} training images "
                            f"makes no mask noisy (round({setting.rate:g} x {len(masks)}) = 0): that is an exact-label "
                            f"training; use a rate of at least {1 / max(len(masks), 1):.3g}, or no --label-noise")
    out = masks.copy()
    for i in np.flatnonzero(noisy_indices(len(masks), setting.rate, seed)):
        rng = np.random.default_rng(derive_seed("label-noise", seed, setting.kind, setting.severity, keys[i]))
        noisy = np.asarray(noise(masks[i].astype(bool), setting.severity, rng), bool)
        if noisy.shape != masks[i].shape:
            raise ProtocolError(f"label noise {setting.kind!r} returned a mask of shape {noisy.shape}, "
                                f"expected {masks[i].shape}")
        out[i] = noisy
    return out


def from_recipe(recipe: Any) -> str | None:
    """The label-noise setting text of a checkpoint's recipe (a dict or a Recipe), or None."""
    value = recipe.get("label_noise") if isinstance(recipe, dict) else getattr(recipe, "label_noise", None)
    return value or None


def gallery(image: np.ndarray, mask: np.ndarray, key: str, registry: Registry, seed: int = 0) -> Any:
    """Every registered label noise at each of its severities on one image: the exact outline in
    green, the noisy one in magenta, over the image (a PIL image)."""
    from PIL import Image, ImageDraw, ImageFont

    from .gallery import _outline

    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    g = (np.clip(image / max(float(np.percentile(image, 99.8)), 1e-12), 0, 1) * 255).astype(np.uint8)
    specs = list(registry.label_noises.values())
    cols = max(len(s.severities) for s in specs)
    h, w = mask.shape
    label_w, label_h, gap, top = 150, 18, 4, 22
    canvas = Image.new("RGB", (label_w + cols * (w + gap), top + len(specs) * (h + label_h + gap)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), f"{key}: exact outline green, noisy outline magenta; columns: severity (increasing)",
              fill=(0, 0, 0), font=font)
    for r, spec in enumerate(specs):
        y0 = top + r * (h + label_h + gap)
        draw.text((4, y0 + label_h + h // 2 - 7), spec.name, fill=(0, 0, 0), font=font)
        noise = spec.factory()
        for c, sev in enumerate(spec.severities):
            rng = np.random.default_rng(derive_seed("label-noise", seed, spec.name, float(sev), key))
            noisy = np.asarray(noise(mask.astype(bool), float(sev), rng), bool)
            rgb = np.repeat(g[..., None], 3, axis=2)
            rgb[_outline(mask.astype(bool))] = (0, 220, 0)
            rgb[_outline(noisy)] = (255, 0, 255)
            x0 = label_w + c * (w + gap)
            canvas.paste(Image.fromarray(rgb), (x0, y0 + label_h))
            draw.text((x0 + 2, y0 + 2), f"{sev:g} {spec.unit}", fill=(0, 0, 0), font=font)
    return canvas


def roughness(masks: np.ndarray, keys: list[str], registry: Registry, settings: list[tuple[str, float]],
              seed: int = 0) -> list[dict[str, Any]]:
    """How far each (kind, severity) takes a mask from the exact one, over ``masks`` (bool
    ``(N, H, W)``, every one made noisy): per setting the median and 10th percentile over the
    images of the mask IoU (noisy against exact), and the mean share of the exact foreground lost
    and the mean added, as a share of it.  It is what a severity means on a dataset's objects: a
    pixel on a nucleus is not a pixel on a 4-px tubule."""
    rows = []
    fg = np.maximum(masks.sum((1, 2)), 1)
    for kind, severity in settings:
        setting = Setting(registry.label_noise(kind).name, 1.0, float(severity))
        noisy = apply_setting(masks, keys, setting, seed, registry)
        union = (masks | noisy).sum((1, 2))
        iou = np.where(union > 0, (masks & noisy).sum((1, 2)) / np.maximum(union, 1), 1.0)  # both empty: agree
        rows.append({"kind": setting.kind, "severity": setting.severity, "images": len(masks),
                     "mask_iou_median": float(np.median(iou)), "mask_iou_p10": float(np.percentile(iou, 10)),
                     "lost": float(np.mean((masks & ~noisy).sum((1, 2)) / fg)),
                     "added": float(np.mean((noisy & ~masks).sum((1, 2)) / fg))})
    return rows
