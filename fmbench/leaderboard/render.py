"""Ranked groups as rich tables, Markdown, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from .rank import rows


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


COLUMNS = [("rank", "#"), ("model", "model"), ("clean_iou", "clean IoU"),
           ("corruption_robustness", "corruption rob."), ("adversarial_robustness", "adversarial rob."),
           ("n_images", "images")]


def _cell(row: dict[str, Any], key: str) -> str:
    from rich.markup import escape

    v = row[key]
    return _f(v) if key.endswith(("_iou", "_robustness")) else escape(str(v))  # "m [pgd-at]" is not markup


def _title(group: dict[str, Any]) -> str:
    return (f"{group['dataset']} · {group['protocol_id']} (protocol {group['protocol_hash']}), "
            f"sorted by {group['sort']} robustness" if group["sort"] != "clean" else
            f"{group['dataset']} · {group['protocol_id']} (protocol {group['protocol_hash']}), sorted by clean IoU")


def render_tables(gs: list[dict[str, Any]]) -> list:
    """One rich table per (protocol, dataset) group."""
    from rich.table import Table

    tables = []
    for g in gs:
        t = Table(title=_title(g), title_justify="left")
        for key, head in COLUMNS:
            t.add_column(head, justify="left" if key == "model" else "right")
        for r in rows(g):
            t.add_row(*[_cell(r, k) for k, _ in COLUMNS])
        tables.append(t)
    return tables


def render_markdown(gs: list[dict[str, Any]]) -> str:
    """Markdown tables, one per (protocol, dataset) group; an honest line when empty."""
    if not gs:
        return "No entries yet.\n"
    parts = []
    for g in gs:
        lines = [f"**{_title(g)}**", "", "| " + " | ".join(h for _, h in COLUMNS) + " |",
                 "| " + " | ".join("---" if k == "model" else "---:" for k, _ in COLUMNS) + " |"]
        lines += ["| " + " | ".join(_cell(r, k) for k, _ in COLUMNS) + " |" for r in rows(g)]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def render_csv(gs: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    fields = ["protocol", "protocol_hash", "dataset", "rank", "model", "clean_iou", "corruption_robustness",
              "adversarial_robustness", "n_images", "weights_sha256"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for g in gs:
        for r in rows(g):
            w.writerow({k: r[k] for k in fields})
    return buf.getvalue()


def render_json(gs: list[dict[str, Any]]) -> str:
    return json.dumps([{k: g[k] for k in ("protocol_id", "protocol_hash", "dataset", "sort")} | {"rows": rows(g)}
                       for g in gs], indent=2) + "\n"
