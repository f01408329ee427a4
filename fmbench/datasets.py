"""Opening a dataset by reference, in one place: a registered name (``nucleus``, or a
generator version of it: ``nucleus@2``), or ``scheme:rest`` through the plugins'
``fmbench_resolve_dataset`` hook."""

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
    version = parse_version(ref, spec.versions)
    if split not in spec.splits:
        raise DataError(f"dataset {ref!r} has no split {split!r} (splits: {', '.join(spec.splits)})")
    kwargs = {"split": split, "image_size": image_size}
    if version != spec.versions[0]:
        kwargs["version"] = version
    if seed is None:
        return spec.factory(**kwargs)
    try:
        return spec.factory(**kwargs, seed=seed)
    except TypeError as exc:
        if "seed" not in str(exc):
            raise
        raise DataError(f"dataset {ref!r} does not take a seed") from None


def parse_version(ref: str, versions: tuple[int, ...]) -> int:
    """The generator version a reference names: ``nucleus@2`` (or ``@v2``) is 2, a bare name the
    first of ``versions``."""
    if "@" not in ref:
        return versions[0]
    name, _, tail = ref.partition("@")
    text = tail[1:] if tail[:1] in ("v", "V") else tail
    if not text.isdigit() or int(text) not in versions:
        raise DataError(f"dataset {name!r} has no version {tail!r} (versions: "
                        f"{', '.join(str(v) for v in versions)}; write {name}@{versions[-1]})")
    return int(text)


def canonical_ref(ref: str, registry: Registry) -> str:
    """The one spelling of a registered dataset reference: the bare name for its first version,
    ``name@N`` for a later one (``nucleus@v2`` and ``nucleus@2`` are the same data)."""
    if ":" in ref or "@" not in ref:
        return ref
    spec = registry.dataset(ref)
    version = parse_version(ref, spec.versions)
    return spec.name if version == spec.versions[0] else f"{spec.name}@{version}"
