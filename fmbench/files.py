"""Files: atomic writes, JSON in and out, and the one sha256 of a file.

Everything fmbench writes goes through :func:`atomic_write` (a temporary sibling, then
``os.replace``), so a reader never sees half a file and a failure leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
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


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file, or one :class:`ResultError` naming the file and the position of the fault."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ResultError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
