"""Synthetic endoplasmic reticulum (after the ER dataset of Luo et al.: 256x256 crops of
COS-7 cells expressing a fluorescent ER-membrane marker such as Sec61b, high-NA wide-field).

The peripheral ER of a flat cell is a planar network of thin tubules (diameter 50-100 nm)
joined mostly at three-way junctions into polygons 0.5-3 um across; towards the nucleus the
mesh tightens and flat sheets (cisternae, with small fenestrations) appear; the nuclear
envelope is continuous with the ER and outlines the nucleus.  We draw exactly that:

* a cell (:class:`~fmbench_plugins.organelles.Cell`) seen through the image window;
* the tubular network as the **Voronoi diagram** of points whose spacing grows from the
  nucleus to the cell edge (a Voronoi diagram has only three-way vertices, like the ER);
  a few edges removed (dead ends, larger polygons); edges bowed and the whole network warped
  by a smooth displacement field so tubules curve;
* sheets near the nucleus with fenestrations, small sheet patches at some junctions;
* fluorophore density proportional to membrane area (a membrane label), per-tubule and
  per-region brightness variation, out-of-focus ER from above and below the focal plane
  (wide blur), diffuse cytoplasmic and background fluorescence.

Mask: the half-maximum rule of :mod:`~fmbench_plugins.organelles` (tubules ~3 px wide) plus
the sheets' exact footprint.  All parameters are listed in ``docs/datasets.md``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import Voronoi

from fmbench import DatasetSpec, hookimpl

from .imaging import Optics, psf_blur
from .organelles import (
    Cell,
    background,
    bezier_points,
    bilinear,
    blur,
    field,
    half_max_radius,
    splat,
    warp,
    within,
)
from .synthetic import SyntheticDataset

VERSION = 1

PARAMETERS = {
    "pixel_size_nm": (55, 75),
    "na": (1.3, 1.49),
    "wavelength_nm": (510, 610),
    "tubule_diameter_nm": (50, 100),
    "mesh_spacing_perinuclear_nm": (450, 800),
    "mesh_spacing_peripheral_nm": (1200, 2600),
    "edge_removal_fraction": (0.03, 0.15),
    "sheet_probability": 0.6,
    "out_of_focus_fraction": (0.15, 0.45),
    "cytoplasm_level": (0.04, 0.12),
    "nucleus_haze": (0.05, 0.25),
    "background_level": (0.02, 0.06),
}


def _points(rng: np.random.Generator, cell: Cell, lo: float, hi: float, s_near: float, s_far: float):
    """Seed points of the Voronoi mesh: an inhomogeneous Poisson process with local spacing
    ``s(depth)`` from ``s_near`` at the nucleus to ``s_far`` at the cell edge, modulated by a
    smooth random field (patches of denser and looser mesh)."""
    area = (hi - lo) ** 2
    n_max = rng.poisson(area / s_near**2 * 1.6)
    pts = rng.uniform(lo, hi, (n_max, 2))
    u = np.clip(cell.depth(pts[:, 0], pts[:, 1]), 0, 1)
    spacing = s_near + (s_far - s_near) * u**1.3
    grid = 8
    n = int(np.ceil((hi - lo) / grid)) + 2
    mod = bilinear(field(rng, (n, n), 40 / grid), (pts[:, 0] - lo) / grid, (pts[:, 1] - lo) / grid)
    spacing = spacing * np.exp(0.2 * mod)
    keep = rng.random(n_max) < (s_near / spacing) ** 2 / 1.6
    return pts[keep]


def generate(rng: np.random.Generator, size: int):
    """One image and its mask (see the module docstring)."""
    px = rng.uniform(*PARAMETERS["pixel_size_nm"])
    optics = Optics(pixel_size_nm=px, na=rng.uniform(*PARAMETERS["na"]), wavelength_nm=rng.uniform(*PARAMETERS["wavelength_nm"]))
    sigma = optics.psf_sigma_px
    cell = Cell.random(rng, size, px)
    shape = (size, size)
    s_near = rng.uniform(*PARAMETERS["mesh_spacing_perinuclear_nm"]) / px
    s_far = rng.uniform(*PARAMETERS["mesh_spacing_peripheral_nm"]) / px
    pad = 2 * s_far
    lo, hi = -pad, size + pad
    seeds = _points(rng, cell, lo, hi, s_near, s_far)

    # the network: finite Voronoi edges, a few removed, bowed, warped
    vor = Voronoi(seeds)
    ridges = np.array([r for r in vor.ridge_vertices if r[0] >= 0 and r[1] >= 0], np.int64).reshape(-1, 2)
    verts = vor.vertices
    inside = ((verts > lo) & (verts < hi)).all(1)
    ridges = ridges[inside[ridges].all(1)]
    # remove a few edges (dead ends, merged polygons), more towards the thin cell edge
    mid = verts[ridges].mean(1)
    u_mid = cell.depth(mid[:, 0], mid[:, 1])
    p_remove = rng.uniform(*PARAMETERS["edge_removal_fraction"]) + 0.5 * np.clip((u_mid - 0.75) / 0.25, 0, 1)
    ridges = ridges[rng.random(len(ridges)) >= p_remove]
    p0, p1 = verts[ridges[:, 0]], verts[ridges[:, 1]]
    length = np.hypot(*(p1 - p0).T)
    bow = rng.normal(0, 0.2, len(ridges)) * length
    pts, edge, step = bezier_points(p0, p1, bow)
    scale = rng.uniform(20, 50)
    pts = warp(rng, pts, lo, hi, scale=scale, amplitude=scale * rng.uniform(0.04, 0.1))
    # confine to the cytoplasm: tubules end at the cell edge and at the nuclear envelope
    u = cell.depth(pts[:, 0], pts[:, 1])
    keep = (u > 0.0) & (u < 1.0)
    on = (pts > -4).all(1) & (pts < size + 4).all(1)
    keep &= on
    pts, edge, step = pts[keep], edge[keep], step[keep]

    d_tube = rng.uniform(*PARAMETERS["tubule_diameter_nm"]) / px
    # label density per unit length of tubule = its membrane area (pi d), per-tubule variation
    edge_bright = rng.lognormal(0, 0.25, len(ridges))
    weight = np.pi * d_tube * step * edge_bright[edge]
    # the nuclear envelope: two membranes, continuous with the ER
    env = cell.envelope()
    env = env[(env > -4).all(1) & (env < size + 4).all(1)]
    env_w = np.full(len(env), np.pi * d_tube * 0.5 * rng.uniform(0.6, 1.1))
    density = splat(shape, np.concatenate([pts, env]), np.concatenate([weight, env_w]))
    r_half = float(half_max_radius(d_tube / 2, sigma, "membrane")[0])
    mask = within(shape, np.concatenate([pts, env]), r_half)

    depth = cell.depth_map(size)
    cyto = (depth > 0) & (depth < 1)
    # sheets: flat cisternae near the nucleus (two membranes: density 2 per px^2), fenestrated,
    # and small sheet patches at a few junctions of the peripheral mesh
    sheet = np.zeros(shape, bool)
    if rng.random() < PARAMETERS["sheet_probability"]:
        reach = rng.uniform(0.08, 0.3)
        blob = field(rng, shape, rng.uniform(6, 12) * 65 / px)
        sheet |= (blob > rng.uniform(0.2, 1.0) + 2.5 * depth / reach - 1.0) & cyto & (depth < reach)
    if len(pts):
        junctions = verts[np.unique(ridges)]
        junctions = junctions[(junctions >= 0).all(1) & (junctions < size).all(1)]
        if len(junctions):
            pick = junctions[rng.random(len(junctions)) < rng.uniform(0.0, 0.06)]
            if len(pick):
                sheet |= within(shape, pick, rng.uniform(1.5, 3.5) * 65 / px) & cyto
    if sheet.any():
        holes = field(rng, shape, 1.2) > rng.uniform(1.2, 1.8)
        sheet &= ~holes
        sheet = ndimage.binary_opening(sheet)
        density += 2.0 * sheet * rng.uniform(0.7, 1.2)
        mask |= sheet

    # expression varies slowly across the cell
    density *= np.clip(1 + 0.2 * field(rng, shape, 30), 0.4, None)
    image = psf_blur(density, optics)
    peak = np.pi * d_tube / (np.sqrt(2 * np.pi) * sigma)  # peak of one imaged tubule
    oof = blur(density, rng.uniform(3, 6) * sigma) * rng.uniform(*PARAMETERS["out_of_focus_fraction"])
    cyto_soft = blur(cyto.astype(float), 2 * sigma)
    # the nuclear envelope above and below the focal plane: a dim haze over the nucleus
    nucleus_soft = blur((depth < 0).astype(float), 3 * sigma)
    image += oof + peak * rng.uniform(*PARAMETERS["cytoplasm_level"]) * cyto_soft
    image += peak * rng.uniform(*PARAMETERS["nucleus_haze"]) * nucleus_soft
    image += background(rng, shape, level=peak * rng.uniform(*PARAMETERS["background_level"]))
    if not mask.any():  # the window missed the cell: draw again
        return generate(rng, size)
    return image.astype(np.float32), mask


def make(split: str = "test", image_size: int = 256, seed: int = 0, length: int | None = None):
    ds = SyntheticDataset("er", VERSION, generate, split, image_size, seed, length)
    ds.parameters = PARAMETERS
    return ds


@hookimpl
def fmbench_datasets():
    return [DatasetSpec(name="er", summary="synthetic endoplasmic reticulum networks (after Luo et al.)",
                        factory=make)]
