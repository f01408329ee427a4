"""Everything fmbench measures on a GPU, in one run that fits a short lease; JSON comes back.

    python benchmarks/gpu_session.py --out $OUT/gpu.json [--budget-s 480] [--models unet-small,unet-r18]

1. **CPU against GPU**: the shipped ``unet-small`` on nucleus under quick-v2 (8 images, every
   condition) on both devices: the largest and mean per-image IoU difference per condition kind
   (the tolerance docs/scale.md states for GPU results).
2. **bf16 against fp32 on the GPU** (``--amp bf16``): the same comparison, and the wall-time ratio.
3. **The full tier**: wall time and peak GPU memory of ``full-v2`` for each model (randomly
   initialised where no weights are here: time and memory do not depend on the weights), in
   the order given, until ``--budget-s`` is spent; what was not reached is listed as such.

Nothing is estimated: every number is measured in this run, with the device's name.  Run it
only where a GPU is present (it exits with an error otherwise).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import fmbench


def per_kind_diff(a, b) -> dict:
    out: dict[str, list[float]] = {}
    for c in a.conditions:
        d = np.abs(np.asarray(a.per_image["iou"][c["id"]]) - np.asarray(b.per_image["iou"][c["id"]]))
        out.setdefault(c["kind"], []).extend(d.tolist())
    return {k: {"max_abs_iou_diff": float(np.max(v)), "mean_abs_iou_diff": float(np.mean(v)), "n": len(v)}
            for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-s", type=float, default=480.0, help="stop starting full-tier runs after this")
    ap.add_argument("--models", default="unet-small,unet-r18,unetpp-mbv2,fpn-r18,pspnet-r18,deeplabv3plus-r18,"
                                        "fcn8s-r18,segformer-b0,dpt-vit-tiny,upernet-convnext-atto,lraspp-mbv3")
    ap.add_argument("--n-images", type=int, default=8, help="images for the agreement checks")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device here; this script measures a GPU")
    t_start = time.perf_counter()
    report: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
                    "host": platform.node(), "fmbench": fmbench.__version__}
    small = fmbench.get_protocol("quick-v2", n_images=args.n_images)

    def timed(**kw):
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        r = fmbench.evaluate(cache=False, batch_size=8, **kw)
        torch.cuda.synchronize()
        return r, time.perf_counter() - t0, torch.cuda.max_memory_allocated() / 2**30

    cpu, cpu_s, _ = timed(model="unet-small", dataset="nucleus", protocol=small, device="cpu")
    gpu, gpu_s, gpu_mem = timed(model="unet-small", dataset="nucleus", protocol=small, device="cuda")
    report["cpu_vs_gpu"] = {"protocol": small.id, "per_kind": per_kind_diff(cpu, gpu), "cpu_s": cpu_s, "gpu_s": gpu_s,
                            "gpu_peak_gib": gpu_mem}
    amp = fmbench.get_protocol("quick-v2", n_images=args.n_images, precision="bf16")
    bf, bf_s, bf_mem = timed(model="unet-small", dataset="nucleus", protocol=amp, device="cuda")
    report["bf16_vs_fp32_gpu"] = {"per_kind": per_kind_diff(gpu, bf), "fp32_s": gpu_s, "bf16_s": bf_s,
                                  "bf16_peak_gib": bf_mem}
    Path(args.out).write_text(json.dumps(report, indent=1))  # what is measured so far survives a kill
    full = fmbench.get_protocol("full-v2")
    report["full_tier"], report["not_reached"] = [], []
    for name in args.models.split(","):
        if time.perf_counter() - t_start > args.budget_s:
            report["not_reached"].append(name)
            continue
        try:
            r, secs, mem = timed(model=name, dataset="nucleus", protocol=full, device="cuda")
            init = "registered weights"
        except fmbench.CheckpointError:
            r, secs, mem = timed(model=name, dataset="nucleus", protocol=full, device="cuda", random_init=True)
            init = "random init (timing and memory only)"
        passes = {k: sum(c["passes"][k] for c in r.conditions) for k in ("forward_images", "backward_images")}
        report["full_tier"].append({"model": name, "weights": init, "seconds": secs, "peak_gib": mem,
                                    "n_images": full.n_images, **passes})
        Path(args.out).write_text(json.dumps(report, indent=1))
    report["total_s"] = time.perf_counter() - t_start
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
