"""A montage of every corruption at every severity on one image, to look at what is measured.

Rows are corruptions (the protocol's, in its order and at its severities, then any other
registered ones), columns the severities in increasing order; the first row is the reference
condition.  Each cell is exactly what the engine gives the model: the
same sensor, the same per-image generators (protocol seed, image id, condition) and the
protocol's normalisation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .conditions import BatchInputs, RunContext, corruption_at
from .errors import DataError
from .files import atomic_write

if TYPE_CHECKING:  # names for annotations only
    from PIL import Image

    from .data import Dataset
    from .plugins import Registry
    from .protocol import Protocol


def _rows(protocol: Protocol, registry: Registry, names: Sequence[str] | None) -> list[tuple[str, tuple[float, ...]]]:
    """(corruption, severities) to show: the protocol's corruptions at its own severities, in
    protocol order, then any other registered ones at all their severities; ``names`` picks."""
    shown = {e.name: tuple(e.levels) for e in protocol.corruptions}
    for name, spec in registry.corruptions.items():
        shown.setdefault(name, tuple(spec.levels))
    if names:
        for n in names:
            registry.corruption(n)  # unknown names fail here, with the registry's message
        return [(n, shown[n]) for n in dict.fromkeys(names)]
    return list(shown.items())


def render_cells(dataset: Dataset, dataset_ref: str, protocol: Protocol, registry: Registry, index: int = 0, names: Sequence[str] | None = None
                 ) -> list[tuple[str, list[tuple[str, np.ndarray, np.ndarray]]]]:
    """``[(row label, [(cell label, image (H, W) in [0, 1], mask (H, W) bool), ...]), ...]``.

    The first row is the reference condition alone; then one row per corruption.  Each cell
    is made by the same condition objects the engine runs, so it is exactly the model's input.
    """
    if not 0 <= index < len(dataset):
        raise DataError(f"dataset {dataset_ref!r}: image index {index} is out of range (it has {len(dataset)} images)")
    sample = dataset[index]
    x = torch.from_numpy(np.asarray(sample.image, np.float32))[None, None]
    mask = torch.from_numpy(np.asarray(sample.mask, bool))[None]
    batch = BatchInputs(x, mask, [f"{dataset_ref}/{sample.id}"], protocol, bool(dataset.synthetic))
    rows = [("reference", [(f"SNR {protocol.reference_snr:g}", batch.reference()[0, 0].numpy(), sample.mask)])]
    for name, levels in _rows(protocol, registry, names):
        spec = registry.corruption(name)
        run = RunContext(model=None, corruptions={name: spec.factory()}, attacks={})
        cells = []
        for level in levels:
            applied = corruption_at(spec, level).apply(batch, run)
            assert applied.input is not None  # a corruption always makes an input
            cells.append((spec.label(level), applied.input[0, 0].numpy(), applied.target[0].numpy()))
        rows.append((spec.title or name, cells))
    return rows


def _outline(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def montage(rows: list[tuple[str, list[tuple[str, np.ndarray, np.ndarray]]]], outline: bool = False,
            title: str = "") -> Image.Image:
    """Lay the cells out on a grid with labels (Pillow's default font); returns a PIL image."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1: the bitmap font, one size
        font = ImageFont.load_default()
    h, w = rows[0][1][0][1].shape
    n_cols = max(len(cells) for _, cells in rows)
    label_w, label_h, gap, top = 200, 18, 4, 22 if title else 0
    width = label_w + n_cols * (w + gap)
    height = top + len(rows) * (h + label_h + gap)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 4), title, fill=(0, 0, 0), font=font)
    for r, (row_label, cells) in enumerate(rows):
        y0 = top + r * (h + label_h + gap)
        draw.text((4, y0 + label_h + h // 2 - 7), row_label, fill=(0, 0, 0), font=font)
        for c, (cell_label, img, mask) in enumerate(cells):
            x0 = label_w + c * (w + gap)
            g = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
            rgb = np.repeat(g[..., None], 3, axis=2)
            if outline:
                rgb[_outline(mask)] = (0, 220, 0)
            canvas.paste(Image.fromarray(rgb), (x0, y0 + label_h))
            draw.text((x0 + 2, y0 + 2), cell_label, fill=(0, 0, 0), font=font)
    return canvas


def write_gallery(path: str | os.PathLike, dataset: Dataset, dataset_ref: str, protocol: Protocol, registry: Registry, index: int = 0, names: Sequence[str] | None = None,
                  outline: bool = False) -> Path:
    """Render the gallery of ``dataset[index]`` and write it as a PNG; returns the path."""
    rows = render_cells(dataset, dataset_ref, protocol, registry, index=index, names=names)
    title = (f"{dataset_ref} image {index} · protocol {protocol.id} · rows: corruptions, "
             f"columns: severity (increasing)")
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise DataError(f"cannot write {path}: the folder {path.parent} does not exist")
    img = montage(rows, outline=outline, title=title)
    atomic_write(path, lambda f: img.save(f, format="PNG"))
    return path
