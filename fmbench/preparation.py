"""Attacks that learn before the first batch (universal perturbations): their training
batches and the one call of :meth:`fmbench.attack.Attack.prepare` per budget."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

from .attack import PassCounter, frozen_params
from .conditions import reference_input
from .data import iter_batches
from .errors import ProtocolError
from .protocol import Protocol
from .seeding import generators

if TYPE_CHECKING:  # names for annotations only
    from .conditions import Condition
    from .data import Dataset
    from .plugins import Registry


def prepare_attacks(model: PassCounter, attacks: dict, conditions: Sequence[Condition], protocol: Protocol, *, train: Any = None,
                    dataset_ref: str, registry: Registry, batch_size: int, device: torch.device) -> dict[str, dict]:
    """Call :meth:`Attack.prepare` once per (attack, budget) for the attacks that need it,
    before the first batch.  ``train`` is the training split (a dataset, a zero-argument
    callable opening it, or ``None``: the registered dataset ``dataset_ref`` opened with
    ``split="train"``); it is read once, ``max(n_train)`` images, kept in memory.  Returns,
    per condition id, the passes and seconds spent (the preparation is deterministic: its
    randomness comes from the protocol seed and the condition id)."""
    from .datasets import open_dataset

    todo = [c for c in conditions if c.kind == "attack" and getattr(attacks[c.family], "needs_preparation", False)]
    if not todo:
        return {}
    if callable(train) and not hasattr(train, "__getitem__"):
        train = train()  # opened only now that an attack needs it
    if train is None:
        where = f"attack {todo[0].family!r} learns on the training split of {dataset_ref!r}"
        if dataset_ref.split("@", 1)[0] not in registry.datasets:
            raise ProtocolError(f"{where}, but {dataset_ref!r} is not a registered dataset; pass its "
                                f"training split as train_dataset")
        if "train" not in registry.dataset(dataset_ref).splits:
            raise ProtocolError(f"{where}, which has no training split "
                                f"(splits: {', '.join(registry.dataset(dataset_ref).splits)})")
        train = open_dataset(dataset_ref, "train", protocol.image_size, registry=registry)
    n_train = max(getattr(attacks[c.family], "n_train", protocol.n_images) for c in todo)
    cache = list(training_batches(train, dataset_ref, protocol, n_train, batch_size, device)())
    out: dict[str, dict] = {}
    for cond in todo:
        before = model.counts()
        t0 = time.perf_counter()
        gen = generators(protocol.seed, ["prepare"], cond.id, device)[0]
        with frozen_params(model):
            attacks[cond.family].prepare(model, lambda: iter(cache), cond.level, gen)
        out[cond.id] = {"passes": model.since(before), "seconds": time.perf_counter() - t0}
    return out


def training_batches(dataset: Dataset, dataset_ref: str, protocol: Protocol, n_images: int, batch_size: int,
                     device: torch.device) -> Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    """A zero-argument callable yielding ``(x, target)``: the first ``n_images`` of a training
    split in the reference condition, exactly as the engine prepares test images."""

    def gen():
        for batch in iter_batches(dataset, min(n_images, len(dataset)), batch_size):
            x = batch.image.to(device)
            mask = batch.mask.to(device)
            keys = [f"{dataset_ref}:train/{i}" for i in batch.ids]
            gens = generators(protocol.seed, keys, "reference", device)
            yield reference_input(protocol, x, mask, gens, synthetic=bool(dataset.synthetic)), mask

    return gen
