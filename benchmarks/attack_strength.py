"""Attack strength per gradient pass: is APGD worth a place in the headline worst case?

    python benchmarks/attack_strength.py                          # unet-small on the three datasets
    python benchmarks/attack_strength.py --pairs unet-r18:nucleus,fpn-r18:er --steps 5,10 --json out.json

On each (model, dataset) pair, at the quick tier's headline budget (8/255, L-inf), on the
protocol's test images at the reference condition, every attack below runs with the same
number of input gradients per image (``--steps``), and the mean IoU it leaves is printed with
the gradient passes it took (counted by fmbench's tracker, not assumed):

- PGD, SegPGD, CosPGD (random start, Madry's step ``2.5 * eps / steps``: the quick tier's members);
- APGD with cross-entropy and with SEA's masked cross-entropy (``fmbench_plugins.apgd``);
- the worst case of FGSM + PGD + SegPGD + CosPGD (what quick-v2's ensemble scores), and the
  same with APGD added: what adding APGD to the ensemble would buy, at its extra cost.

Lower IoU = stronger.  Conditions (machine, threads, other load) are printed; the numbers are
means over images with their paired differences' 95 % bootstrap intervals.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

import fmbench
from fmbench.attack import frozen_params, track_gradients
from fmbench.plugins import get_registry
from fmbench.protocol import AttackEntry
from fmbench.seeding import generators


def reference_batch(protocol, dataset_ref, n):
    ds = fmbench.open_dataset(dataset_ref, protocol.split, protocol.image_size)
    samples = [ds[i] for i in range(min(n, len(ds)))]
    x = torch.from_numpy(np.stack([s.image for s in samples]).astype(np.float32))[:, None]
    m = torch.from_numpy(np.stack([s.mask for s in samples]))
    keys = [f"{dataset_ref}/{s.id}" for s in samples]  # the engine's keys: the same reference noise as the entries
    gens = generators(protocol.seed, keys, "reference")
    return fmbench.reference_input(protocol, x, m, gens, synthetic=bool(getattr(ds, "synthetic", True))), m.bool(), keys


def run(attack, model, x, m, keys, eps, tag, batch):
    out, grads = [], 0
    for i in range(0, x.shape[0], batch):
        gens = generators(0, keys[i:i + batch], f"strength/{tag}")
        with track_gradients() as tr, frozen_params(model):
            adv = attack(model, x[i:i + batch], m[i:i + batch], eps, gens)
        grads += tr.report()["evaluations"]
        with torch.inference_mode():
            out.append(fmbench.per_image_iou(fmbench.predict(model(adv)), m[i:i + batch]))
    return torch.cat(out).double().numpy(), grads / x.shape[0]


def ci(d, n_boot=2000):
    rng = np.random.default_rng(0)
    idx = rng.integers(0, d.size, (n_boot, d.size))
    lo, hi = np.percentile(d[idx].mean(1), [2.5, 97.5])
    return float(lo), float(hi)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", default="unet-small:nucleus,unet-small:er,unet-small:mito")
    ap.add_argument("--tier", default="quick-v2")
    ap.add_argument("--steps", default="5")
    ap.add_argument("--eps", type=float, default=8 / 255)
    ap.add_argument("--n-images", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json", help="write the measurements here")
    args = ap.parse_args()
    reg = get_registry()
    protocol = reg.protocol(args.tier)
    print(f"# {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; {args.tier}, eps {args.eps * 255:.0f}/255, "
          f"{args.n_images} images")
    records = []
    for pair in args.pairs.split(","):
        name, ds = pair.split(":")
        ref = protocol.dataset_ref(ds)
        loaded = fmbench.load_model(name, dataset=ref, generation=protocol.version)
        model = loaded.module
        x, m, keys = reference_batch(protocol, ref, args.n_images)
        for steps in (int(s) for s in args.steps.split(",")):
            fast = (("steps", steps), ("rel_step", 2.5))
            attacks = {"fgsm": AttackEntry("fgsm", (args.eps,)),
                       "pgd": AttackEntry("pgd", (args.eps,), params=fast),
                       "segpgd": AttackEntry("segpgd", (args.eps,), params=fast),
                       "cospgd": AttackEntry("cospgd", (args.eps,), params=fast),
                       "apgd-ce": AttackEntry("apgd", (args.eps,), params=(("steps", steps),)),
                       "apgd-mce": AttackEntry("apgd", (args.eps,), params=(("steps", steps), ("loss", "masked-ce")))}
            iou, cost, secs = {}, {}, {}
            for tag, entry in attacks.items():
                t0 = time.perf_counter()
                iou[tag], cost[tag] = run(reg.build_attack(entry), model, x, m, keys, args.eps, tag, args.batch)
                secs[tag] = time.perf_counter() - t0
            iou["worst-4"] = np.min([iou[k] for k in ("fgsm", "pgd", "segpgd", "cospgd")], axis=0)
            cost["worst-4"] = sum(cost[k] for k in ("fgsm", "pgd", "segpgd", "cospgd"))
            for a in ("apgd-ce", "apgd-mce"):
                iou[f"worst-4+{a}"] = np.minimum(iou["worst-4"], iou[a])
                cost[f"worst-4+{a}"] = cost["worst-4"] + cost[a]
            print(f"\n{name} on {ref} ({steps} gradient steps; weights {loaded.weights_name}):")
            print(f"  {'attack':<20} {'mean IoU':>9} {'grads/img':>9} {'s':>6}  vs PGD (paired, 95% CI)")
            for tag in iou:
                d = iou[tag] - iou["pgd"]
                lo, hi = ci(d)
                print(f"  {tag:<20} {iou[tag].mean():9.4f} {cost[tag]:9.1f} {secs.get(tag, float('nan')):6.1f}  "
                      f"{d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}]")
            records.append({"model": name, "dataset": ref, "steps": steps, "eps": args.eps,
                            "iou": {k: float(v.mean()) for k, v in iou.items()},
                            "per_image": {k: v.tolist() for k, v in iou.items()}, "grads_per_image": cost,
                            "seconds": secs})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"tier": args.tier, "records": records}, f, indent=1)


if __name__ == "__main__":
    main()
