"""Selecting and ranking entries: one group per (protocol hash, dataset), never merged.

Groups rank by an absolute score (``robust`` IoU by default; ``corrupted``, ``clean``), or on
request by the study's relative robustness (``adversarial``, ``corruption``).  Within a group an
entry whose clean IoU is far below the best is flagged ``undertrained``
(:func:`fmbench.scores.undertrained`), and the group carries its baselines when they exist.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import baselines as baselines_mod, scores
from .entry import model_label

SORT_KEYS = {"robust": "robust_iou", "corrupted": "corrupted_iou", "clean": "clean_iou",
             "adversarial": "adversarial_robustness", "corruption": "corruption_robustness"}
SORT_TEXT = {"robust": "robust IoU", "corrupted": "corrupted IoU", "clean": "clean IoU",
             "adversarial": "relative adversarial robustness (study)",
             "corruption": "relative corruption robustness (study)"}


def select(entries: list[dict[str, Any]], *, dataset: str | None = None, tier: str | None = None) -> list[dict[str, Any]]:
    """Entries on ``dataset`` under protocol ``tier`` (a name such as ``quick`` or an id).  A bare
    dataset name also takes its generator versions (``nucleus``: ``nucleus@2`` too, which is what
    ``quick-v2`` evaluates on when told ``nucleus``); ``nucleus@2`` takes only itself."""
    out = []
    for e in entries:
        ref = str(e["dataset"]["ref"])
        if dataset and ref != dataset and ("@" in dataset or ref.split("@", 1)[0] != dataset):
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


def flags(entry: dict[str, Any], best: tuple[float, str] | None,
          table_baselines: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """An entry's flags within its table: ``below-classical`` when Otsu's threshold in the
    table's baselines does better on its images; ``other-data`` when the model was trained on
    another version of the dataset it is evaluated on (its clean IoU then says so, not that it
    is undertrained), else ``undertrained`` against the best clean IoU."""
    out = list(entry.get("flags", []))
    if entry.get("_pinned") is False:
        loose = next((m for m in entry.get("members") or [entry] if m.get("_pinned") is False), entry)
        out.append({"flag": "unpinned-weights", "reason": (
            f"evaluated with weights no registry pins (sha256 {str(loose['model'].get('weights_sha256'))[:12]}...): "
            f"these numbers can be rechecked only with the contributor's checkpoint (`fmbench leaderboard recheck "
            f"--checkpoint`), so they rest on the entry's word until someone does")})
    masked = min((m["_masking"] for m in entry.get("members") or [entry] if m.get("_masking")),
                 key=lambda f: f["flag"] != "gradient-masking", default=None)  # a finding before a gap
    if masked:  # adversarially trained: unchecked for, or found with, gradient masking (leaderboard.masking)
        out.append(masked)
    below = classical_flag(entry, table_baselines)
    if below and below["flag"] not in {f["flag"] for f in out}:
        out.append(below)
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


def classical_flag(entry: dict[str, Any], doc: dict[str, Any] | None) -> dict[str, str] | None:
    """``below-classical`` for a row (pooled seeds: the per-image mean over them) whose clean or
    corrupted IoU is below Otsu's threshold's on the same images, read from its table's
    baselines document ``doc``; ``None`` when it is not, or ``doc`` does not cover its images."""
    if not doc:
        return None
    where = {image: k for k, image in enumerate(doc["per_image"]["ids"])}
    ids = entry["per_image"]["ids"]
    block = doc["per_image"]["iou"].get(baselines_mod.CLASSICAL)
    if block is None or any(i not in where for i in ids):
        return None
    theirs = baselines_mod.classical_per_image({c: [v[where[i]] for i in ids] for c, v in block.items()},
                                           entry["conditions"])
    mine = {key: scores.per_image(entry, key) for key in ("clean_iou", "corrupted_iou")}
    reason = scores.below_classical(mine, theirs)
    return {"flag": "below-classical", "reason": reason} if reason else None


def convergence_flag(entry: dict[str, Any], gap: str) -> dict[str, str]:
    """Why a model far below the best is there, from its training record's validation curve
    (:func:`fmbench.train.convergence`): ``undertrained`` when its validation IoU was still rising
    when the budget ended (or when nothing says otherwise), ``architecture-limited`` when it had
    plateaued -- more of the same training would not have closed the gap.  A row pooling seeds
    is ``architecture-limited`` only when every seed's training plateaued."""
    members = entry.get("members") or [entry]
    convs = [((m.get("model") or {}).get("training") or {}).get("convergence") or {} for m in members]
    seeds = [(m.get("model") or {}).get("training", {}).get("seed") for m in members]
    head = gap.split(": its robustness")[0]
    rising = [(s, c) for s, c in zip(seeds, convs) if c.get("state") == "rising"]
    if rising:
        s, conv = rising[0]
        which = f"seed {s}'s" if len(members) > 1 else "its"
        return {"flag": "undertrained", "reason": (
            f"{head}; {which} validation IoU was still rising when the budget ended "
            f"(+{conv['gain_last_quarter']:.3f} over the last quarter, best {conv['best_val_iou']:.3f} at step "
            f"{conv['best_step']}): its robustness measures an undertrained model")}
    if convs and all(c.get("state") == "plateaued" for c in convs):
        conv = convs[0]
        more = f" (and so did the other {len(convs) - 1} seeds')" if len(convs) > 1 else ""
        return {"flag": "architecture-limited", "reason": (
            f"{head}; its training plateaued at validation IoU {conv['best_val_iou']:.3f} "
            f"(best at step {conv['best_step']}, {conv['reason']} at step {conv['stopped_at']}){more}: the gap is the "
            f"architecture's under this recipe, not a short budget")}
    return {"flag": "undertrained", "reason": gap}


