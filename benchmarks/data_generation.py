"""Generation speed of the synthetic datasets: images per second on one core.

    python benchmarks/data_generation.py [--size 256] [--images 20] [--repeats 5]

Each dataset generates the first ``--images`` test images ``--repeats`` times; the median
time per repeat gives images/second.  BLAS and torch are limited to one thread so the number
is per core.  Both wall-clock and CPU time (``time.process_time``) are reported: on a busy
machine the CPU-time rate is the one that tells the cost of generation.
"""

from __future__ import annotations

import argparse
import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import statistics  # noqa: E402
import time  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--datasets", default="er,mito,nucleus")
    args = parser.parse_args()

    from fmbench.plugins import get_registry, make_plugin_manager

    registry = get_registry(make_plugin_manager(load_entrypoints=False))
    print(f"{'dataset':<10} {'images/s':>9} {'ms/image':>9} {'CPU ms/image':>13}   ({args.images} images x "
          f"{args.repeats} repeats, {args.size}x{args.size}, median)")
    for name in args.datasets.split(","):
        spec = registry.dataset(name)
        ds = spec.factory(split="test", image_size=args.size)
        ds[0]  # warm caches and imports
        wall, cpu = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(args.images):
                ds[i]
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        per = statistics.median(wall) / args.images
        per_cpu = statistics.median(cpu) / args.images
        print(f"{name:<10} {1 / per:>9.1f} {1000 * per:>9.1f} {1000 * per_cpu:>13.1f}")


if __name__ == "__main__":
    main()
