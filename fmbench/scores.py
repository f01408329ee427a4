"""The scores people read: absolute IoU first, the study's ratios beside, each with a 95 %
bootstrap interval over images, and the flags that say when a number should not be read at
face value.  docs/metrics.md explains each one with a worked example.

* ``clean_iou``: mean per-image IoU at the reference condition.
* ``corrupted_iou``: mean over images of each image's mean IoU over every corruption condition.
* ``robust_iou``: mean over images of each image's *lowest* IoU over every attack condition at
  the headline budget (8/255 L-inf unless the protocol says otherwise): the worst case per
  image, as RobustBench's robust accuracy is.
* ``corruption_robustness`` / ``adversarial_robustness`` (relative, the study's): per image
  IoU under a condition divided by IoU at the reference, averaged over images, conditions and
  families.  A model that fails at the reference has little left to lose, so these reward
  failure; they are never the headline, and rank only on request.

Every score is recomputed from the per-image IoU lists (never trusted as written); the same
function serves results, entries, ``compare`` and the README.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

N_BOOT = 2000
BOOT_SEED = 0
HEADLINE_NORM, HEADLINE_EPS = "linf", 8 / 255
# a result whose clean IoU beats the best trivial baseline (all foreground, all background) by
# less than this, or whose paired 95 % interval of the difference reaches 0, is degenerate
DEGENERATE_MARGIN = 0.05
# an entry whose clean IoU is more than this below the best entry of its table is undertrained
UNDERTRAINED_GAP = 0.05
HEADLINE_SCORES = ("robust_iou", "corrupted_iou", "clean_iou")
RELATIVE_SCORES = ("adversarial_robustness", "corruption_robustness")
TRIVIAL = ("all-foreground", "all-background")


@dataclass(frozen=True)
class Headline:
    """The attack budget whose per-image worst case is ``robust_iou``."""

    norm: str = HEADLINE_NORM
    eps: float = HEADLINE_EPS

    def matches(self, cond: Mapping[str, Any]) -> bool:
        return (cond["kind"] == "attack" and (cond.get("norm") or "linf") == self.norm
                and math.isclose(float(cond["level"]), self.eps, rel_tol=1e-9, abs_tol=1e-12))

    def label(self) -> str:
        k = self.eps * 255
        return f"{round(k)}/255" if self.norm == "linf" and abs(k - round(k)) < 1e-6 else f"{self.eps:g} ({self.norm})"


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def interval(values: np.ndarray, idx: np.ndarray) -> list[float]:
    """Percentile 95 % bootstrap interval of the mean of per-image ``values`` over the
    resamples ``idx`` ``(B, N)``; NaN resamples (no valid image) are skipped."""
    boots = np.nanmean(values[idx], axis=1) if np.isnan(values).any() else values[idx].mean(axis=1)
    boots = boots[~np.isnan(boots)]
    if boots.size == 0:
        return [math.nan, math.nan]
    return [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))]


def resamples(n: int, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> np.ndarray:
    """The bootstrap resamples of ``n`` images ``(n_boot, n)``, fixed by the seed."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _score(value: float | None, ci: list[float] | None) -> dict[str, Any]:
    if value is None or ci is None or any(math.isnan(c) for c in ci):
        return {"value": value, "ci95": None}
    return {"value": value, "ci95": [round(ci[0], 6), round(ci[1], 6)]}


def _relative(rows: dict[str, np.ndarray], ref: np.ndarray, families: dict[str, list[str]],
              idx: np.ndarray | None) -> np.ndarray:
    """The study's relative robustness over families (mean of family means of condition means
    of per-image ratios, images with reference IoU 0 left out), for the full set (``idx``
    None: a 0-d array) or per resample ``(B,)``."""
    fam_means = []
    for conds in families.values():
        cond_means = []
        for cid in conds:
            v, r = rows[cid], ref
            if idx is not None:
                v, r = v[idx], r[idx]
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.where(r > 0, v / np.where(r > 0, r, 1.0), np.nan)
            cond_means.append(_nanmean_last(ratio))
        fam_means.append(_nanmean_stack(cond_means))
    return _nanmean_stack(fam_means)


