"""Drawing tools shared by the ER and Mito generators: the cell, curved tubes, and their masks.

Everything is in pixels of the final image (the generators convert from nanometres with the
image's pixel size).  Structures are described by their *axis*: a dense polyline of sample
points, each with a tube radius and a brightness.  The ground-truth mask is derived from the
same geometry by one rule for every structure: **a pixel is foreground when its centre lies
inside the half-maximum contour of the structure imaged on its own** (:func:`half_max_radius`).
For a resolved tube (a mitochondrion) that is, within a fraction of a pixel, the physical
outline; for a tube far thinner than the PSF (an ER tubule, ~60-100 nm) it is the width an
annotator sees and draws (the FWHM of the imaged line), since the physical outline is smaller
than one pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage

# -- the cell ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """A flat adherent cell seen through an image window, in window pixel coordinates.

    The nucleus is a perturbed ellipse around ``centre``; the cell outline is the nucleus
    outline scaled by a perturbed factor ``k(theta)``.  :meth:`depth` is 0 on the nuclear
    envelope and 1 at the cell edge (negative in the nucleus, > 1 outside the cell), the
    coordinate along which organelle density falls off from the perinuclear region to the
    thin periphery.
    """

    centre: tuple[float, float]  # (y, x)
    axes: tuple[float, float]  # nucleus semi-axes (px)
    angle: float
    nuc_harm: np.ndarray  # (3, n): harmonic order, amplitude, phase of the nucleus outline
    cell_scale: float
    cell_harm: np.ndarray

    @staticmethod
    def random(rng: np.random.Generator, size: int, px_nm: float, edge_p: float = 0.2) -> "Cell":
        """A COS-7-like cell (nucleus 12-18 um long, cell 2.5-4.5x the nucleus) placed so that
        the window shows the perinuclear region, the mid cytoplasm or the periphery."""
        a = rng.uniform(6000, 9000) / px_nm
        b = a * rng.uniform(0.6, 0.9)
        angle = rng.uniform(0, np.pi)
        k = np.arange(2, 6)
        nuc = np.stack([k, rng.uniform(0, 0.04, k.size) / (k - 1), rng.uniform(0, 2 * np.pi, k.size)])
        kc = np.arange(1, 8)
        cell = np.stack([kc, rng.uniform(0, 0.18, kc.size) / np.sqrt(kc), rng.uniform(0, 2 * np.pi, kc.size)])
        scale = rng.uniform(2.5, 4.5)
        # where the window centre sits, as a depth: 0 nuclear envelope .. 1 cell edge
        u = rng.uniform(0.8, 1.0) if rng.random() < edge_p else rng.uniform(-0.05, 0.8)
        theta = rng.uniform(0, 2 * np.pi)
        proto = Cell((0.0, 0.0), (a, b), angle, nuc, scale, cell)
        r_n, r_c = proto._radii(np.array([theta]))
        r = float(r_n[0] + u * (r_c[0] - r_n[0]))
        cy = size / 2 - r * np.sin(theta)
        cx = size / 2 - r * np.cos(theta)
        return Cell((cy, cx), (a, b), angle, nuc, scale, cell)

    def _radii(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.axes
        t = theta - self.angle
        r_n = a * b / np.sqrt((b * np.cos(t)) ** 2 + (a * np.sin(t)) ** 2)
        k, amp, ph = self.nuc_harm
        r_n = r_n * (1 + (amp[:, None] * np.cos(k[:, None] * theta[None] + ph[:, None])).sum(0))
        k, amp, ph = self.cell_harm
        r_c = r_n * self.cell_scale * (1 + (amp[:, None] * np.cos(k[:, None] * theta[None] + ph[:, None])).sum(0))
        return r_n, r_c

    def depth(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        # r_n and r_c depend on the angle only: tabulate them once, interpolate per point
        theta_tab, rn_tab, rc_tab = self._table
        dy, dx = np.asarray(y) - self.centre[0], np.asarray(x) - self.centre[1]
        theta = np.arctan2(dy, dx)
        r_n = np.interp(theta, theta_tab, rn_tab)
        r_c = np.interp(theta, theta_tab, rc_tab)
        return (np.hypot(dx, dy) - r_n) / (r_c - r_n)

    @cached_property
    def _table(self):
        theta = np.linspace(-np.pi, np.pi, 2049)
        r_n, r_c = self._radii(theta)
        return theta, r_n, r_c

    def envelope(self, step: float = 0.5) -> np.ndarray:
        """Sample points ``(n, 2)`` (y, x) along the nuclear envelope, ``step`` px apart."""
        n = int(2 * np.pi * max(self.axes) * 1.1 / step) + 8
        theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
        r_n, _ = self._radii(theta)
        return np.stack([self.centre[0] + r_n * np.sin(theta), self.centre[1] + r_n * np.cos(theta)], 1)

    def depth_map(self, size: int) -> np.ndarray:
        c = np.arange(size) + 0.5
        return self.depth(c[:, None], c[None, :])


# -- fields and blurs --------------------------------------------------------------------------


def _upsample(small: np.ndarray, f: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a block-mean grid (block ``f``) to ``shape``, sampled at the
    centres of the full-resolution pixels; separable, no interpolation library call."""
    out = small
    for axis, n in enumerate(shape):
        c = np.clip((np.arange(n) + 0.5) / f - 0.5, 0, small.shape[axis] - 1)
        i0 = np.minimum(c.astype(np.int64), small.shape[axis] - 2) if small.shape[axis] > 1 else np.zeros(n, np.int64)
        t = c - i0
        i1 = np.minimum(i0 + 1, small.shape[axis] - 1)
        a, b = np.take(out, i0, axis=axis), np.take(out, i1, axis=axis)
        t = t[:, None] if axis == 0 else t[None, :]
        out = a + (b - a) * t
    return out


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide kernels (``sigma`` > 4 px) on a block-averaged copy (block
    ``sigma // 2``) upsampled bilinearly, as :func:`fmbench_plugins.imaging.wide_blur` does,
    with a cheaper upsampling step.  The error is far below the noise."""
    f = int(sigma // 2)
    if f < 2:
        return ndimage.gaussian_filter(image, sigma, mode="reflect", truncate=3.5)
    h, w = image.shape
    padded = np.pad(image, ((0, (-h) % f), (0, (-w) % f)), mode="reflect")
    small = padded.reshape(padded.shape[0] // f, f, padded.shape[1] // f, f).mean((1, 3))
    small = ndimage.gaussian_filter(small, sigma / f, mode="reflect", truncate=3.5)
    return _upsample(small, f, (h, w))


def field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with correlation length ``sigma`` px
    (white noise drawn on a grid of ``sigma / 2`` px cells when ``sigma`` is large)."""
    f = max(int(sigma // 2), 1)
    if f < 2:
        g = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect", truncate=3.5)
    else:
        small = rng.standard_normal((-(-shape[0] // f), -(-shape[1] // f)))
        g = _upsample(ndimage.gaussian_filter(small, sigma / f, mode="reflect", truncate=3.5), f, shape)
    return (g - g.mean()) / (g.std() + 1e-12)


def background(rng: np.random.Generator, shape: tuple[int, int], level: float, variation: float = 0.3) -> np.ndarray:
    """Autofluorescence and offset: ``level`` varying slowly by a relative ``variation``
    (as :func:`fmbench_plugins.imaging.background`, with the faster blur)."""
    return level * np.clip(1.0 + variation * field(rng, shape, max(shape) / 4), 0.2, None)


def bilinear(grid: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of ``grid`` at fractional indices ``(y, x)`` (clamped)."""
    h, w = grid.shape
    y = np.clip(y, 0, h - 1.000001)
    x = np.clip(x, 0, w - 1.000001)
    y0, x0 = y.astype(np.int64), x.astype(np.int64)
    fy, fx = y - y0, x - x0
    return ((1 - fy) * ((1 - fx) * grid[y0, x0] + fx * grid[y0, x0 + 1])
            + fy * ((1 - fx) * grid[y0 + 1, x0] + fx * grid[y0 + 1, x0 + 1]))


# -- curves -----------------------------------------------------------------------------------


def bezier_points(p0: np.ndarray, p1: np.ndarray, bow: np.ndarray, step: float = 0.5):
    """Sample quadratic Bezier curves from ``p0`` to ``p1`` (``(E, 2)``) whose control point is
    the chord midpoint moved sideways by ``bow`` (``(E,)``, px).  Returns the points
    ``(n, 2)``, the curve each belongs to ``(n,)`` and the arc step of each point ``(n,)``."""
    chord = p1 - p0
    length = np.hypot(chord[:, 0], chord[:, 1])
    normal = np.stack([-chord[:, 1], chord[:, 0]], 1) / np.maximum(length, 1e-9)[:, None]
    ctrl = (p0 + p1) / 2 + normal * bow[:, None]
    arc = length * (1 + 2.7 * (bow / np.maximum(length, 1e-9)) ** 2)  # Bezier arc length, near enough
    n = np.maximum(np.ceil(arc / step).astype(int), 1) + 1
    curve = np.repeat(np.arange(len(p0)), n)
    start = np.cumsum(n) - n
    t = ((np.arange(n.sum()) - start[curve]) / (n[curve] - 1))[:, None]
    pts = (1 - t) ** 2 * p0[curve] + 2 * t * (1 - t) * ctrl[curve] + t**2 * p1[curve]
    return pts, curve, (arc / (n - 1))[curve]


def _segment_cumsum(x: np.ndarray, first: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Cumulative sums restarting at every segment (``first[k]`` is where segment ``k``
    starts, ``owner[i]`` the segment of element ``i``)."""
    cs = np.cumsum(x, axis=0)
    base = cs[first] - x[first]
    return cs - base[owner]


def worms(rng: np.random.Generator, starts: np.ndarray, headings: np.ndarray, lengths: np.ndarray,
          persistence: float, step: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Worm-like chains (curves whose direction diffuses with persistence length
    ``persistence`` px), one per row of ``starts`` ``(M, 2)``, beginning in direction
    ``headings`` and ``lengths`` px long, all drawn at once.  Returns the points ``(N, 2)``
    (``step`` px apart), the curve of each point ``(N,)`` and each curve's first index ``(M,)``."""
    n = np.maximum((lengths / step).astype(np.int64), 0) + 1
    owner = np.repeat(np.arange(len(n)), n)
    first = np.cumsum(n) - n
    turn = rng.standard_normal(owner.size) * np.sqrt(step / persistence)
    turn[first] = headings
    ang = _segment_cumsum(turn, first, owner)
    steps = np.stack([np.sin(ang), np.cos(ang)], 1) * step
    steps[first] = starts
    return _segment_cumsum(steps, first, owner), owner, first


def warp(rng: np.random.Generator, pts: np.ndarray, lo: float, hi: float, scale: float, amplitude: float):
    """Move points by a smooth random displacement field (correlation length ``scale`` px,
    rms ``amplitude`` px) defined on the square ``[lo, hi)``; bends straight edges into the
    gently curved tubules of real networks while keeping shared junctions shared."""
    n = int(np.ceil((hi - lo) / 4)) + 2  # the field is smooth: a 4-px grid is plenty
    dy, dx = (field(rng, (n, n), scale / 4) * amplitude for _ in range(2))
    gy, gx = (pts[:, 0] - lo) / 4, (pts[:, 1] - lo) / 4
    return pts + np.stack([bilinear(dy, gy, gx), bilinear(dx, gy, gx)], 1)


# -- rendering --------------------------------------------------------------------------------


def splat(shape: tuple[int, int], pts: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Deposit ``weight`` at sub-pixel points (bilinear), a density on the pixel grid; pixel
    ``(i, j)`` covers ``[i, i+1) x [j, j+1)``.  Points outside are dropped."""
    h, w = shape
    y, x = pts[:, 0] - 0.5, pts[:, 1] - 0.5
    y0, x0 = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    fy, fx = y - y0, x - x0
    out = np.zeros(h * w, np.float64)
    for dy, dx, wt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        out += np.bincount(yy[ok] * w + xx[ok], weights=(weight * wt)[ok], minlength=h * w)
    return out.reshape(h, w)


def within(shape: tuple[int, int], pts: np.ndarray, radius: np.ndarray | float) -> np.ndarray:
    """Pixels whose centre lies within ``radius`` of any point (a mask of thin tubes drawn
    from their densely sampled axes); exact up to the axis sampling step."""
    h, w = shape
    radius = np.broadcast_to(np.asarray(radius, float), (len(pts),))
    k = int(np.ceil(radius.max())) + 1 if len(pts) else 0
    out = np.zeros(h * w, bool)
    if not len(pts):
        return out.reshape(h, w)
    iy, ix = np.floor(pts[:, 0]).astype(np.int64), np.floor(pts[:, 1]).astype(np.int64)
    rmax2 = float(radius.max()) ** 2
    for dy in range(-k, k + 1):
        for dx in range(-k, k + 1):
            # the closest a point in pixel (iy, ix) can be to the centre of pixel (iy+dy, ix+dx)
            if max(abs(dy) - 0.5, 0) ** 2 + max(abs(dx) - 0.5, 0) ** 2 > rmax2:
                continue
            yy, xx = iy + dy, ix + dx
            d2 = (yy + 0.5 - pts[:, 0]) ** 2 + (xx + 0.5 - pts[:, 1]) ** 2
            ok = (d2 <= radius**2) & (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            out[yy[ok] * w + xx[ok]] = True
    return out.reshape(h, w)


def nearest_axis(shape: tuple[int, int], pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel, the distance from its centre to the nearest axis point and that point's
    index.  The axis is rasterised, the nearest rasterised pixel found with a Euclidean distance
    transform, and the distance measured to the sub-pixel point stored there (error well under
    half a pixel for densely sampled axes)."""
    h, w = shape
    iy, ix = np.floor(pts[:, 0]).astype(np.int64), np.floor(pts[:, 1]).astype(np.int64)
    ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    owner = np.full((h, w), -1, np.int64)
    owner[iy[ok], ix[ok]] = np.nonzero(ok)[0]
    if not ok.any():
        return np.full(shape, np.inf), np.zeros(shape, np.int64)
    _, (ny, nx) = ndimage.distance_transform_edt(owner < 0, return_indices=True)
    idx = owner[ny, nx]
    c = np.arange(h)[:, None] + 0.5, np.arange(w)[None, :] + 0.5
    return np.hypot(c[0] - pts[idx, 0], c[1] - pts[idx, 1]), idx


def half_max_radius(radius: np.ndarray | float, sigma: float, profile: str = "filled") -> np.ndarray:
    """Half-width at half maximum of a straight tube of ``radius`` px imaged through a Gaussian
    PSF of ``sigma`` px.  ``profile`` is ``"filled"`` (a lumen label: projected thickness
    ``2 sqrt(r^2 - x^2)``) or ``"membrane"`` (a membrane label: projected surface density
    ``2 r / sqrt(r^2 - x^2)``).  Tends to ``r`` for wide tubes and ``1.177 sigma`` for thin ones."""
    radius = np.atleast_1d(np.asarray(radius, float))
    out = np.empty_like(radius)
    x = np.linspace(-1, 1, 801)  # in units of (r + 4 sigma)
    for i, r in enumerate(radius):
        extent = r + 4 * sigma
        xs = x * extent
        dx = xs[1] - xs[0]
        inside = np.clip(r * r - xs * xs, 0, None)
        if profile == "filled":
            p = 2 * np.sqrt(inside)
        else:
            p = np.where(inside > 0, 2 * r / np.sqrt(np.maximum(inside, (0.3 * dx) ** 2 + 1e-12)), 0.0)
        if r < 2 * dx:  # thinner than the grid: a line
            p = (np.abs(xs) < dx / 2).astype(float)
        g = np.exp(-0.5 * (xs / sigma) ** 2)
        img = np.convolve(p, g / g.sum(), mode="same")
        half = img.max() / 2
        right = img[400:]
        j = int(np.nonzero(right >= half)[0][-1])  # outermost sample at or above half (hollow tubes too)
        x0, x1, y0, y1 = xs[400 + j], xs[401 + j], right[j], right[j + 1]
        out[i] = x0 + (y0 - half) / (y0 - y1) * (x1 - x0)
    return out
