"""The built-in label-noise models: how an annotator's masks differ from the exact ones.

- ``boundary``: each object eroded or dilated by its own whole number of pixels, uniform in
  ``[-severity, severity]`` (a hurried annotator drawing inside or outside the edge).
- ``boundary-smooth``: the outline moved by a smooth random field: the signed distance to the
  edge plus Gaussian-filtered noise (correlation length 8 px) scaled so its standard deviation
  is ``severity`` pixels, thresholded at 0 — a Markov-like wobble along the boundary.
- ``missing``: each object dropped with probability ``severity`` (skipped nuclei, tubule
  segments not traced).
- ``spurious``: ``severity`` x (number of objects) false objects added in the background, each an
  ellipse of the image's median object size (debris or out-of-focus blobs annotated).
- ``coarse``: each object's outline simplified to a polygon (Douglas-Peucker, tolerance
  ``severity`` pixels) and filled (annotation with a polygon tool and few clicks); it depends on
  the outline alone, not on the seed.

Objects are 8-connected components of the exact mask.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from fmbench import LabelNoise, LabelNoiseSpec, hookimpl

EIGHT = np.ones((3, 3), bool)


def _objects(mask: np.ndarray) -> tuple[np.ndarray, int]:
    return ndi.label(mask, structure=EIGHT)


class Boundary(LabelNoise):
    name = "boundary"
    severities = (1.0, 2.0, 3.0, 4.0)
    default_severity = 2.0
    max_severity = 16.0
    unit = "px"
    summary = "each object eroded or dilated by up to SEVERITY pixels (its own amount)"

    def __call__(self, mask, severity, rng):
        labels, n = _objects(mask)
        out = np.zeros_like(mask)
        r = int(round(severity))
        for i in range(1, n + 1):
            obj = labels == i
            k = int(rng.integers(-r, r + 1))
            if k > 0:
                obj = ndi.binary_dilation(obj, iterations=k)
            elif k < 0:
                shrunk = ndi.binary_erosion(obj, iterations=-k)
                obj = shrunk if shrunk.any() else obj  # a thin object is not erased by erosion
            out |= obj
        return out


class BoundarySmooth(LabelNoise):
    name = "boundary-smooth"
    severities = (0.5, 1.0, 2.0, 3.0)
    default_severity = 1.0
    max_severity = 16.0
    unit = "px (SD of the shift)"
    summary = "the outline moved by a smooth random field of SD SEVERITY pixels"

    def __call__(self, mask, severity, rng):
        if not mask.any() or mask.all():
            return mask.copy()
        inside = ndi.distance_transform_edt(mask)
        outside = ndi.distance_transform_edt(~mask)
        sdf = np.where(mask, inside - 0.5, -(outside - 0.5))
        field = ndi.gaussian_filter(rng.standard_normal(mask.shape), 8.0, mode="wrap")
        field *= severity / max(field.std(), 1e-12)
        return (sdf + field) > 0


class Missing(LabelNoise):
    name = "missing"
    severities = (0.1, 0.2, 0.4, 0.6)
    default_severity = 0.2
    max_severity = 1.0
    unit = "of the objects"
    summary = "each object dropped with probability SEVERITY"

    def __call__(self, mask, severity, rng):
        labels, n = _objects(mask)
        if n == 0:
            return mask.copy()
        drop = np.flatnonzero(rng.random(n) < severity) + 1
        return mask & ~np.isin(labels, drop)


class Spurious(LabelNoise):
    name = "spurious"
    severities = (0.1, 0.2, 0.4, 0.6)
    default_severity = 0.2
    max_severity = 5.0
    unit = "x the number of objects"
    summary = "SEVERITY x (number of objects) false objects added in the background"

    def __call__(self, mask, severity, rng):
        labels, n = _objects(mask)
        out = mask.copy()
        if n == 0:
            return out
        size = float(np.median(np.bincount(labels.ravel())[1:]))
        radius = max(2.0, np.sqrt(size / np.pi))
        h, w = mask.shape
        yy, xx = np.mgrid[:h, :w]
        k = int(rng.binomial(n, min(severity, 1.0))) + (int(severity) - 1 if severity > 1 else 0)
        near = ndi.binary_dilation(mask, iterations=2)  # real objects and their margin: no blob there
        for _ in range(k):
            for _attempt in range(20):  # in the background, not on a real object
                cy, cx = rng.uniform(0, h), rng.uniform(0, w)
                a, b = radius * rng.uniform(0.7, 1.3), radius * rng.uniform(0.7, 1.3)
                t = rng.uniform(0, np.pi)
                dy, dx = yy - cy, xx - cx
                u, v = dx * np.cos(t) + dy * np.sin(t), -dx * np.sin(t) + dy * np.cos(t)
                blob = (u / a) ** 2 + (v / b) ** 2 <= 1
                if blob.any() and not (blob & near).any():
                    out |= blob
                    break
        return out


def _simplify(points: np.ndarray, tol: float) -> np.ndarray:
    """Douglas-Peucker simplification of a polyline (keeps both ends)."""
    if len(points) < 3:
        return points
    keep = np.zeros(len(points), bool)
    keep[[0, -1]] = True
    stack = [(0, len(points) - 1)]
    while stack:
        i, j = stack.pop()
        if j <= i + 1:
            continue
        a, b = points[i], points[j]
        seg = b - a
        norm = np.hypot(*seg)
        rel = points[i + 1:j] - a
        d = np.abs(seg[0] * rel[:, 1] - seg[1] * rel[:, 0]) / norm if norm > 0 else np.hypot(rel[:, 0], rel[:, 1])
        k = int(np.argmax(d))
        if d[k] > tol:
            keep[i + 1 + k] = True
            stack += [(i, i + 1 + k), (i + 1 + k, j)]
    return points[keep]


class Coarse(LabelNoise):
    name = "coarse"
    severities = (1.0, 2.0, 3.0, 5.0)
    default_severity = 2.0
    max_severity = 16.0
    unit = "px (polygon tolerance)"
    summary = "each outline simplified to a polygon with tolerance SEVERITY pixels, then filled"

    def __call__(self, mask, severity, rng):
        import contourpy
        from PIL import Image, ImageDraw

        labels, n = _objects(mask)
        out = Image.new("1", (mask.shape[1], mask.shape[0]), 0)
        draw = ImageDraw.Draw(out)
        holes = []
        for i in range(1, n + 1):
            obj = np.pad(labels == i, 1)
            lines = contourpy.contour_generator(z=obj.astype(float)).lines(0.5)
            rings = sorted(lines, key=len, reverse=True)
            for r, ring in enumerate(rings):
                poly = _simplify(np.asarray(ring) - 1, severity)  # (x, y), back to unpadded pixels
                if len(poly) < 3:
                    continue
                pts = [(float(x), float(y)) for x, y in poly]
                if r == 0:  # the outline (the longest ring); the others are holes, filled last
                    draw.polygon(pts, fill=1)
                else:
                    holes.append(pts)
        for hole in holes:
            draw.polygon(hole, fill=0)
        return np.asarray(out, bool)


@hookimpl
def fmbench_label_noises():
    return [LabelNoiseSpec.of(cls) for cls in (Boundary, BoundarySmooth, Missing, Spurious, Coarse)]
