"""Synthetic fluorescent nuclei (after the fluorescence images of the 2018 Data Science Bowl).

Bright DNA-stained nuclei on a dark background: irregular ellipses 10-60 px across (mostly
15-35 px at 256x256), from a handful to about 80 per image, isolated or in touching and
partly overlapping clusters, cut by the image border; per-nucleus brightness (DNA content),
chromatin texture with bright heterochromatin foci and dim nucleoli; a soft edge from the
nucleus' thickness profile; autofluorescence background and a faint out-of-focus haze.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fmbench import DatasetSpec, hookimpl

from .imaging import Optics, background, psf_blur, smooth_field, wide_blur
from .synthetic import SyntheticDataset

VERSIONS = (1, 2)  # version 1 stays exactly as it was: quick-v1 results are computed on it


def _nucleus(rng: np.random.Generator, diameter: float):
    """Polar outline of one nucleus: semi-axes, orientation and a few low-order harmonics."""
    aspect = rng.uniform(1.0, 1.6)
    a = diameter / 2 * np.sqrt(aspect)
    b = diameter / 2 / np.sqrt(aspect)
    phi = rng.uniform(0, np.pi)
    k = np.arange(2, 6)
    amp = rng.uniform(0.0, 0.06, size=k.size) / np.sqrt(k - 1)
    phase = rng.uniform(0, 2 * np.pi, size=k.size)
    return a, b, phi, k, amp, phase


def generate(rng: np.random.Generator, size: int):
    """One image and its mask (see the module docstring)."""
    optics = Optics(pixel_size_nm=rng.uniform(280, 420), na=rng.choice([0.75, 0.8, 0.95]),
                    wavelength_nm=rng.uniform(450, 470))
    regime = rng.choice(["sparse", "medium", "crowded"], p=[0.25, 0.45, 0.30])
    scale = size / 256
    lo, hi = {"sparse": (3, 15), "medium": (15, 40), "crowded": (40, 80)}[regime]
    n = int(rng.integers(lo, hi + 1) * scale * scale) or 1
    mean_d = float(np.clip(rng.lognormal(np.log(24), 0.25), 14, 40))
    if regime == "crowded":
        mean_d = min(mean_d, 26.0)
    cluster_p = rng.uniform(0.1, 0.6)

    density = np.zeros((size, size), np.float64)
    mask = np.zeros((size, size), bool)
    texture = 1.0 + 0.22 * smooth_field(rng, (size, size), 1.5)
    yy, xx = np.mgrid[0:size, 0:size]
    centres: list[tuple[float, float, float]] = []
    for _ in range(n):
        d = float(np.clip(rng.lognormal(np.log(mean_d), 0.22), 10, 60))
        if centres and rng.random() < cluster_p:
            cx, cy, cd = centres[rng.integers(len(centres))]
            ang = rng.uniform(0, 2 * np.pi)
            dist = (cd + d) / 2 * rng.uniform(0.72, 1.02)
            cx, cy = cx + dist * np.cos(ang), cy + dist * np.sin(ang)
        else:
            cx, cy = rng.uniform(-0.1 * d, size + 0.1 * d, size=2)
        a, b, phi, k, amp, phase = _nucleus(rng, d)
        mitotic = rng.random() < 0.04
        bright = rng.lognormal(0.0, 0.3) * (2.2 if mitotic else 1.0)
        if mitotic:
            a, b = a * 0.7, b * 0.7
        r = int(np.ceil(max(a, b) * 1.3)) + 2
        x0, x1 = max(int(cx) - r, 0), min(int(cx) + r + 1, size)
        y0, y1 = max(int(cy) - r, 0), min(int(cy) + r + 1, size)
        if x0 >= x1 or y0 >= y1:
            continue
        dx = xx[y0:y1, x0:x1] + 0.5 - cx
        dy = yy[y0:y1, x0:x1] + 0.5 - cy
        rho = np.hypot(dx, dy)
        theta = np.arctan2(dy, dx)
        t = theta - phi
        radius = a * b / np.sqrt((b * np.cos(t)) ** 2 + (a * np.sin(t)) ** 2)
        radius = radius * (1 + (amp[:, None, None] * np.cos(k[:, None, None] * theta + phase[:, None, None])).sum(0))
        u = rho / radius
        inside = u <= 1.0
        if not inside.any():
            continue
        centres.append((cx, cy, d))
        # thickness profile of a flattened ellipsoid: a plateau with a soft edge
        profile = np.clip(1 - u**2, 0, 1) ** 0.35
        dens = bright * profile * texture[y0:y1, x0:x1]
        # nucleoli: 1-4 dim spots
        for _ in range(rng.integers(1, 5) if not mitotic else 0):
            ang, rr = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.55)
            nx, ny = cx + rr * a * np.cos(ang), cy + rr * b * np.sin(ang)
            nr = d * rng.uniform(0.06, 0.12)
            spot = np.exp(-((xx[y0:y1, x0:x1] + 0.5 - nx) ** 2 + (yy[y0:y1, x0:x1] + 0.5 - ny) ** 2) / (2 * nr * nr))
            dens = dens * (1 - 0.45 * spot)
        density[y0:y1, x0:x1] += np.where(inside, dens, 0.0)
        mask[y0:y1, x0:x1] |= inside
    if not mask.any():  # always at least one nucleus in view
        return generate(rng, size)
    # heterochromatin foci: small bright spots inside nuclei
    foci = ndimage.gaussian_filter((rng.random((size, size)) < 0.004).astype(float), 0.8) * 6.0
    density *= 1 + foci * mask
    image = psf_blur(density, optics)
    haze = wide_blur(density, 12 * scale + 4) * rng.uniform(0.03, 0.10)
    image += haze + background(rng, (size, size), level=rng.uniform(0.02, 0.08))
    return image.astype(np.float32), mask


# ---- version 2 ------------------------------------------------------------------------------
#
# What version 1 got wrong, measured against real DAPI images (docs/datasets.md): edges far
# too sharp (a fitted edge sigma of 1.3 px against 2.7 px on a DSB 2018 image), masks that
# extend past the visible edge (annotators draw the edge at about half maximum), a clean
# background, and no cell bodies (bleed-through and cytoplasmic autofluorescence that real
# DAPI images show around many nuclei).  Version 2 draws each nucleus through its own blur
# (the wide-field PSF widened by the nucleus' distance from the focal plane and its own
# thickness) and annotates it where its own blurred image crosses half its maximum.  The ranges
# are wide on purpose (domain randomisation): 20x to 63x sampling, in- and out-of-focus
# nuclei, dim and saturated ones, with and without cell bodies.

REGIMES_V2 = {"sparse": (2, 10), "medium": (10, 30), "crowded": (30, 60), "dense": (60, 110)}


def _outline(rng: np.random.Generator, diameter: float, wobble: float):
    """Polar outline (semi-axes, orientation, harmonics) with harmonic amplitude ``wobble``."""
    aspect = rng.uniform(1.0, 1.7)
    a = diameter / 2 * np.sqrt(aspect)
    b = diameter / 2 / np.sqrt(aspect)
    k = np.arange(2, 6)
    amp = rng.uniform(0.0, wobble, size=k.size) / np.sqrt(k - 1)
    return a, b, rng.uniform(0, np.pi), k, amp, rng.uniform(0, 2 * np.pi, size=k.size)


def _radius_ratio(dx, dy, shape) -> np.ndarray:
    """``rho / r(theta)``: below 1 inside the outline."""
    a, b, phi, k, amp, phase = shape
    theta = np.arctan2(dy, dx)
    t = theta - phi
    radius = a * b / np.sqrt((b * np.cos(t)) ** 2 + (a * np.sin(t)) ** 2)
    radius = radius * (1 + (amp[:, None, None] * np.cos(k[:, None, None] * theta + phase[:, None, None])).sum(0))
    return np.hypot(dx, dy) / radius


def generate_v2(rng: np.random.Generator, size: int):
    """One image and its mask, version 2 (see the comment above)."""
    scale = size / 256
    optics = Optics(pixel_size_nm=rng.uniform(160, 450), na=rng.uniform(0.45, 1.3), wavelength_nm=rng.uniform(450, 470))
    focus = rng.uniform(0.0, 2.4)  # px: the image's defocus blur (the focal plane vs the nuclei's mid-plane)
    edge_level = rng.uniform(0.25, 0.45)  # where annotators draw the visible edge, as a fraction of the peak
    regime = rng.choice(list(REGIMES_V2), p=[0.3, 0.35, 0.25, 0.1])
    lo, hi = REGIMES_V2[regime]
    n = max(int(rng.integers(lo, hi + 1) * scale * scale), 1)
    mean_d = float(np.clip(rng.lognormal(np.log(28), 0.35), 12, 60))
    if regime in ("crowded", "dense"):
        mean_d = min(mean_d, 30.0 if regime == "crowded" else 22.0)
    cluster_p = rng.uniform(0.1, 0.6)
    hetero = rng.uniform(0.15, 0.55)  # spread of nuclear brightness (log scale)
    tex_amp, tex_len = rng.uniform(0.08, 0.35), rng.uniform(0.7, 2.5)
    edge_p = rng.uniform(0.2, 0.6)  # thickness profile exponent: lower is flatter
    body_level = rng.uniform(0.02, 0.12) if rng.random() < 0.3 else 0.0  # cell bodies around nuclei

    pad = 48
    big = size + 2 * pad
    image = np.zeros((big, big), np.float64)
    bodies = np.zeros((big, big), np.float64)
    mask = np.zeros((big, big), bool)
    texture = 1.0 + tex_amp * smooth_field(rng, (big, big), tex_len)
    # heterochromatin foci: small bright spots in the chromatin (imaged through the PSF with it)
    foci = ndimage.gaussian_filter((rng.random((big, big)) < rng.uniform(0.001, 0.008)).astype(float), 0.8)
    texture = np.clip(texture, 0.2, None) * (1 + rng.uniform(0.5, 3) * foci)
    centres: list[tuple[float, float, float]] = []
    for _ in range(n):
        d = float(np.clip(rng.lognormal(np.log(mean_d), 0.2), 8, 70))
        for _attempt in range(8):  # nuclei of a monolayer touch and overlap a little, they do not pile up
            if centres and rng.random() < cluster_p:
                cx, cy, cd = centres[rng.integers(len(centres))]
                ang = rng.uniform(0, 2 * np.pi)
                dist = (cd + d) / 2 * rng.uniform(0.85, 1.1)
                cx, cy = cx + dist * np.cos(ang), cy + dist * np.sin(ang)
            else:
                cx, cy = rng.uniform(pad - 0.1 * d, pad + size + 0.1 * d, size=2)
            c = np.asarray(centres).reshape(-1, 3)
            if not (np.hypot(c[:, 0] - cx, c[:, 1] - cy) < 0.8 * (c[:, 2] + d) / 2).any():
                break
        else:
            continue
        shape = _outline(rng, d, 0.07)
        state = rng.random()
        mitotic, defocused = state < 0.04, state > 0.92
        bright = rng.lognormal(0.0, hetero) * (rng.uniform(1.6, 3.0) if mitotic else 1.0)
        if mitotic:
            shape = (shape[0] * 0.7, shape[1] * 0.7, *shape[2:])
        blur = float(np.hypot(optics.psf_sigma_px, focus + abs(rng.normal(0, 0.6)) + (rng.uniform(2, 5) if defocused else 0)))
        half = int(np.ceil(max(shape[0], shape[1]) * 1.15 + 3.5 * blur)) + 2
        x0, y0 = int(cx) - half, int(cy) - half
        if x0 + 2 * half < 0 or y0 + 2 * half < 0 or x0 >= big or y0 >= big:
            continue
        yy, xx = np.mgrid[0 : 2 * half + 1, 0 : 2 * half + 1]
        u = _radius_ratio(xx + x0 + 0.5 - cx, yy + y0 + 0.5 - cy, shape)
        if not (u <= 1).any():
            continue
        centres.append((cx, cy, d))
        profile = np.clip(1 - u**2, 0, 1) ** edge_p  # thickness of a flattened ellipsoid
        own = ndimage.gaussian_filter(profile, blur, mode="constant")
        inside = own >= edge_level * own.max()  # annotated at its own visible edge
        dens = profile * _crop(texture, x0, y0, 2 * half + 1)
        for _ in range(rng.integers(1, 5) if not mitotic else 0):  # nucleoli: dim spots
            ang, rr = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.55)
            nx, ny = half + rr * shape[0] * np.cos(ang), half + rr * shape[1] * np.sin(ang)
            nr = d * rng.uniform(0.06, 0.12)
            dens = dens * (1 - rng.uniform(0.2, 0.5) * np.exp(-((xx + 0.5 - nx) ** 2 + (yy + 0.5 - ny) ** 2) / (2 * nr * nr)))
        _paste(image, bright * ndimage.gaussian_filter(dens, blur, mode="constant"), x0, y0)
        _paste(mask, inside, x0, y0, op=np.logical_or)
        if body_level > 0:  # the cell body: a larger, irregular, faint and smooth region
            bs = _outline(rng, d * rng.uniform(1.8, 3.2), 0.2)
            ub = _radius_ratio(xx + x0 + 0.5 - cx + rng.normal(0, d / 4), yy + y0 + 0.5 - cy + rng.normal(0, d / 4), bs)
            _paste(bodies, bright * body_level * rng.lognormal(0, 0.4) * np.clip(1 - ub**2, 0, 1) ** 0.5, x0, y0)
    if not mask[pad:-pad, pad:-pad].any():  # always at least one nucleus in view
        return generate_v2(rng, size)
    if body_level > 0:
        image += wide_blur(bodies, 2.0 + focus) * np.clip(1 + 0.4 * smooth_field(rng, (big, big), 4.0), 0.1, None)
    image += wide_blur(image, rng.uniform(6, 20) * scale + 4) * rng.uniform(0.01, 0.08)  # out-of-focus haze
    image = image[pad:-pad, pad:-pad]
    mask = mask[pad:-pad, pad:-pad]
    image += background(rng, (size, size), level=rng.uniform(0.01, 0.1), variation=rng.uniform(0.1, 0.5))
    if rng.random() < 0.15:  # saturated: the camera clips the brightest nuclei
        image = np.minimum(image, np.percentile(image[mask], rng.uniform(80, 99)))
    return image.astype(np.float32), mask


def _crop(a: np.ndarray, x0: int, y0: int, w: int) -> np.ndarray:
    """``a[y0:y0+w, x0:x0+w]`` with 1 outside ``a``."""
    out = np.ones((w, w), a.dtype)
    _paste(out, a[max(y0, 0) : y0 + w, max(x0, 0) : x0 + w], max(-x0, 0), max(-y0, 0), op=None)
    return out


def _paste(dst: np.ndarray, src: np.ndarray, x0: int, y0: int, op=np.add) -> None:
    """Combine ``src`` into ``dst`` at (x0, y0), clipped to ``dst``."""
    h, w = src.shape
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + h, dst.shape[0]), min(x0 + w, dst.shape[1])
    if ys >= ye or xs >= xe:
        return
    part = src[ys - y0 : ye - y0, xs - x0 : xe - x0]
    region = dst[ys:ye, xs:xe]
    dst[ys:ye, xs:xe] = part if op is None else op(region, part)


GENERATORS = {1: generate, 2: generate_v2}


def make(split: str = "test", image_size: int = 256, seed: int = 0, length: int | None = None, version: int = 1):
    return SyntheticDataset("nucleus", version, GENERATORS[version], split, image_size, seed, length)


@hookimpl
def fmbench_datasets():
    return [DatasetSpec(name="nucleus", summary="synthetic DAPI-stained nuclei (after the 2018 Data Science Bowl)",
                        factory=make, versions=VERSIONS)]
