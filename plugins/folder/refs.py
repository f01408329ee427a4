"""Dataset references (``SCHEME:PATH?key=value``), their options, and the split rules:
split lists and the deterministic sha256 hash split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from fmbench import DataError

if TYPE_CHECKING:
    from .layout import Layout

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Options:
    channel: int | None = None
    plane: int | None = None
    holdout: str = "none"


# -- references -------------------------------------------------------------------------------


def parse_ref(scheme: str, rest: str, allowed: tuple[str, ...], default_holdout: str) -> tuple[Path, Options]:
    """``PATH?key=value&...`` -> (path, options); unknown keys and bad values are errors."""
    path, _, query = rest.partition("?")
    if not path:
        raise DataError(f"{scheme}: needs a path, e.g. {scheme}:data/cells")
    values: dict[str, object] = {"holdout": default_holdout}
    seen: set[str] = set()
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in allowed:
            raise DataError(f"{scheme}:{rest}: unknown option {key!r} (options: {', '.join(allowed)})")
        if key in seen:
            raise DataError(f"{scheme}:{rest}: option {key!r} is given twice; give it once")
        seen.add(key)
        if key in ("channel", "plane"):
            if not value.isdigit():
                raise DataError(f"{scheme}:{rest}: {key} must be a whole number >= 0, got {value!r}")
            values[key] = int(value)
        elif key == "holdout":
            if value not in ("none", "hash"):
                raise DataError(f"{scheme}:{rest}: holdout must be 'none' or 'hash', got {value!r}")
            values[key] = value
    try:
        root = Path(path).expanduser()
        exists = root.exists()
    except (RuntimeError, OSError, ValueError) as exc:  # "~nobody", a name too long, a NUL byte
        raise DataError(f"{scheme}:{path}: not a usable path ({exc})") from None
    if not exists:
        raise DataError(f"{scheme}:{path}: {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{scheme}:{path}: {root} is not a folder")
    return root, Options(**values)


def _hash_fraction(name: str) -> float:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64


def hash_split(names: list[str], split: str, fractions: tuple[float, float, float]) -> list[str]:
    """``split``'s share of ``names``: the names are ranked by the sha256 of the name and cut
    into train, val and test parts of the given ``fractions`` (rounded; a split with a
    non-zero fraction gets at least one name when there are enough), in name order."""
    ranked = sorted(names, key=_hash_fraction)
    n = len(ranked)
    counts = [0, 0, 0]
    for k in (1, 2):
        if fractions[k] > 0 and n >= 2 + k - 1:
            counts[k] = max(1, int(round(fractions[k] * n)))
    counts[0] = n - counts[1] - counts[2]
    start = sum(counts[: SPLITS.index(split)])
    return sorted(ranked[start : start + counts[SPLITS.index(split)]])


def _read_list(path: Path, layout: Layout) -> list[str]:
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    if not names:
        raise DataError(f"split list {layout.rel(path)} is empty")
    return names
