"""Mixed Poisson-Gaussian detector noise at a target SNR (the study's noise family).

Physical rationale: a camera pixel counts photo-electrons (Poisson shot noise) and adds read
noise (Gaussian).  Lowering the SNR is a shorter exposure or weaker illumination: fewer
photons per unit of the expected image.  The photon scale is solved exactly per image so the
SNR (defined in :mod:`fmbench.corruption`) equals the level.  SNR 8 is the protocol's
reference condition; the family's levels 5, 4, 3, 2, 1 are increasingly severe.
"""

from __future__ import annotations

from fmbench import Corruption, CorruptionSpec, check_image_batch, check_level, hookimpl

LEVELS = (8.0, 5.0, 4.0, 3.0, 2.0, 1.0)


class PoissonGaussianNoise(Corruption):
    name = "noise"
    levels = LEVELS
    family = "noise"
    level_label = "SNR {level:g}"
    exposure = True
    summary = "mixed Poisson-Gaussian noise at a target SNR"

    def __call__(self, x, mask, level, sensor, gens):
        check_image_batch(x, "corruption 'noise'")
        check_level("noise", level, LEVELS)
        return sensor.expose(x, gens, snr=float(level)), mask


@hookimpl
def fmbench_corruptions():
    return [CorruptionSpec.of(PoissonGaussianNoise)]
