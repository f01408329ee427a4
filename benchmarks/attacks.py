"""Attack speed, side by side in one run on the same model and images.

1. fmbench PGD-10 vs torchattacks PGD-10 (goal: no slower); the torchattacks part prints a
   "skipped" line when torchattacks is not installed.
2. fmbench's batched PGD-10 vs a per-image loop at batch size 1: fmbench's own PGD called on
   one image at a time, and the loop the study's code runs (one image at a time, parameters
   left requiring gradients, ``loss.backward()``) (goal: at least 3x on 2 CPU cores).

Every variant runs ``--repeats`` times, interleaved so that load from other processes hits
all of them alike; the table shows the best and the median time and both ratios (on a
machine shared with other work the best time is the steadier of the two).  ``python benchmarks/attacks.py [--model unet-small|resnet18-unet] [--n 8]
[--size 128] [--repeats 5] [--threads 2] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from fmbench_plugins.pgd import PGD
from torch import nn

from fmbench.attack import frozen_params, segmentation_loss
from fmbench.seeding import generators

EPS, ALPHA, STEPS = 8 / 255, 2 / 255, 10


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "unet-small":
        from fmbench_plugins.unet import UNet

        return UNet(classes=2, width=16, depth=3).eval()
    import segmentation_models_pytorch as smp

    return smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=2).eval()


def images(n: int, size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, size, size, generator=g)
    x = torch.nn.functional.avg_pool2d(x, 9, 1, 4)  # smooth blobs, not white noise
    m = x[:, 0] > x.mean()
    return ((x - x.min()) / (x.max() - x.min())).to(device), m.to(device)


def fmbench_pgd(model, x, m):
    attack = PGD(steps=STEPS, step=ALPHA)
    with frozen_params(model):
        return attack(model, x, m, EPS, generators(0, [f"i{k}" for k in range(len(x))], "bench", x.device))


def fmbench_loop(model, x, m):
    return torch.cat([fmbench_pgd(model, x[i:i + 1], m[i:i + 1]) for i in range(len(x))])


def study_loop(model, x, m):
    """One image at a time, parameters requiring gradients, ``loss.backward()``: how research
    code for classification attacks is usually written."""
    out = []
    for i in range(len(x)):
        xi, mi = x[i:i + 1], m[i:i + 1]
        adv = (xi + torch.empty_like(xi).uniform_(-EPS, EPS)).clamp(0, 1).detach()
        for _ in range(STEPS):
            adv.requires_grad_(True)
            loss = segmentation_loss(model(adv), mi).mean()
            model.zero_grad()
            loss.backward()
            adv = adv.detach() + ALPHA * adv.grad.sign()
            adv = (xi + (adv - xi).clamp(-EPS, EPS)).clamp(0, 1).detach()
        out.append(adv)
    model.zero_grad(set_to_none=True)
    return torch.cat(out)


def torchattacks_pgd(model, x, m):
    import torchattacks

    return torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=True)(x, m.long())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="unet-small", choices=["unet-small", "resnet18-unet"])
    ap.add_argument("--n", type=int, default=8, help="images (one batch)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = build(args.model).to(device)
    x, m = images(args.n, args.size, device)

    variants = {"fmbench PGD-10, batched": fmbench_pgd}
    try:
        import torchattacks  # noqa: F401

        variants["torchattacks PGD-10, batched"] = torchattacks_pgd
    except ImportError:
        print("torchattacks comparison skipped: torchattacks is not installed "
              "(pip install --no-deps torchattacks)")
    variants["fmbench PGD-10, batch size 1 loop"] = fmbench_loop
    variants["study-style loop, batch size 1"] = study_loop

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    times: dict[str, list[float]] = {k: [] for k in variants}
    for fn in variants.values():  # warm-up
        fn(model, x[:2], m[:2])
    for _ in range(args.repeats):
        for name, fn in variants.items():
            sync()
            t0 = time.perf_counter()
            fn(model, x, m)
            sync()
            times[name].append(time.perf_counter() - t0)

    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    base, base_best = med["fmbench PGD-10, batched"], best["fmbench PGD-10, batched"]
    print(f"\n{args.model}, {args.n} images of {args.size}x{args.size}, {args.device}, {args.threads} threads, "
          f"eps 8/255, {STEPS} steps of 2/255, {args.repeats} repeats\n")
    print(f"{'variant':36s} {'best s':>8s} {'median s':>9s} {'ratio (best)':>13s} {'ratio (median)':>15s}")
    for name in variants:
        print(f"{name:36s} {best[name]:8.3f} {med[name]:9.3f} {best[name] / base_best:13.2f} {med[name] / base:15.2f}")
    print("\nratio = time / time of fmbench PGD-10 batched (higher: fmbench faster)")

    def ratio(name):
        return f"{best[name] / base_best:.2f}x (best), {med[name] / base:.2f}x (median)"

    if "torchattacks PGD-10, batched" in med:
        print(f"fmbench vs torchattacks (goal >= 1.0): {ratio('torchattacks PGD-10, batched')}")
    print(f"batched vs fmbench batch-size-1 loop (goal >= 3): {ratio('fmbench PGD-10, batch size 1 loop')}")
    print(f"batched vs study-style loop (goal >= 3): {ratio('study-style loop, batch size 1')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
