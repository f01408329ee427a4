"""Harness efficiency and scaling of a real evaluation, measured side by side in one run.

1. Efficiency: fmbench's whole evaluation (``fmbench.evaluate``: data generation,
   corruptions, attacks with their self-checks, universal-perturbation learning, metrics,
   the resume log) against a bare-torch loop that performs exactly the same model passes —
   the forward-only and forward+backward calls, at the same batch sizes, per condition, read
   from the pass counts of the result — on tensors of the same shape.  The bare loop is the
   model's own compute, the floor any harness pays; bare/fmbench is the harness efficiency
   (goal >= 0.95 on CPU).  The two alternate ``--repeats`` times so that load from other
   processes hits both alike; the table shows the best and the median.
2. Scaling (``--scaling 8,16``): ``fmbench eval`` as a subprocess at each number of images,
   wall time and peak resident memory (``os.wait4``'s ``ru_maxrss`` of that process alone);
   time should double with the images and memory stay flat (images are streamed in batches).

    python benchmarks/harness.py [--model unet-small] [--dataset nucleus] [--tier quick-v1]
        [--n-images 8] [--repeats 2] [--scaling 8,16] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch


def fmbench_run(loaded, dataset, args, protocol, device, out):
    """One whole ``fmbench.evaluate`` (probe, plan, run, result written to ``out``), timed."""
    import fmbench

    t0 = time.perf_counter()
    result = fmbench.evaluate(loaded, dataset, protocol, device=device, batch_size=args.batch_size, out=out,
                              overwrite=True)
    seconds = time.perf_counter() - t0
    return seconds, result


def bare_plan(result) -> list[tuple[int, int, bool]]:
    """(calls, images per call, with backward) per condition, from the result's pass counts
    (conditions' counts include their preparation passes)."""
    plan = []
    for c in result["conditions"]:
        p = c["passes"]
        fwd_only_calls = p["forward_calls"] - p["backward_calls"]
        fwd_only_images = p["forward_images"] - p["backward_images"]
        if p["backward_calls"]:
            plan.append((p["backward_calls"], round(p["backward_images"] / p["backward_calls"]), True))
        if fwd_only_calls:
            plan.append((fwd_only_calls, round(fwd_only_images / fwd_only_calls), False))
    return plan


def bare_run(module, plan, size: int, device) -> float:
    """The same passes, nothing else: random inputs made up front, parameters frozen."""
    from fmbench.attack import frozen_params

    inputs = {b: torch.rand(b, 1, size, size, device=device) for _, b, _ in plan}
    t0 = time.perf_counter()
    with frozen_params(module):
        for calls, b, backward in plan:
            x = inputs[b]
            for _ in range(calls):
                if backward:
                    xg = x.clone().requires_grad_(True)
                    module(xg).sum().backward()
                else:
                    with torch.inference_mode():
                        module(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def scaling(args, n_images: int, tmp: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of one ``fmbench eval`` subprocess."""
    cmd = [sys.executable, "-m", "fmbench", "eval", "--model", args.model, "--dataset", args.dataset,
           "--tier", args.tier, "--n-images", str(n_images), "--device", args.device, "--quiet",
           "--out", os.path.join(tmp, f"scaling-{n_images}.json")]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed")
    return seconds, usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def efficiency(args, loaded, dataset, protocol, device, tmp) -> None:
    """Best and median of fmbench's evaluation and of the bare loop of the same passes."""
    fm, bare = [], []
    out = os.path.join(tmp, "run.json")
    _, result = fmbench_run(loaded, dataset, args, protocol, device, out)  # warm-up
    plan = bare_plan(result)
    bare_run(loaded.module, plan[:2], protocol.image_size, device)  # warm-up
    for _ in range(args.repeats):
        fm.append(fmbench_run(loaded, dataset, args, protocol, device, out)[0])
        bare.append(bare_run(loaded.module, plan, protocol.image_size, device))
    totals = result["passes"]
    print(f"\n{args.model} on {args.dataset}, {protocol.id} ({len(result['conditions'])} conditions, "
          f"{args.n_images} images of {protocol.image_size}x{protocol.image_size}), {args.device}, "
          f"{args.threads} threads, batch {args.batch_size}, {args.repeats} repeats")
    print(f"passes: {totals['forward_images']} forward and {totals['backward_images']} backward image passes "
          f"in {totals['forward_calls']} / {totals['backward_calls']} calls\n")
    print(f"{'':28s} {'best s':>8s} {'median s':>9s}")
    print(f"{'fmbench evaluate()':28s} {min(fm):8.2f} {statistics.median(fm):9.2f}")
    print(f"{'bare torch, same passes':28s} {min(bare):8.2f} {statistics.median(bare):9.2f}")
    print(f"harness efficiency bare/fmbench (goal >= 0.95): {min(bare) / min(fm):.3f} (best), "
          f"{statistics.median(bare) / statistics.median(fm):.3f} (median)", flush=True)



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="unet-small")
    ap.add_argument("--dataset", default="nucleus")
    ap.add_argument("--tier", default="quick-v1", help="the README's figures are quick-v1's")
    ap.add_argument("--n-images", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2, help="0: only the scaling runs")
    ap.add_argument("--scaling", default="8,16", help="image counts for the scaling runs ('' to skip)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import fmbench

    device = torch.device(args.device)
    protocol = fmbench.get_protocol(args.tier, n_images=args.n_images)
    ref = protocol.dataset_ref(args.dataset)  # `nucleus` under a v2 protocol is nucleus@2
    dataset = fmbench.open_dataset(ref, protocol.split, protocol.image_size)
    loaded = fmbench.load_model(args.model, dataset=ref, generation=protocol.version)
    loaded.module.to(device).eval()

    with tempfile.TemporaryDirectory(prefix="fmbench-bench-") as tmp:
        if args.repeats > 0:
            efficiency(args, loaded, dataset, protocol, device, tmp)
        sizes = [int(s) for s in args.scaling.split(",") if s.strip()]
        if sizes:
            print(f"\nscaling: `fmbench eval --n-images N` as a subprocess\n{'images':>8s} {'wall s':>8s} "
                  f"{'s/image':>8s} {'peak RSS GiB':>13s}")
            for n in sizes:
                s, rss = scaling(args, n, tmp)
                print(f"{n:8d} {s:8.1f} {s / n:8.2f} {rss:13.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
