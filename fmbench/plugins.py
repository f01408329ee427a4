"""The plugin manager and the registry of everything plugins provide.

Built-in plugins (the modules listed in ``fmbench_plugins.BUILTINS``) and third-party
packages (entry points in the ``fmbench`` group) go through the same hooks.  Which
third-party plugins load can be restricted with the environment variable
``FMBENCH_LOAD_PLUGINS``: unset loads all, a comma-separated list loads only those entry-point
names, an empty string loads none (the test suite sets that).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .errors import PluginError, UnknownNameError
from .protocol import AttackEntry
from .specs import AttackSpec, CorruptionSpec, DatasetSpec, LabelNoiseSpec, ModelSpec

if TYPE_CHECKING:  # names for annotations only
    from .protocol import Protocol


ENTRYPOINT_GROUP = "fmbench"

_pm: pluggy.PluginManager | None = None
# plugin name -> "distribution version" for plugins that came from entry points
_dists: dict[str, str] = {}


def _allowed_entrypoints() -> set[str] | None:
    value = os.environ.get("FMBENCH_LOAD_PLUGINS")
    if value is None:
        return None
    return {v.strip() for v in value.split(",") if v.strip()}


def _load_entrypoints(pm: pluggy.PluginManager) -> None:
    allowed = _allowed_entrypoints()
    found = importlib.metadata.entry_points(group=ENTRYPOINT_GROUP)
    missing = sorted((allowed or set()) - {ep.name for ep in found})
    if missing:  # asked for by name, installed under none: said, not silently skipped
        import logging

        logging.getLogger("fmbench").warning(
            f"warning: FMBENCH_LOAD_PLUGINS names {', '.join(missing)}, but no installed fmbench plugin has that name "
            f"(installed: {', '.join(sorted(ep.name for ep in found)) or 'none'}); not loaded")
    for ep in found:
        if allowed is not None and ep.name not in allowed:
            continue
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "an unknown distribution"
        if pm.has_plugin(ep.name):
            raise PluginError(
                f"plugin name {ep.name!r} from {dist} is already taken by plugin "
                f"{ep.name!r} ({_dists.get(ep.name, 'built-in')})"
            )
        try:
            plugin = ep.load()
        except Exception as exc:  # any failure inside third-party code
            raise PluginError(
                f"plugin {ep.name!r} (entry point {ep.value!r} from distribution {dist}) failed "
                f"to import: {type(exc).__name__}: {exc} (set FMBENCH_LOAD_PLUGINS to choose which "
                f"plugins load)"
            ) from exc
        pm.register(plugin, name=ep.name)
        _dists[ep.name] = dist


def make_plugin_manager(load_entrypoints: bool = True) -> pluggy.PluginManager:
    """Build a fresh plugin manager with the built-ins and (optionally) installed plugins."""
    import fmbench_plugins

    pm = pluggy.PluginManager("fmbench")
    pm.add_hookspecs(hookspecs)
    for modname in fmbench_plugins.BUILTINS:
        pm.register(importlib.import_module(modname), name=modname)
    if load_entrypoints:
        _load_entrypoints(pm)
    check(pm)
    return pm


def check(pm: pluggy.PluginManager) -> None:
    """Fail loudly on hook implementations that match no specification (a typo)."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) if getattr(exc, "plugin", None) is not None else "?"
        raise PluginError(f"plugin {name!r}: {exc}") from exc


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use."""
    global _pm
    if _pm is None:
        _pm = make_plugin_manager()
    return _pm


def distribution_of(plugin_name: str) -> str:
    """``"name version"`` of the distribution a plugin came from, or ``"built-in"``."""
    return _dists.get(plugin_name, "built-in")


@dataclass
class Registry:
    """Everything the loaded plugins registered, by name."""

    models: dict[str, ModelSpec]
    datasets: dict[str, DatasetSpec]
    corruptions: dict[str, CorruptionSpec]
    attacks: dict[str, AttackSpec]
    protocols: dict[str, Any]  # protocol id ("quick-v1") -> Protocol
    label_noises: dict[str, LabelNoiseSpec] = dataclasses.field(default_factory=dict)

    def label_noise(self, name: str) -> LabelNoiseSpec:
        return _lookup(self.label_noises, "label noise", name)

    def model(self, name: str) -> ModelSpec:
        return _lookup(self.models, "model", name)

    def dataset(self, name: str) -> DatasetSpec:
        """A dataset's spec, by name or by versioned reference (``nucleus@2``)."""
        base = name.split("@", 1)[0]
        if base in self.datasets:
            return self.datasets[base]
        known = [n for n, spec in self.datasets.items() for n in
                 [n] + [f"{n}@{v}" for v in getattr(spec, "versions", ())[1:]]]
        raise UnknownNameError.for_name("dataset", name, known)

    def corruption(self, name: str) -> CorruptionSpec:
        return _lookup(self.corruptions, "corruption", name)

    def attack(self, name: str) -> AttackSpec:
        return _lookup(self.attacks, "attack", name)

    def build_attack(self, entry: AttackEntry) -> Any:
        """The attack of a protocol entry (:class:`fmbench.AttackEntry`), in its norm with its
        parameters; factories that build on other attacks receive this registry."""
        return self.attack(entry.name).build(self, entry.norm, **dict(entry.params))

    def build_corruption(self, name: str) -> Any:
        return self.corruption(name).factory()

    def protocol(self, name: str) -> Protocol:
        """A protocol by id (``quick-v1``) or by tier name (``quick``: its newest version that
        is not a draft)."""
        if name in self.protocols:
            return self.protocols[name]
        tier = [p for p in self.protocols.values() if p.name == name]
        if not tier:
            names = set(self.protocols) | {p.name for p in self.protocols.values()}
            raise UnknownNameError.for_name("protocol", name, names)
        released = [p for p in tier if not p.draft] or tier
        return max(released, key=lambda p: p.version)


