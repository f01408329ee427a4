"""Selecting and ranking entries: one group per (protocol hash, dataset), never merged.

Groups rank by an absolute score (``robust`` IoU by default; ``corrupted``, ``clean``), or on
request by the study's relative robustness (``adversarial``, ``corruption``).  Within a group an
entry whose clean IoU is far below the best is flagged ``undertrained``
(:func:`fmbench.scores.undertrained`), and the group carries its baselines when they exist.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import scores
from .entry import model_label

SORT_KEYS = {"robust": "robust_iou", "corrupted": "corrupted_iou", "clean": "clean_iou",
             "adversarial": "adversarial_robustness", "corruption": "corruption_robustness"}
SORT_TEXT = {"robust": "robust IoU", "corrupted": "corrupted IoU", "clean": "clean IoU",
             "adversarial": "relative adversarial robustness (study)",
             "corruption": "relative corruption robustness (study)"}


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


def score_block(entry: dict[str, Any], key: str) -> dict[str, Any] | None:
    """A score with its interval (``{"value", "ci95"}``): a headline or relative score, or a
    family's IoU by family name."""
    s = entry.get("scores") or {}
    if key in s and isinstance(s[key], dict) and "value" in s[key]:
        return s[key]
    fam = (s.get("families") or {}).get(key)
    return fam.get("headline_iou") or fam["iou"] if fam else None


def _score(entry: dict[str, Any], key: str) -> float | None:
    block = score_block(entry, key)
    return None if block is None else block.get("value")


def flags(entry: dict[str, Any], best: tuple[float, str] | None) -> list[dict[str, str]]:
    """An entry's flags within its table: ``other-data`` when the model was trained on another
    version of the dataset it is evaluated on (its clean IoU then says so, not that it is
    undertrained), else ``undertrained`` against the best clean IoU."""
    out = list(entry.get("flags", []))
    clean = _score(entry, "clean_iou")
    trained_on = ((entry.get("model") or {}).get("training") or {}).get("dataset")
    evaluated_on = entry["dataset"]["ref"]
    if trained_on and trained_on != evaluated_on and trained_on.split("@")[0] == evaluated_on.split("@")[0]:
        out.append({"flag": "other-data", "reason": (
            f"trained on {trained_on}, evaluated on {evaluated_on}: another generator version, whose masks follow "
            f"another annotation convention (docs/datasets.md), so its clean IoU is not that of a model trained here")})
        return out
    if best is not None and clean is not None:
        reason = scores.undertrained(clean, best[0], best[1])
        if reason:
            out.append(convergence_flag(entry, reason))
    return out


def convergence_flag(entry: dict[str, Any], gap: str) -> dict[str, str]:
    """Why a model far below the best is there, from its training record's validation curve
    (:func:`fmbench.train.convergence`): ``undertrained`` when its validation IoU was still rising
    when the budget ended (or when nothing says otherwise), ``architecture-limited`` when it had
    plateaued -- more of the same training would not have closed the gap."""
    conv = ((entry.get("model") or {}).get("training") or {}).get("convergence") or {}
    state = conv.get("state")
    if state == "plateaued":
        return {"flag": "architecture-limited", "reason": (
            f"{gap.split(': its robustness')[0]}; its training plateaued at validation IoU {conv['best_val_iou']:.3f} "
            f"(best at step {conv['best_step']}, {conv['reason']} at step {conv['stopped_at']}): the gap is the "
            f"architecture's under this recipe, not a short budget")}
    if state == "rising":
        return {"flag": "undertrained", "reason": (
            f"{gap.split(': its robustness')[0]}; its validation IoU was still rising when the budget ended "
            f"(+{conv['gain_last_quarter']:.3f} over the last quarter, best {conv['best_val_iou']:.3f} at step "
            f"{conv['best_step']}): its robustness measures an undertrained model")}
    return {"flag": "undertrained", "reason": gap}


def groups(entries: list[dict[str, Any]], sort: str = "robust",
           baselines: dict[tuple[str, str], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Entries grouped by (protocol hash, dataset), each group ranked by ``sort`` (higher
    first, missing scores last), with every entry's flags and the group's baselines.  Groups
    are never merged."""
    key = SORT_KEYS[sort]
    by: dict[tuple[str, str], list] = {}
    for e in entries:
        by.setdefault((e["protocol"]["hash"], e["dataset"]["ref"]), []).append(e)
    out = []
    for (h, ds), es in sorted(by.items(), key=lambda kv: (kv[1][0]["protocol"]["id"], kv[0][1], kv[0][0])):
        es = sorted(es, key=lambda e: (_score(e, key) is None, -(_score(e, key) or 0.0), model_label(e)))
        cleans = [(c, model_label(e)) for e in es if (c := _score(e, "clean_iou")) is not None]
        best = max(cleans) if cleans else None
        out.append({"protocol_id": es[0]["protocol"]["id"], "protocol_hash": h, "dataset": ds, "sort": sort,
                    "entries": es, "flags": {model_label(e): flags(e, best) for e in es},
                    "baselines": (baselines or {}).get((h, ds))})
    return out


def rows(group: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per entry: rank, model, the three headline scores and the study's two ratios
    (each ``{"value", "ci95"}``), flags, images, weights."""
    out = []
    for rank, e in enumerate(group["entries"], 1):
        label = model_label(e)
        row: dict[str, Any] = {"rank": rank, "model": label, "dataset": e["dataset"]["ref"],
                               "protocol": e["protocol"]["id"], "protocol_hash": e["protocol"]["hash"]}
        for key in (*scores.HEADLINE_SCORES, *scores.RELATIVE_SCORES):
            row[key] = score_block(e, key)
        row["flags"] = [f["flag"] for f in group["flags"].get(label, [])]
        row["n_images"] = e["dataset"]["n_images"]
        row["weights_sha256"] = e["model"].get("weights_sha256")
        out.append(row)
    return out


def baseline_rows(group: dict[str, Any]) -> list[dict[str, Any]]:
    """The group's baselines as rows (clean and corrupted IoU with intervals; never attacked)."""
    doc = group.get("baselines")
    if not doc:
        return []
    ref = next(c["id"] for c in doc["conditions"] if c["kind"] == "reference")
    corr = [c["id"] for c in doc["conditions"] if c["kind"] == "corruption"]
    out = []
    for name, per_cond in doc["per_image"]["iou"].items():
        clean = np.asarray(per_cond[ref], float)
        idx = scores.resamples(clean.size)
        row: dict[str, Any] = {"model": f"baseline: {name}",
                               "clean_iou": {"value": float(clean.mean()), "ci95": scores.interval(clean, idx)}}
        if corr:
            corrupted = np.mean([per_cond[c] for c in corr], axis=0)
            row["corrupted_iou"] = {"value": float(corrupted.mean()), "ci95": scores.interval(corrupted, idx)}
        out.append(row)
    return out
