"""Microscopy artefacts beyond the study: what goes wrong at a real fluorescence microscope.

Each corruption acts where the microscope would.  *Optical* artefacts (uneven illumination,
background haze, out-of-focus light, photobleaching, a change of pixel size) change the
expected photon image before the detector; the detector then exposes it at the reference
exposure (the photon scale solved on the clean image, see :mod:`fmbench.corruption`), so an
artefact that dims the image also lowers its SNR, as it would at the microscope.  *Detector*
artefacts (sCMOS fixed pattern, saturation, hot pixels) act on the ADU image after exposure.
Every corruption has five severities in physical units; its docstring gives the rationale
and the numbers.  All random draws come from the per-image generators, before the noise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fmbench import (
    CorruptionSpec,
    PhysicalCorruption,
    gaussian_blur,
    hookimpl,
    rand_per_image,
    randn_per_image,
    signal_levels,
    signal_mask,
)


def _grid(h: int, w: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates in [-1, 1], shaped ``(1, H, 1)`` and ``(1, 1, W)``."""
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w * 2 - 1
    return ys.view(1, h, 1), xs.view(1, 1, w)


class Shading(PhysicalCorruption):
    """Uneven illumination (vignetting / shading).

    A laser's Gaussian beam profile, a misaligned illuminator and the objective's vignetting
    all multiply the image by a smooth illumination profile that falls off from a bright spot
    near the middle of the field.  We use ``exp(ln(level) * (r / R)**2)``: 1 at a centre drawn
    within +-20 % of the field centre, ``level`` at the farthest corner.  Severities: the
    corner receives 80, 60, 45, 30, 20 % of the peak illumination (flat-field corrections in
    practice start at about 80 %; 20 % is an uncorrected, badly aligned widefield lamp).
    Fewer photons reach the dim parts, so their SNR falls too.
    """

    name = "shading"
    levels = (0.8, 0.6, 0.45, 0.3, 0.2)
    family = "optical"
    title = "shading"
    level_label = "edges at {level:.0%} of the peak"
    summary = "uneven illumination (vignetting); level: corner/peak illumination"

    def sample(self, x, mask, level, gens):
        return {"centre": rand_per_image((2,), gens, x.device, x.dtype) * 0.4 - 0.2}

    def profile(self, x: torch.Tensor, level: float, params: dict) -> torch.Tensor:
        b = x.shape[0]
        yy, xx = _grid(*x.shape[-2:], x.device, x.dtype)
        c = params["centre"]
        r2 = (xx - c[:, 0].view(b, 1, 1)) ** 2 + (yy - c[:, 1].view(b, 1, 1)) ** 2
        r2 = r2 / r2.flatten(1).amax(1).view(b, 1, 1)
        return torch.exp(math.log(level) * r2).unsqueeze(1)

    def optics(self, x, mask, level, params):
        return x * self.profile(x, level, params)


