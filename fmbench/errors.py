"""The one family of errors fmbench raises.

The library raises only subclasses of :class:`FmbenchError`; the CLI turns them into a single
line on stderr and a non-zero exit (``--debug`` shows the traceback).  Messages say what was
expected, what was found, and where.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FmbenchError(Exception):
    """Base class of every error fmbench raises on purpose.

    The message says what is wrong and where, in the library's own terms.  ``hints`` name the
    remedies (keys of :data:`HINTS`, such as ``"overwrite"``); ``str(exc)`` spells them as
    Python arguments, and the CLI spells them as its own options, so no library message names
    a command-line flag.
    """

    def __init__(self, message: str = "", *, hints: Iterable[str] = ()):
        super().__init__(message)
        self.message = message
        self.hints = tuple(hints)

    def advice(self, spelling: dict[str, str]) -> str:
        """The message with each hint spelled by ``spelling`` (hint key -> text)."""
        extra = [spelling[h] for h in self.hints if h in spelling]
        return "; ".join([self.message, *extra]) if extra else self.message

    def __str__(self) -> str:
        return self.advice(HINTS)


# remedies in the Python API's words; the CLI has its own spelling (fmbench.cli.CLI_HINTS)
HINTS = {
    "overwrite": "pass overwrite=True to replace it",
    "resume": "pass resume=True to continue it",
    "out": "or choose another output file",
    "random_init": "pass random_init=True to evaluate an untrained model",
    "checkpoint": "pass checkpoint=FILE with weights you trained",
    "device": "use device='cpu' or 'auto'",
    "tier": "choose one protocol (tier=...)",
    "trust": "pass trust=[REF] if you have read that code",
    "weights": "pass weights=NAME to evaluate the weights trained on one of those datasets",
    "traceback": "the model's own traceback is this error's __cause__",
}


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
                  "attack": "attacks", "protocol": "protocols", "label noise": "label-noise"}.get(kind, kind + "s")
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
