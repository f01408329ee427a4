"""How much does an architecture's output resolution cap its clean IoU on each dataset?

Most of the zoo predicts its logits on a coarse grid (1/4 or 1/8 of the input) and upsamples
them bilinearly; ER tubules are a few pixels wide.  Two measurements, both printed:

1. **Each zoo model's effective output stride**, measured on its own random-initialised output
   for a random 256 x 256 input: a map bilinearly upsampled by a factor ``s`` is linear inside
   each ``s``-pixel cell, so a share ``f`` of its second differences vanish, ``f = (s - 2) / s``;
   the stride is read back as ``2 / (1 - f)``; a model whose last layer is not a bilinear
   upsampling (a convolution at full resolution, or after a x2 upsampling) shows none (``<= 2``).
   Nothing is taken from the code's description of the model.
2. **The IoU ceiling of a logit grid at stride s** on each dataset's validation masks (the
   protocol's v2 datasets, reference split ``val``, the training recipe's 32 images): a free logit
   map of size H/s x W/s, upsampled bilinearly to H x W, is fitted to each mask directly
   (Adam, 400 steps, cross-entropy + soft Dice, the training loss), and its IoU after
   thresholding at 0 is measured.  No network can do better with that output grid and that
   upsampling; a trained model whose clean IoU sits near its stride's ceiling is limited by its
   output resolution, not by its training.

    python benchmarks/output_resolution.py [--datasets nucleus,er,mito] [--strides 1,2,4,8,16] [--steps 400]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
import torch.nn.functional as F


def effective_stride(model: torch.nn.Module, size: int = 256) -> tuple[float, float]:
    """(stride estimate, share of vanishing second differences) from one random input."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out = model(torch.rand(1, 1, size, size, generator=g))[0, 0].double()
    scale = float(out.abs().max()) or 1.0
    d_rows = out[:, 2:] - 2 * out[:, 1:-1] + out[:, :-2]
    d_cols = out[2:, :] - 2 * out[1:-1, :] + out[:-2, :]
    tol = 1e-6 * scale
    f = float(torch.cat([d_rows.flatten(), d_cols.flatten()]).abs().le(tol).double().mean())
    return (2.0 / (1.0 - f) if f < 0.999 else float("inf")), f


def ceiling(masks: torch.Tensor, stride: int, steps: int) -> torch.Tensor:
    """Per-image IoU of the best bilinearly upsampled logit grid at ``stride`` (fitted)."""
    target = masks.float()[:, None]
    h, w = target.shape[-2:]
    if stride == 1:
        z = (target * 2 - 1).mul(10).clone()
        up = lambda t: t  # noqa: E731 - the identity: a full-resolution map fits any mask
    else:
        # start from the masks' own average at that grid, as logits: a fair, quick start
        init = F.avg_pool2d(target, stride, stride, ceil_mode=True).clamp(1e-3, 1 - 1e-3)
        z = torch.logit(init).clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=0.1)

        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)

        for _ in range(steps):
            logits = up(z)
            p = torch.sigmoid(logits)
            inter = (p * target).sum((1, 2, 3))
            dice = 1 - (2 * inter + 1) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
            loss = F.binary_cross_entropy_with_logits(logits, target) + dice.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = up(z) > 0
        t = target.bool()
        inter = (pred & t).sum((1, 2, 3)).double()
        union = (pred | t).sum((1, 2, 3)).double()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="nucleus,er,mito")
    ap.add_argument("--strides", default="1,2,4,8,16")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--tier", default="quick-v2")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    from fmbench_plugins.zoo import ZOO

    from fmbench.datasets import open_dataset
    from fmbench.plugins import get_plugin_manager, get_registry
    from fmbench.recipe import recipe_for

    pm = get_plugin_manager()
    reg = get_registry(pm)
    protocol = reg.protocol(args.tier)
    n_val = recipe_for(protocol, None).n_val

    print("Effective output stride of each zoo model (random initialisation, one 256 x 256 input):\n")
    print("| model | vanishing second differences | stride of the final bilinear upsampling |\n|---|---:|---:|")
    for name, _, factory, _ in ZOO:
        torch.manual_seed(0)
        model = factory().eval()
        s, f = effective_stride(model)
        shown = "none at the end (<= 2)" if s < 3 else f"{s:.1f}"
        print(f"| `{name}` | {f:.1%} | {shown} |", flush=True)

    strides = [int(s) for s in args.strides.split(",")]
    print(f"\nIoU ceiling of a logit grid at each stride, bilinearly upsampled (mean over {n_val} "
          f"validation masks, min in brackets; fitted per mask, {args.steps} Adam steps):\n")
    print("| dataset | " + " | ".join(f"stride {s}" for s in strides) + " |")
    print("|---|" + "---:|" * len(strides))
    for ds in args.datasets.split(","):
        ref = protocol.dataset_ref(ds)
        data = open_dataset(ref, "val", protocol.image_size, registry=reg, pm=pm)
        masks = torch.stack([torch.from_numpy(data[i].mask) for i in range(min(n_val, len(data)))])
        t0 = time.perf_counter()
        cells = []
        for s in strides:
            iou = ceiling(masks, s, args.steps)
            cells.append(f"{float(iou.mean()):.3f} ({float(iou.min()):.3f})")
        print(f"| {ref} | " + " | ".join(cells) + f" |  <!-- {time.perf_counter() - t0:.0f} s -->", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
