"""Layouts on disk: finding image/mask pairs and selecting a split's pairs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fmbench import DataError

from .refs import SPLITS, Options, _read_list, hash_split

IMAGE_EXTS = (".tif", ".tiff", ".png")
OTHER_IMAGE_EXTS = (".jpg", ".jpeg", ".bmp", ".gif", ".jp2", ".czi", ".nd2", ".lif")
MASK_SUFFIXES = ("_mask", "_masks", "_label", "_labels", "_gt")


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
    _unique_stems(layout, [f for f in _files(images, layout)])
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
    _unique_stems(layout, [f for f in files if _strip_mask_suffix(f.stem) is None])
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


def _unique_stems(layout: Layout, images: list[Path]) -> None:
    """An image's name without its extension is its id (and finds its mask): two images that
    share it (``a.tif`` and ``a.png``) would silently be one."""
    seen: dict[str, Path] = {}
    for f in images:
        if f.stem in seen:
            raise DataError(f"images {layout.rel(seen[f.stem])} and {layout.rel(f)} have the same name {f.stem!r}; "
                            f"an image's name is its id: keep one or rename it")
        seen[f.stem] = f


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
    """Apply split lists or the hash rule (see the ``fmbench_plugins.folder`` docstring)."""
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
