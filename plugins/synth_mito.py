"""Synthetic mitochondria (after the Mito dataset of Luo et al.: 256x256 crops of COS-7
cells with fluorescently labelled mitochondria, high-NA wide-field).

Mitochondria are tubes 250-700 nm wide (several times wider than ER tubules), from long
curved and sometimes branched tubules to short rods and round puncta (fragmented
mitochondria); they crowd and touch around the nucleus and thin out towards the cell edge,
where many run radially along microtubules.  We draw each one as a worm-like chain (a curve
with a persistence length) in the cytoplasm of a :class:`~fmbench_plugins.organelles.Cell`,
with a per-mitochondrion width and brightness and gentle variation along its length, a
morphology regime per image (tubular / mixed / fragmented) and a density regime (sparse to
crowded).  The label is a matrix marker (a filled tube: density = projected thickness) or,
in some images, an outer-membrane marker such as TOM20 (a hollow tube: density = projected
membrane area, brighter at the rims).  Out-of-focus mitochondria above and below the focal
plane add dim blurred tubes that are *not* foreground, as in real images.

Mask: the half-maximum rule of :mod:`~fmbench_plugins.organelles` (about 0.85x the physical
radius for a filled tube).  All parameters are listed in ``docs/datasets.md``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fmbench import DatasetSpec, hookimpl

from .imaging import Optics, psf_blur
from .organelles import (
    Cell,
    background,
    blur,
    field,
    half_max_radius,
    nearest_axis,
    splat,
    worms,
)
from .synthetic import SyntheticDataset

VERSION = 1

PARAMETERS = {
    "pixel_size_nm": (55, 75),
    "na": (1.3, 1.49),
    "wavelength_nm": (510, 610),
    "diameter_nm": {"median": (300, 500), "spread_log": 0.2, "range": (250, 700)},
    "persistence_length_um": (2.0, 6.0),
    "tubule_length_um": {"median": (1.5, 4.0), "spread_log": 0.6, "range": (1.0, 12.0)},
    "rod_length_um": (0.4, 2.0),
    "punctum_diameter_factor": (1.0, 1.4),
    "morphology": {"tubular": (0.4, {"tube": 0.85, "rod": 0.1, "punctum": 0.05}),
                   "mixed": (0.35, {"tube": 0.5, "rod": 0.3, "punctum": 0.2}),
                   "fragmented": (0.25, {"tube": 0.15, "rod": 0.45, "punctum": 0.4})},
    "branch_probability": (0.05, 0.35),
    "density_per_100um2": {"sparse": (0.25, (5, 12)), "medium": (0.45, (12, 25)), "crowded": (0.3, (25, 45))},
    "radial_fraction": (0.2, 0.7),
    "outer_membrane_label_probability": 0.3,
    "out_of_focus_fraction": (0.1, 0.4),
    "cytoplasm_level": (0.02, 0.08),
    "background_level": (0.01, 0.05),
}


def _choice(rng: np.random.Generator, table: dict):
    names = list(table)
    p = np.array([table[k][0] for k in names])
    return names[rng.choice(len(names), p=p / p.sum())]


def _mitochondria(rng, cell: Cell, size: int, px: float, n: int, kinds: dict, d_med: float):
    """Axis points, radius and brightness per point for ``n`` mitochondria (all drawn at
    once: no per-object Python loop)."""
    pad = 60.0
    lo, hi = -pad, size + pad
    # centres: uniform in the cytoplasm, denser near the nucleus
    cand = rng.uniform(lo, hi, (n * 8 + 16, 2))
    u = cell.depth(cand[:, 0], cand[:, 1])
    accept = (u > 0.02) & (u < 0.97) & (rng.random(len(cand)) < 1.15 - u)
    centre = cand[accept][:n]
    m = len(centre)
    if m == 0:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0)
    names = list(kinds)
    kind = rng.choice(len(names), size=m, p=np.array([kinds[k] for k in names]))
    tube, rod, punctum = (kind == names.index(k) for k in ("tube", "rod", "punctum"))
    um = 1000 / px
    spec = PARAMETERS["diameter_nm"]
    d_nm = np.clip(rng.lognormal(np.log(d_med), spec["spread_log"], m), *spec["range"])
    d_nm = np.where(punctum, d_nm * rng.uniform(*PARAMETERS["punctum_diameter_factor"], m), d_nm)
    spec = PARAMETERS["tubule_length_um"]
    t_med = rng.uniform(*spec["median"])
    length = np.where(tube, np.clip(rng.lognormal(np.log(t_med), spec["spread_log"], m), *spec["range"]) * um,
                      np.where(rod, rng.uniform(*PARAMETERS["rod_length_um"], m) * um, 0.0))
    # some run radially (along microtubules, away from the nucleus), the rest any way
    radial = rng.random(m) < rng.uniform(*PARAMETERS["radial_fraction"])
    outward = np.arctan2(centre[:, 0] - cell.centre[0], centre[:, 1] - cell.centre[1]) + rng.normal(0, 0.3, m)
    heading = np.where(radial, outward, rng.uniform(0, 2 * np.pi, m))
    persistence = rng.uniform(*PARAMETERS["persistence_length_um"]) * um
    # start half a length behind the centre so each mitochondrion is centred on it
    start = centre - 0.5 * length[:, None] * np.stack([np.sin(heading), np.cos(heading)], 1)
    pts, owner, first = worms(rng, start, heading, length, persistence)
    # branches: from an interior point of some tubules, at an angle, shorter than the parent
    branched = np.nonzero(tube & (length > 10) & (rng.random(m) < rng.uniform(*PARAMETERS["branch_probability"])))[0]
    if len(branched):
        count = np.bincount(owner, minlength=m)[branched]
        j = first[branched] + (count * rng.uniform(0.2, 0.8, len(branched))).astype(np.int64)
        j = np.clip(j, first[branched] + 1, first[branched] + count - 2)
        tangent = np.arctan2(*(pts[j + 1] - pts[j - 1]).T)
        side = rng.choice([-1.0, 1.0], len(branched)) * rng.uniform(0.5, 1.3, len(branched))
        b_pts, b_owner, _ = worms(rng, pts[j], tangent + side, length[branched] * rng.uniform(0.2, 0.6, len(branched)),
                                  persistence)
        pts = np.concatenate([pts, b_pts])
        owner = np.concatenate([owner, branched[b_owner]])
    # gentle variation of width and brightness along each tube (cristae, nucleoids)
    wobble = ndimage.gaussian_filter1d(rng.standard_normal(len(pts)), 4, mode="nearest")
    wobble /= np.abs(wobble).max() + 1e-9
    bright = rng.lognormal(0, 0.3, m)[owner] * (1 + 0.25 * np.roll(wobble, 7))
    rad = (d_nm / 2 / px)[owner] * (1 + 0.08 * wobble)
    u = cell.depth(pts[:, 0], pts[:, 1])
    keep = (u > 0) & (u < 1) & (pts > -12).all(1) & (pts < size + 12).all(1)
    return pts[keep], rad[keep], bright[keep]


def generate(rng: np.random.Generator, size: int):
    """One image and its mask (see the module docstring)."""
    px = rng.uniform(*PARAMETERS["pixel_size_nm"])
    optics = Optics(pixel_size_nm=px, na=rng.uniform(*PARAMETERS["na"]), wavelength_nm=rng.uniform(*PARAMETERS["wavelength_nm"]))
    sigma = optics.psf_sigma_px
    cell = Cell.random(rng, size, px)
    shape = (size, size)
    morph = _choice(rng, PARAMETERS["morphology"])
    kinds = PARAMETERS["morphology"][morph][1]
    regime = _choice(rng, PARAMETERS["density_per_100um2"])
    per_100um2 = rng.uniform(*PARAMETERS["density_per_100um2"][regime][1])
    depth = cell.depth_map(size)
    cyto = (depth > 0) & (depth < 1)
    area_um2 = cyto.sum() * (px / 1000) ** 2 * ((size + 120) / size) ** 2
    # fragments are smaller: more of them for the same mitochondrial mass
    n = int(per_100um2 * area_um2 / 100 * (1 + 1.5 * kinds["punctum"] + kinds["rod"]))
    d_med = rng.uniform(*PARAMETERS["diameter_nm"]["median"])
    pts, rad, bright = _mitochondria(rng, cell, size, px, max(n, 1), kinds, d_med)
    if not len(pts):
        return generate(rng, size)
    dist, idx = nearest_axis(shape, pts)
    r, b = rad[idx], bright[idx]
    gap = np.clip(r * r - dist * dist, 0, None)
    membrane = rng.random() < PARAMETERS["outer_membrane_label_probability"]
    if membrane:  # projected membrane area of a hollow tube, finite at the rim
        density = np.where(gap > 0, b * 2 * r / np.sqrt(np.maximum(gap, 0.5 * r)), 0.0) * 0.5
    else:  # projected thickness of a filled tube
        density = b * 2 * np.sqrt(gap)
    r_tab = np.linspace(rad.min(), rad.max() + 1e-6, 12)
    h_tab = half_max_radius(r_tab, sigma, "membrane" if membrane else "filled")
    mask = dist <= np.interp(r, r_tab, h_tab)

    density *= np.clip(1 + 0.15 * field(rng, shape, 40), 0.5, None)
    image = psf_blur(density, optics)
    peak = 2 * d_med / 2 / px
    # out-of-focus mitochondria above and below the focal plane: dim, blurred, not foreground
    oof_pts, oof_rad, oof_b = _mitochondria(rng, cell, size, px, max(n // 3, 1), kinds, d_med)
    if len(oof_pts):
        oof = splat(shape, oof_pts, oof_b * np.pi * oof_rad**2 * 0.5)
        image += blur(oof, rng.uniform(2.5, 5) * sigma) * rng.uniform(0.3, 0.7)
    image += blur(density, rng.uniform(4, 8) * sigma) * rng.uniform(*PARAMETERS["out_of_focus_fraction"])
    image += peak * rng.uniform(*PARAMETERS["cytoplasm_level"]) * blur(cyto.astype(float), 2 * sigma)
    image += background(rng, shape, level=peak * rng.uniform(*PARAMETERS["background_level"]))
    if not mask.any():
        return generate(rng, size)
    return image.astype(np.float32), mask


def make(split: str = "test", image_size: int = 256, seed: int = 0, length: int | None = None):
    ds = SyntheticDataset("mito", VERSION, generate, split, image_size, seed, length)
    ds.parameters = PARAMETERS
    return ds


@hookimpl
def fmbench_datasets():
    return [DatasetSpec(name="mito", summary="synthetic mitochondria: tubules, branches, rods and puncta (after Luo et al.)",
                        factory=make)]
