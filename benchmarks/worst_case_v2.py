"""quick-v1's worst case (members run again) against quick-v2's (the per-image worst of the members'
own results, continued from that worst input by one more CosPGD run), side by side on the same
model, images and member results.

    FMBENCH_CACHE=.work/cache python benchmarks/worst_case_v2.py --models unet-r18,unetpp-mbv2 --dataset nucleus@2
    python benchmarks/worst_case_v2.py --variants quick-v2+refine=pgd:1,quick-v2+refine=cospgd:2.5

Both runs evaluate FGSM, PGD-5, SegPGD-5 and CosPGD-5 at 8/255 and the worst-case ensemble on the
same test images of the same dataset with the same weights; quick-v1's ensemble runs its members
a second time with fresh random starts, quick-v2's takes each image's worst member result and
refines it.  ``TIER+refine=ATTACK[:REL_STEP]`` tries another continuation (5 steps of ATTACK with
step REL_STEP * eps / 5).  For each model: the gradient (backward) and forward image passes of the
ensemble and of the whole attack set, the ensemble's mean IoU, and the mean of the per-image worst
member (quick-v2's must not be higher than quick-v1's).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform

import numpy as np

import fmbench

MEMBERS = ["fgsm", "pgd", "segpgd", "cospgd", "worst-case"]


def variant(tier: str, n_images: int):
    base, _, refine = tier.partition("+refine=")
    proto = fmbench.get_protocol(base, n_images=n_images, corruptions=["none"], attacks=MEMBERS)
    if not refine:
        return proto
    name, _, rel = refine.partition(":")
    params = (("steps", 5), ("rel_step", float(rel or 2.5)))
    return dataclasses.replace(proto, attacks=tuple(
        dataclasses.replace(e, params=(*e.params, ("refine", (name, params)))) if e.name == "worst-case" else e
        for e in proto.attacks))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="unet-small")
    ap.add_argument("--dataset", default="nucleus@2")
    ap.add_argument("--n-images", type=int, default=16)
    ap.add_argument("--variants", default="quick-v1,quick-v2",
                    help="tiers, or TIER+refine=ATTACK[:REL_STEP] (the ensemble continued from each image's worst "
                         "member by ATTACK, 5 steps), comma-separated")
    args = ap.parse_args()
    print(f"# {platform.machine()}, {os.cpu_count()} cores, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
          f"{args.dataset}, {args.n_images} images, attacks {', '.join(MEMBERS)} at 8/255")
    print(f"{'model':<14} {'tier':<9} {'ens. fwd':>8} {'ens. bwd':>8} {'all fwd':>8} {'all bwd':>8} {'worst-case IoU':>15} {'min of members':>15}")
    from fmbench.plugins import get_registry

    reg = get_registry()
    for name in args.models.split(","):
        v2 = f"{args.dataset}/v2"  # the same weights under both tiers: the v2 zoo's where it has them
        weights = v2 if v2 in reg.model(name).weights else None
        for tier in args.variants.split(","):
            proto = variant(tier, args.n_images)
            r = fmbench.evaluate(name, args.dataset, proto, weights=weights, cache=False, batch_size=8)
            wc = r.condition("worst-case@8/255")
            members = [f"{m}@8/255" for m in MEMBERS[:-1]]
            floor = np.min([r.per_image["iou"][m] for m in members], axis=0).mean()
            total = {k: sum(c["passes"][k] for c in r.conditions if c["kind"] == "attack")
                     for k in ("forward_images", "backward_images")}
            print(f"{name:<14} {tier:<9} {wc['passes']['forward_images']:8d} {wc['passes']['backward_images']:8d} "
                  f"{total['forward_images']:8d} {total['backward_images']:8d} {wc['iou']:15.4f} {floor:15.4f}")


if __name__ == "__main__":
    main()
