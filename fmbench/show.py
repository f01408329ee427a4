"""What a person reads after one run in a terminal, beside its table
(:func:`fmbench.result.result_table`): its flags, and where it stands among the entries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import scores


FEW_IMAGES = 10  # below this many test images, intervals and self-checks are rough (a line says so)


def few_images(n: int) -> str:
    """What a result on ``n`` (< :data:`FEW_IMAGES`) test images should be read as."""
    return (f"{n} test image{'s' * (n != 1)}: each 95 % interval and every self-check rests on them; read the "
            f"scores as a smoke test, not a measurement")


def flag_lines(result: Mapping[str, Any]) -> list[str]:
    """One rich-markup line per flag, in red: the result's own and those the leaderboard's table
    would give it without peers (``other-data``); and a line when it rests on few images."""
    from rich.markup import escape

    from .leaderboard.entry import training_record
    from .leaderboard.rank import flags as table_flags

    doc: Any = getattr(result, "document", result)
    found = list(doc.get("flags", []))
    try:
        model = doc.get("model") or {}
        if "training" not in model and isinstance(model.get("meta"), Mapping):  # a result: its checkpoint's record
            doc = {**doc, "model": {**model, "training": training_record(model["meta"])}}
        found += [f for f in table_flags(doc, None) if f["flag"] not in {g["flag"] for g in found}]
    except (KeyError, TypeError, AttributeError):  # a document without a model or dataset record
        pass
    lines = [f"[bold red]{f['flag']}:[/bold red] [red]{escape(f['reason'])}[/red]" for f in found]
    n = (doc.get("dataset") or {}).get("n_images")
    if isinstance(n, int) and n < FEW_IMAGES:
        lines.append(f"[yellow]few images:[/yellow] {few_images(n)}")
    return lines


def standing(result: Mapping[str, Any], entries: list[dict[str, Any]] | str | None, result_path: str,
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
    if isinstance(entries, str):
        return f"not ranked: {entries}"
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
