"""Where do two trainings with the same seed diverge?  Stand-ins for other machines, side by side.

The same ``fmbench train`` command (unet-small on nucleus, seed 0, ``--tier quick-v1 --steps N``: the
recipe and data docs/zoo.md's table was measured with) is run in
fresh processes under settings that differ the way machines do: the thread count
(``OMP_NUM_THREADS``), the vector instruction set PyTorch's own kernels use
(``ATEN_CPU_CAPABILITY``) and the one oneDNN's kernels use (``ONEDNN_MAX_CPU_ISA``).  Each
checkpoint's state sha256, its largest weight difference from the first, and its validation
IoU are printed: identical hashes mean that setting does not change training.

    python benchmarks/train_determinism.py [--steps 40] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from fmbench.checkpoint import read_checkpoint

SETTINGS = [
    ("2 threads (this machine's default)", {"OMP_NUM_THREADS": "2"}),
    ("2 threads, again", {"OMP_NUM_THREADS": "2"}),
    ("1 thread", {"OMP_NUM_THREADS": "1"}),
    ("2 threads, ATen kernels capped at AVX2", {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "avx2"}),
    ("2 threads, ATen kernels without SIMD", {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "default"}),
    ("2 threads, oneDNN capped at AVX2", {"OMP_NUM_THREADS": "2", "ONEDNN_MAX_CPU_ISA": "AVX2"}),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    rows, first = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, env) in enumerate(SETTINGS):
            out = Path(tmp) / f"{i}.pt"
            full_env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
            full_env.update(env)
            subprocess.run([sys.executable, "-m", "fmbench", "train", "--model", "unet-small", "--dataset", "nucleus",
                            "--seed", "0", "--tier", "quick-v1", "--steps", str(args.steps), "--out", str(out), "--quiet"],
                           env=full_env, check=True, capture_output=True)
            state, meta = read_checkpoint(out)
            if first is None:
                first = state
            diff = max(float((state[k].float() - first[k].float()).abs().max()) for k in state)
            row = {"setting": label, "env": env, "state_sha256": meta["state_sha256"], "max_abs_weight_diff": diff,
                   "val_iou": meta["val_iou"], "cpu_capability": meta.get("cpu_capability"),
                   "threads": meta.get("threads")}
            rows.append(row)
            print(f"{label:42s} {meta['state_sha256'][:12]}  max |dw| {diff:.2e}  val IoU {meta['val_iou']:.4f}")
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
