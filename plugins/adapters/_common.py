"""Helpers shared by the model adapters: close-match hints and one-line error texts."""

from __future__ import annotations

import difflib

from fmbench import ModelLoadError


def _suggest(name: str, known, kind: str, listing: bool = True) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    if not listing:
        return hint
    shown = ", ".join(known) if len(known) <= 15 else ", ".join(known[:15]) + f", ... ({len(known)} in all)"
    return f"{hint} (known {kind}: {shown})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, ModelLoadError):  # already ours (a compiled-op stand-in refusing)
        return text
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _no_args(scheme: str, args: dict):
    raise ModelLoadError(f"{scheme}: models take no model arguments (got {', '.join(sorted(args))})")
