"""Writing a dataset to disk (TIFF + manifest) and drawing a preview montage.

**Export.** ``images/<id>.tif`` (float32, or uint16 with a per-image scale), ``masks/<id>.tif``
(uint8, 0/1) and ``manifest.json`` with the dataset, split, seed, generator version and
parameters and the sha256 of every file.  Nothing in it depends on the time or the machine,
so the same dataset and seed give byte-identical files.  The directory is assembled under a
temporary name beside the target and renamed into place at the end, so a failure never
leaves a half-written output directory.

**Preview.** A montage PNG: for every sample, the image as a model sees it at the reference
condition (synthetic images get the protocol's detector noise; real images are shown as
they are), and below it the noise-free image with the mask outline drawn in colour.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .data import Dataset
from .errors import DataError
from .files import atomic_write, sha256_file

if TYPE_CHECKING:  # names for annotations only
    from .protocol import Protocol


FORMATS = ("float32", "uint16")
UINT16_PEAK = 60000.0  # the brightest pixel of an image maps here; headroom below 65535
OUTLINE_RGB = (255, 40, 200)


def _stem(sample_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in sample_id)


def describe(dataset: Dataset) -> dict[str, Any]:
    """What identifies a dataset's images: name, synthetic or not, and for generated data the
    split, seed, image size, generator version and parameters (where the dataset offers them)."""
    out: dict[str, Any] = {"name": dataset.name, "synthetic": bool(dataset.synthetic)}
    for key in ("split", "seed", "image_size", "version", "parameters", "root"):
        value = getattr(dataset, key, None)
        if value is not None:
            out["generator_version" if key == "version" else key] = value if key != "root" else str(value)
    return out


def export(dataset: Dataset, out: str | os.PathLike, n: int | None = None, fmt: str = "float32",
           overwrite: bool = False) -> dict[str, Any]:
    """Write the first ``n`` images (all when ``None``) of ``dataset`` to ``out``; returns the
    manifest.  ``fmt`` is ``float32`` (the images as they are) or ``uint16`` (each image scaled
    so its maximum is 60000 and rounded; ``scale`` in the manifest undoes it)."""
    import tifffile

    if fmt not in FORMATS:
        raise DataError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError(f"{out} already exists", hints=("overwrite",))
    if out.exists():  # --overwrite replaces an earlier export, never a folder of the user's own files
        if out.is_dir() and Path.cwd().resolve().is_relative_to(out.resolve()):
            raise DataError(f"{out} is the current folder or holds it: export to another folder")
        try:
            earlier = str(json.loads((out / "manifest.json").read_text()).get("schema", "")).startswith("fmbench-export/")
        except (OSError, ValueError, AttributeError):
            earlier = False
        if not (earlier or (out.is_dir() and not any(out.iterdir()))):
            raise DataError(f"{out} is not an earlier fmbench export (it has no export manifest.json): --overwrite "
                            f"replaces an export, never a folder of other files")
    count = len(dataset) if n is None else min(n, len(dataset))
    if count == 0:
        raise DataError(f"dataset {dataset.name!r} has no images to export")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        files = []
        seen: dict[str, str] = {}
        for i in range(count):
            sample = dataset[i]
            stem = _stem(sample.id)
            if stem in seen:
                raise DataError(f"images {seen[stem]!r} and {sample.id!r} would both be written as {stem}.tif")
            seen[stem] = sample.id
            image = np.asarray(sample.image, np.float32)
            entry: dict[str, Any] = {"id": sample.id, "image": f"images/{stem}.tif", "mask": f"masks/{stem}.tif"}
            if fmt == "uint16":
                top = float(image.max())
                scale = UINT16_PEAK / top if top > 0 else 1.0
                image = np.clip(np.rint(image * scale), 0, 65535).astype(np.uint16)
                entry["scale"] = scale
            tifffile.imwrite(tmp / entry["image"], image, photometric="minisblack", metadata=None)
            tifffile.imwrite(tmp / entry["mask"], sample.mask.astype(np.uint8), photometric="minisblack",
                             metadata=None)
            entry["image_sha256"] = sha256_file(tmp / entry["image"])
            entry["mask_sha256"] = sha256_file(tmp / entry["mask"])
            files.append(entry)
        manifest = {"schema": "fmbench-export/1", "fmbench_version": __version__, "dataset": describe(dataset),
                    "format": fmt, "mask_format": "uint8, 1 = foreground", "n": count, "files": files}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
        if out.exists():
            old = out.parent / f".{out.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _to_uint8(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, [1.0, 99.8])
    return (np.clip((image - lo) / max(hi - lo, 1e-12), 0, 1) * 255).round().astype(np.uint8)


def _outlined(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    gray = _to_uint8(image)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    edge = mask & ~ndimage.binary_erosion(mask, border_value=1)
    rgb[edge] = (0.35 * rgb[edge] + 0.65 * np.array(OUTLINE_RGB)).astype(np.uint8)
    return rgb


def preview(dataset: Dataset, out: str | os.PathLike, n: int = 8, columns: int = 4, protocol: Protocol | None = None) -> Path:
    """Write a montage PNG of the first ``n`` samples to ``out``.

    With a ``protocol``, each image is shown at its reference condition above its noise-free
    (synthetic) or recorded (measured) version with outlines: a measured image with the noise
    it lacks for the reference SNR added, as the evaluation scores it; one the evaluation leaves
    out (its own SNR below the reference, or undefined) is framed in red.
    """
    from PIL import Image

    count = min(n, len(dataset))
    if count == 0:
        raise DataError(f"dataset {dataset.name!r} has no images to preview")
    samples = [dataset[i] for i in range(count)]
    tops = []
    for s in samples:
        image, left_out = s.image, False
        if protocol is not None:
            import torch

            from .conditions import expose
            from .measured import MeasuredSensor, own_noise
            from .seeding import generators

            x = torch.from_numpy(np.asarray(image, np.float32))[None, None]
            m = torch.from_numpy(np.asarray(s.mask, bool))[None]
            gens = generators(protocol.seed, [s.id], "preview")
            if dataset.synthetic:
                image = expose(protocol, x, m, gens)[0, 0].numpy()
            else:
                own = own_noise(s.image, s.mask)
                left_out = own is None or not own.reaches(protocol.reference_snr)
                if not left_out:
                    sensor = MeasuredSensor(x, m, protocol.camera, protocol.reference_snr, own=[own])
                    image = sensor.expose(x, gens)[0, 0].numpy()
        g = np.repeat(_to_uint8(image)[..., None], 3, axis=2)
        if left_out:  # a red frame: the evaluation leaves this image out
            g[:2], g[-2:], g[:, :2], g[:, -2:] = (220, 30, 30), (220, 30, 30), (220, 30, 30), (220, 30, 30)
        tops.append(g)
    bottoms = [_outlined(s.image, s.mask) for s in samples]
    h = max(t.shape[0] for t in tops)
    w = max(t.shape[1] for t in tops)
    gap = 4
    cols = min(columns, count)
    rows = -(-count // cols)
    canvas = np.full((rows * (2 * h + gap) + (rows - 1) * 2 * gap, cols * (w + gap) - gap, 3), 255, np.uint8)
    for k in range(count):
        r, c = divmod(k, cols)
        y = r * (2 * h + 3 * gap)
        x = c * (w + gap)
        for j, tile in enumerate((tops[k], bottoms[k])):
            yy = y + j * (h + gap)
            canvas[yy : yy + tile.shape[0], x : x + tile.shape[1]] = tile
    out = Path(out)
    atomic_write(out, lambda f: Image.fromarray(canvas).save(f, format="PNG"))
    return out
