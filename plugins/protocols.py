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
BLUR_PSF = (2.0, 3.0, 4.0, 6.0, 8.0)  # defocused PSF width / in-focus PSF width
# microscopy artefacts (fmbench_plugins.artefacts), each with its five severities
ARTEFACTS = {
    "shading": (0.8, 0.6, 0.45, 0.3, 0.2),
    "background": (0.05, 0.15, 0.4, 1.0, 2.5),
    "haze": (0.1, 0.25, 0.5, 1.0, 2.0),
    "bleaching": (1.0, 2.0, 3.0, 4.0, 5.0),
    "pixel-size": (1.25, 1.5, 2.0, 2.5, 3.0),
    "fixed-pattern": (0.5, 1.0, 2.0, 4.0, 8.0),
    "saturation": (0.05, 0.15, 0.3, 0.5, 0.7),
    "hot-pixels": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
}
STUDY_CORRUPTIONS = (CorruptionEntry("noise", NOISE_SNRS), CorruptionEntry("sib", BLUR_PSF),
                     CorruptionEntry("svb", BLUR_PSF))
# quick: the study's three families in full, the artefacts at severities 1, 3 and 5
QUICK_CORRUPTIONS = STUDY_CORRUPTIONS + tuple(CorruptionEntry(k, v[::2]) for k, v in ARTEFACTS.items())
FULL_CORRUPTIONS = STUDY_CORRUPTIONS + tuple(CorruptionEntry(k, v) for k, v in ARTEFACTS.items())

# Attacks (fmbench_plugins.pgd / ensemble / universal; docs/attacks.md).  full: the study's
# FGSM, iterative FGSM and PGD (10 steps of 2/255) at its six budgets, plus SegPGD, CosPGD,
# the worst-case ensemble (members with Madry's step 2.5*eps/steps, so their random start can
# reach every corner of the box) and a universal perturbation, and L2 PGD-type attacks.
# quick: the study's attacks at 1-8/255 with PGD-type attacks cut to 5 steps (step
# 2.5*eps/steps); 16 images x 58 gradient steps + 80 for the universal perturbation
# = 1008 image forward+backward passes (plus 41 corruption and ~24 attack-side forward passes
# per image).
FAST = (("steps", 5), ("rel_step", 2.5))
QUICK_MEMBERS = (("fgsm", ()), ("pgd", FAST), ("segpgd", FAST), ("cospgd", FAST))
QUICK_ATTACKS = (
    AttackEntry("fgsm", tuple(k / 255 for k in (1, 2, 4, 8))),
    AttackEntry("ifgsm", tuple(k / 255 for k in (1, 2, 4, 8))),
    AttackEntry("pgd", (2 / 255, 8 / 255), params=FAST),
    AttackEntry("segpgd", (8 / 255,), params=FAST),
    AttackEntry("cospgd", (8 / 255,), params=FAST),
    AttackEntry("worst-case", (8 / 255,), params=(("members", QUICK_MEMBERS),)),
    AttackEntry("universal", (8 / 255,), params=(("epochs", 5), ("n_train", 16))),
)
L2_EPS = (0.5, 1.0, 2.0, 4.0)  # 1.0 ~ every pixel of a 256x256 image moved by 1/255
MADRY = (("rel_step", 2.5),)
FULL_MEMBERS = (("fgsm", ()), ("pgd", MADRY), ("segpgd", MADRY), ("cospgd", MADRY))
FULL_ATTACKS = (
    AttackEntry("fgsm", STUDY_EPS),
    AttackEntry("ifgsm", STUDY_EPS),
    AttackEntry("pgd", STUDY_EPS),
    AttackEntry("segpgd", STUDY_EPS),
    AttackEntry("cospgd", STUDY_EPS),
    AttackEntry("worst-case", STUDY_EPS, params=(("members", FULL_MEMBERS),)),
    AttackEntry("universal", STUDY_EPS, params=(("epochs", 10), ("n_train", 256))),
    AttackEntry("pgd", L2_EPS, norm="l2"),
    AttackEntry("segpgd", L2_EPS, norm="l2"),
    AttackEntry("cospgd", L2_EPS, norm="l2"),
)

