"""The built-in label-noise models: how an annotator's masks differ from the exact ones.

- ``boundary``: each object eroded or dilated by its own whole number of pixels, uniform in
  ``[-severity, severity]`` (a hurried annotator drawing inside or outside the edge).
- ``boundary-smooth``: the outline moved by a smooth random field: the signed distance to the
  edge plus Gaussian-filtered noise (correlation length 8 px) scaled so its standard deviation
  is ``severity`` pixels, thresholded at 0 — a Markov-like wobble along the boundary.
- ``missing``: each object dropped with probability ``severity`` (skipped nuclei, tubule
  segments not traced).
- ``spurious``: ``severity`` x (number of objects) false objects added in the background, each an
  ellipse of the image's median object size (debris or out-of-focus blobs annotated); one that finds
  no free background in 20 tries is left out, so a crowded image gets fewer.
- ``coarse``: each object's outline simplified to a polygon (Douglas-Peucker, tolerance
  ``severity`` pixels) and filled (annotation with a polygon tool and few clicks); it depends on
  the outline alone, not on the seed.

Objects are what an annotator outlines one at a time: the 8-connected components of the exact
mask, except that a thin network (a component whose area exceeds ``THIN`` x pi x r^2, r its
largest inscribed radius: the ER's tubules, branched mitochondria) is cut at the junctions of its
skeleton into tubule segments (the branches grown through the component, so each segment is one
connected piece).  Compact objects (nuclei, touching nuclei, single mitochondria) stay whole.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from fmbench import LabelNoise, LabelNoiseSpec, hookimpl

EIGHT = np.ones((3, 3), bool)
THIN = 20.0  # area / (pi r_max^2) above which a component is a network, cut into segments
PRUNE = 4.0  # skeleton spurs shorter than PRUNE x the median half-width are not branches


def _neighbours(skel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: the number of 8-neighbours in ``skel`` and the crossing number (0 -> 1
    transitions around the 8-ring: 3 or more at a branch point)."""
    p = np.pad(skel, 1).astype(np.uint8)
    ring = [p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:], p[2:, 2:], p[2:, 1:-1], p[2:, :-2], p[1:-1, :-2], p[:-2, :-2]]
    count = sum(r.astype(np.int16) for r in ring)
    cross = sum(((ring[i] == 0) & (ring[(i + 1) % 8] == 1)).astype(np.int16) for i in range(8))
    return count, cross