SPREAD_KEYS = (*scores.HEADLINE_SCORES, *scores.RELATIVE_SCORES)


def pool_seeds(members: list[dict[str, Any]]) -> dict[str, Any]:
    """One row's entry for an architecture trained with several seeds (same model, defence,
    dataset and protocol): absolute scores are the mean over seeds with a 95 % bootstrap
    interval over the images of the per-image seed mean (every seed is scored on the same
    images); relative scores the mean of the seeds' values with an interval from the same image
    resamples applied to every seed (:func:`fmbench.scores.pooled_relative`); ``seed_spread`` the standard deviation, range and count over seeds of
    every score.  A single entry is returned as it is, with ``seed_spread`` empty."""
    members = sorted(members, key=lambda e: e["model"]["training"].get("seed") or 0)
    if len(members) == 1:
        return {**members[0], "seed_spread": {}, "seeds": [members[0]["model"]["training"].get("seed")]}
    base = members[0]
    pooled_scores: dict[str, Any] = dict(base.get("scores") or {})
    spread: dict[str, Any] = {}
    for key in SPREAD_KEYS:
        values = [v for e in members if (v := _score(e, key)) is not None]
        if len(values) < 2:
            continue
        arr = np.asarray(values, float)
        spread[key] = {"sd": float(arr.std(ddof=1)), "min": float(arr.min()), "max": float(arr.max()),
                       "n": int(arr.size)}
        got = [scores.per_image(e, key) for e in members]
        per = [p for p in got if p is not None]
        same_images = all(e["per_image"]["ids"] == base["per_image"]["ids"] for e in members)
        if key in scores.RELATIVE_SCORES and same_images:
            pooled_scores[key] = scores.pooled_relative(members, key)
        elif same_images and len(per) == len(members) and all(p.shape == per[0].shape for p in per):
            mean_img = np.mean(np.stack(per), axis=0)
            pooled_scores[key] = {"value": float(np.nanmean(mean_img)),
                                  "ci95": scores.interval(mean_img, scores.resamples(mean_img.size))}
        else:
            pooled_scores[key] = {"value": float(arr.mean()), "ci95": None}
    same = all(e["per_image"]["ids"] == base["per_image"]["ids"] for e in members)
    pooled_scores["families"] = {f: _pooled_family(members, f, block, same)
                                 for f, block in (base.get("scores") or {}).get("families", {}).items()}
    pinned = {"_pinned": False} if any(e.get("_pinned") is False for e in members) else {}
    return {**base, **pinned, "scores": pooled_scores, "summary": mean_of([e["summary"] for e in members]),
            "seed_spread": spread,
            "seeds": [e["model"]["training"].get("seed") for e in members], "members": members}


