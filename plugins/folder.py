"""Real fluorescence images from disk: ``folder:PATH``, ``ermito:PATH`` and ``dsb2018:PATH``.

A dataset reference is ``SCHEME:PATH`` optionally followed by options in URL query form,
``folder:data/cells?channel=1&plane=0``:

* ``channel=N`` picks channel ``N`` (from 0) of multi-channel images (RGB PNG, ``CYX`` or
  ``YXS`` TIFF); ``plane=N`` picks plane ``N`` of 3-D stacks (``ZYX``, ``TYX`` TIFF).  Both
  are ignored for images that are already 2-D.  Without them, a stack or a multi-channel
  image is an error that says which option to add (an RGB image whose channels are equal is
  grey and needs no option).
* ``holdout=none|hash`` chooses the split rule for layouts without split lists (below).

**Layouts.**

``folder:PATH`` (your own data)
    ``PATH/images/NAME.tif`` with ``PATH/masks/NAME.tif`` (the mask may also be called
    ``NAME_mask.*``), or ``NAME.tif`` beside ``NAME_mask.tif`` in ``PATH`` itself, or either
    of these inside ``PATH/train``, ``PATH/val``, ``PATH/test``.
``ermito:PATH`` (the ER / Mito dataset release)
    TIFF images with 0/255 TIFF masks: ``PATH/{train,val,test}/{images,masks}/`` or
    ``PATH/images`` + ``PATH/masks`` (``labels/`` and ``gt/`` are accepted for the masks)
    with split lists ``PATH/{train,val,test}.txt``; split information is required, and a
    mask with values other than 0, 1 and 255 is an error (it is not this release).
``dsb2018:PATH`` (2018 Data Science Bowl, ``stage1_train``)
    one folder per sample, ``PATH/ID/images/ID.png`` and one PNG per nucleus in
    ``PATH/ID/masks/``, merged into one foreground mask.  RGB(A) PNGs become one channel by
    dropping alpha and averaging R, G and B (fluorescence images are grey stored as RGB, so
    this is exact for them); ``channel=N`` takes one channel instead.

**Splits.**  Split folders or split lists (``train.txt`` etc., one name per line, ``#``
comments) are used where they exist; without a validation folder or list, ``val`` is 10 % of
the training images and ``train`` the rest.  Without any split information, with
``holdout=none`` (the default of ``folder:``) ``test`` is every image and ``train``/``val``
are a 90/10 split of every image; with ``holdout=hash`` (the default of ``dsb2018:``) the
images are split 80/10/10 into disjoint ``train``/``val``/``test``.  Every such split ranks
the names by their sha256 and cuts the ranking (:func:`hash_split`), so it is deterministic
and independent of the file system's order.

**Images and masks.**  TIFF (uint8, uint16, float32...) and PNG.  An image is returned as
float32 normalised to [0, 1] per image with the percentile rule of :func:`fmbench.data.normalize`
(1st and 99.8th percentiles, as CSBDeep and Cellpose do).  Every non-zero mask value is
foreground, so 0/1, 0/255 and instance-label masks all work (float masks: > 0.5).

**Errors.**  Every problem raises :class:`fmbench.DataError` with one line naming the file:
a missing mask, a size mismatch, an unreadable or truncated file, a stack or multi-channel
image without ``plane=``/``channel=``, an empty folder, and masks without any foreground in
the whole dataset.  Nothing is skipped silently.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from fmbench import DataError, hookimpl
from fmbench.data import Sample

IMAGE_EXTS = (".tif", ".tiff", ".png")
OTHER_IMAGE_EXTS = (".jpg", ".jpeg", ".bmp", ".gif", ".jp2", ".czi", ".nd2", ".lif")
MASK_SUFFIXES = ("_mask", "_masks", "_label", "_labels", "_gt")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Options:
    channel: int | None = None
    plane: int | None = None
    holdout: str = "none"


@dataclass(frozen=True)
class Pair:
    """One sample: its id, image file and mask file(s) (several for DSB: one per nucleus)."""

    id: str
    image: Path
    masks: tuple[Path, ...]


@dataclass
class Layout:
    scheme: str
    root: Path
    options: Options
    rgb: str = "strict"  # "strict": differing channels need channel=; "mean": average R, G, B
    strict_binary: bool = False
    pairs: list[Pair] = field(default_factory=list)

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    @property
    def ref(self) -> str:
        return f"{self.scheme}:{self.root}"


# -- references -------------------------------------------------------------------------------


def parse_ref(scheme: str, rest: str, allowed: tuple[str, ...], default_holdout: str) -> tuple[Path, Options]:
    """``PATH?key=value&...`` -> (path, options); unknown keys and bad values are errors."""
    path, _, query = rest.partition("?")
    if not path:
        raise DataError(f"{scheme}: needs a path, e.g. {scheme}:data/cells")
    values: dict[str, object] = {"holdout": default_holdout}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in allowed:
            raise DataError(f"{scheme}:{rest}: unknown option {key!r} (options: {', '.join(allowed)})")
        if key in ("channel", "plane"):
            if not value.isdigit():
                raise DataError(f"{scheme}:{rest}: {key} must be a whole number >= 0, got {value!r}")
            values[key] = int(value)
        elif key == "holdout":
            if value not in ("none", "hash"):
                raise DataError(f"{scheme}:{rest}: holdout must be 'none' or 'hash', got {value!r}")
            values[key] = value
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"{scheme}:{path}: {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{scheme}:{path}: {root} is not a folder")
    return root, Options(**values)


def _hash_fraction(name: str) -> float:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64


def hash_split(names: list[str], split: str, fractions: tuple[float, float, float]) -> list[str]:
    """``split``'s share of ``names``: the names are ranked by the sha256 of the name and cut
    into train, val and test parts of the given ``fractions`` (rounded; a split with a
    non-zero fraction gets at least one name when there are enough), in name order."""
    ranked = sorted(names, key=_hash_fraction)
    n = len(ranked)
    counts = [0, 0, 0]
    for k in (1, 2):
        if fractions[k] > 0 and n >= 2 + k - 1:
            counts[k] = max(1, int(round(fractions[k] * n)))
    counts[0] = n - counts[1] - counts[2]
    start = sum(counts[: SPLITS.index(split)])
    return sorted(ranked[start : start + counts[SPLITS.index(split)]])


def _read_list(path: Path, layout: Layout) -> list[str]:
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    if not names:
        raise DataError(f"split list {layout.rel(path)} is empty")
    return names


# -- finding files ----------------------------------------------------------------------------


def _files(folder: Path, layout: Layout) -> list[Path]:
    """Image files in ``folder`` (sorted); a file in another image format is an error."""
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.is_dir():
            continue
        ext = p.suffix.lower()
        if ext in IMAGE_EXTS:
            out.append(p)
        elif ext in OTHER_IMAGE_EXTS:
            raise DataError(f"{layout.rel(p)}: unsupported format {ext} (TIFF or PNG expected)")
    return out


def _strip_mask_suffix(stem: str) -> str | None:
    low = stem.lower()
    for suffix in MASK_SUFFIXES:
        if low.endswith(suffix):
            return stem[: -len(suffix)]
    return None


def _pairs_dirs(layout: Layout, images: Path, masks: Path) -> list[Pair]:
    """``images/NAME.ext`` with ``masks/NAME.ext`` (or ``masks/NAME_mask.ext``)."""
    by_stem: dict[str, list[Path]] = {}
    for m in _files(masks, layout):
        for key in {m.stem, _strip_mask_suffix(m.stem)} - {None}:
            by_stem.setdefault(key, []).append(m)
    used: set[Path] = set()
    pairs = []
    for img in _files(images, layout):
        found = by_stem.get(img.stem, [])
        if not found:
            raise DataError(f"image {layout.rel(img)} has no mask: expected {layout.rel(masks)}/{img.stem}.tif "
                            f"(or .tiff, .png, or {img.stem}_mask.*)")
        if len(found) > 1:
            raise DataError(f"image {layout.rel(img)} has several masks: "
                            f"{', '.join(layout.rel(f) for f in found)}; keep one")
        used.add(found[0])
        pairs.append(Pair(img.stem, img, (found[0],)))
    for m in _files(masks, layout):
        if m not in used:
            raise DataError(f"mask {layout.rel(m)} has no image in {layout.rel(images)}/")
    return pairs


def _pairs_flat(layout: Layout, folder: Path) -> list[Pair]:
    """``NAME.ext`` beside ``NAME_mask.ext`` in one folder."""
    files = _files(folder, layout)
    masks = {}
    for f in files:
        base = _strip_mask_suffix(f.stem)
        if base is not None:
            if base in masks:
                raise DataError(f"image {base} has several masks: {layout.rel(masks[base])}, {layout.rel(f)}; keep one")
            masks[base] = f
    pairs = []
    for f in files:
        if _strip_mask_suffix(f.stem) is not None:
            continue
        if f.stem not in masks:
            raise DataError(f"image {layout.rel(f)} has no mask: expected {layout.rel(folder / (f.stem + '_mask'))}"
                            f"{f.suffix} beside it (or images/ and masks/ folders)")
        pairs.append(Pair(f.stem, f, (masks.pop(f.stem),)))
    for base, m in masks.items():
        raise DataError(f"mask {layout.rel(m)} has no image {base}.tif/.png beside it")
    return pairs


def _mask_dir(folder: Path, names: tuple[str, ...]) -> Path | None:
    for n in names:
        if (folder / n).is_dir():
            return folder / n
    return None


def _pairs_in(layout: Layout, folder: Path, mask_names: tuple[str, ...], allow_flat: bool) -> list[Pair]:
    if (folder / "images").is_dir():
        masks = _mask_dir(folder, mask_names)
        if masks is None:
            raise DataError(f"{layout.rel(folder / 'images')}/ has no sibling masks folder "
                            f"({' or '.join(n + '/' for n in mask_names)}) in {folder}")
        return _pairs_dirs(layout, folder / "images", masks)
    if allow_flat:
        return _pairs_flat(layout, folder)
    raise DataError(f"{layout.ref}: expected {layout.rel(folder / 'images')}/ and "
                    f"{layout.rel(folder / mask_names[0])}/ in {folder}")


def _select(layout: Layout, pairs: list[Pair], split: str, lists_required: bool, val_from_train: bool) -> list[Pair]:
    """Apply split lists or the hash rule (see the module docstring)."""
    lists = {s: layout.root / f"{s}.txt" for s in SPLITS if (layout.root / f"{s}.txt").is_file()}
    by_name = {p.id: p for p in pairs}
    if lists:
        if split == "val" and "val" not in lists and val_from_train and "train" in lists:
            names = hash_split(_read_list(lists["train"], layout), "val", (0.9, 0.1, 0.0))
        elif split == "train" and "val" not in lists and val_from_train:
            names = hash_split(_read_list(lists["train"], layout), "train", (0.9, 0.1, 0.0))
        elif split in lists:
            names = _read_list(lists[split], layout)
        else:
            raise DataError(f"{layout.ref}: no split list {split}.txt (found {', '.join(p.name for p in lists.values())})")
        out = []
        for n in names:
            key = Path(n).stem if Path(n).suffix.lower() in IMAGE_EXTS else n
            if key not in by_name:
                raise DataError(f"split list {split}.txt names {n!r}, which has no image in {layout.ref}")
            out.append(by_name[key])
        return out
    if lists_required:
        raise DataError(f"{layout.ref}: no split information: expected split folders "
                        f"(train/, test/) or split lists (train.txt, test.txt) in {layout.root}")
    names = sorted(by_name)
    if layout.options.holdout == "hash":
        chosen = hash_split(names, split, (0.8, 0.1, 0.1))
    elif split == "test":
        chosen = names
    else:
        chosen = hash_split(names, split, (0.9, 0.1, 0.0))
    return [by_name[n] for n in chosen]


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
        if kind == "mask" or opts.plane is None:
            hint = (f"masks must be 2-D" if kind == "mask" else
                    f"select one with {layout.ref}?plane=N (N from 0 to {n - 1})")
            raise DataError(f"{kind} {rel} is a 3-D stack of {n} planes (axes {axes}, shape {shape}), "
                            f"a 2-D image is expected: {hint}")
        if opts.plane >= n:
            raise DataError(f"{kind} {rel} has {n} planes; plane={opts.plane} is out of range (0 to {n - 1})")
        arr = np.take(arr, opts.plane, axis=plane[0])
        axes = axes[: plane[0]] + axes[plane[0] + 1 :]
        chan = [i for i, a in enumerate(axes) if a in "CS"]
    if chan:
        c = chan[0]
        n = arr.shape[c]
        if axes[c] == "S" and n in (2, 4):
            arr = np.take(arr, range(n - 1), axis=c)  # drop alpha
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
    import torch

    from fmbench.data import normalize

    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    return normalize(x)[0].numpy()


class FolderDataset:
    """Real images from one of the layouts (see the module docstring); ``synthetic = False``."""

    synthetic = False

    def __init__(self, layout: Layout, split: str, pairs: list[Pair]):
        self.layout = layout
        self.name = layout.ref
        self.root = layout.root
        self.split = split
        self.pairs = pairs
        if not pairs:
            raise DataError(f"{layout.ref}: no images in split {split!r} (found {len(layout.pairs)} images in all)")
        # masks are read up front: a dataset without any foreground is an error now, not
        # a table of zeros later; image sizes are checked against them on each read
        self._shapes = {}
        any_fg = False
        for p in pairs:
            mask = self._mask(p)
            self._shapes[p.id] = mask.shape
            any_fg = any_fg or bool(mask.any())
        if not any_fg:
            raise DataError(f"no mask in {layout.ref} (split {split!r}, {len(pairs)} masks, e.g. "
                            f"{layout.rel(pairs[0].masks[0])}) has any foreground; masks must mark the "
                            f"structure with non-zero values")

    def _mask(self, pair: Pair) -> np.ndarray:
        merged = None
        for path in pair.masks:
            arr, axes = _read(path, self.layout, "mask")
            m = _mask_values(_to_2d(arr, axes, path, self.layout, "mask"), path, self.layout)
            if merged is None:
                merged, first = m, path
            elif m.shape != merged.shape:
                raise DataError(f"mask {self.layout.rel(path)} is {m.shape[0]}x{m.shape[1]} but mask "
                                f"{self.layout.rel(first)} is {merged.shape[0]}x{merged.shape[1]}")
            else:
                merged = merged | m
        return merged

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self.pairs):
            raise IndexError(index)
        p = self.pairs[index]
        arr, axes = _read(p.image, self.layout, "image")
        image = _to_2d(arr, axes, p.image, self.layout, "image")
        mask = self._mask(p)
        if image.shape != mask.shape:
            raise DataError(f"mask {self.layout.rel(p.masks[0])} is {mask.shape[0]}x{mask.shape[1]} but image "
                            f"{self.layout.rel(p.image)} is {image.shape[0]}x{image.shape[1]}")
        if not np.isfinite(image).all():
            raise DataError(f"image {self.layout.rel(p.image)} contains NaN or infinite values")
        return Sample(id=p.id, image=_normalise(image), mask=mask)


# -- the three layouts ------------------------------------------------------------------------


def open_folder(rest: str, split: str) -> FolderDataset:
    root, opts = parse_ref("folder", rest, ("channel", "plane", "holdout"), "none")
    layout = Layout("folder", root, opts)
    return _open_generic(layout, split, ("masks", "labels"), lists_required=False, allow_flat=True)


def open_ermito(rest: str, split: str) -> FolderDataset:
    root, opts = parse_ref("ermito", rest, ("channel", "plane"), "none")
    layout = Layout("ermito", root, opts, strict_binary=True)
    return _open_generic(layout, split, ("masks", "labels", "gt", "GT"), lists_required=True, allow_flat=False)


def _open_generic(layout: Layout, split: str, mask_names, lists_required: bool, allow_flat: bool) -> FolderDataset:
    root = layout.root
    split_dirs = {s: root / s for s in SPLITS if (root / s).is_dir()}
    if split_dirs:
        if split in ("train", "val") and "val" not in split_dirs and "train" in split_dirs:
            # no val/ folder: validation is a deterministic 10 % of train/
            pairs = _pairs_in(layout, split_dirs["train"], mask_names, allow_flat)
            layout.pairs = pairs
            chosen = set(hash_split(sorted(p.id for p in pairs), split, (0.9, 0.1, 0.0)))
            return FolderDataset(layout, split, [p for p in pairs if p.id in chosen])
        if split not in split_dirs:
            raise DataError(f"{layout.ref}: no {split}/ folder (found {', '.join(d + '/' for d in split_dirs)})")
        pairs = _pairs_in(layout, split_dirs[split], mask_names, allow_flat)
        layout.pairs = pairs
        if not pairs:
            raise DataError(f"{layout.ref}: no images in {split}/ (TIFF or PNG expected)")
        return FolderDataset(layout, split, pairs)
    pairs = _pairs_in(layout, root, mask_names, allow_flat)
    if not pairs:
        raise DataError(f"{layout.ref}: no images in {root} (expected images/ and masks/ with matching "
                        f"names, or NAME.tif beside NAME_mask.tif; TIFF or PNG)")
    layout.pairs = pairs
    return FolderDataset(layout, split, _select(layout, pairs, split, lists_required, val_from_train=True))


def open_dsb2018(rest: str, split: str) -> FolderDataset:
    root, opts = parse_ref("dsb2018", rest, ("channel", "holdout"), "hash")
    layout = Layout("dsb2018", root, opts, rgb="mean")
    pairs = []
    for sample in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images_dir, masks_dir = sample / "images", sample / "masks"
        if not images_dir.is_dir():
            raise DataError(f"sample {layout.rel(sample)} has no images/ folder")
        images = [p for p in _files(images_dir, layout) if p.suffix.lower() == ".png"]
        if len(images) != 1:
            raise DataError(f"sample {layout.rel(sample)}: expected one PNG in images/, found {len(images)}")
        masks = tuple(p for p in _files(masks_dir, layout) if p.suffix.lower() == ".png") if masks_dir.is_dir() else ()
        if not masks:
            raise DataError(f"image {layout.rel(images[0])} has no mask: expected one PNG per nucleus in "
                            f"{layout.rel(masks_dir)}/")
        pairs.append(Pair(sample.name, images[0], masks))
    if not pairs:
        raise DataError(f"dsb2018:{root}: no samples in {root} (expected one folder per sample with "
                        f"images/ID.png and masks/*.png)")
    layout.pairs = pairs
    return FolderDataset(layout, split, _select(layout, pairs, split, lists_required=False, val_from_train=False))


OPENERS = {"folder": open_folder, "ermito": open_ermito, "dsb2018": open_dsb2018}


@hookimpl
def fmbench_resolve_dataset(ref, split, image_size):
    scheme, sep, rest = ref.partition(":")
    if not sep or scheme not in OPENERS:
        return None
    return OPENERS[scheme](rest, split)
