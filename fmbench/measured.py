"""Measured images under the protocol: the noise-aware real-data mode.

A synthetic image is noise-free, so the protocol's detector can expose it at any SNR.  A
measured image already carries its camera's noise, and adding the protocol's noise on top of
it reaches no nominal SNR.  So for a dataset that is not synthetic, fmbench

1. estimates each image's own mixed Poisson-Gaussian noise on the image itself
   (:func:`fmbench.noise.estimate` for its shape over intensity, :func:`fmbench.noise.foreground_std`
   for its size at the mean foreground level) and so the image's own SNR, by fmbench's
   definition ``(mean_fg - mean_bg) / noise std at the foreground``;
2. brings the image to the SNR a condition asks for (the reference SNR, or a noise level) by
   adding only the missing noise: independent Gaussian noise whose variance follows the
   image's own noise model, scaled so that own plus added noise have the target SNR (an
   image with no measurable noise (:attr:`OwnNoise.noise_free`) is taken as expected photons
   and exposed by the protocol's detector, as synthetic images are);
3. leaves out of the run every image that cannot reach an SNR the protocol asks for: one
   whose own SNR is already below it (by more than :data:`TOLERANCE`), or whose SNR is
   undefined (no foreground or no background in its mask).  Left-out images, their own SNR
   and the levels they could not reach are listed in the result (``dataset.noise``) and
   printed; they never enter a score.  Noise cannot be removed, so a level above an image's
   own SNR is never simulated.

The accuracy of the estimate, measured on images with known noise, is in docs/datasets.md
and ``tests/test_measured.py``.  Structure finer than the pixel grid (texture, thin tubules)
leaks into any single-image noise estimate, so an image's own SNR is under-estimated when it
is high; the SNR a condition reaches is much less affected (the added noise dominates).
Corruptions other than noise act on the measured image as they would on expected photons
(a blur also smooths the image's own noise, so a blurred measured image ends up a little
less noisy than the reference); the detector artefacts act in the frame of ADU a synthetic
image of the same signal would have at the reference SNR (:meth:`MeasuredSensor.adu_frame`),
so a severity means on a measured image what it means on a synthetic one -- relative to the
image's signal, not calibrated to the user's camera.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn import functional as F

from .corruption import Sensor, _fg_bg_means, _scale_from_means
from .errors import DataError
from .noise import NoiseModel, estimate, foreground_std
from .seeding import randn_per_image

if TYPE_CHECKING:  # names for annotations only
    from .plugins import Registry
    from .protocol import Camera, Protocol

# an image reaches a target SNR when its own is at least this much below it at most (the
# estimate's own accuracy at moderate SNR); it is then used as it is, no noise added
TOLERANCE = 0.05
# an image whose own SNR, or the SNR its flat regions' noise would give, is above this has no
# noise worth modelling (a simulation, a denoised image): it is exposed as synthetic data are
NOISE_FREE_SNR = 100.0
# an image narrower than this has no flat interior to measure noise on (it would read as noise-free)
MIN_SIDE = 8


@dataclass(frozen=True)
class OwnNoise:
    """One measured image's own noise: its model over intensity, its size at the mean
    foreground level, and the signal (mean foreground above mean background)."""

    model: NoiseModel
    fg_mean: float
    fg_std: float
    signal: float

    @property
    def snr(self) -> float:
        return self.signal / self.fg_std if self.fg_std > 0 else math.inf

    @property
    def noise_free(self) -> bool:
        """No noise of its own: its flat regions hold none (a simulation, a denoised image),
        whatever fine structure the foreground estimate picks up."""
        return self.snr > NOISE_FREE_SNR or float(self.model.std(self.fg_mean)) * NOISE_FREE_SNR < self.signal

    def reaches(self, target: float) -> bool:
        return self.snr >= (1 - TOLERANCE) * float(target)

    def added_variance(self, target: float) -> float:
        """The noise variance (at the mean foreground level) to add for ``target``."""
        return max((self.signal / float(target)) ** 2 - self.fg_std**2, 0.0)


def own_noise(y: np.ndarray, mask: np.ndarray) -> OwnNoise | None:
    """An image's own noise, or ``None`` where its SNR is undefined (its mask has no
    foreground, no background, or a foreground no brighter than the background)."""
    y = np.asarray(y, float)
    mask = np.asarray(mask, bool)
    if mask.all() or not mask.any() or min(y.shape) < MIN_SIDE:
        return None
    fg, bg = float(y[mask].mean()), float(y[~mask].mean())
    if not fg > bg:
        return None
    return OwnNoise(model=estimate(y), fg_mean=fg, fg_std=foreground_std(y, mask), signal=fg - bg)


def undefined_reason(y: np.ndarray, mask: np.ndarray) -> str:
    """Why an image's SNR is undefined (:func:`own_noise` gave ``None``), with the likely cause."""
    y, mask = np.asarray(y, float), np.asarray(mask, bool)
    if min(y.shape) < MIN_SIDE:
        return (f"SNR undefined: the image is {' x '.join(str(s) for s in y.shape)} px, too small to measure its own "
                f"noise (at least {MIN_SIDE} px a side; 64 or more for a reliable estimate)")
    if not mask.any():
        return "SNR undefined: its mask has no foreground (an image without objects has no signal to measure)"
    if mask.all():
        return "SNR undefined: its mask is foreground everywhere (no background to measure against)"
    return (f"SNR undefined: its foreground (mask non-zero, mean {float(y[mask].mean()):.3g}) is no brighter than its "
            f"background (mean {float(y[~mask].mean()):.3g}); are the masks inverted? objects must be non-zero")