def _pooled_family(members: list[dict[str, Any]], family: str, block: dict[str, Any], same: bool) -> dict[str, Any]:
    """A family's block for pooled seeds: its mean IoU over the family's conditions and (where it
    has attacks at the headline budget) its per-image worst case there, each the mean over the
    images of the per-image seed mean, with its interval -- as the headline scores are pooled."""
    out: dict[str, Any] = {"kind": block.get("kind")}
    for sub in ("iou", "headline_iou"):
        if sub not in block:
            continue
        got = [scores.family_per_image(e, family, headline=sub == "headline_iou") for e in members]
        per = [p for p in got if p is not None]
        if not same or len(per) != len(got) or len({p.shape for p in per}) != 1:
            out[sub] = {"value": float(np.mean([(e["scores"]["families"][family].get(sub) or {}).get("value", np.nan)
                                                for e in members])), "ci95": None}
            continue
        mean_img = np.mean(np.stack(per), axis=0)
        out[sub] = {"value": float(np.mean(mean_img)), "ci95": scores.interval(mean_img, scores.resamples(mean_img.size))}
    return out


def mean_of(docs: list[Any]) -> Any:
    """The mean of numbers at the same place in every document (a summary of each seed); where
    the documents disagree on anything else, the first's value."""
    first = docs[0]
    if isinstance(first, bool) or first is None:
        return first
    if isinstance(first, (int, float)):
        vals = [d for d in docs if isinstance(d, (int, float)) and not isinstance(d, bool)]
        return float(np.mean(vals)) if len(vals) == len(docs) else None
    if isinstance(first, dict):
        return {k: mean_of([d.get(k) if isinstance(d, dict) else None for d in docs]) for k in first}
    return first


def label_noise_of(entry: dict[str, Any]) -> str:
    """An entry's training label-noise setting ("" for exact labels)."""
    return ((entry.get("model") or {}).get("training") or {}).get("label_noise") or ""


def row_label(entry: dict[str, Any]) -> str:
    """A row's model label: ``unet-r18 (3 seeds)`` for pooled seeds, else the entry's label."""
    if entry.get("members"):
        return f"{model_label(entry, seed=False)} ({len(entry['members'])} seeds)"
    return model_label(entry)


def spread_flags(units: list[dict[str, Any]], key: str, typical: dict[str, tuple[float, str]]) -> dict[str, list]:
    """``inside-seed-spread`` on a row whose lead over the next row (by ``key``) is smaller than
    the seed noise of the two: ``sqrt(sd_a^2 + sd_b^2)`` with each row's own seed standard
    deviation, or, for a row with one seed, the typical one (the median over the rows with
    several seeds under the same protocol; where it was measured is said)."""
    out: dict[str, list] = {}
    for a, b in zip(units, units[1:]):
        va, vb = _score(a, key), _score(b, key)
        if va is None or vb is None:
            continue
        sds, where = [], []
        for u in (a, b):
            own = u["seed_spread"].get(key)
            if own:  # a row of n seeds is their mean: its own spread is sd / sqrt(n)
                sds.append(own["sd"] / np.sqrt(own["n"]))
                where.append(f"{row_label(u)}")
            elif key in typical:
                sds.append(typical[key][0])
                where.append(f"{row_label(u)}: one seed, typical spread {typical[key][1]}")
        if len(sds) < 2:
            continue
        noise = float(np.hypot(*sds))
        if va - vb < noise:
            out.setdefault(row_label(a), []).append({"flag": "inside-seed-spread", "reason": (
                f"its {key.replace('_', ' ')} lead over {row_label(b)} ({va - vb:.3f}) is inside the "
                f"seed-to-seed spread of the two ({noise:.3f}; {'; '.join(where)}): the order of these rows is "
                f"not a property of their architectures")})
    return out