def _nanmean_last(a: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(a)
    total = np.where(ok, a, 0.0).sum(axis=-1)
    count = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _nanmean_stack(parts: list[np.ndarray]) -> np.ndarray:
    return _nanmean_last(np.stack(parts, axis=-1)) if parts else np.array(np.nan)


def compute(conditions: Sequence[Mapping[str, Any]], iou: Mapping[str, Sequence[float]],
            headline: Headline = Headline(), n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> dict[str, Any]:
    """The score block of a result or entry from its conditions and per-image IoU lists."""
    ref_id = next(c["id"] for c in conditions if c["kind"] == "reference")
    rows = {c["id"]: np.asarray(iou[c["id"]], dtype=float) for c in conditions}
    ref = rows[ref_id]
    n = ref.size
    idx = resamples(n, n_boot, seed)
    corr = [c["id"] for c in conditions if c["kind"] == "corruption"]
    top = [c["id"] for c in conditions if headline.matches(c)]
    out: dict[str, Any] = {
        "method": f"mean over images; 95 % percentile bootstrap interval over images ({n_boot} resamples, seed {seed})",
        "n_images": n,
        "headline": {"norm": headline.norm, "eps": headline.eps, "label": headline.label(), "conditions": top},
        "clean_iou": _score(_mean(iou[ref_id]), interval(ref, idx)),
    }
    corrupted = np.mean([rows[c] for c in corr], axis=0) if corr else None
    out["corrupted_iou"] = _score(_mean(corrupted.tolist()), interval(corrupted, idx)) if corrupted is not None \
        else _score(None, None)
    robust = np.min([rows[c] for c in top], axis=0) if top else None
    out["robust_iou"] = _score(_mean(robust.tolist()), interval(robust, idx)) if robust is not None \
        else _score(None, None)
    for name, kind in (("corruption_robustness", "corruption"), ("adversarial_robustness", "attack")):
        fams: dict[str, list[str]] = {}
        for c in conditions:
            if c["kind"] == kind:
                fams.setdefault(c["family"], []).append(c["id"])
        if not fams:
            out[name] = _score(None, None)
            continue
        value = float(_relative(rows, ref, fams, None))
        boots = _relative(rows, ref, fams, idx)
        boots = boots[~np.isnan(boots)]
        # (a ratio needs a reference IoU above 0: with one such image every resample is that image)
        ci = [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))] \
            if boots.size and int((ref > 0).sum()) >= 2 else None
        out[name] = _score(None if math.isnan(value) else value, ci)
    families: dict[str, Any] = {}
    for c in conditions:
        if c["kind"] != "reference":
            families.setdefault(c["family"], {"kind": c["kind"], "ids": []})["ids"].append(c["id"])
    out["families"] = {}
    for fam, info in families.items():
        per_image = np.mean([rows[c] for c in info["ids"]], axis=0)
        block: dict[str, Any] = {"kind": info["kind"], "iou": _score(_mean(per_image.tolist()), interval(per_image, idx))}
        at_top = [c for c in info["ids"] if c in top]
        if at_top:
            worst = np.min([rows[c] for c in at_top], axis=0)
            block["headline_iou"] = _score(_mean(worst.tolist()), interval(worst, idx))
        out["families"][fam] = block
    return out if n >= 2 else _without_intervals(out)


def _without_intervals(doc: Any) -> Any:
    """One image has no interval (every resample is that image: ``[v, v]`` would read as certainty)."""
    if isinstance(doc, dict):
        return {k: None if k == "ci95" else _without_intervals(v) for k, v in doc.items()}
    return doc


