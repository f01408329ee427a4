"""Re-evaluating an entry on a few images and comparing with its per-image scores."""

from __future__ import annotations

import os
from typing import Any

from ..errors import ResultError

# options of the recorded command that recheck replaces or that do not change scores
_RECHECK_DROP = {"--out": 1, "--leaderboard-entry": 1, "--n-images": 1, "--resume": 0, "--overwrite": 0,
                 "--json": 0, "--quiet": 0}
RECHECK_TOLERANCE = 0.01


def recheck_command(entry: dict[str, Any], n_images: int, out: str | os.PathLike) -> list[str]:
    """The entry's recorded ``fmbench eval`` command, restricted to its first ``n_images``
    images and writing its result to ``out`` (arguments after ``fmbench``)."""
    import shlex

    cmd = shlex.split(entry["provenance"]["command"] or "")
    if cmd[:2] != ["fmbench", "eval"]:
        raise ResultError(f"the entry's recorded command is not an `fmbench eval` command: {entry['provenance']['command']!r}")
    args, i = [], 2
    while i < len(cmd):
        name = cmd[i].split("=", 1)[0]
        if name in _RECHECK_DROP:
            i += 1 + (_RECHECK_DROP[name] if "=" not in cmd[i] else 0)
            continue
        args.append(cmd[i])
        i += 1
    return ["eval", *args, "--n-images", str(n_images), "--out", str(out), "--quiet"]


def recheck_compare(entry: dict[str, Any], result: dict[str, Any], tolerance: float = RECHECK_TOLERANCE
                    ) -> tuple[list[tuple[str, float, float, float]], list[str]]:
    """Compare a re-evaluation on a subset of images with the entry's per-image IoU.

    Returns ``(rows, problems)``: one row per condition ``(condition, recorded mean, new mean,
    difference)`` over the re-evaluated images; a problem for each condition whose mean IoU
    differs by more than ``tolerance`` and for missing images or conditions.
    """
    old, new = entry.get("per_image") or {}, result.get("per_image") or {}
    if not old.get("ids"):
        raise ResultError("the entry has no per-image IoU to compare with")
    where = {image: k for k, image in enumerate(old["ids"])}
    missing = [image for image in new["ids"] if image not in where]
    problems = [f"image {image} is not in the entry" for image in missing]
    rows = []
    for cond, values in new["iou"].items():
        if cond not in old["iou"]:
            problems.append(f"condition {cond} is not in the entry")
            continue
        pairs = [(old["iou"][cond][where[image]], v) for image, v in zip(new["ids"], values) if image in where]
        if not pairs:
            continue
        a = sum(p[0] for p in pairs) / len(pairs)
        b = sum(p[1] for p in pairs) / len(pairs)
        rows.append((cond, a, b, b - a))
        if abs(b - a) > tolerance:
            problems.append(f"{cond}: mean IoU {b:.4f} over {len(pairs)} images, entry has {a:.4f} "
                            f"(difference {b - a:+.4f} > tolerance {tolerance})")
    return rows, problems
