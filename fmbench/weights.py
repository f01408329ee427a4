"""Registered weights: where they live (shipped in a package or in the user cache), whether a
file is the registered one, and fetching them from a URL a plugin names."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .checkpoint import read_checkpoint, state_sha256
from .errors import CheckpointError
from .files import atomic_write, sha256_file

if TYPE_CHECKING:  # names for annotations only
    from .specs import Weights


def cache_dir() -> Path:
    """fmbench's user cache: ``$FMBENCH_CACHE``, else ``$XDG_CACHE_HOME/fmbench``, else
    ``~/.cache/fmbench``."""
    if os.environ.get("FMBENCH_CACHE"):
        return Path(os.environ["FMBENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fmbench"


def weights_path(weights: Weights) -> Path:
    """Where registered weights live: inside their package (shipped), at an absolute path, or
    under the user cache (``cache_dir()/weights/PATH``) for weights too large to ship."""
    if weights.package:
        import importlib.resources

        return Path(str(importlib.resources.files(weights.package).joinpath(weights.path)))
    path = Path(weights.path).expanduser()
    return path if path.is_absolute() else cache_dir() / "weights" / path


def reproduce_hint(weights: Weights, path: Path) -> str:
    """The command that makes ``path`` (``--out PATH`` added when the command has none)."""
    import shlex

    cmd = weights.command
    return cmd if " --out " in f" {cmd} " else f"{cmd} --out {shlex.quote(str(path))}"


def check_weights(weights: Weights, data: bytes | None = None, path: Path | None = None,
                  state: Mapping[str, torch.Tensor] | None = None) -> str | None:
    """Why the weights (the bytes ``data``, or the file ``path``) are not the registered ones,
    or ``None`` when they are: the file's sha256 and/or its state's sha256."""
    import io

    if data is None and path is None:
        raise ValueError("check_weights needs the bytes or the path of the weights")
    if weights.sha256:
        digest = hashlib.sha256(data).hexdigest() if data is not None else sha256_file(path)  # type: ignore[arg-type]
        if digest != weights.sha256:
            return f"sha256 {digest[:12]}..., expected {weights.sha256[:12]}..."
    if weights.state_sha256:
        if state is None:  # ``state``: already read from ``path`` by the caller
            try:
                state, _ = read_checkpoint(io.BytesIO(data) if data is not None else path)  # type: ignore[arg-type]
            except CheckpointError as exc:
                return str(exc)
        digest = state_sha256(state)
        if digest != weights.state_sha256:
            return f"state sha256 {digest[:12]}..., expected {weights.state_sha256[:12]}..."
    return None


def fetch_weights(weights: Weights, path: Path) -> None:
    """Download ``weights.url`` to ``path`` (checked first, then written atomically); any
    failure is one :class:`CheckpointError` that says how to make the file instead."""
    import urllib.request



    hint = f"reproduce them with: {reproduce_hint(weights, path)}"
    if not weights.url:
        raise CheckpointError(f"weights are missing at {path} and have no download address; {hint}")
    try:
        with urllib.request.urlopen(weights.url, timeout=60) as resp:  # noqa: S310 (a URL the plugin names)
            data = resp.read()
    except OSError as exc:
        raise CheckpointError(f"weights are missing at {path} and could not be downloaded from {weights.url} "
                              f"({type(exc).__name__}: {exc}); {hint}, or copy the file there") from None
    problem = check_weights(weights, data=data)
    if problem:
        raise CheckpointError(f"download {weights.url} has {problem}; nothing was written; {hint}")
    atomic_write(path, lambda f: f.write(data))


