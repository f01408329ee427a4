"""Re-evaluating an entry on a few of its images and comparing with its per-image scores.

The evaluation is rebuilt from the entry's structured fields -- model reference and
arguments, dataset, registered protocol (by hash), registered weights or a checkpoint the
reviewer names -- and runs in this process through :func:`fmbench.evaluate`.  No stored
command line is split or run, and a model reference that imports code (``module:Attr``,
``file.py:Attr``, any ``scheme:`` reference) is refused unless the reviewer trusts it by name.
The images are drawn at random (or named), so an entry whose per-image values were edited
is caught whichever images were edited.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ModelLoadError, ResultError

if TYPE_CHECKING:  # names for annotations only
    from ..plugins import Registry

RECHECK_TOLERANCE = 0.01


class Subset:
    """Some images of a dataset, by index, under the dataset's own name (so every image draws
    the same randomness it drew in the full run)."""

    def __init__(self, dataset: Any, indices: Sequence[int], name: str):
        self.dataset, self.indices, self.name = dataset, list(indices), name
        self.synthetic = bool(dataset.synthetic)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> Any:
        return self.dataset[self.indices[k]]


def choose_images(entry: dict[str, Any], n_images: int, images: Sequence[str] | None = None,
                  seed: int | None = None) -> list[int]:
    """Positions (in the entry's image order) to re-evaluate: the named ``images``, or
    ``n_images`` drawn at random (``seed`` for a repeatable draw)."""
    ids = entry["per_image"]["ids"]
    if images:
        unknown = [i for i in images if i not in ids]
        if unknown:
            raise ResultError(f"image {unknown[0]!r} is not in the entry (it has {ids[0]!r} ... {ids[-1]!r})")
        return sorted({ids.index(i) for i in images})  # an image named twice is re-evaluated once
    import random

    rng = random.Random(seed if seed is not None else secrets.randbits(64))
    return sorted(rng.sample(range(len(ids)), min(n_images, len(ids))))


def recheck(entry: dict[str, Any], positions: Sequence[int], registry: Registry, *,
            trust: Sequence[str] = (), checkpoint: str | os.PathLike | None = None) -> dict[str, Any]:
    """Re-evaluate the entry's images at ``positions`` from its structured fields; returns the
    result document of that run (under the entry's registered protocol)."""
    from .. import api
    from ..datasets import open_dataset
    from ..files import sha256_file

    ref = entry["model"]["ref"]
    if ":" in ref and ref not in trust:
        raise ModelLoadError(f"model reference {ref!r} imports or loads code named by the entry; recheck runs it "
                             f"only when you trust it by name", hints=("trust",))
    known = {p.hash: p for p in registry.protocols.values()}
    protocol = known.get(entry["protocol"]["hash"])
    if protocol is None:
        raise ResultError(f"protocol {entry['protocol']['id']} ({entry['protocol']['hash']}) is not registered")
    if checkpoint is not None and entry["model"].get("weights_sha256") and \
            sha256_file(checkpoint) != entry["model"]["weights_sha256"]:
        raise ResultError(f"checkpoint {checkpoint} is not the one the entry was made with (sha256 "
                          f"{entry['model']['weights_sha256'][:12]}...)")
    ds_ref = entry["dataset"]["ref"]
    dataset = open_dataset(ds_ref, protocol.split, protocol.image_size, registry=registry)
    ids = entry["per_image"]["ids"]
    subset = Subset(dataset, positions, ds_ref)
    for k, pos in enumerate(positions):
        if pos >= len(dataset) or subset[k].id != ids[pos]:
            raise ResultError(f"image {ids[pos]!r} of the entry is not image {pos} of {ds_ref!r} as it opens here")
    args = dict(entry["model"].get("args") or {})  # plain JSON values, passed as keyword arguments
    # a registered model's entry names its weights (a seed or a defence: er/v2/seed1, mito/v2/pgd-at)
    name = entry["model"].get("weights") if checkpoint is None and ":" not in ref else None
    result = api.evaluate(ref, subset, protocol, model_args=args, checkpoint=checkpoint, device="cpu",
                          weights=name if isinstance(name, str) else None,
                          batch_size=int(entry["provenance"].get("batch_size") or 8))
    return result.document


def recheck_compare(entry: dict[str, Any], result: dict[str, Any], tolerance: float = RECHECK_TOLERANCE
                    ) -> tuple[list[tuple[str, float, float, float]], list[str]]:
    """Compare a re-evaluation on a subset of images with the entry's per-image IoU.

    Returns ``(rows, problems)``: one row per condition ``(condition, recorded mean, new mean,
    difference)`` over the re-evaluated images; a problem for each condition whose mean IoU
    differs by more than ``tolerance`` and for missing images or conditions.
    """
    from ..integrity import per_image_problems

    problems = per_image_problems(entry) if isinstance(entry, dict) else ["not an entry"]
    if problems:
        raise ResultError(f"the entry's per-image values cannot be compared: {problems[0]}")
    new = result.get("per_image") if isinstance(result, dict) else None
    if not isinstance(new, dict) or not isinstance(new.get("ids"), list) or not isinstance(new.get("iou"), dict) \
            or not all(isinstance(v, list) and len(v) == len(new["ids"]) for v in new["iou"].values()):
        raise ResultError("the re-evaluation has no per-image IoU to compare")
    old = entry["per_image"]
    where = {image: k for k, image in enumerate(old["ids"])}
    missing = [image for image in new["ids"] if image not in where]
    problems = [f"image {image} is not in the entry" for image in missing] + training_mismatch(entry, result)
    rows = []
    for cond, values in new["iou"].items():
        if cond not in old["iou"]:
            problems.append(f"condition {cond} is not in the entry")
            continue
        pairs = [(old["iou"][cond][where[image]], v) for image, v in zip(new["ids"], values) if image in where]
        if not pairs:
            continue
        a = sum(p[0] for p in pairs) / len(pairs)
        b = sum(p[1] for p in pairs) / len(pairs)
        rows.append((cond, a, b, b - a))
        if abs(b - a) > tolerance:
            problems.append(f"{cond}: mean IoU {b:.4f} over {len(pairs)} images, entry has {a:.4f} "
                            f"(difference {b - a:+.4f} > tolerance {tolerance})")
    return rows, problems


# what an entry says about its model's training that the weights it re-runs with must say too
TRAINING_IDENTITY = ("seed", "defense", "label_noise", "dataset", "command", "val_iou", "convergence")


def training_mismatch(entry: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """The training the entry claims against the one its weights record (the re-evaluation's
    ``model.training``, read from the checkpoint): same numbers from relabelled weights are not
    the same entry."""
    from .entry import training_record

    def training(doc: Any) -> dict[str, Any] | None:
        model = doc.get("model") if isinstance(doc, dict) else None
        if not isinstance(model, dict):
            return None
        if "training" not in model and "meta" in model:  # a result: its checkpoint's metadata, as an entry records it
            return training_record(model["meta"])
        found = model.get("training")
        return found if isinstance(found, dict) else None

    claimed, loaded = training(entry), training(result)
    if claimed is None and loaded is None:
        return []
    claimed, loaded = claimed or {}, loaded or {}
    unset = {"seed": 0, "defense": "none"}  # what an unrecorded value means; else None
    return [f"model.training.{k}: the entry says {claimed.get(k)!r}, its weights {loaded.get(k)!r}"
            for k in TRAINING_IDENTITY
            if (claimed.get(k) or unset.get(k)) != (loaded.get(k) or unset.get(k))]
