"""``FolderDataset`` and the openers of the three layouts (``folder:``, ``ermito:``, ``dsb2018:``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmbench import DataError, Sample

from .layout import Layout, Pair, _files, _pairs_in, _select
from .read import _mask_values, _normalise, _read, _to_2d
from .refs import SPLITS, hash_split, parse_ref


class FolderDataset:
    """Real images from one of the layouts (see the ``fmbench_plugins.folder`` docstring);
    ``synthetic = False`` -- except for a folder written by ``fmbench data export`` from a
    synthetic dataset (:meth:`adopt_export`): its noise-free images are read as they were
    written and the engine exposes them, drawing the same noise the built-in dataset draws."""

    synthetic = False
    # whose per-image randomness the images take: an export's origin, else "folder" -- never the
    # path, so a copy of the folder elsewhere, or the same folder typed another way, draws the
    # same noise for the same image names
    seed_name: str | None = "folder"
    raw = False  # images as written, not normalised on reading
    ids: dict[str, str] = {}

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

    @property
    def image_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every image's size, ``{id: (H, W)}`` (from its mask, which it must match): the run
        probes the model at each distinct size before it starts."""
        return {self.ids.get(k, k): v for k, v in self._shapes.items()}

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
        if self.raw:
            return Sample(id=self.ids.get(p.id, p.id), image=image.astype(np.float32), mask=mask)
        return Sample(id=p.id, image=_normalise(image), mask=mask)

    def adopt_export(self) -> None:
        """A folder that ``fmbench data export`` wrote from a synthetic dataset (its
        ``manifest.json`` says so, float32 images): read the noise-free images as written, with
        their original ids, checked against the manifest's sha256, as synthetic data of the
        original dataset -- so a ``folder:`` evaluation reproduces the built-in one."""
        import hashlib
        import json

        path = self.root / "manifest.json"
        if not path.is_file():
            return
        try:
            manifest = json.loads(path.read_text())
            if manifest.get("schema") != "fmbench-export/1" or not manifest["dataset"].get("synthetic") \
                    or manifest.get("format") != "float32":
                return
            files = {Path(f["image"]).stem: f for f in manifest["files"]}
            origin = str(manifest["dataset"]["name"])
            version = manifest["dataset"].get("generator_version")
            if isinstance(version, int) and version > 1:  # the built-in run's canonical reference
                origin = f"{origin}@{version}"
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{self.layout.ref}: manifest.json is not an fmbench export manifest ({exc})") from None
        for p in self.pairs:
            f = files.get(p.id)
            if f is None:
                raise DataError(f"{self.layout.ref}: image {self.layout.rel(p.image)} is not in manifest.json")
            if hashlib.sha256(p.image.read_bytes()).hexdigest() != f.get("image_sha256"):
                raise DataError(f"{self.layout.ref}: image {self.layout.rel(p.image)} differs from the one exported "
                                f"(sha256 in manifest.json)")
        self.synthetic, self.raw, self.seed_name = True, True, origin
        self.ids = {stem: str(f["id"]) for stem, f in files.items()}


# -- the three layouts ------------------------------------------------------------------------


def open_folder(rest: str, split: str) -> FolderDataset:
    root, opts = parse_ref("folder", rest, ("channel", "plane", "holdout"), "none")
    layout = Layout("folder", root, opts)
    ds = _open_generic(layout, split, ("masks", "labels"), lists_required=False, allow_flat=True)
    ds.adopt_export()
    return ds


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
