"""What a person reads after one run in a terminal, beside its table
(:func:`fmbench.result.result_table`): its flags, and where it stands among the entries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import scores


def flag_lines(result: Mapping[str, Any]) -> list[str]:
    """One rich-markup line per flag, in red."""
    return [f"[bold red]{f['flag']}:[/bold red] [red]{f['reason']}[/red]" for f in result.get("flags", [])]


def standing(result: Mapping[str, Any], entries: list[dict[str, Any]] | None, result_path: str,
             directory: str) -> str:
    """One line: the rank by robust IoU among the entries of the result's protocol and
    dataset, with its interval, or why the result is not ranked; and the ``compare`` command."""
    from .errors import ResultError
    from .leaderboard.compare import compare

    cmd = f"`fmbench compare {result_path}`"
    if any(f["flag"] == "degenerate" for f in result.get("flags", [])):
        return f"not ranked: degenerate (see above); {cmd} shows it beside the entries"
    if entries is None:
        return f"not ranked: no leaderboard folder {directory}/ here"
    try:
        data = compare(dict(result), entries)
    except ResultError as exc:
        return f"not ranked: {exc.message}"
    row = next((r for r in data["rows"] if r["metric"] == "robust_iou"), None)
    if row is None:
        return f"not ranked: no robust IoU (no attack at the headline budget); {cmd}"
    noise = ""
    if row.get("above") and row["above"].get("within_noise"):
        noise = f", inside the noise of {row['above']['model']} above it"
    return (f"robust IoU {scores.fmt(row['score'])}: rank {row['rank']} of {row['of']} on "
            f"{data['dataset']} · {data['protocol_id']}{noise}; see {cmd}")