class Background(PhysicalCorruption):
    """Background and autofluorescence haze.

    Autofluorescent medium (phenol red, serum), a fluorescent coverslip or mounting medium,
    unbound dye and cellular autofluorescence add light that carries no structure: a smooth,
    slowly varying pedestal.  It costs twice: its shot noise lowers the SNR, and its spatial
    variation defeats a global threshold.  We add ``level * D * (1 + 0.5 f)`` where ``D`` is
    the image's mean signal above background (clean image, protocol SNR definition) and
    ``f`` a zero-mean, unit-variance field made of four random plane waves of at most 1.5
    cycles per field (clipped so the pedestal stays positive).  Severities: the added
    background is 0.05, 0.15, 0.4, 1, 2.5 times the signal (barely visible to a background as
    bright as the structures plus half as much again); at 2.5 the SNR of the structures falls
    from 8 to about 4.3.
    """

    name = "background"
    levels = (0.05, 0.15, 0.4, 1.0, 2.5)
    family = "optical"
    title = "autofluorescence background"
    level_label = "{level:g}× the signal"
    summary = "smooth autofluorescence background; level: x the signal"

    def sample(self, x, mask, level, gens):
        return {"waves": rand_per_image((4, 4), gens, x.device, x.dtype)}

    def pedestal(self, x: torch.Tensor, mask: torch.Tensor, level: float, params: dict) -> torch.Tensor:
        b = x.shape[0]
        yy, xx = _grid(*x.shape[-2:], x.device, x.dtype)
        p = params["waves"]  # (B, 4 waves, [fx, fy, phase, amplitude])
        fx = (p[..., 0] * 3 - 1.5).view(b, 4, 1, 1)
        fy = (p[..., 1] * 3 - 1.5).view(b, 4, 1, 1)
        phase = (p[..., 2] * 2 * math.pi).view(b, 4, 1, 1)
        amp = (0.5 + p[..., 3]).view(b, 4, 1, 1)
        # coordinates span 2 units, so f cycles per field is pi * f radians per unit
        field = (amp * torch.cos(math.pi * (fx * xx.unsqueeze(1) + fy * yy.unsqueeze(1)) + phase)).sum(1)
        field = field - field.flatten(1).mean(1).view(b, 1, 1)
        field = field / field.flatten(1).std(1).clamp_min(1e-6).view(b, 1, 1)
        mu_f, mu_b = signal_levels(x, mask)
        d = (mu_f - mu_b).to(x.dtype).view(b, 1, 1)
        return (level * d * (1 + 0.5 * field).clamp_min(0.2)).unsqueeze(1)

    def optics(self, x, mask, level, params):
        return x + self.pedestal(x, mask, level, params)


