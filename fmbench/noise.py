"""Estimating an image's own mixed Poisson-Gaussian noise, after Foi et al. (2008, "Practical
Poissonian-Gaussian noise modeling and fitting for single-image raw-data").

The noise of a fluorescence image is ``var(y) = a * E[y] + b``: ``a`` the gain (shot noise,
Poisson) and ``b`` the signal-independent part (read noise variance, minus ``a`` times the
camera's dark offset, which raises the mean without adding shot noise: ``b`` can be negative). One image suffices:
where the image is locally smooth, a high-pass residual holds only noise, and its variance
against the local mean is a line with slope ``a`` and intercept ``b``.  The SNR of an image
with mask ``M`` is then fmbench's definition (:mod:`fmbench.corruption`):
``(mean_M(y) - mean_~M(y)) / sqrt(a * mean_M(y) + b)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# the high-pass residual: the image minus the mean of its 4 neighbours, scaled so white
# noise of variance s^2 gives a residual of variance s^2
_KERNEL = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], float) / np.sqrt(20.0)
N_BINS = 16
SMOOTH_SHARE = 0.5  # the flattest half of the pixels carry the estimate
TIES = 0.25  # a bin whose residuals sit on their median this often is quantised (see _binned_variance)
CLIPPED_SHARE = 0.005  # an image's extreme value held by this share of its pixels is a clip level


def unclipped(y: np.ndarray) -> np.ndarray:
    """The pixels whose 3x3 neighbourhood holds no clipped value: a saturated foreground or a
    background clipped at zero has no noise left to measure there, and would read as noise-free.
    A value is clipped when it is the image's minimum or maximum and at least
    :data:`CLIPPED_SHARE` of the pixels hold it."""
    clip = np.zeros(y.shape, bool)
    for v in (y.min(), y.max()):
        at = y == v
        if at.mean() >= CLIPPED_SHARE and at.sum() >= 20:
            clip |= at
    return ~ndimage.binary_dilation(clip, np.ones((3, 3), bool)) if clip.any() else np.ones(y.shape, bool)


@dataclass(frozen=True)
class NoiseModel:
    """``var(y) = a * E[y] + b`` in the image's own units."""

    a: float
    b: float

    def std(self, mean: np.ndarray | float) -> np.ndarray | float:
        return np.sqrt(np.maximum(self.a * np.asarray(mean, float) + self.b, 0.0))


def _binned_variance(local: np.ndarray, resid: np.ndarray, n_bins: int,
                     min_count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin of equal count of the local mean (bins under ``min_count`` pixels dropped): the
    bin's mean level, the residual's robust variance (median absolute deviation) and the
    pixel count.  No pixel to bin (an image whose every level is clipped): no bins."""
    if local.size == 0:
        return np.array([]), np.array([]), np.array([], float)
    edges = np.unique(np.quantile(local, np.linspace(0, 1, n_bins + 1)))
    xs, vs, ws = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (local >= lo) & (local <= hi)
        if sel.sum() < min_count:
            continue
        rr = resid[sel]
        dev = np.abs(rr - np.median(rr))
        xs.append(local[sel].mean())
        if np.mean(dev == 0) > TIES:  # integer pixels with noise of a grey level or two: the MAD is
            vs.append((1.2533 * dev.mean()) ** 2)  # 0 or one step; the mean absolute deviation is not
        else:
            vs.append((1.4826 * np.median(dev)) ** 2)
        ws.append(float(sel.sum()))
    return np.array(xs), np.array(vs), np.array(ws, float)


def estimate(y: np.ndarray) -> NoiseModel:
    """The Poisson-Gaussian noise of one 2-D image, from its own pixels: the residual variance
    in locally flat regions, binned by local mean (robustly: median absolute deviation),
    fitted with a line of non-negative slope."""
    y = np.asarray(y, float)
    resid = ndimage.convolve(y, _KERNEL, mode="reflect")
    local = ndimage.uniform_filter(y, 5, mode="reflect")
    # flatness: the gradient of a smoothed copy; edges leak structure into the residual
    smooth = ndimage.gaussian_filter(y, 2.0, mode="reflect")
    grad = np.hypot(ndimage.sobel(smooth, 0), ndimage.sobel(smooth, 1))
    ok = unclipped(y)
    keep = (grad <= np.quantile(grad[ok], SMOOTH_SHARE)) & ok if ok.any() else np.zeros(y.shape, bool)
    inner = np.zeros_like(keep)
    inner[2:-2, 2:-2] = True
    keep &= inner
    r = resid[keep]
    x, var, w = _binned_variance(local[keep], r, N_BINS, 50)
    if x.size < 2:
        return NoiseModel(0.0, float(np.var(r)) if r.size else 0.0)
    a, b = np.polyfit(x, var, 1, w=np.sqrt(w))
    if a < 0:  # no signal dependence that the data support
        a, b = 0.0, float(np.average(var, weights=w))
    # b may be negative: a camera's dark offset sits in the mean but carries no shot noise
    return NoiseModel(float(a), float(b))


# the diagonal Haar detail and the mean of the same 2x2 support: smooth gradients cancel in the
# detail, and white noise of variance s^2 gives a detail of variance s^2
_HAAR = np.array([[1, -1], [-1, 1]], float) / 2
_MEAN2 = np.full((2, 2), 0.25)


def foreground_std(y: np.ndarray, mask: np.ndarray) -> float:
    """The noise's standard deviation at the mean foreground level, measured inside the
    foreground: the robust variance (median absolute deviation) of the Haar detail, binned by
    the local mean over the mask's interior and fitted with a line, read at the foreground's
    mean.  The foreground's own range of intensities constrains the line, so nothing is
    extrapolated from the background."""
    y = np.asarray(y, float)
    mask = np.asarray(mask, bool)
    inner = ndimage.binary_erosion(mask, iterations=1) & unclipped(y)
    if inner.sum() < 100:
        return float(estimate(y).std(y[mask].mean()))
    r = ndimage.convolve(y, _HAAR, mode="reflect", origin=(-1, -1))[inner]
    local = ndimage.convolve(y, _MEAN2, mode="reflect", origin=(-1, -1))[inner]
    xs, vs, ws = _binned_variance(local, r, 8, 30)
    if xs.size < 2:
        return float(np.sqrt(np.average(vs, weights=ws))) if vs.size else float(estimate(y).std(y[mask].mean()))
    a, b = np.polyfit(xs, vs, 1, w=np.sqrt(ws))
    return float(np.sqrt(max(a * y[mask].mean() + b, 1e-24)))


def snr(y: np.ndarray, mask: np.ndarray) -> float:
    """The SNR of an observed image by fmbench's definition, its noise measured on itself:
    mean foreground above mean background over the noise's std in the foreground."""
    y = np.asarray(y, float)
    mask = np.asarray(mask, bool)
    if mask.all() or not mask.any():
        return float("nan")
    mu_f, mu_b = y[mask].mean(), y[~mask].mean()
    return float((mu_f - mu_b) / max(foreground_std(y, mask), 1e-12))
