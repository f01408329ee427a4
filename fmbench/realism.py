"""How far a dataset is from another: the domain-gap report behind ``fmbench data compare``.

Each image (as a model sees it before normalisation: a synthetic image at the reference
condition, a measured image as it is) and its mask give a set of statistics; each object of
the mask gives its size, shape and brightness.  Two datasets are compared statistic by
statistic: their medians and spreads side by side, and a distance -- the Wasserstein-1
distance between the two distributions divided by their pooled within-dataset standard
deviation (0: the same distribution; 1: apart by a typical spread).  The statistics, each tested on images
with known properties (``tests/test_realism.py``):

* intensity after the protocol's normalisation: foreground and background level, background
  texture (its standard deviation), heterogeneity between objects (coefficient of variation of
  their mean intensities);
* noise (:mod:`fmbench.noise`): the image's SNR by fmbench's definition, measured on itself;
* boundary: the width and the position of the intensity edge across the mask's boundary (an
  error function fitted to the mean profile against the signed distance to the boundary: its
  sigma is the blur, its centre where annotators put the edge relative to half maximum);
* spectrum: the slope of the radially averaged log power spectrum (mid frequencies);
* objects: area, equivalent diameter, eccentricity, objects per 256 x 256 px, foreground fraction.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy import ndimage, optimize, special, stats

from .noise import snr

EDGE_RANGE = 8  # px either side of the boundary for the edge profile
IMAGE_STATS = ("foreground level", "background level", "background texture", "object heterogeneity", "SNR",
               "edge width (px)", "edge offset (px)", "spectrum slope", "objects per 256² px", "foreground fraction")
OBJECT_STATS = ("object area (px)", "equivalent diameter (px)", "eccentricity")


def _normalize(y: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(y, [1.0, 99.8])
    return np.clip((y - lo) / max(hi - lo, 1e-12), 0.0, 1.0)


def edge_profile(y: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(sigma, centre) in px of an error function fitted to the mean normalised intensity
    against the signed distance to the mask boundary (positive inside)."""
    n = _normalize(np.asarray(y, float))
    inside = ndimage.distance_transform_edt(mask) - 0.5
    outside = ndimage.distance_transform_edt(~mask) - 0.5
    d = np.where(mask, inside, -outside)
    bins = np.arange(-EDGE_RANGE, EDGE_RANGE + 1)
    idx = np.round(d).astype(int)
    keep = np.abs(idx) <= EDGE_RANGE
    sums = np.bincount(idx[keep] + EDGE_RANGE, weights=n[keep], minlength=bins.size)
    counts = np.bincount(idx[keep] + EDGE_RANGE, minlength=bins.size)
    ok = counts > 0
    x, prof = bins[ok].astype(float), sums[ok] / counts[ok]
    if x.size < 5 or prof.max() - prof.min() < 1e-6:
        return math.nan, math.nan

    def erf_step(t, lo, hi, c, s):
        return lo + (hi - lo) * 0.5 * (1 + special.erf((t - c) / (math.sqrt(2) * abs(s))))

    try:
        p, _ = optimize.curve_fit(erf_step, x, prof, p0=[prof.min(), prof.max(), 0.0, 1.5], maxfev=5000)
    except (RuntimeError, ValueError):
        return math.nan, math.nan
    return float(abs(p[3])), float(p[2])


def spectrum_slope(y: np.ndarray) -> float:
    """Slope of log power against log frequency, radially averaged, 0.02 to 0.25 cycles/px."""
    n = _normalize(np.asarray(y, float))
    n = n - n.mean()
    power = np.abs(np.fft.fftshift(np.fft.fft2(n))) ** 2
    h, w = n.shape
    fy = np.fft.fftshift(np.fft.fftfreq(h))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(w))[None, :]
    f = np.hypot(fy, fx)
    sel = (f >= 0.02) & (f <= 0.25)
    edges = np.geomspace(0.02, 0.25, 16)
    which = np.digitize(f[sel], edges)
    centres, means = [], []
    for k in range(1, edges.size):
        v = power[sel][which == k]
        if v.size:
            centres.append(math.sqrt(edges[k - 1] * edges[k]))
            means.append(v.mean())
    if len(centres) < 3:
        return math.nan
    return float(np.polyfit(np.log(centres), np.log(np.maximum(means, 1e-30)), 1)[0])


def objects(y: np.ndarray, mask: np.ndarray) -> dict[str, list[float]]:
    """Per object (connected component of the mask): area, equivalent diameter, eccentricity
    (from the second moments) and mean normalised intensity."""
    n = _normalize(np.asarray(y, float))
    found = ndimage.label(mask)
    labels, k = np.asarray(found[0]), int(found[1])
    out: dict[str, list[float]] = {"object area (px)": [], "equivalent diameter (px)": [], "eccentricity": [],
                                   "mean intensity": []}
    if k == 0:
        return out
    index = np.arange(1, k + 1)
    area = ndimage.sum_labels(np.ones_like(n), labels, index)
    means = ndimage.mean(n, labels, index)
    coords = np.asarray(np.indices(mask.shape))
    rr, cc = coords[0], coords[1]
    for j, a in zip(index, area):
        if a < 3:
            continue
        sel = labels == j
        r, c = rr[sel].astype(float), cc[sel].astype(float)
        cov = np.cov(np.stack([r, c]))
        ev = np.sort(np.linalg.eigvalsh(cov))
        ecc = math.sqrt(max(0.0, 1 - ev[0] / ev[1])) if ev[1] > 0 else 0.0
        out["object area (px)"].append(float(a))
        out["equivalent diameter (px)"].append(float(2 * math.sqrt(a / math.pi)))
        out["eccentricity"].append(ecc)
        out["mean intensity"].append(float(means[j - 1]))
    return out


