"""Model cards: what ``fmbench info MODEL`` and ``fmbench list models`` say about a model.

A card is built from the registered :class:`fmbench.specs.ModelSpec` alone (nothing is
downloaded or cached): summary, paper, plugin, default arguments, parameter count, and for
every dataset with registered weights the file, its expected sha256, whether the file is
present (and matches) and the command that reproduces it.
"""

from __future__ import annotations

from typing import Any

import torch

from .errors import ModelLoadError
from .model import _construct, check_weights, weights_path
from .specs import ModelSpec, Weights


def parameter_count(spec: ModelSpec) -> int:
    """Number of parameters of ``spec`` built with its default arguments.

    The model is built on the ``meta`` device first (shapes only, no memory, no random
    initialisation: ~20x faster for the zoo); a factory that cannot run there (one that calls
    ``.item()`` while building, say) is built on the CPU instead.  Both count the same tensors.
    """
    try:
        with torch.device("meta"):
            module = spec.factory(**spec.defaults)
    except Exception:
        module = _construct(spec.factory, dict(spec.defaults), spec.name)
    return sum(p.numel() for p in module.parameters())


def weights_status(w: Weights) -> str:
    """``present``, ``missing`` or ``sha256 mismatch`` for one registered weights file."""
    path = weights_path(w)
    if not path.is_file():
        return "missing"
    return "present" if check_weights(w, path=path) is None else "sha256 mismatch"


def model_card(spec: ModelSpec) -> dict[str, Any]:
    """The card of a registered model as plain JSON types."""
    try:
        params: int | None = parameter_count(spec)
        error = None
    except ModelLoadError as exc:
        params, error = None, str(exc)
    card = {
        "name": spec.name,
        "summary": spec.summary,
        "paper": spec.paper,
        "plugin": spec.plugin,
        "defaults": dict(spec.defaults),
        "parameters": params,
        "weights": [
            {"dataset": ds, "path": str(weights_path(w)), "sha256": w.sha256 or None,
             "state_sha256": w.state_sha256, "status": weights_status(w),
             "command": w.command, "url": w.url}
            for ds, w in sorted(spec.weights.items())
        ],
    }
    if error:
        card["build_error"] = error
    return card


def format_card(card: dict[str, Any]) -> str:
    """The card as plain text, one field per line."""
    params = f"{card['parameters']:,}" if card["parameters"] is not None else f"? ({card.get('build_error')})"
    defaults = ", ".join(f"{k}={v!r}" for k, v in card["defaults"].items()) or "none"
    lines = [
        f"{card['name']}: {card['summary']}",
        f"  paper:      {card['paper'] or '—'}",
        f"  plugin:     {card['plugin']}",
        f"  defaults:   {defaults}",
        f"  parameters: {params}",
    ]
    if not card["weights"]:
        lines.append("  weights:    none registered (train with `fmbench train`, evaluate with --checkpoint)")
    for w in card["weights"]:
        lines += [
            f"  weights [{w['dataset']}]: {w['status']}",
            f"    path:    {w['path']}",
            *([f"    sha256:  {w['sha256']} (file)"] if w["sha256"] else []),
            *([f"    sha256:  {w['state_sha256']} (tensors)"] if w.get("state_sha256") else []),
            f"    command: {w['command']}" + ("" if " --out " in f" {w['command']} " else f" --out {w['path']}"),
        ]
        if w["url"]:
            lines.append(f"    url:     {w['url']}")
    return "\n".join(lines)
