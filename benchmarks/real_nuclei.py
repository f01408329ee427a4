"""How a model trained on fmbench's synthetic nuclei segments *real* fluorescence nuclei.

Validation only: the real images come from packages on the registry and are never trained on.

* ``stardist`` 0.9.2 (BSD-3; installed by requirements-nodeps.txt): ``data/images/img2d.tif``
  and ``mask2d.tif``, one 512 x 512 fluorescence image of the 2018 Data Science Bowl with its
  annotation (105 nuclei).
* ``mnfinder`` 1.2.3 (MIT; not installable here, Python > 3.11): its wheel holds 16 annotated
  DAPI/H2B images (U2OS, HFF, HeLa, MCC13; 20x and 40x; 512 x 512 to 1024 x 1024; 8- and
  16-bit) in ``mnfinder/test-data/*/images`` with nucleus masks (RGBA PNG, instance id in the
  blue channel).  Fetch it with ``pip download --no-deps mnfinder==1.2.3 -d DIR`` and pass
  ``--mnfinder DIR/mnfinder-1.2.3-py3-none-any.whl``.

Each whole image is percentile-normalised as the protocol does (no noise added: these are
measured images) and segmented in one pass (the model is fully convolutional); IoU of the
foreground per image, pooled, and Otsu's threshold on the same images for scale.

    python benchmarks/real_nuclei.py [--model unet-small] [--checkpoint PATH] [--mnfinder WHEEL] [--json OUT]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

import fmbench
from fmbench.baselines import otsu
from fmbench.data import normalize
from fmbench.metrics import predict


def stardist_images():
    spec = importlib.util.find_spec("stardist")
    if spec is None or not spec.submodule_search_locations:
        return []
    import tifffile

    root = Path(spec.submodule_search_locations[0]) / "data" / "images"
    return [("dsb2018/img2d", tifffile.imread(root / "img2d.tif"), tifffile.imread(root / "mask2d.tif") > 0)]


def mnfinder_images(wheel: str | None):
    if not wheel:
        return []
    import tifffile
    from PIL import Image

    out = []
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for name in sorted(names):
            if "/test-data/" not in name or "/images/" not in name or not name.endswith(".tif"):
                continue
            mask_name = name.replace("/images/", "/nucleus_masks/")[:-4] + ".png"
            if mask_name not in names:
                continue
            image = tifffile.imread(io.BytesIO(z.read(name)))
            mask = np.asarray(Image.open(io.BytesIO(z.read(mask_name))))[..., 2] > 0
            out.append((f"mnfinder/{Path(name).stem}", image, mask))
    return out


@torch.no_grad()
def segment(module: torch.nn.Module, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(model's foreground, Otsu's) on the whole image."""
    x = normalize(torch.from_numpy(np.asarray(image, np.float32))[None, None])
    h, w = image.shape
    ph, pw = (-h) % 32, (-w) % 32
    xp = F.pad(x, (0, pw, 0, ph), mode="reflect")
    pred = predict(module(xp)[..., :h, :w])[0]
    return pred.numpy(), otsu(x)[0].numpy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="unet-small")
    ap.add_argument("--checkpoint", help="a checkpoint (default: the registered weights for --weights)")
    ap.add_argument("--weights", default="nucleus", help="registered weights to load (default: nucleus)")
    ap.add_argument("--mnfinder", help="path of the mnfinder 1.2.3 wheel")
    ap.add_argument("--json", help="write the per-image rows here")
    args = ap.parse_args(argv)
    images = stardist_images() + mnfinder_images(args.mnfinder)
    if not images:
        print("no real images: install stardist (requirements-nodeps.txt) or pass --mnfinder", file=sys.stderr)
        return 2
    if args.checkpoint:
        loaded = fmbench.load_model(args.model, checkpoint=args.checkpoint)
    else:
        loaded = fmbench.load_model(args.model, weights=args.weights)
    module = loaded.module.eval()
    rows, inter, union = [], 0, 0
    print(f"{'image':58s} {'IoU':>6s} {'Otsu':>6s} {'pred fg':>8s} {'true fg':>8s}")
    for name, image, mask in images:
        pred, th = segment(module, image)
        i, u = int((pred & mask).sum()), int((pred | mask).sum())
        o = float((th & mask).sum() / max((th | mask).sum(), 1))
        inter, union = inter + i, union + u
        rows.append({"image": name, "iou": i / u, "otsu_iou": o, "pred_fg": float(pred.mean()),
                     "true_fg": float(mask.mean())})
        print(f"{name[:58]:58s} {i / u:6.3f} {o:6.3f} {pred.mean():8.3f} {mask.mean():8.3f}")
    mnf = [r["iou"] for r in rows if r["image"].startswith("mnfinder/")]
    summary = {"model": loaded.ref, "weights_sha256": loaded.weights_sha256, "pooled_iou": inter / union,
               "mean_iou": float(np.mean([r["iou"] for r in rows])),
               "dsb2018_iou": next((r["iou"] for r in rows if r["image"].startswith("dsb2018/")), None),
               "mnfinder_mean_iou": float(np.mean(mnf)) if mnf else None,
               "mnfinder_median_iou": float(np.median(mnf)) if mnf else None}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "images": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