def typical_spreads(units: list[dict[str, Any]]) -> dict[str, tuple[float, str]]:
    """Per score: the median seed standard deviation over ``units`` with several seeds, and
    where it was measured (``0.031, median of 11 architectures on nucleus@2``)."""
    out = {}
    # a spread rests on rows whose every seed a registry pins: a contributor's "seeds" could be one
    # training made to look like several, and would set the noise other rows are read against
    units = [u for u in units if all(m.get("_pinned") is not False for m in u.get("members") or [u])]
    for key in SPREAD_KEYS:
        sds = [(u["seed_spread"][key]["sd"], u["dataset"]["ref"]) for u in units if key in u["seed_spread"]]
        if sds:
            where = ", ".join(sorted({d for _, d in sds}))
            out[key] = (float(np.median([s for s, _ in sds])),
                        f"{np.median([s for s, _ in sds]):.3f}, median of {len(sds)} architectures on {where}")
    return out


def groups(entries: list[dict[str, Any]], sort: str = "robust",
           baselines: dict[tuple[str, str], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Entries grouped by (protocol hash, dataset), each group ranked by ``sort`` (higher
    first, missing scores last), with every entry's flags and the group's baselines.  Groups
    are never merged.  The seeds of one architecture are pooled into one row
    (:func:`pool_seeds`), and a row whose lead is inside the seed spread is flagged."""
    key = SORT_KEYS[sort]
    by: dict[tuple[str, str, str], list] = {}
    for e in entries:  # a model trained on noisy labels ranks only in its own track
        by.setdefault((e["protocol"]["hash"], e["dataset"]["ref"], label_noise_of(e)), []).append(e)
    pooled: dict[tuple[str, str, str], list] = {}
    for gk, es in by.items():
        arch: dict[str, list] = {}
        for e in es:
            arch.setdefault(model_label(e, seed=False), []).append(e)
        pooled[gk] = [pool_seeds(m) for m in arch.values()]
    typical_by_protocol = {h: typical_spreads([u for (h2, _, n), us in pooled.items() if h2 == h and not n for u in us])
                           for h, _, _ in pooled}  # (compare.protocol_typical: the same, for one protocol)
    out = []
    def order(kv: tuple) -> tuple:  # each tier's newest version first, then by dataset
        p = kv[1][0]["protocol"]
        return (str(p.get("name", "")), -int(p.get("version") or 0), p["id"], kv[0][1], kv[0][2], kv[0][0])

    for (h, ds, noise), es in sorted(pooled.items(), key=order):
        es = sorted(es, key=lambda e: (_score(e, key) is None, -(_score(e, key) or 0.0), row_label(e)))
        cleans = [(c, row_label(e)) for e in es if (c := _score(e, "clean_iou")) is not None]
        best = max(cleans) if cleans else None
        fl = {row_label(e): flags(e, best, (baselines or {}).get((h, ds))) for e in es}
        for label, more in spread_flags(es, key, typical_by_protocol[h]).items():
            fl[label] = fl.get(label, []) + more
        out.append({"protocol_id": es[0]["protocol"]["id"], "protocol_hash": h, "dataset": ds, "sort": sort,
                    "entries": es, "flags": fl, "baselines": (baselines or {}).get((h, ds)), "label_noise": noise})
    return out


def rows(group: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per entry: rank, model, the three headline scores and the study's two ratios
    (each ``{"value", "ci95"}``), flags, images, weights (a pooled row: each seed's weights hash,
    space-separated in the order of its ``seeds``)."""
    out = []
    for rank, e in enumerate(group["entries"], 1):
        label = row_label(e)
        row: dict[str, Any] = {"rank": rank, "model": label, "dataset": e["dataset"]["ref"],
                               "protocol": e["protocol"]["id"], "protocol_hash": e["protocol"]["hash"]}
        for key in (*scores.HEADLINE_SCORES, *scores.RELATIVE_SCORES):
            row[key] = score_block(e, key)
        row["flags"] = [f["flag"] for f in group["flags"].get(label, [])]
        row["n_images"] = e["dataset"]["n_images"]
        row["weights_sha256"] = e["model"].get("weights_sha256") if not e.get("members") else \
            " ".join(str(m["model"].get("weights_sha256")) for m in e["members"])  # one per seed, in `seeds` order
        row["seeds"] = e.get("seeds") or [e["model"]["training"].get("seed")]
        row["seed_spread"] = e.get("seed_spread") or {}
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