def _lookup(table: dict[str, Any], kind: str, name: str) -> Any:
    try:
        return table[name]
    except KeyError:
        raise UnknownNameError.for_name(kind, name, table) from None


def _collect(pm: pluggy.PluginManager, hook: str, kind: str, cls: type) -> dict[str, Any]:
    """Every spec of one kind, by name (or protocol id), each marked with its plugin."""
    out: dict[str, Any] = {}
    for impl in getattr(pm.hook, hook).get_hookimpls():
        items: list[Any] = impl.function() or []
        for item in items:
            if not isinstance(item, cls):
                raise PluginError(
                    f"plugin {impl.plugin_name!r}: {hook}() returned a {type(item).__name__}, "
                    f"expected {cls.__name__}"
                )
            spec: Any = item
            key = spec.id if hasattr(spec, "id") else spec.name
            if key in out:
                raise PluginError(
                    f"{kind} {key!r} is registered twice: by plugin {out[key].plugin!r} and by "
                    f"plugin {impl.plugin_name!r}"
                )
            out[key] = dataclasses.replace(spec, plugin=impl.plugin_name)
    return out


def get_registry(pm: pluggy.PluginManager | None = None) -> Registry:
    """Collect every spec from every plugin; refuses names registered twice."""
    from .protocol import Protocol

    pm = pm or get_plugin_manager()
    return Registry(
        models=_collect(pm, "fmbench_models", "model", ModelSpec),
        datasets=_collect(pm, "fmbench_datasets", "dataset", DatasetSpec),
        corruptions=_collect(pm, "fmbench_corruptions", "corruption", CorruptionSpec),
        attacks=_collect(pm, "fmbench_attacks", "attack", AttackSpec),
        protocols=_collect(pm, "fmbench_protocols", "protocol", Protocol),
        label_noises=_collect(pm, "fmbench_label_noises", "label noise", LabelNoiseSpec),
    )
