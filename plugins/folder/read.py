"""Reading TIFF and PNG files: pixel arrays, reduction to 2-D, mask values, normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmbench import DataError

from .layout import Layout

# -- reading ----------------------------------------------------------------------------------


def _read(path: Path, layout: Layout, kind: str) -> tuple[np.ndarray, str]:
    """The pixel array of a TIFF or PNG file and its axes (``YX``, ``ZYX``, ``YXS``...)."""
    rel = layout.rel(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                arr, axes = series.asarray(), series.axes
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                mode = im.mode
                arr = np.asarray(im)
            axes = "YX" if mode in ("L", "1", "P", "I", "F") or mode.startswith("I;16") else "YXS"
            if mode == "P":
                raise DataError(f"{kind} {rel} is a palette PNG; save it as greyscale")
    except DataError:
        raise
    except Exception as exc:  # tifffile and Pillow raise many types for broken files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read {kind} {rel}: {reason} (truncated or not a TIFF/PNG file?)") from None
    if arr.size == 0:
        raise DataError(f"{kind} {rel} has no pixels")
    axes = axes[-arr.ndim:] if len(axes) >= arr.ndim else "Q" * (arr.ndim - len(axes)) + axes
    return arr, axes


def _to_2d(arr: np.ndarray, axes: str, path: Path, layout: Layout, kind: str) -> np.ndarray:
    """Reduce to ``(H, W)`` with the ``plane``/``channel`` options, or say which one is needed."""
    rel = layout.rel(path)
    opts = layout.options
    shape = "x".join(str(s) for s in arr.shape)
    # drop singleton axes other than Y and X
    keep = [i for i, a in enumerate(axes) if a in "YX" or arr.shape[i] > 1]
    arr = arr.reshape([arr.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    chan = [i for i, a in enumerate(axes) if a in "CS"]
    plane = [i for i, a in enumerate(axes) if a not in "YXCS"]
    if len(plane) > 1:
        raise DataError(f"{kind} {rel} has {len(plane) + 2} dimensions (axes {axes}, shape {shape}); "
                        f"only 2-D images, 3-D stacks and multi-channel images are supported")
    if plane:
        n = arr.shape[plane[0]]
        if opts.plane is None:  # (the same plane of an image stack and of its mask stack)
            raise DataError(f"{kind} {rel} is a 3-D stack of {n} planes (shape {shape}), a 2-D {kind} is expected: "
                            f"select one plane of every image and mask with {layout.ref}?plane=N (N from 0 to {n - 1})")
        if opts.plane >= n:
            raise DataError(f"{kind} {rel} has {n} planes; plane={opts.plane} is out of range (0 to {n - 1})")
        arr = np.take(arr, opts.plane, axis=plane[0])
        axes = axes[: plane[0]] + axes[plane[0] + 1 :]
        chan = [i for i, a in enumerate(axes) if a in "CS"]
    if chan and not plane and opts.plane is not None and axes[chan[0]] == "S" and chan[0] == 0 \
            and (kind == "mask" or opts.channel is None) \
            and not all(np.array_equal(arr[0], arr[k]) for k in range(1, arr.shape[0])):
        # a stack of 3 or 4 planes without metadata is stored as one planar colour image (axes SYX;
        # never a PNG's interleaved YXS, nor grey stored as colour): ?plane=N picks a sample
        if opts.plane >= arr.shape[chan[0]]:
            raise DataError(f"{kind} {rel} has {arr.shape[chan[0]]} planes; plane={opts.plane} is out of range")
        return np.take(arr, opts.plane, axis=chan[0])
    if chan:
        c = chan[0]
        n = arr.shape[c]
        last = np.take(arr, n - 1, axis=c)
        if axes[c] == "S" and n in (2, 4) and last.min() == last.max():
            # an alpha sample (grey + alpha, RGBA) carries no image where it is constant; a
            # non-constant fourth sample may be a fourth channel or plane: the user chooses
            arr = np.take(arr, range(n - 1), axis=c)
            n -= 1
        if kind == "image" and opts.channel is not None:
            if opts.channel >= n:
                raise DataError(f"image {rel} has {n} channels; channel={opts.channel} is out of range (0 to {n - 1})")
            return np.take(arr, opts.channel, axis=c)
        first = np.take(arr, 0, axis=c)
        if all(np.array_equal(first, np.take(arr, k, axis=c)) for k in range(1, n)):
            return first  # grey stored as RGB
        if kind == "image" and layout.rgb == "mean":
            return arr.astype(np.float64).mean(axis=c)
        hint = ("masks must be single-channel" if kind == "mask" else
                f"select one with {layout.ref}?channel=N (N from 0 to {n - 1})")
        raise DataError(f"{kind} {rel} has {n} channels (shape {shape}), a 2-D image is expected: {hint}")
    return arr


def _mask_values(arr: np.ndarray, path: Path, layout: Layout) -> np.ndarray:
    if layout.strict_binary and not np.isin(np.unique(arr), (0, 1, 255)).all():
        values = np.unique(arr)
        raise DataError(f"mask {layout.rel(path)} has values other than 0 and 255 (found {values.min()}..{values.max()}, "
                        f"{values.size} distinct); this layout expects binary masks (use folder: for label images)")
    if arr.dtype == bool:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        return arr > 0.5
    return arr != 0


def _normalise(image: np.ndarray) -> np.ndarray:
    """The image divided by the spread the protocol's normalisation uses (nearest-rank 99.8th
    minus 1st percentile), so images of any bit depth arrive on one scale; no shift and no
    clip: a scaled image keeps its zero and its own Poisson-Gaussian noise, which the
    noise-aware mode measures (:mod:`fmbench.measured`).  The protocol's normalisation, clip
    included, comes later, at the model's input."""
    arr = np.asarray(image, np.float64)
    n = arr.size
    order = np.sort(arr, axis=None)
    lo = order[min(max(int(round(1.0 / 100 * (n - 1))) + 1, 1), n) - 1]
    hi = order[min(max(int(round(99.8 / 100 * (n - 1))) + 1, 1), n) - 1]
    # a sparse image (fewer than 0.2 % of its pixels above the 1st percentile) has no spread
    # between those percentiles: its full range stands in; a constant image keeps its values
    # (its SNR is undefined, and the run leaves it out and says why)
    spread = hi - lo if hi > lo else order[-1] - order[0]
    if not spread > 0:
        spread = abs(order[0]) or 1.0
    return (arr / spread).astype(np.float32)
