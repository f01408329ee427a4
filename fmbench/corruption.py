"""The simulated detector and the corruption interface.

Images from synthetic datasets are noise-free *expected photon* images.  Every condition of
the protocol passes the image through the same chain, the way a microscope does::

    expected photons --(optical corruption: blur, shading, haze...)--> expected photons
        --(detector: Poisson shot noise + Gaussian read noise + offset)--> ADU
        --(detector artefact: hot pixels, stripes, saturation...)--> ADU
        --(fmbench.data.normalize)--> model input in [0, 1]

The detector's photon scale (photo-electrons per unit of the expected image) is solved, per
image, on the *uncorrupted* image so that its SNR equals the protocol's ``reference_snr``:
the exposure is fixed, the sample and optics change.  An optical corruption that dims the
image (photobleaching) therefore lowers the SNR, as it would at the microscope.

**SNR** (the definition used everywhere in fmbench): for expected image ``x`` with foreground
mask ``M``, photon scale ``a`` and read noise ``s`` (electrons),

    SNR = a * (mean_M(x) - mean_~M(x)) / sqrt(a * mean_M(x) + s^2)

i.e. the mean foreground signal above background divided by the standard deviation of the
noise in the foreground.  Given a target SNR this is a quadratic in ``a`` with one positive
root, solved exactly per image (:func:`photon_scale`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch

from .errors import DataError, ProtocolError
from .protocol import Camera
from .seeding import poisson_per_image, randn_per_image


def check_image_batch(x: torch.Tensor, where: str) -> None:
    """Corruptions take ``(B, 1, H, W)`` float32 or float64 tensors."""
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{where}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 1:
        raise DataError(f"{where}: expected a (B, 1, H, W) tensor, got shape {tuple(x.shape)}")
    if x.dtype not in (torch.float32, torch.float64):
        raise DataError(f"{where}: expected a float32 or float64 tensor, got dtype {x.dtype}")


def check_mask(mask: torch.Tensor, x: torch.Tensor, where: str) -> None:
    """A mask is a ``(B, H, W)`` bool tensor framed like the ``(B, 1, H, W)`` image ``x``."""
    if not isinstance(mask, torch.Tensor):
        raise DataError(f"{where}: expected the mask as a torch.Tensor, got {type(mask).__name__}")
    expected = (x.shape[0], *x.shape[2:])
    if tuple(mask.shape) != expected:
        raise DataError(f"{where}: expected a mask of shape {expected} for images of shape "
                        f"{tuple(x.shape)}, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise DataError(f"{where}: expected a bool mask, got dtype {mask.dtype}")


def check_generators(gens: list[torch.Generator], x: torch.Tensor, where: str) -> None:
    """One ``torch.Generator`` per image, on the images' device type."""
    if len(gens) != x.shape[0] or not all(isinstance(g, torch.Generator) for g in gens):
        raise DataError(f"{where}: expected {x.shape[0]} torch.Generator objects (one per image), "
                        f"got {len(gens)} objects")
    if any(g.device.type != x.device.type for g in gens):
        raise DataError(f"{where}: the generators must be on the images' device ({x.device.type})")


