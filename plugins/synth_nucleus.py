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

VERSION = 1


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


def make(split: str = "test", image_size: int = 256, seed: int = 0, length: int | None = None):
    return SyntheticDataset("nucleus", VERSION, generate, split, image_size, seed, length)


@hookimpl
def fmbench_datasets():
    return [DatasetSpec(name="nucleus", summary="synthetic DAPI-stained nuclei (after the 2018 Data Science Bowl)",
                        factory=make)]
