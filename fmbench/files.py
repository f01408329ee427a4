"""Files: atomic writes, JSON in and out, and the one sha256 of a file.

Everything fmbench writes goes through :func:`atomic_write` (a temporary sibling, then
``os.replace``), so a reader never sees half a file and a failure leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ResultError


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb",
                 replace: bool = True) -> None:
    """Write a file through a temporary sibling and ``os.replace``: readers never see half.
    ``replace=False`` refuses to replace a file that exists (also one that appeared while
    writing: the file is linked into place, which fails if the name is taken).  An OS error
    (read-only or full disk, no permission) is one :class:`ResultError` naming the file."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a result is an ordinary file
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # atomic, and fails when the name exists
    except FileExistsError:
        raise ResultError(f"{path} appeared while this was written; it was not replaced", hints=("overwrite",)) from None
    except OSError as exc:
        raise ResultError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:  # gone after a replace; still there after a link or a failure
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def dumps(obj: Any) -> str:
    """The JSON text of a result, entry or manifest (indented, no NaN)."""
    return json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    text = dumps(obj)
    atomic_write(path, lambda f: f.write(text), mode="w")


MAX_JSON_BYTES = 64 << 20  # no fmbench file comes near this; a larger one is refused unread


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:  # readers disagree on which copy counts: the file is refused instead
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def refuse_existing(path: str | os.PathLike, overwrite: bool) -> None:
    """Nothing a user made is replaced silently: a file at ``path`` needs ``--overwrite``."""
    if Path(path).exists() and not overwrite:
        raise ResultError(f"{path} already exists", hints=("overwrite",))


def check_writable(path: str | os.PathLike, *, folder_itself: bool = False) -> None:
    """Refuse before a long run, not after it, a file that could not be written: its folder (or
    the nearest one that exists, where the rest would be made) must be writable.
    ``folder_itself``: ``path`` is the folder that files will be written into."""
    folder = Path(path).absolute() if folder_itself else Path(path).absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ResultError(f"cannot write {path}: {folder} is not a writable folder")
    try:  # permissions do not tell everything (a read-only mount, /proc, a full quota): try it
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".fmbench-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ResultError(f"cannot write {path}: {folder}: {exc.strerror or exc}") from None


def save_figure(fig: Any, path: str | os.PathLike, **kwargs: Any) -> str:
    """A matplotlib figure written through :func:`atomic_write`, in the format its suffix names
    (``.png``, ``.pdf``, ``.svg``; PNG without one)."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    if fmt not in fig.canvas.get_supported_filetypes():
        raise ResultError(f"cannot write {path}: a figure is written as "
                          f"{', '.join('.' + k for k in ('png', 'pdf', 'svg'))} (not .{fmt})")
    atomic_write(path, lambda f: fig.savefig(f, format=fmt, **kwargs))
    return str(path)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (fmbench never writes NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is not a finite number (fmbench never writes one)")
    return value


def loads(text: str, where: str | os.PathLike) -> Any:
    """JSON text from a file ``where``: one :class:`ResultError` naming it for malformed JSON, a
    key given twice in one object, NaN or Infinity, or nesting too deep to read."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise ResultError(f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:
        raise ResultError(f"{where} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ResultError(f"{where} is not valid JSON: nested too deeply to read") from None


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file, or one :class:`ResultError` naming the file and the fault (missing, not a
    file, too large, not UTF-8, malformed, a duplicate key, too deep)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise ResultError(f"{path} is {path.stat().st_size >> 20} MiB; no fmbench JSON file is over "
                              f"{MAX_JSON_BYTES >> 20} MiB, so it is not read")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultError(f"{path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ResultError(f"{path} is not valid JSON: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ResultError(f"cannot read {path}: {exc.strerror or exc}") from None
    return loads(text, path)


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
