"""Defocus blur: space-invariant (``sib``) and space-variant (``svb``), the study's two blur families.

Physical model.  A wide-field microscope images the in-focus plane through a point-spread
function (PSF) we approximate by a Gaussian of standard deviation ``sigma_0`` (see
:mod:`fmbench_plugins.imaging`).  Out of focus the PSF widens; we keep the Gaussian shape and
describe defocus by the *relative PSF width* ``k = sigma_defocus / sigma_0``.  Because two
Gaussians compose in quadrature, turning an in-focus image into the image at relative width
``k`` is a convolution with a Gaussian of ``sigma_0 * sqrt(k**2 - 1)``.

The corruptions see only the image, not the optics it came from, so ``sigma_0`` is fixed at
the in-focus PSF of a Nyquist-sampled wide-field microscope: pixel ``lambda / (4 NA)`` and
``sigma_0 = 0.21 lambda / NA = 0.84 px`` (Zhang, Zerubia & Olivo-Marin 2007).  The levels

    k = 2, 3, 4, 6, 8  ->  extra blur sigma = 1.45, 2.38, 3.25, 4.97, 6.67 px

span a slightly soft focus (k = 2, roughly one depth of field away) to a plane far enough
off focus that touching nuclei merge (k = 8).  Blur acts on the noise-free image; the
detector then adds the *reference* noise (the clean image's exposure, SNR 8 on the clean
image), so the blur families are isolated from the noise family: same camera, same
exposure, only the focus changes.  The blur conserves photons (the kernel sums to one).
"""

from __future__ import annotations

import math

import torch

from fmbench import (
    CorruptionSpec,
    PhysicalCorruption,
    gaussian_blur,
    hookimpl,
    rand_per_image,
)

LEVELS = (2.0, 3.0, 4.0, 6.0, 8.0)
SIGMA_IN_FOCUS_PX = 0.84
# Space-variant blur is a blend of this many uniformly blurred images (extra sigma 0 .. max).
SVB_STACK = 6


def extra_sigma(k: float) -> float:
    """The Gaussian that widens the in-focus PSF to ``k`` times its width, in pixels."""
    return SIGMA_IN_FOCUS_PX * math.sqrt(max(k * k - 1.0, 0.0))


class SpaceInvariantBlur(PhysicalCorruption):
    """Uniform defocus: the whole field is imaged through a PSF ``level`` times wider than in
    focus (a focus drift, a wrong focus offset, a thick coverslip), then exposed at the
    reference exposure."""

    name = "sib"
    levels = LEVELS
    family = "sib"
    title = "space-invariant blur"
    level_label = "PSF ×{level:g}"
    summary = "space-invariant defocus blur (Gaussian PSF k x wider), reference noise"

    def optics(self, x, mask, level, params):
        return gaussian_blur(x, extra_sigma(level))


def defocus_map(shape: tuple[int, int], params: torch.Tensor) -> torch.Tensor:
    """Relative defocus ``w`` in [0, 1] over the field, ``(B, 1, H, W)``, from per-image
    parameters ``(B, 4)`` uniform in [0, 1): mode, angle, centre x, centre y.

    Mode < 0.5: a tilted focal plane (a sample not flat on the stage, a tilted slide): the
    defocus grows linearly with the distance to an in-focus line through a centre in the
    middle half of the field, at a random angle.  Otherwise field curvature (Petzval): focus
    at a centre near the middle of the field, defocus growing with the squared distance.  In
    both, ``w`` is 0 where the sample is in focus and 1 at the most defocused point.
    """
    h, w = shape
    b = params.shape[0]
    dev, dt = params.device, params.dtype
    ys = (torch.arange(h, device=dev, dtype=dt) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=dev, dtype=dt) + 0.5) / w * 2 - 1
    yy, xx = ys.view(1, h, 1), xs.view(1, 1, w)
    mode, angle, cx, cy = (params[:, i].view(b, 1, 1) for i in range(4))
    tilt = mode < 0.5
    # centre: middle half of the field for the tilt, middle 60 % for the curvature
    span = torch.where(tilt, torch.full_like(cx, 0.5), torch.full_like(cx, 0.3))
    cx, cy = (2 * cx - 1) * span, (2 * cy - 1) * span
    theta = angle * math.pi
    dist_line = ((xx - cx) * torch.cos(theta) + (yy - cy) * torch.sin(theta)).abs()
    dist_sq = (xx - cx) ** 2 + (yy - cy) ** 2
    d = torch.where(tilt, dist_line, dist_sq)
    d = d / d.flatten(1).amax(1).clamp_min(1e-12).view(b, 1, 1)
    return d.unsqueeze(1)


class SpaceVariantBlur(PhysicalCorruption):
    """Defocus that changes across the field: a tilted focal plane or field curvature (see
    :func:`defocus_map`), with the PSF ``level`` times wider than in focus at the most
    defocused point and in focus somewhere in the field.

    For a Gaussian beam the PSF width grows as ``sqrt(1 + (z / z_R)**2)``, so the *extra* blur
    ``sigma_0 * sqrt(k**2 - 1)`` grows linearly with the defocus ``z``: the extra sigma at a
    pixel is ``w * extra_sigma(level)``.  We blur the image uniformly at ``SVB_STACK`` evenly
    spaced extra sigmas from 0 to the maximum and, at each pixel, interpolate linearly between
    the two nearest in the stack (the blending approach of Nagy & O'Leary 1998): a few matrix
    products and one gather, whatever the image size.
    """

    name = "svb"
    levels = LEVELS
    family = "svb"
    title = "space-variant blur"
    level_label = "PSF up to ×{level:g}"
    summary = "space-variant defocus (tilted focal plane or field curvature), reference noise"

    def sample(self, x, mask, level, gens):
        return {"map": rand_per_image((4,), gens, x.device, x.dtype)}

    def weight_map(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        return defocus_map(tuple(x.shape[-2:]), params["map"])

    def optics(self, x, mask, level, params):
        w = self.weight_map(x, params)
        top = extra_sigma(level)
        stack = torch.stack([gaussian_blur(x, top * i / (SVB_STACK - 1)) for i in range(SVB_STACK)])
        pos = w * (SVB_STACK - 1)
        lo = pos.floor().clamp(max=SVB_STACK - 2)
        frac = pos - lo
        lo = lo.long().unsqueeze(0)
        below = stack.gather(0, lo).squeeze(0)
        above = stack.gather(0, lo + 1).squeeze(0)
        return below + frac * (above - below)


@hookimpl
def fmbench_corruptions():
    return [CorruptionSpec.of(SpaceInvariantBlur), CorruptionSpec.of(SpaceVariantBlur)]