def _skeleton(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning (vectorised: each sub-iteration is one pass over the image)."""
    img = np.pad(mask, 1).astype(np.uint8)
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            c = img[1:-1, 1:-1]
            p2, p4, p6, p8 = img[:-2, 1:-1], img[1:-1, 2:], img[2:, 1:-1], img[1:-1, :-2]
            b, a = _neighbours(c)  # (img's border stays 0: padding c again gives img)
            side = ((p2 & p4 & p6) == 0) & ((p4 & p6 & p8) == 0) if step == 0 else \
                ((p2 & p4 & p8) == 0) & ((p2 & p6 & p8) == 0)
            gone = (c == 1) & (b >= 2) & (b <= 6) & (a == 1) & side
            if gone.any():
                c[gone] = 0
                changed = True
    skel = img[1:-1, 1:-1].astype(bool)
    # staircases: a pixel whose two orthogonal neighbours (N and E, say) touch each other, with
    # nothing on its opposite side, is redundant; without it each line is 8-connected and one
    # pixel wide, so a branch point is a pixel with 3 or more neighbours, at any angle
    for rot in range(4):
        s = np.rot90(skel, rot)
        p = np.pad(s, 1)
        n_, e_, s_, w_, sw = p[:-2, 1:-1], p[1:-1, 2:], p[2:, 1:-1], p[1:-1, :-2], p[2:, :-2]
        s &= ~(n_ & e_ & ~s_ & ~w_ & ~sw)
        skel = np.rot90(s, -rot)
    return np.ascontiguousarray(skel)


def _segments(comp: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """A network component cut into its junction-to-junction segments: labels 1..k (0 outside),
    each one connected, and the pruned skeleton (the network's centre lines)."""
    skel = _skeleton(comp)
    prune = int(round(PRUNE * float(np.median(dist[skel])))) if skel.any() else 0
    for _ in range(prune):  # spurs of the thinning are not branches
        count, _cross = _neighbours(skel)
        ends = skel & (count <= 1)
        if not ends.any():
            break
        skel &= ~ends
    count, cross = _neighbours(skel)
    branches = skel & ~ndi.binary_dilation(skel & ((count >= 3) | (cross >= 3)), structure=EIGHT)
    labels, k = ndi.label(branches, structure=EIGHT)
    if k <= 1:
        return comp.astype(np.int32), 1, skel
    while True:  # each pixel takes a branch by growing the branches through the component: connected pieces
        grown = np.where(comp & (labels == 0), ndi.maximum_filter(labels, footprint=EIGHT), labels)
        if np.array_equal(grown, labels):
            return np.where(comp, labels, 0), k, skel
        labels = grown


def _network_objects(mask: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """The objects of ``mask`` (labels 1..n, in the order of its 8-connected components): the
    components, with every thin network cut into segments; and the networks' centre lines
    (bool, empty where there is no network)."""
    mask = np.asarray(mask, bool)
    labels, n = ndi.label(mask, structure=EIGHT)
    spine = np.zeros(mask.shape, bool)
    if n == 0:
        return labels, n, spine
    dist = ndi.distance_transform_edt(mask)
    ids = np.arange(1, n + 1)
    network = ndi.sum(mask, labels, ids) > THIN * np.pi * ndi.maximum(dist, labels, ids) ** 2
    if not network.any():
        return labels, n, spine
    out, nxt = np.zeros_like(labels), 0
    for i, box in enumerate(ndi.find_objects(labels), 1):
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
        comp = labels[box] == i
        if network[i - 1]:
            pieces, k, skel = _segments(comp, dist[box])
            spine[box] |= skel & comp
        else:
            pieces, k = comp.astype(np.int32), 1
        out[box][comp] = pieces[comp] + nxt
        nxt += k
    ids, dense = np.unique(out, return_inverse=True)  # a segment that got no pixel leaves no gap
    return dense.reshape(out.shape).astype(labels.dtype), len(ids) - 1, spine


def _objects(mask: np.ndarray) -> tuple[np.ndarray, int]:
    labels, n, _spine = _network_objects(mask)
    return labels, n


class Boundary(LabelNoise):
    name = "boundary"
    severities = (1.0, 2.0, 3.0, 4.0)
    default_severity = 2.0
    max_severity = 16.0
    whole_severity = True  # erosion and dilation go by whole pixels: 0.4 would change nothing
    unit = "px"
    summary = "each object eroded or dilated by up to SEVERITY pixels (its own amount)"

    def __call__(self, mask, severity, rng):
        labels, n, spine = _network_objects(mask)
        out = np.zeros_like(mask)
        if severity != int(severity):  # parse_setting refuses it too, with the setting's text
            raise ValueError(f"boundary: SEVERITY must be a whole number of pixels, not {severity:g}")
        r = int(severity)
        eroded: dict[int, np.ndarray] = {}
        for i in range(1, n + 1):
            obj = labels == i
            k = int(rng.integers(-r, r + 1))
            if k > 0:
                obj = ndi.binary_dilation(obj, iterations=k)
            elif k < 0:  # eroded from the background only, never past a tubule's centre line:
                if -k not in eroded:  # a segment stays joined to its network, thinned, not cut
                    eroded[-k] = ndi.binary_erosion(mask, iterations=-k) | spine
                shrunk = obj & eroded[-k]
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
        k = int(rng.binomial(n, min(severity, 1.0)))  # about SEVERITY x n in all: above 1, n per whole unit and
        if severity > 1:  # a binomial draw for the fraction (the draws for severity <= 1 are unchanged)
            k += n * (int(severity) - 1) + int(rng.binomial(n, severity - int(severity)))
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
