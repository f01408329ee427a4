"""The one family of errors fmbench raises.

The library raises only subclasses of :class:`FmbenchError`; the CLI turns them into a single
line on stderr and a non-zero exit (``--debug`` shows the traceback).  Messages say what was
expected, what was found, and where.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FmbenchError(Exception):
    """Base class of every error fmbench raises on purpose."""


class PluginError(FmbenchError):
    """A plugin failed to import, registered a name twice, or implements an unknown hook."""


class UnknownNameError(FmbenchError):
    """A model, dataset, corruption, attack or protocol name that nothing registered."""

    @classmethod
    def for_name(cls, kind: str, name: str, known: Iterable[str]) -> "UnknownNameError":
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(known) if len(known) <= 12 else ", ".join(known[:12]) + ", ..."
        plural = {"dataset": "datasets", "model": "models", "corruption": "corruptions",
                  "attack": "attacks", "protocol": "protocols"}.get(kind, kind + "s")
        return cls(f"unknown {kind} {name!r}{hint} (known: {listing}; see `fmbench list {plural}`)")


class ModelLoadError(FmbenchError):
    """A model reference did not resolve, or the model failed to construct."""


class ModelContractError(FmbenchError):
    """A model's outputs break the fmbench model contract (shape, dtype, finiteness...)."""


class CheckpointError(FmbenchError):
    """A checkpoint is missing, unreadable, fails its checksum or does not fit the model."""


class DataError(FmbenchError):
    """Input data is missing, malformed or inconsistent."""


class ProtocolError(FmbenchError):
    """A protocol is malformed or a request does not fit it (bad level, bad budget...)."""


class ResultError(FmbenchError):
    """A result file cannot be written, resumed or read."""