def own_noises(x: torch.Tensor, mask: torch.Tensor) -> list[OwnNoise | None]:
    """:func:`own_noise` of every image of a batch ``(B, 1, H, W)``."""
    xs, ms = x[:, 0].detach().double().cpu().numpy(), mask.detach().cpu().numpy()
    return [own_noise(xi, mi) for xi, mi in zip(xs, ms)]


class MeasuredSensor:
    """The protocol's detector for measured images: :meth:`expose` brings each image of the
    batch to an SNR by adding only the noise it lacks (none where it cannot reach it).  It
    stands where :class:`fmbench.corruption.Sensor` stands for synthetic images."""

    def __init__(self, measured: torch.Tensor, mask: torch.Tensor, camera: Camera, reference_snr: float,
                 own: Sequence[OwnNoise | None] | None = None):
        self.camera = camera
        self.reference_snr = float(reference_snr)
        self.measured = measured
        self.mask = mask
        self.own = list(own) if own is not None else own_noises(measured, mask)

    def adu_frame(self, snr: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image, the frame the detector artefacts act in: ``adu = scale * (u - background)
        + offset``, where ``scale`` is the ADU per unit a synthetic image with the same signal
        above its background would have at ``snr`` under the protocol's camera (the background
        taken as the camera's zero, so a baseline the image was recorded with changes nothing),
        and ``background`` its mean background.  Their severities -- stripes in units of the
        read noise, hot pixels relative to the brightest signal -- so mean on a measured image
        what they mean on a synthetic one, in whatever units and offset it was read.  An image
        with no signal to define an SNR on (left out of every score) gets ``(1, 0)``."""
        target = self.reference_snr if snr is None else float(snr)
        n = self.measured.shape[0]
        scale = torch.ones(n, dtype=torch.float64, device=self.measured.device)
        background = torch.zeros_like(scale)
        for b in range(n):
            try:
                fg, bg = _fg_bg_means(self.measured[b : b + 1].double(), self.mask[b : b + 1])
                scale[b] = _scale_from_means(fg - bg, torch.zeros_like(bg), target, self.camera.read_noise_e)[0]
                background[b] = bg[0]
            except DataError:
                continue
        return scale.to(self.measured.dtype), background.to(self.measured.dtype)

    def detect(self, stage: Callable[..., torch.Tensor], y: torch.Tensor, x: torch.Tensor,
               snr: float | None = None) -> torch.Tensor:
        """Run a corruption's detector ``stage(adu, expected_adu, sensor)`` in the frame of
        :meth:`adu_frame` and bring the result back to the image's units."""
        scale, background = self.adu_frame(snr)
        a, bg, off = scale.view(-1, 1, 1, 1), background.view(-1, 1, 1, 1), self.camera.offset_adu
        return (stage(a * (y - bg) + off, a * (x - bg) + off, self) - off) / a + bg

    def mean(self, x: torch.Tensor, snr: float | None = None) -> torch.Tensor:
        """The expectation of :meth:`expose`: the image itself."""
        return x

    def added_std(self, x: torch.Tensor, snr: float | None = None) -> torch.Tensor:
        """Per pixel, the standard deviation of the noise :meth:`expose` adds."""
        target = self.reference_snr if snr is None else float(snr)
        # the intensity each pixel's noise follows: a 3x3 mean (the pixel itself is noisy)
        level = F.avg_pool2d(F.pad(x.double(), (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        out = torch.zeros_like(level)
        for b, own in enumerate(self.own):
            if own is None:
                continue
            v = own.added_variance(target)
            at_fg = own.model.a * own.fg_mean + own.model.b
            if v <= 0:
                continue
            if own.noise_free:  # exposed by the protocol's detector instead (expose())
                continue
            if at_fg > 0:  # the image's own noise shape, scaled to the variance it lacks
                shape = (own.model.a * level[b] + own.model.b).clamp_min(0.0) / at_fg
            else:  # no usable shape: signal-independent noise
                shape = torch.ones_like(level[b])
            out[b] = (v * shape).sqrt()
        return out.to(x.dtype)

    def expose(self, x: torch.Tensor, gens: list[torch.Generator], snr: float | None = None) -> torch.Tensor:
        y = x + randn_per_image(x.shape[1:], gens, x.device, x.dtype) * self.added_std(x, snr)
        for b, own in enumerate(self.own):
            if own is not None and own.noise_free:
                # no noise of its own: the image is taken as expected photons and exposed by the
                # protocol's detector, exactly as synthetic data are, then returned to its units
                sensor = Sensor(x[b : b + 1], self.mask[b : b + 1], self.camera, self.reference_snr)
                target = self.reference_snr if snr is None else float(snr)
                adu = sensor.expose(x[b : b + 1], [gens[b]], snr=target)
                y[b] = ((adu - self.camera.offset_adu) / sensor.scale_for(target).reshape(-1, 1, 1, 1))[0]
        return y


def targets(protocol: Protocol, registry: Registry) -> list[float]:
    """Every SNR the protocol asks a measured image to reach: the reference and the levels of
    its exposure (noise) corruptions, highest first."""
    levels = {float(protocol.reference_snr)}
    for entry in protocol.corruptions:
        if registry.corruption(entry.name).exposure:
            levels.update(float(v) for v in entry.levels)
    return sorted(levels, reverse=True)


@dataclass
class Screen:
    """Which measured images a run can use: ``kept`` (dataset indices), each kept image's
    own SNR, the ``left_out`` ones with why, and the kept ones with no noise of their own."""

    kept: list[int]
    own_snr: dict[str, float]
    left_out: list[dict[str, Any]]
    noise_free: list[str]

    def record(self) -> dict[str, Any]:
        # no measurable noise at all (a clipped or simulated image): its SNR is unbounded, written null
        return {"own_snr": {k: round(v, 4) if math.isfinite(v) else None for k, v in self.own_snr.items()},
                "left_out": self.left_out,
                "noise_free": self.noise_free, "tolerance": TOLERANCE}


def screen(dataset: Any, n_images: int, levels: Sequence[float]) -> Screen:
    """Estimate the first ``n_images`` images' own noise and keep those that reach every SNR
    in ``levels``."""
    kept: list[int] = []
    own_snr: dict[str, float] = {}
    left_out: list[dict[str, Any]] = []
    noise_free: list[str] = []
    for i in range(min(n_images, len(dataset))):
        sample = dataset[i]
        own = own_noise(sample.image, sample.mask)
        if own is None:
            left_out.append({"id": sample.id, "own_snr": None, "reason": undefined_reason(sample.image, sample.mask)})
            continue
        missed = [v for v in levels if not own.reaches(v)]
        if missed:
            left_out.append({"id": sample.id, "own_snr": round(own.snr, 4), "unreachable": missed,
                             "reason": f"its own SNR {own.snr:.2f} is below SNR {', '.join(f'{v:g}' for v in missed)}: "
                                       f"noise cannot be removed"})
            continue
        kept.append(i)
        own_snr[sample.id] = own.snr
        if own.noise_free:
            noise_free.append(sample.id)
    return Screen(kept, own_snr, left_out, noise_free)


class Kept:
    """The kept images of a dataset, under the dataset's own name and flags."""

    def __init__(self, dataset: Any, indices: Sequence[int]):
        self.dataset, self.indices = dataset, list(indices)
        self.name = dataset.name
        self.synthetic = bool(dataset.synthetic)
        self.seed_name = getattr(dataset, "seed_name", None)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> Any:
        return self.dataset[self.indices[k]]


def data_warnings(doc: Any) -> list[str]:
    """On measured images: the scored images' own SNRs and what was done to them, which images
    were left out (their own SNR below one the protocol asks for, or undefined, with the
    likely cause), and wherever a relative robustness exceeds 1, that the ratio should not be
    read."""
    if doc["dataset"]["synthetic"]:
        return []
    out = []
    noise = doc["dataset"].get("noise", {})
    own = [v for k, v in (noise.get("own_snr") or {}).items() if k in set(doc["per_image"]["ids"]) and v is not None]
    if own:
        ref = (doc["protocol"].get("content") or {}).get("reference_snr", 8)
        out.append(f"the {len(own)} scored images' own SNR: {min(own):.2f} to {max(own):.2f} (median "
                   f"{float(np.median(own)):.2f}); each was brought to the reference SNR {ref:g} by adding only the "
                   f"noise it lacks, so 'clean IoU' is the IoU at SNR {ref:g}, not on the images as recorded "
                   f"(docs/datasets.md)")
    left = noise.get("left_out", [])
    if left:
        n = len(left) + len(doc["per_image"]["ids"])
        ids = ", ".join(f"{r['id']} (own SNR {r['own_snr']:.2f})" if r["own_snr"] is not None
                        else f"{r['id']} ({r.get('reason') or 'SNR undefined'})" for r in left[:4])
        out.append(f"{len(left)} of {n} images left out of every score: their own SNR is below an SNR the protocol "
                   f"asks for, or undefined: {ids}{' ...' if len(left) > 4 else ''}")
    above = [c["id"] for c in doc["conditions"] if c["kind"] != "reference" and (c["robustness"] or 0) > 1]
    if above:
        out.append(f"relative robustness above 1 under {', '.join(above[:4])}{' ...' if len(above) > 4 else ''}: on "
                   f"measured images a blur also smooths the images' own noise, and a mild condition can score above "
                   f"the reference by chance on few images; read the absolute IoU and its interval, not the ratio")
    return out
