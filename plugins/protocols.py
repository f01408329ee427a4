"""The fmbench protocol tiers.

``quick`` is sized for a 2-core CPU; ``full`` follows the study (Zhong, Li & Yang, BMC
Bioinformatics 2024) and is meant for a GPU.  A tier's content never changes under the same
version: a change adds a new version, and old versions stay registered so results made under
them still validate.
"""

from __future__ import annotations

from fmbench import AttackEntry, CorruptionEntry, Protocol, hookimpl

STUDY_EPS = tuple(k / 255 for k in (1, 2, 4, 8, 16, 32))
NOISE_SNRS = (5.0, 4.0, 3.0, 2.0, 1.0)  # SNR 8 is the reference condition

QUICK_V1 = Protocol(
    name="quick", version=1,
    description="CPU-sized: 48 test images at 256x256; noise SNR 5-1; FGSM at 1, 2, 4, 8 /255",
    n_images=48, image_size=256, reference_snr=8.0,
    corruptions=(CorruptionEntry("noise", NOISE_SNRS),),
    attacks=(AttackEntry("fgsm", tuple(k / 255 for k in (1, 2, 4, 8))),),
)

FULL_V1 = Protocol(
    name="full", version=1,
    description="study-sized: 256 test images at 256x256; noise SNR 5-1; FGSM at 1-32 /255",
    n_images=256, image_size=256, reference_snr=8.0,
    corruptions=(CorruptionEntry("noise", NOISE_SNRS),),
    attacks=(AttackEntry("fgsm", STUDY_EPS),),
)


@hookimpl
def fmbench_protocols():
    return [QUICK_V1, FULL_V1]