# recorded in the v1 protocols (and so in their hashes), read by nothing: dropped in v2
V1_DATASETS = ("er", "mito", "nucleus")

QUICK_V1 = Protocol(
    name="quick", version=1,
    description="CPU-sized: 16 test images at 256x256; noise SNR 5-1, space-invariant and space-variant blur "
                "at 5 levels, 8 microscopy artefacts at severities 1, 3, 5; FGSM and iterative FGSM at 1, 2, 4, "
                "8 /255, PGD-5 at 2 and 8 /255, SegPGD-5, CosPGD-5, worst-case ensemble and universal at 8/255",
    n_images=16, image_size=256, reference_snr=8.0,
    corruptions=QUICK_CORRUPTIONS,
    attacks=QUICK_ATTACKS,
    datasets=V1_DATASETS,
)

FULL_V1 = Protocol(
    name="full", version=1,
    description="study-sized: 256 test images at 256x256; noise SNR 5-1, space-invariant and space-variant "
                "blur at 5 levels, 8 microscopy artefacts at 5 severities; FGSM, iterative FGSM, PGD-10, "
                "SegPGD-10, CosPGD-10, worst-case ensemble and universal at 1-32 /255; L2 PGD, SegPGD, "
                "CosPGD at 0.5-4",
    n_images=256, image_size=256, reference_snr=8.0,
    corruptions=FULL_CORRUPTIONS,
    attacks=FULL_ATTACKS,
    datasets=V1_DATASETS,
)


# -- version 2 --------------------------------------------------------------------------------
# The same conditions on the realistic nuclei (nucleus@2; ER and Mito have one version), without
# the fields nothing reads, and with the worst-case ensemble scored from its members' results:
# every member runs in the protocol itself at the ensemble's budget with the same parameters, so
# the ensemble is the per-image worst of those (fmbench.conditions.WorstOf), then continued from
# each image's worst member input by one more CosPGD run (``refine``), kept where it is worse
# still -- instead of running every member again with fresh random starts (v1), which costs three
# times as many gradients and finds less (docs/attacks.md, benchmarks/worst_case_v2.py).
V2_DATA = (("nucleus", 2),)
QUICK_REFINE = ("cospgd", FAST)
QUICK_ATTACKS_V2 = tuple(
    AttackEntry(e.name, e.eps, e.norm, params=(("members", QUICK_MEMBERS), ("reuse", True), ("refine", QUICK_REFINE)))
    if e.name == "worst-case" else e for e in QUICK_ATTACKS)
FULL_MEMBERS_V2 = (("fgsm", ()), ("pgd", ()), ("segpgd", ()), ("cospgd", ()))  # the protocol's own entries
FULL_REFINE = ("cospgd", (("steps", 10), ("rel_step", 2.5)))
FULL_ATTACKS_V2 = tuple(
    AttackEntry(e.name, e.eps, e.norm, params=(("members", FULL_MEMBERS_V2), ("reuse", True), ("refine", FULL_REFINE)))
    if e.name == "worst-case" else e for e in FULL_ATTACKS)

QUICK_V2 = Protocol(
    name="quick", version=2,
    description="as quick-v1 on the realistic nuclei (nucleus@2); the worst-case ensemble at 8/255 is the per-image "
                "worst of its members' results (FGSM, PGD-5, SegPGD-5, CosPGD-5) continued by CosPGD-5 from that worst "
                "input, not a second run of them",
    n_images=16, image_size=256, reference_snr=8.0,
    corruptions=QUICK_CORRUPTIONS,
    attacks=QUICK_ATTACKS_V2,
    data_versions=V2_DATA,
)

FULL_V2 = Protocol(
    name="full", version=2,
    description="as full-v1 on the realistic nuclei (nucleus@2); the worst-case ensemble is the per-image worst of "
                "the protocol's own FGSM, PGD-10, SegPGD-10 and CosPGD-10 results at each budget, continued by "
                "CosPGD-10 from that worst input",
    n_images=256, image_size=256, reference_snr=8.0,
    corruptions=FULL_CORRUPTIONS,
    attacks=FULL_ATTACKS_V2,
    data_versions=V2_DATA,
    draft=True,
)


@hookimpl
def fmbench_protocols():
    return [QUICK_V1, FULL_V1, QUICK_V2, FULL_V2]
