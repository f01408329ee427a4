"""Opening a dataset by reference, in one place: a registered name, or ``scheme:rest``
through the plugins' ``fmbench_resolve_dataset`` hook."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .data import Dataset
from .errors import DataError, UnknownNameError

if TYPE_CHECKING:  # names for annotations only
    import pluggy

    from .plugins import Registry


def open_dataset(ref: str, split: str = "test", image_size: int = 256, *, seed: int | None = None,
                 registry: Registry | None = None, pm: pluggy.PluginManager | None = None) -> Dataset:
    """A dataset's split: a registered name (its factory gets ``split`` and ``image_size``,
    and ``seed`` when one is given: generated datasets take it), or a ``scheme:rest``
    reference handled by a plugin (``folder:PATH``...).  ``registry``/``pm`` default to the
    process-wide ones."""
    from .plugins import get_plugin_manager, get_registry

    pm = pm or get_plugin_manager()
    registry = registry or get_registry(pm)
    if ":" in ref:
        if seed is not None:
            raise DataError(f"a seed applies to generated datasets, not to {ref!r}")
        ds = pm.hook.fmbench_resolve_dataset(ref=ref, split=split, image_size=image_size)
        if ds is None:
            raise UnknownNameError(f"no plugin handles dataset reference {ref!r}")
        return ds
    spec = registry.dataset(ref)
    if split not in spec.splits:
        raise DataError(f"dataset {ref!r} has no split {split!r} (splits: {', '.join(spec.splits)})")
    if seed is None:
        return spec.factory(split=split, image_size=image_size)
    try:
        return spec.factory(split=split, image_size=image_size, seed=seed)
    except TypeError as exc:
        if "seed" not in str(exc):
            raise
        raise DataError(f"dataset {ref!r} does not take a seed") from None
