"""Does every zoo model fit the CPU budget?  Measured per model, projected to the recipe.

For each zoo model: the time of one training step of the recipe (batch 8 of 128x128 crops,
forward + backward + AdamW), best of ``--repeats`` after a warm-up, times the recipe's steps
(goal: <= 15 min); and the time of one forward and one forward+backward image pass at the
``quick`` tier's 256x256, times the tier's pass counts (2032 forward, 1008 backward image
passes for 16 images under quick-v1; 1776 and 832 under quick-v2), which is the model's own
compute for a ``quick`` evaluation.  The recipe is version 1's fixed one (800 steps): version 2's
stops early on a validation plateau, so its step count is only an upper bound (1200), and its
measured minutes are in leaderboard/runs/zoo-quick-v2.json.

    python benchmarks/zoo_budget.py [--models a,b] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
import torch.nn.functional as F

# quick-v1's model passes (16 images; from a result file's "passes"); quick-v2: 1776 and 832
QUICK_FORWARD, QUICK_BACKWARD = 2032, 1008


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="comma-separated zoo models (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    from fmbench_plugins.zoo import ZOO

    from fmbench.train import Recipe

    recipe = Recipe()
    wanted = set(args.models.split(",")) if args.models else None
    print(f"{args.threads} threads; v1 recipe: {recipe.steps} steps of batch {recipe.batch_size} x {recipe.crop}x{recipe.crop}; "
          f"quick-v1: {QUICK_FORWARD} forward + {QUICK_BACKWARD} backward image passes at 256x256\n")
    print(f"{'model':24s} {'params M':>8s} {'s/step':>7s} {'train min':>9s} {'fwd ms/img':>10s} "
          f"{'fwd+bwd ms/img':>14s} {'quick compute min':>17s}")
    for name, _, factory, _ in ZOO:
        if wanted and name not in wanted:
            continue
        torch.manual_seed(0)
        model = factory()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        x = torch.rand(recipe.batch_size, 1, recipe.crop, recipe.crop)
        y = (torch.rand_like(x) > 0.5).float()

        def train_step():
            model.train()
            loss = F.binary_cross_entropy_with_logits(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step = best_of(train_step, args.repeats)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        xe = torch.rand(8, 1, 256, 256)

        def forward():
            with torch.inference_mode():
                model(xe)

        def forward_backward():
            xg = xe.clone().requires_grad_(True)
            model(xg).sum().backward()

        fwd = best_of(forward, args.repeats) / 8
        fb = best_of(forward_backward, args.repeats) / 8
        quick = (QUICK_FORWARD - QUICK_BACKWARD) * fwd + QUICK_BACKWARD * fb
        print(f"{name:24s} {params:8.2f} {step:7.3f} {recipe.steps * step / 60:9.1f} {fwd * 1e3:10.0f} "
              f"{fb * 1e3:14.0f} {quick / 60:17.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