def image_statistics(y: np.ndarray, mask: np.ndarray) -> tuple[dict[str, float], dict[str, list[float]]]:
    """The per-image statistics and the per-object ones of one image and its mask."""
    y = np.asarray(y, float)
    mask = np.asarray(mask, bool)
    n = _normalize(y)
    objs = objects(y, mask)
    width, offset = edge_profile(y, mask)
    mi = np.asarray(objs["mean intensity"])
    row = {
        "foreground level": float(n[mask].mean()) if mask.any() else math.nan,
        "background level": float(n[~mask].mean()) if (~mask).any() else math.nan,
        "background texture": float(n[~mask].std()) if (~mask).any() else math.nan,
        "object heterogeneity": float(mi.std() / mi.mean()) if mi.size > 1 and mi.mean() > 0 else math.nan,
        "SNR": snr(y, mask),
        "edge width (px)": width,
        "edge offset (px)": offset,
        "spectrum slope": spectrum_slope(y),
        # a density, so images of different sizes compare (the protocol's images are 256 x 256)
        "objects per 256² px": float(len(objs["object area (px)"])) * 256 * 256 / mask.size,
        "foreground fraction": float(mask.mean()),
    }
    return row, {k: objs[k] for k in OBJECT_STATS}


def dataset_statistics(samples: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, list[float]]:
    """Every statistic over the images ``(observed image, mask)`` of a dataset: one value per
    image for the image statistics, one per object for the object ones."""
    out: dict[str, list[float]] = {k: [] for k in (*IMAGE_STATS, *OBJECT_STATS)}
    for y, mask in samples:
        row, objs = image_statistics(y, mask)
        for k, v in row.items():
            out[k].append(v)
        for k, vs in objs.items():
            out[k].extend(vs)
    return out


def distance(a: Iterable[float], b: Iterable[float]) -> float:
    """Wasserstein-1 distance between two samples over their pooled within-sample standard
    deviation (as Cohen's d pools it): how many typical spreads apart they are."""
    x = np.asarray([v for v in a if math.isfinite(v)], float)
    y = np.asarray([v for v in b if math.isfinite(v)], float)
    if x.size == 0 or y.size == 0:
        return math.nan
    spread = math.sqrt((x.var() + y.var()) / 2)
    w = stats.wasserstein_distance(x, y)
    return float(w / spread) if spread > 0 else (0.0 if w == 0 else math.inf)


def _summary(v: list[float]) -> dict[str, Any]:
    x = np.asarray([t for t in v if math.isfinite(t)], float)
    if x.size == 0:
        return {"median": None, "q25": None, "q75": None, "n": 0}
    q25, med, q75 = np.percentile(x, [25, 50, 75])
    return {"median": float(med), "q25": float(q25), "q75": float(q75), "n": int(x.size)}


def compare(a: dict[str, list[float]], b: dict[str, list[float]]) -> list[dict[str, Any]]:
    """One row per statistic: each dataset's median and interquartile range, and the distance."""
    return [{"statistic": k, "a": _summary(a[k]), "b": _summary(b[k]), "distance": distance(a[k], b[k])}
            for k in (*IMAGE_STATS, *OBJECT_STATS)]


def figure(rows: list[dict[str, Any]], a: dict[str, list[float]], b: dict[str, list[float]], labels: tuple[str, str],
           path: Any) -> None:
    """One histogram per statistic, both datasets overlaid, the distance in each title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows)
    cols = 4
    fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(4 * cols, 2.6 * math.ceil(n / cols)))
    for ax, row in zip(axes.ravel(), rows):
        k = row["statistic"]
        xa = [v for v in a[k] if math.isfinite(v)]
        xb = [v for v in b[k] if math.isfinite(v)]
        if xa or xb:
            lo, hi = min(xa + xb), max(xa + xb)
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 20)
            ax.hist(xa, bins=bins, alpha=0.55, density=True, label=labels[0])
            ax.hist(xb, bins=bins, alpha=0.55, density=True, label=labels[1])
        ax.set_title(f"{k}: distance {row['distance']:.2f}", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    from .files import save_figure

    save_figure(fig, path, dpi=90)
    plt.close(fig)


def observed(dataset: Any, dataset_ref: str, protocol: Any, n: int) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """The first ``n`` images as a model sees them before normalisation, with their masks:
    synthetic images at the protocol's reference condition (the engine's own noise draw),
    measured images as they are."""
    import torch

    from .conditions import expose
    from .seeding import generators

    for i in range(min(n, len(dataset))):
        s = dataset[i]
        y = np.asarray(s.image, np.float32)
        mask = np.asarray(s.mask, bool)
        if dataset.synthetic:
            x = torch.from_numpy(y)[None, None]
            gens = generators(protocol.seed, [f"{dataset_ref}/{s.id}"], "reference")
            y = expose(protocol, x, torch.from_numpy(mask)[None], gens)[0, 0].numpy()
        yield y, mask
