"""Accuracy of the noise-aware real-data mode (fmbench.measured) on images with known noise.

Noise-free synthetic images are exposed by the protocol's detector at a known SNR (the truth:
the detector solves its photon scale for it) and handed to the mode as if measured.  Per
dataset and own SNR: the error of the estimated own SNR, and of the SNR each target reaches
(truth: own noise variance plus the variance the mode added, known exactly, at the mean
foreground).  Images with at least 2000 px of foreground, the first N of the test split.

    python benchmarks/noise_mode.py [--n 12] [--json OUT]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import fmbench
from fmbench.conditions import sensor_for
from fmbench.measured import MeasuredSensor, own_noise
from fmbench.seeding import generators

DATASETS = ("nucleus@2", "nucleus", "mito", "er")
OWN = (4.0, 8.0, 16.0)
TARGETS = (8.0, 4.0, 2.0, 1.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    proto = fmbench.get_protocol("quick")
    rows = []
    print(f"{'dataset':10s} {'own SNR':>7s} {'estimate: mean err':>18s} {'max |err|':>9s}  "
          + "  ".join(f"reached {t:g}: max |err|" for t in TARGETS))
    for name in DATASETS:
        ds = fmbench.open_dataset(name)
        picked = [ds[i] for i in range(len(ds)) if ds[i].mask.sum() >= 2000][: args.n]
        for s0 in OWN:
            est, reached = [], {t: [] for t in TARGETS}
            for s in picked:
                x, m = torch.from_numpy(s.image)[None, None].double(), torch.from_numpy(s.mask)[None]
                sensor = sensor_for(proto, x, m)
                y = sensor.expose(x, generators(0, [s.id], "known"), snr=s0)
                a = float(sensor.scale_for(s0))
                xe = s.image.astype(float)
                signal = a * (xe[s.mask].mean() - xe[~s.mask].mean())
                var_fg = a * xe[s.mask].mean() + proto.camera.read_noise_e ** 2
                own = own_noise(y[0, 0].numpy(), s.mask)
                est.append(own.snr / (signal / np.sqrt(var_fg)) - 1)
                mode = MeasuredSensor(y, m, proto.camera, proto.reference_snr)
                for t in TARGETS:
                    if t <= s0 and own.reaches(t):
                        added = float((mode.added_std(y, t)[0, 0].numpy()[s.mask] ** 2).mean())
                        reached[t].append(signal / np.sqrt(var_fg + added) / t - 1)
            row = {"dataset": name, "own_snr": s0, "n": len(picked), "estimate_mean_error": float(np.mean(est)),
                   "estimate_max_abs_error": float(np.max(np.abs(est))),
                   "reached_max_abs_error": {f"{t:g}": (float(np.max(np.abs(v))) if v else None)
                                             for t, v in reached.items()}}
            rows.append(row)
            cells = "  ".join(f"{'—' if v is None else f'{v:.3f}':>21s}" for v in row["reached_max_abs_error"].values())
            print(f"{name:10s} {s0:7g} {row['estimate_mean_error']:+18.3f} {row['estimate_max_abs_error']:9.3f}  {cells}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
