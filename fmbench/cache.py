"""Re-running is free: results cached by what a run measures.

A run's **identity** is what its numbers depend on: the protocol's content hash, the model's
reference and arguments, its weights file, the hash of its tensors and of its source file, the
dataset's reference and the sha256 of the very images and masks it evaluates (so a regenerated,
edited or re-exported dataset never reuses a result), the device type, the batch size and
fmbench's version (:func:`fmbench.engine.run_header`).  Its **key** is the sha256 of that
identity.  Every finished result records both (``identity``), and with the cache on (the
default) a copy goes to the user cache, ``$FMBENCH_CACHE/results/KEY.json``.

Before running, :func:`fmbench.evaluate` looks for a finished result of the same key: in the
output file itself, then in the cache; if one exists it is returned at once (``Result.reused``
says from where) instead of recomputing.  ``recompute=True`` (``--recompute``) runs anyway,
``cache=False`` neither reads nor writes the cache.  The same identity decides ``--resume``: a
partial log continues only under a run with its identity.  ``fmbench cache ls|clear``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .files import atomic_write, read_json
from .weights import cache_dir

if TYPE_CHECKING:  # names for annotations only
    from .result import Result


def results_dir() -> Path:
    return cache_dir() / "results"


def fingerprint(dataset: Any, n: int) -> str:
    """sha256 over the first ``n`` samples' ids, image and mask (shape, dtype and bytes): what
    a run reads of its dataset."""
    h = hashlib.sha256()
    for i in range(min(n, len(dataset))):
        s = dataset[i]
        image = np.ascontiguousarray(s.image, np.float32)
        mask = np.ascontiguousarray(s.mask, bool)
        h.update(json.dumps([str(s.id), list(image.shape), list(mask.shape)]).encode())
        h.update(image.tobytes())
        h.update(mask.tobytes())
    return h.hexdigest()


def key(identity: Mapping[str, Any]) -> str:
    """The identity's sha256 (its ``key`` field, when present, left out)."""
    body = {k: v for k, v in identity.items() if k != "key"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def stamped(identity: Mapping[str, Any]) -> dict[str, Any]:
    """The identity as a result records it: with its key."""
    return {**identity, "key": key(identity)}


def identity_of(path: str | os.PathLike) -> dict[str, Any] | None:
    """The identity a finished result file records, or ``None`` (not a result, unreadable, or
    written before results recorded one)."""
    try:
        doc = read_json(path)
    except Exception:  # noqa: BLE001 -- any unreadable file simply is not a match
        return None
    ident = doc.get("identity") if isinstance(doc, dict) and doc.get("kind") == "fmbench-result" else None
    if not isinstance(ident, dict) or ident.get("key") != key(ident):
        return None
    return ident


def differences(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """The identity fields in which two runs differ (``["identity"]`` when ``old`` has none)."""
    if old is None:
        return ["identity"]
    return [k for k in new if k != "key" and old.get(k) != new[k]]


def lookup(identity: Mapping[str, Any]) -> Path | None:
    """The cached result of this identity, if there is a valid one."""
    path = results_dir() / f"{key(identity)}.json"
    found = identity_of(path) if path.exists() else None
    return path if found is not None and found.get("key") == key(identity) else None


def store(document: Mapping[str, Any], text: str) -> Path | None:
    """Put a finished result into the cache (never over an existing copy: same key, same run);
    a cache that cannot be written is skipped, the run's own output is what matters."""
    ident = document.get("identity")
    if not isinstance(ident, dict):
        return None
    path = results_dir() / f"{ident['key']}.json"
    if path.exists():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: f.write(text), mode="w", replace=False)
    except OSError:
        return None
    return path


def cached_files() -> list[Path]:
    """The cache's result files: regular files named ``KEY.json`` by a result key (what
    :func:`store` writes), never a link and never anything else a folder may hold -- what ``ls``
    lists and ``clear`` may delete.  A cache path that is not a folder is one clear error."""
    from .errors import ResultError

    for p in (cache_dir(), results_dir()):
        if p.exists() and not p.is_dir():
            raise ResultError(f"the fmbench cache {p} is not a folder (FMBENCH_CACHE names the cache folder)")
    folder = results_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if len(p.stem) == 64 and p.suffix == ".json"
                  and all(c in "0123456789abcdef" for c in p.stem) and p.is_file() and not p.is_symlink())


def listing() -> list[dict[str, Any]]:
    """The cached results, newest first: key, model, dataset, protocol, finished, clean IoU."""
    rows = []
    for path in cached_files():
        try:
            doc = read_json(path)
        except Exception:  # noqa: BLE001 -- a damaged file is listed as such
            rows.append({"key": path.stem, "path": str(path), "damaged": True})
            continue
        clean = ((doc.get("scores") or {}).get("clean_iou") or {}).get("value")
        rows.append({"key": path.stem, "path": str(path), "model": doc.get("model", {}).get("ref"),
                     "dataset": doc.get("dataset", {}).get("ref"), "protocol": doc.get("protocol", {}).get("id"),
                     "finished": (doc.get("run") or {}).get("finished"), "clean_iou": clean,
                     "bytes": path.stat().st_size})
    return sorted(rows, key=lambda r: r.get("finished") or "", reverse=True)


def clear(keys: list[str] | None = None) -> int:
    """Remove cached results (all, or those whose key starts with one of ``keys``); returns how many."""
    n = 0
    for path in cached_files():
        if keys is None or any(path.stem.startswith(k) for k in keys):
            path.unlink()
            n += 1
    return n


def reusable(identity: dict[str, Any], out_path: Path | None) -> Result | None:
    """A finished result of this identity: the output file itself, or the cached copy (then
    also written to the output file, when that is free); its flags as this fmbench computes them."""
    from .files import dumps
    from .result import Result

    if out_path is not None and out_path.exists():
        if (identity_of(out_path) or {}).get("key") == key(identity):
            result = Result.load(out_path)
            result.reused = out_path
            before = list(result.document.get("flags", []))
            if current_flags(result).document["flags"] != before:  # the file says what the result says
                text = dumps(result.document)
                atomic_write(out_path, lambda f: f.write(text), mode="w")
            return result
        return None  # a different run's file: never replaced (unique_out chooses another name)
    cached = lookup(identity)
    if cached is None:
        return None
    result = current_flags(Result.load(cached))
    result.reused = cached
    if out_path is not None:
        text = dumps(result.document)
        atomic_write(out_path, lambda f: f.write(text), mode="w", replace=False)
        result.path = out_path
    return result


def current_flags(result: Result) -> Result:
    """A reused result's flags as this fmbench computes them (a flag added since it ran, too)."""
    from .result import flags

    result.document["flags"] = flags(result.document)
    return result
