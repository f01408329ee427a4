"""How far bfloat16 mixed precision (``--amp bf16``) moves a result, measured side by side.

    python benchmarks/amp_tolerance.py                                   # unet-small, nucleus, quick-v2, 4 images
    python benchmarks/amp_tolerance.py --model unet-r18 --dataset er --n-images 16 --device cuda --json out.json

Runs one evaluation in float32 and one in bf16 (same protocol otherwise, same images, same
seeds) and prints, per condition kind, the largest and the mean absolute per-image IoU
difference, the headline scores of both, and the wall time of each (same machine, one after
the other).  A bf16 result is a protocol variant and never ranks with float32 results; this is
the tolerance docs/scale.md states for it.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="unet-small")
    ap.add_argument("--dataset", default="nucleus")
    ap.add_argument("--tier", default="quick-v2")
    ap.add_argument("--n-images", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--json")
    args = ap.parse_args()
    print(f"# {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, device {args.device}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    runs, secs = {}, {}
    for precision in ("fp32", "bf16"):
        proto = fmbench.get_protocol(args.tier, n_images=args.n_images, precision=precision)
        t0 = time.perf_counter()
        runs[precision] = fmbench.evaluate(args.model, args.dataset, proto, device=args.device,
                                           batch_size=args.batch_size, cache=False)
        secs[precision] = time.perf_counter() - t0
    a, b = runs["fp32"], runs["bf16"]
    kinds: dict[str, list[float]] = {}
    for c in a.conditions:
        d = np.abs(np.asarray(a.per_image["iou"][c["id"]]) - np.asarray(b.per_image["iou"][c["id"]]))
        kinds.setdefault(c["kind"], []).extend(d.tolist())
    report = {"model": args.model, "dataset": args.dataset, "tier": args.tier, "n_images": args.n_images,
              "device": args.device, "seconds": secs,
              "per_kind": {k: {"max_abs_iou_diff": float(np.max(v)), "mean_abs_iou_diff": float(np.mean(v)),
                               "n": len(v)} for k, v in kinds.items()},
              "headline": {p: {k: r["scores"][k]["value"] for k in ("clean_iou", "corrupted_iou", "robust_iou")}
                           for p, r in runs.items()}}
    for k, v in report["per_kind"].items():
        print(f"{k:<11} per-image |IoU bf16 - fp32|: max {v['max_abs_iou_diff']:.4f}, mean {v['mean_abs_iou_diff']:.4f} "
              f"({v['n']} image-conditions)")
    for p, h in report["headline"].items():
        print(f"{p}: " + ", ".join(f"{k} {v:.4f}" for k, v in h.items()) + f"  ({secs[p]:.0f} s)")
    print(f"bf16 / fp32 wall time: {secs['bf16'] / secs['fp32']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