def pooled_relative(members: Sequence[Mapping[str, Any]], key: str, n_boot: int = N_BOOT,
                    seed: int = BOOT_SEED) -> dict[str, Any]:
    """The mean over training seeds (``members``, scored on the same images) of a relative score
    (``corruption_robustness`` or ``adversarial_robustness``), with its 95 % interval: each
    bootstrap resample of the images is applied to every seed, and the seeds' values averaged."""
    kind = "corruption" if key == "corruption_robustness" else "attack"
    values, boots = [], []
    for m in members:
        rows = {c["id"]: np.asarray(m["per_image"]["iou"][c["id"]], float) for c in m["conditions"]}
        ref = rows[next(c["id"] for c in m["conditions"] if c["kind"] == "reference")]
        fams: dict[str, list[str]] = {}
        for c in m["conditions"]:
            if c["kind"] == kind:
                fams.setdefault(c["family"], []).append(c["id"])
        if not fams:
            return _score(None, None)
        values.append(float(_relative(rows, ref, fams, None)))
        boots.append(_relative(rows, ref, fams, resamples(ref.size, n_boot, seed)))
    mean = _nanmean_stack(boots)
    mean = mean[~np.isnan(mean)]
    ci = [float(np.percentile(mean, 2.5)), float(np.percentile(mean, 97.5))] if mean.size else None
    value = float(np.mean(values))
    return _score(None if math.isnan(value) else value, ci)


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, n_boot: int = N_BOOT,
                      seed: int = BOOT_SEED) -> dict[str, Any]:
    """Mean of ``a - b`` over the same images with its 95 % bootstrap interval, and whether
    that interval includes 0 (the difference is inside the noise of these images)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    ci = interval(d, resamples(d.size, n_boot, seed))
    return {"diff": float(d.mean()), "ci95": ci, "within_noise": bool(ci[0] <= 0 <= ci[1])}


def degenerate(clean: Sequence[float], baselines: Mapping[str, Sequence[float]]) -> str | None:
    """Why a model's per-image clean IoU does not clearly beat the best trivial baseline
    (all foreground, all background) on the same images, or ``None`` when it does: the mean
    margin must be at least ``DEGENERATE_MARGIN`` and its paired 95 % interval above 0."""
    trivial = {k: v for k, v in baselines.items() if k in TRIVIAL}
    if not trivial:
        return None
    name, best = max(trivial.items(), key=lambda kv: _mean(kv[1]))
    diff = paired_difference(clean, best)
    if diff["diff"] < DEGENERATE_MARGIN or diff["ci95"][0] <= 0:
        return (f"clean IoU {_mean(clean):.3f} does not clearly beat the trivial baseline {name} "
                f"({_mean(best):.3f}): margin {diff['diff']:+.3f} [{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}], "
                f"needs ≥ {DEGENERATE_MARGIN} with its interval above 0")
    return None


def below_classical(model: Mapping[str, np.ndarray | None], classical: Mapping[str, np.ndarray | None],
                    name: str = "Otsu's threshold") -> str | None:
    """Why a model does worse than a non-learned segmenter on the same images, or ``None``:
    for each score given in both (``clean_iou``, ``corrupted_iou``: per-image values in one
    image order), the paired difference's 95 % interval lies below 0 (a difference inside the
    images' noise is no claim).  A network that a threshold beats has not learned to segment
    these images, and its robustness says little about learned segmentation."""
    parts = []
    for key, text in (("clean_iou", "clean IoU"), ("corrupted_iou", "corrupted IoU")):
        a, b = model.get(key), classical.get(key)
        if a is None or b is None or len(a) != len(b) or not len(a):
            continue
        d = paired_difference(a, b)
        if d["ci95"][1] < 0:  # below it on these images: the whole interval, as for `degenerate`
            parts.append(f"{text} {np.mean(a):.3f} against {np.mean(b):.3f} (paired difference {d['diff']:+.3f} "
                         f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}])")
    if not parts:
        return None
    if parts[0].startswith("clean"):
        what = "A non-learned segmenter does better here, so its robustness says little about learned segmentation"
    else:
        what = "Under corruption a non-learned segmenter does better: the network keeps no advantage over it there"
    return f"below {name} on the same images: {'; '.join(parts)}. {what}"


def undertrained(clean: float, best: float, best_label: str) -> str | None:
    """Why an entry's clean IoU is too far below the best entry of its table to read its
    robustness as a property of its architecture, or ``None``."""
    if best - clean > UNDERTRAINED_GAP:
        return (f"clean IoU {clean:.3f} is {best - clean:.3f} below the best on this dataset ({best_label} "
                f"{best:.3f}; the limit is {UNDERTRAINED_GAP}): its robustness measures an undertrained model")
    return None


def fmt(score: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``0.683 [0.640, 0.720]``; ``—`` for a score that does not exist."""
    if not score or score.get("value") is None:
        return "—"
    v = f"{score['value']:.{digits}f}"
    ci = score.get("ci95")
    return v if not ci else f"{v} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def per_image(entry: Mapping[str, Any], key: str) -> np.ndarray | None:
    """The per-image values behind an absolute score of a result or entry (``clean_iou``,
    ``corrupted_iou``, ``robust_iou``, or a family's IoU), in the order of its image ids;
    ``None`` for a relative score (a ratio of means has no per-image value).  For a row that
    pools several training seeds (``members``), each image's mean over the seeds."""
    if entry.get("members"):
        if any(m["per_image"]["ids"] != entry["members"][0]["per_image"]["ids"] for m in entry["members"]):
            return None  # seeds scored on other images have no per-image mean
        got = [per_image(m, key) for m in entry["members"]]
        ok = [g for g in got if g is not None]
        return np.mean(ok, axis=0) if ok and len(ok) == len(got) and len({g.shape for g in ok}) == 1 else None
    conds = entry["conditions"]
    iou = entry["per_image"]["iou"]
    head = entry.get("scores", {}).get("headline") or {}
    top = set(head.get("conditions", []))
    if key == "clean_iou":
        ids = [c["id"] for c in conds if c["kind"] == "reference"]
        return np.asarray(iou[ids[0]], float)
    if key == "corrupted_iou":
        ids = [c["id"] for c in conds if c["kind"] == "corruption"]
        return np.mean([iou[c] for c in ids], axis=0) if ids else None
    if key == "robust_iou":
        return np.min([iou[c] for c in top], axis=0) if top else None
    worst = family_per_image(entry, key, headline=True)
    return worst if worst is not None else family_per_image(entry, key, headline=False)


def family_per_image(entry: Mapping[str, Any], family: str, headline: bool = False) -> np.ndarray | None:
    """A family's per-image values in one result or entry: the mean IoU over its conditions, or
    with ``headline`` the worst case over its conditions at the headline budget; ``None`` where
    it has no such condition."""
    iou = entry["per_image"]["iou"]
    ids = [c["id"] for c in entry["conditions"] if c["family"] == family and c["kind"] != "reference"]
    if headline:
        top = set((entry.get("scores", {}).get("headline") or {}).get("conditions", []))
        ids = [c for c in ids if c in top]
    if not ids:
        return None
    return (np.min if headline else np.mean)([iou[c] for c in ids], axis=0)
