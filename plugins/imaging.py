"""The physical imaging model shared by the synthetic datasets.

Structures are drawn as fluorophore density on the pixel grid, imaged through a
diffraction-limited point-spread function, and put on a background of autofluorescence.  The
result is a noise-free *expected photon* image (float32, arbitrary but consistent units); the
ground-truth mask comes from the geometry itself.  Noise is not added here: the protocol's
detector adds it (see :mod:`fmbench.corruption`).

**PSF.** A Gaussian approximation of the Airy disk of a wide-field microscope, with standard
deviation ``sigma = 0.21 * wavelength / NA`` (Zhang, Zerubia & Olivo-Marin, Applied Optics
2007: the best paraxial Gaussian fit of the wide-field PSF in the focal plane).  We use the
Gaussian because the synthetic structures are drawn at pixel resolution where the Airy side
lobes (< 2 % of the peak) are below the noise at every SNR we simulate, and because it is
separable, which keeps generation fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Optics:
    """Pixel size (nm, in the sample plane), numerical aperture, emission wavelength (nm)."""

    pixel_size_nm: float
    na: float
    wavelength_nm: float

    @property
    def psf_sigma_px(self) -> float:
        return 0.21 * self.wavelength_nm / self.na / self.pixel_size_nm


def psf_blur(density: np.ndarray, optics: Optics) -> np.ndarray:
    """Image a fluorophore density through the Gaussian PSF."""
    return ndimage.gaussian_filter(density, optics.psf_sigma_px, mode="reflect", truncate=3.5)


def wide_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur for wide kernels: blur a block-averaged copy and interpolate back.

    For ``sigma`` above 4 px the image is reduced by ``f = sigma // 2`` (block means), blurred
    with ``sigma / f`` and zoomed back bilinearly; the error is far below the noise and it is
    10-50x faster than the full-resolution filter.
    """
    f = int(sigma // 2)
    if f < 2:
        return ndimage.gaussian_filter(image, sigma, mode="reflect")
    h, w = image.shape
    ph, pw = (-h) % f, (-w) % f
    padded = np.pad(image, ((0, ph), (0, pw)), mode="reflect")
    small = padded.reshape(padded.shape[0] // f, f, padded.shape[1] // f, f).mean((1, 3))
    small = ndimage.gaussian_filter(small, sigma / f, mode="reflect")
    # sample the small grid at the centres of the full-resolution pixels
    ys = (np.arange(h) + 0.5) / f - 0.5
    xs = (np.arange(w) + 0.5) / f - 0.5
    return ndimage.map_coordinates(small, np.meshgrid(ys, xs, indexing="ij"), order=1, mode="nearest")


def smooth_field(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """A zero-mean, unit-variance Gaussian random field with correlation length ``sigma`` px."""
    field = wide_blur(rng.standard_normal(shape), sigma)
    std = field.std()
    return (field - field.mean()) / (std if std > 0 else 1.0)


def background(rng: np.random.Generator, shape, level: float, variation: float = 0.3) -> np.ndarray:
    """Autofluorescence and offset: ``level`` with a slow spatial variation of relative size ``variation``."""
    slow = smooth_field(rng, shape, sigma=max(shape) / 4)
    return level * np.clip(1.0 + variation * slow, 0.2, None)
