"""Selecting and ranking entries: one group per (protocol hash, dataset), never merged."""

from __future__ import annotations

from typing import Any

from .entry import model_label

SORT_KEYS = {"adversarial": "adversarial_robustness", "corruption": "corruption_robustness", "clean": "clean_iou"}


def select(entries: list[dict[str, Any]], *, dataset: str | None = None, tier: str | None = None) -> list[dict[str, Any]]:
    """Entries on ``dataset`` under protocol ``tier`` (a name such as ``quick`` or an id)."""
    out = []
    for e in entries:
        if dataset and e["dataset"]["ref"] != dataset:
            continue
        if tier and tier not in (e["protocol"]["name"], e["protocol"]["id"]):
            continue
        out.append(e)
    return out


def _score(entry: dict[str, Any], key: str) -> float | None:
    return entry["summary"].get(key) if key in entry["summary"] else entry["summary"]["families"].get(key, {}).get("robustness")


def groups(entries: list[dict[str, Any]], sort: str = "adversarial") -> list[dict[str, Any]]:
    """Entries grouped by (protocol hash, dataset), each group ranked by ``sort`` (higher
    first, missing scores last).  Groups are never merged."""
    key = SORT_KEYS[sort]
    by: dict[tuple[str, str], list] = {}
    for e in entries:
        by.setdefault((e["protocol"]["hash"], e["dataset"]["ref"]), []).append(e)
    out = []
    for (h, ds), es in sorted(by.items(), key=lambda kv: (kv[1][0]["protocol"]["id"], kv[0][1], kv[0][0])):
        es = sorted(es, key=lambda e: (_score(e, key) is None, -(_score(e, key) or 0.0), model_label(e)))
        out.append({"protocol_id": es[0]["protocol"]["id"], "protocol_hash": h, "dataset": ds, "sort": sort,
                    "entries": es})
    return out


def rows(group: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for rank, e in enumerate(group["entries"], 1):
        s = e["summary"]
        out.append({
            "rank": rank, "model": model_label(e), "dataset": e["dataset"]["ref"],
            "protocol": e["protocol"]["id"], "protocol_hash": e["protocol"]["hash"],
            "clean_iou": s["clean_iou"], "corruption_robustness": s["corruption_robustness"],
            "adversarial_robustness": s["adversarial_robustness"], "n_images": e["dataset"]["n_images"],
            "weights_sha256": e["model"].get("weights_sha256"),
        })
    return out