class OutOfFocusHaze(PhysicalCorruption):
    """Out-of-focus light from neighbouring planes.

    A widefield microscope collects the light of the whole sample depth: each structure
    above and below the focal plane adds a strongly blurred copy of itself.  We add two
    planes: the imaged structures' own out-of-focus glow (the image blurred with sigma 4 px)
    and other structures from a plane farther away (the image mirrored and circularly
    shifted at random, blurred with sigma 10 px), in equal parts.  Both blurs conserve light,
    so ``level`` is the out-of-focus light as a multiple of the in-focus light: 0.1, 0.25,
    0.5, 1, 2 (a thin monolayer of cells to a thick tissue slice imaged without sectioning).  Its
    shot noise and its low-contrast structure are what make it hard.
    """

    name = "haze"
    levels = (0.1, 0.25, 0.5, 1.0, 2.0)
    family = "optical"
    title = "out-of-focus haze"
    level_label = "{level:g}× the in-focus light"
    summary = "out-of-focus light from neighbouring planes; level: x the in-focus light"
    near_sigma_px = 4.0
    far_sigma_px = 10.0

    def sample(self, x, mask, level, gens):
        return {"plane": rand_per_image((4,), gens, x.device, x.dtype)}

    def neighbour(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        """The other plane: each image flipped and rolled by its own random amounts (one gather)."""
        b, _, h, w = x.shape
        p = params["plane"]
        iy = torch.arange(h, device=x.device).view(1, h)
        ix = torch.arange(w, device=x.device).view(1, w)
        flip_y, flip_x = (p[:, 0] < 0.5).view(b, 1), (p[:, 1] < 0.5).view(b, 1)
        iy = torch.where(flip_y, h - 1 - iy, iy)
        ix = torch.where(flip_x, w - 1 - ix, ix)
        iy = (iy + (p[:, 2] * h).long().view(b, 1)) % h
        ix = (ix + (p[:, 3] * w).long().view(b, 1)) % w
        bidx = torch.arange(b, device=x.device).view(b, 1, 1)
        return x[bidx, 0, iy.view(b, h, 1), ix.view(b, 1, w)].unsqueeze(1)

    def optics(self, x, mask, level, params):
        near = gaussian_blur(x, self.near_sigma_px)
        far = gaussian_blur(self.neighbour(x, params), self.far_sigma_px)
        return x + level * 0.5 * (near + far)


class Photobleaching(PhysicalCorruption):
    """Photobleaching: a reduced photon budget.

    Every excitation cycle destroys a fraction of the fluorophores, so late frames of a
    time-lapse (or a sample searched too long under the lamp) emit less light at the same
    exposure.  Bleaching is close to exponential; the severities are 1, 2, 3, 4, 5 bleaching
    half-lives, i.e. 50, 25, 12.5, 6.25, 3.1 % of the photons left.  The expected image is
    scaled before the detector, so the SNR falls physically (from 8 to about 5.7, 4, 2.8, 2,
    1.4: shot-noise-limited, then read-noise-limited).  Autofluorescence is assumed to bleach
    at the same rate.
    """

    name = "bleaching"
    levels = (1.0, 2.0, 3.0, 4.0, 5.0)
    family = "optical"
    title = "photobleaching"
    level_label = "{level:g} half-lives"
    summary = "photobleaching, fewer photons; level: half-lives"

    def optics(self, x, mask, level, params):
        return x * 2.0 ** -level


class PixelSize(PhysicalCorruption):
    """A change of pixel size (geometric).

    A different objective, tube lens, camera or binning setting changes the pixel size in
    the sample plane, and a model trained at one pixel size sees structures at the wrong
    scale.  Severity ``level`` is the magnification factor: pixels ``level`` times smaller
    (1.25, 1.5, 2, 2.5, 3), so structures look that much larger and the field of view is
    that much narrower.  The narrower field is centred on a random structure pixel (then
    moved inside the original field), so it shows structures rather than empty background.
    The expected image is resampled bilinearly (it is smooth on the new, finer grid) and the
    mask with nearest-neighbour on the same grid, so image and mask stay registered at the
    original ``H x W``.  The exposure is adjusted to keep the photons per pixel, which
    isolates the change of scale from a change of SNR.
    """

    name = "pixel-size"
    levels = (1.25, 1.5, 2.0, 2.5, 3.0)
    family = "optical"
    title = "smaller pixels"
    level_label = "pixel size ÷{level:g}"
    summary = "smaller pixels, structures look larger (geometric; mask resampled)"
    geometric = True

    def sample(self, x, mask, level, gens):
        b, _, h, w = x.shape
        u = rand_per_image((1,), gens, x.device, torch.float64)  # (B, 1)
        m = signal_mask(x, mask)
        counts = m.cumsum(1)
        pick = (u * counts[:, -1:]).floor() + 1  # the pick-th signal pixel, 1-based
        idx = torch.searchsorted(counts.double(), pick).clamp(max=h * w - 1)[:, 0]
        cy = ((idx // w).to(x.dtype) + 0.5) / h * 2 - 1
        cx = ((idx % w).to(x.dtype) + 0.5) / w * 2 - 1
        return {"centre": torch.stack([cx, cy], dim=1)}

    def grid(self, shape, level: float, params: dict) -> torch.Tensor:
        """The sampling grid of ``F.grid_sample`` (``(B, H, W, 2)``, x then y, in [-1, 1])."""
        b, _, h, w = shape
        c = params["centre"]
        room = 1 - 1 / level  # how far the window's centre may go and keep the window inside
        cx = c[:, 0].clamp(-room, room).view(b, 1, 1)
        cy = c[:, 1].clamp(-room, room).view(b, 1, 1)
        yy, xx = _grid(h, w, c.device, c.dtype)
        gx = (cx + xx / level).expand(b, h, w)
        gy = (cy + yy / level).expand(b, h, w)
        return torch.stack([gx, gy], dim=-1)

    def optics(self, x, mask, level, params):
        g = self.grid(x.shape, level, params).to(x.dtype)
        return F.grid_sample(x, g, mode="bilinear", padding_mode="border", align_corners=False)

    def warp_mask(self, mask, level, params):
        b, h, w = mask.shape
        g = self.grid((b, 1, h, w), level, params).float()
        out = F.grid_sample(mask.float().unsqueeze(1), g, mode="nearest", padding_mode="border",
                            align_corners=False)
        return out[:, 0] > 0.5


class FixedPattern(PhysicalCorruption):
    """sCMOS fixed-pattern noise and row/column stripes.

    Each column of an sCMOS sensor has its own amplifier and ADC, so every column carries its
    own offset (vertical stripes); rolling-shutter readout adds row-wise offsets (banding);
    each pixel has its own dark offset (DSNU) and gain (PRNU).  Calibration removes most of
    it; an uncalibrated or ageing camera at low light shows it.  Severity ``level`` is the
    column-offset standard deviation in units of the camera's read noise (0.5, 1, 2, 4, 8: from
    a typical uncorrected sCMOS to strong banding, 13 e- at 1.6 e- read noise, several times
    the background's own noise at SNR 8); row offsets are half of it, pixel offsets a quarter,
    and the gain varies by 0.5 % * level per pixel.
    """

    name = "fixed-pattern"
    levels = (0.5, 1.0, 2.0, 4.0, 8.0)
    family = "detector"
    title = "fixed-pattern noise"
    level_label = "{level:g}× the read noise"
    summary = "sCMOS fixed pattern and row/column stripes; level: x read noise"

    def sample(self, x, mask, level, gens):
        _, _, h, w = x.shape
        return {
            "cols": randn_per_image((1, 1, w), gens, x.device, x.dtype),
            "rows": randn_per_image((1, h, 1), gens, x.device, x.dtype),
            "dsnu": randn_per_image((1, h, w), gens, x.device, x.dtype),
            "prnu": randn_per_image((1, h, w), gens, x.device, x.dtype),
        }

    def detector(self, y, expected, mask, level, params, sensor):
        s = sensor.camera.read_noise_e * level
        off = sensor.camera.offset_adu
        gain = 1 + 0.005 * level * params["prnu"]
        return off + (y - off) * gain + s * params["cols"] + 0.5 * s * params["rows"] + 0.25 * s * params["dsnu"]


class Saturation(PhysicalCorruption):
    """Detector saturation / a limited dynamic range.

    When the gain or exposure is set for the dim structures, the bright ones exceed the
    full-well capacity or the ADC range and clip: bright objects lose their texture and
    touching objects their separating gap.  Severity ``level`` is the fraction of the signal
    pixels (the protocol's SNR foreground) whose expected value lies above the clipping
    level: 5, 15, 30, 50, 70 %.  The clip acts on the observed ADU, noise included.
    """

    name = "saturation"
    levels = (0.05, 0.15, 0.3, 0.5, 0.7)
    family = "detector"
    title = "saturation"
    level_label = "{level:.0%} of the signal clipped"
    summary = "detector saturation; level: fraction of signal clipped"

    def detector(self, y, expected, mask, level, params, sensor):
        m = signal_mask(expected, mask)
        flat = expected.flatten(1).masked_fill(~m, float("nan"))
        clip = torch.nanquantile(flat.double(), 1 - level, dim=1).to(y.dtype)
        return torch.minimum(y, clip.view(-1, 1, 1, 1))


class HotPixels(PhysicalCorruption):
    """Hot pixels.

    Crystal defects give some pixels a dark current far above the rest; cosmic rays and
    radiation damage add more.  They look like bright isolated spots, and a few of them are
    enough to wreck a percentile normalisation.  Severity ``level`` is the fraction of hot
    pixels: 0.01, 0.03, 0.1, 0.3, 1 % (a good sCMOS has about 0.01 % above 20 e-/s; the upper
    levels are an old, warm or irradiated sensor, or a long exposure).  Each adds a dark
    charge log-uniform between 0.5 and 8 times the brightest expected signal of the image.
    """

    name = "hot-pixels"
    levels = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
    family = "detector"
    title = "hot pixels"
    level_label = "{level:.2%} of the pixels"
    summary = "hot pixels; level: fraction of pixels"

    def sample(self, x, mask, level, gens):
        shape = tuple(x.shape[1:])
        return {"where": rand_per_image(shape, gens, x.device, x.dtype),
                "charge": rand_per_image(shape, gens, x.device, x.dtype)}

    def detector(self, y, expected, mask, level, params, sensor):
        peak = (expected - sensor.camera.offset_adu).flatten(1).amax(1).view(-1, 1, 1, 1)
        dark = peak * 2.0 ** (4 * params["charge"] - 1)
        return y + torch.where(params["where"] < level, dark, torch.zeros_like(dark))


OPTICAL = (Shading, Background, OutOfFocusHaze, Photobleaching, PixelSize)
DETECTOR = (FixedPattern, Saturation, HotPixels)


@hookimpl
def fmbench_corruptions():
    return [CorruptionSpec.of(cls) for cls in OPTICAL + DETECTOR]