def signal_mask(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The pixels that count as signal for the SNR: the foreground mask, or, for an image
    whose mask is empty or full (possible in real data), its brightest 10 % of pixels."""
    flat = x.reshape(x.shape[0], -1)
    m = mask.reshape(x.shape[0], -1).bool()
    n_fg = m.sum(1)
    bad = (n_fg == 0) | (n_fg == m.shape[1])
    if bad.any():
        k = max(1, int(0.9 * flat.shape[1]))
        thresh = flat.kthvalue(k, dim=1).values.unsqueeze(1)
        m = torch.where(bad.unsqueeze(1), flat > thresh, m)
    return m


def signal_levels(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean signal (over :func:`signal_mask`) and mean background of each image, ``(B,)`` each."""
    return _fg_bg_means(x, mask)


def _fg_bg_means(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m = signal_mask(x, mask).to(x.dtype)
    flat = x.reshape(x.shape[0], -1)
    n_fg = m.sum(1)
    n_bg = m.shape[1] - n_fg
    if (n_fg == 0).any() or (n_bg == 0).any():
        raise DataError("an image is constant: there is no signal to define an SNR on")
    mu_f = (flat * m).sum(1) / n_fg
    mu_b = (flat * (1 - m)).sum(1) / n_bg
    return mu_f, mu_b


def photon_scale(x: torch.Tensor, mask: torch.Tensor, snr: float, read_noise_e: float) -> torch.Tensor:
    """Photo-electrons per unit of ``x`` that give exactly ``snr`` (see module docstring).

    ``x`` is ``(B, 1, H, W)`` expected photons, ``mask`` ``(B, H, W)`` bool; returns ``(B,)``.
    """
    return _scale_from_means(*_fg_bg_means(x.double(), mask), snr, read_noise_e).to(x.dtype)


def _scale_from_means(mu_f: torch.Tensor, mu_b: torch.Tensor, snr: float, read_noise_e: float) -> torch.Tensor:
    """:func:`photon_scale` from the images' (float64) signal and background means."""
    if not snr > 0:
        raise ProtocolError(f"SNR must be > 0, got {snr}")
    delta = mu_f - mu_b
    if (delta <= 0).any():
        raise DataError("an image's foreground is not brighter than its background; SNR is undefined")
    s2 = snr * snr
    var = read_noise_e**2
    return (s2 * mu_f + torch.sqrt(s2 * s2 * mu_f * mu_f + 4 * delta * delta * s2 * var)) / (2 * delta * delta)


def expected_snr(x: torch.Tensor, mask: torch.Tensor, scale: torch.Tensor, read_noise_e: float) -> torch.Tensor:
    """The SNR the definition gives for photon ``scale`` (for checks and tests)."""
    mu_f, mu_b = _fg_bg_means(x.double(), mask)
    a = scale.double()
    return a * (mu_f - mu_b) / torch.sqrt(a * mu_f + read_noise_e**2)


def measured_snr(y: torch.Tensor, mean_y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SNR measured on an observed image ``y`` whose expectation ``mean_y`` is known:
    (mean foreground - mean background) / std of ``y - mean_y`` over the foreground."""
    mu_f, mu_b = _fg_bg_means(y.double(), mask)
    resid = (y - mean_y).double().reshape(y.shape[0], -1)
    m = signal_mask(mean_y, mask)
    std = torch.stack([resid[b][m[b]].std() for b in range(y.shape[0])])
    return (mu_f - mu_b) / std


class Sensor:
    """The camera for one batch: photon scale solved on the clean images at the reference SNR.

    ``expose(x, gens)`` turns expected photons ``x`` (same framing as the clean images) into
    a noisy image in ADU: ``Poisson(a * x) + N(0, read_noise^2) + offset``.  ``snr=`` asks
    for a different exposure (the noise corruption uses it); the scale is then solved on the
    clean images at that SNR.
    """

    def __init__(self, clean: torch.Tensor, mask: torch.Tensor, camera: Camera, reference_snr: float):
        check_image_batch(clean, "sensor")
        self.clean = clean
        self.mask = mask
        self.camera = camera
        self.reference_snr = float(reference_snr)
        # the clean images' signal and background means, once per batch: every SNR's photon
        # scale is solved from them (the same numbers photon_scale() computes)
        self._means = _fg_bg_means(clean.double(), mask)
        self.scale = self._solve(self.reference_snr)

    def _solve(self, snr: float) -> torch.Tensor:
        return _scale_from_means(*self._means, snr, self.camera.read_noise_e).to(self.clean.dtype)

    def scale_for(self, snr: float | None) -> torch.Tensor:
        if snr is None or float(snr) == self.reference_snr:
            return self.scale
        return self._solve(float(snr))

    def mean(self, x: torch.Tensor, snr: float | None = None) -> torch.Tensor:
        """The expectation of :meth:`expose` (ADU), without noise."""
        a = self.scale_for(snr).reshape(-1, 1, 1, 1)
        return a * x + self.camera.offset_adu

    def detect(self, stage: Callable[..., torch.Tensor], y: torch.Tensor, x: torch.Tensor, snr: float | None = None) -> torch.Tensor:
        """Run a corruption's detector ``stage(adu, expected_adu, sensor)`` on the exposed ``y``
        of expected photons ``x``: here the image already is in ADU."""
        return stage(y, self.mean(x, snr=snr), self)

    def expose(self, x: torch.Tensor, gens: list[torch.Generator], snr: float | None = None) -> torch.Tensor:
        a = self.scale_for(snr).reshape(-1, 1, 1, 1)
        electrons = poisson_per_image((a * x).clamp_min(0), gens)
        read = randn_per_image(x.shape[1:], gens, x.device, x.dtype) * self.camera.read_noise_e
        return electrons + read + self.camera.offset_adu


class Corruption:
    """Base class of corruptions.

    Subclasses implement :meth:`__call__`, a batched operation on ``(B, 1, H, W)`` tensors on
    any device.  It receives the *noise-free* expected-photon images and their masks, the
    severity ``level``, the batch's :class:`Sensor` and one generator per image, and returns
    the observed image (ADU, before normalisation) and the mask (unchanged unless the
    corruption is geometric, in which case it is resampled with nearest-neighbour).  Draw all
    random parameters from ``gens`` first, then apply them, so any single image replays.

    The class attributes describe it to the registry (:meth:`fmbench.CorruptionSpec.of` reads
    them): ``name``, ``title`` (what people call it: "space-invariant blur"), ``levels``
    (increasing severity), ``family``, ``level_label`` (formats a level for people: a condition
    reads "TITLE, LEVEL_LABEL"), ``geometric`` (resamples the mask), ``exposure`` (changes only the
    detector's exposure; the level is the SNR) and ``summary``.
    """

    name: str = ""
    title: str = ""
    levels: tuple[float, ...] = ()
    family: str = ""
    level_label: str = "{level:g}"
    geometric: bool = False
    exposure: bool = False
    summary: str = ""

    def __call__(self, x: torch.Tensor, mask: torch.Tensor, level: float, sensor: Sensor,
                 gens: list[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def check_level(name: str, level: float, levels: Sequence[float]) -> None:
    """``level`` must be one of the corruption's registered severities."""
    if isinstance(level, bool) or not isinstance(level, (int, float)):
        raise ProtocolError(f"corruption {name!r}: a severity is a number, got {type(level).__name__} {level!r}")
    if not any(math.isclose(level, lv) for lv in levels):
        raise ProtocolError(
            f"corruption {name!r} has no severity {level:g} (it accepts "
            f"{', '.join(f'{v:g}' for v in levels)})"
        )


@functools.lru_cache(maxsize=64)
def _blur_matrix(n: int, sigma: float, dtype: torch.dtype, device: str) -> torch.Tensor:
    # Row i holds the Gaussian taps of output pixel i, folded back at the borders with the
    # half-sample-symmetric rule (scipy.ndimage mode="reflect"), which works for any radius.
    r = math.ceil(4 * sigma)
    t = torch.arange(-r, r + 1)
    k = torch.exp(-0.5 * (t.double() / sigma) ** 2)
    k /= k.sum()
    j = (torch.arange(n)[:, None] + t[None, :]) % (2 * n)
    j = torch.where(j >= n, 2 * n - 1 - j, j)
    mat = torch.zeros(n, n, dtype=torch.float64).scatter_add_(1, j, k.expand(n, -1).contiguous())
    return mat.to(device=device, dtype=dtype)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` images with standard deviation ``sigma`` px.

    Borders are mirrored (half-sample symmetric, like ``scipy.ndimage``'s ``"reflect"``), the
    kernel is truncated at 4 sigma and sums to one, so the blur conserves photons.  Each pass
    is one matrix product with a cached banded ``(n, n)`` matrix: on CPU and GPU alike that is
    faster than a direct convolution for the kernel widths used here, and its cost does not
    grow with ``sigma``.  ``sigma <= 0`` returns ``x`` unchanged.
    """
    if sigma <= 0:
        return x
    dev = str(x.device)
    kh = _blur_matrix(x.shape[-2], float(sigma), x.dtype, dev)
    kw = _blur_matrix(x.shape[-1], float(sigma), x.dtype, dev)
    return torch.matmul(kh, torch.matmul(x, kw.T))


class PhysicalCorruption(Corruption):
    """A corruption that acts where the microscope would: on the sample and optics, at the
    detector, or both.

    :meth:`__call__` checks its inputs, then runs, in order: :meth:`sample` (every random draw
    of the corruption, from ``gens``), :meth:`optics` (expected photons to expected photons),
    the :class:`Sensor` exposure at :meth:`snr` (``None``: the reference exposure), and
    :meth:`detector` (ADU to ADU).  Geometric corruptions also override :meth:`warp_mask`.
    Subclasses set ``name`` and ``levels`` and override only the stages they need.
    """

    def sample(self, x: torch.Tensor, mask: torch.Tensor, level: float, gens: list[torch.Generator]) -> dict:
        """Draw the random parameters of each image (before any noise is drawn)."""
        return {}

    def optics(self, x: torch.Tensor, mask: torch.Tensor, level: float, params: dict) -> torch.Tensor:
        """Expected photons in, expected photons out."""
        return x

    def snr(self, level: float) -> float | None:
        """The exposure, as the SNR the photon scale is solved for; ``None``: the reference."""
        return None

    def detector(self, y: torch.Tensor, expected: torch.Tensor, mask: torch.Tensor, level: float,
                 params: dict, sensor: Sensor) -> torch.Tensor:
        """ADU in, ADU out; ``expected`` is the noise-free ADU image ``y`` was drawn around."""
        return y

    def warp_mask(self, mask: torch.Tensor, level: float, params: dict) -> torch.Tensor:
        return mask

    def __call__(self, x, mask, level, sensor, gens):
        where = f"corruption {self.name!r}"
        check_image_batch(x, where)
        check_mask(mask, x, where)
        check_generators(gens, x, where)
        check_level(self.name, level, self.levels)
        level = float(level)
        params = self.sample(x, mask, level, gens)
        x_opt = self.optics(x, mask, level, params)
        new_mask = self.warp_mask(mask, level, params)
        snr = self.snr(level)
        y = sensor.expose(x_opt, gens, snr=snr)
        y = sensor.detect(lambda adu, expected, frame: self.detector(adu, expected, new_mask, level, params, frame),
                          y, x_opt, snr)
        return y, new_mask
