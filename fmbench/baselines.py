"""Trivial and classical baselines, measured on exactly the inputs a model sees.

* ``all-foreground`` and ``all-background``: what a network that learned nothing scores;
* ``otsu``: a classical, non-learned segmenter -- Otsu's threshold (1979) on the normalised
  input of each image, foreground above it.

They are scored at the reference condition and under every corruption (not under attack: an
attack needs the model's gradients, and these have none to follow).  A run records them on its
own images (``result["baselines"]``); for the leaderboard, ``fmbench leaderboard baselines``
writes one file per protocol and dataset into ``leaderboard/baselines/``.  A model whose
clean IoU does not clearly beat the best trivial one is flagged ``degenerate``
(:func:`fmbench.scores.degenerate`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from . import scores
from .metrics import iou_dice, overlap_counts

BINS = 256


def otsu(x: torch.Tensor) -> torch.Tensor:
    """Foreground ``(B, H, W)`` bool of ``(B, 1, H, W)`` inputs in [0, 1]: per image, pixels
    above the threshold that maximises the between-class variance of a 256-bin histogram."""
    flat = x.flatten(1).clamp(0, 1)
    bins = (flat * (BINS - 1)).round().long()
    hist = torch.zeros(flat.shape[0], BINS, dtype=torch.float64, device=x.device)
    hist.scatter_add_(1, bins, torch.ones_like(flat, dtype=torch.float64))
    p = hist / hist.sum(1, keepdim=True)
    levels = torch.arange(BINS, dtype=torch.float64, device=x.device)
    w0 = p.cumsum(1)
    mu = (p * levels).cumsum(1)
    mu_t = mu[:, -1:]
    with torch.no_grad():
        between = (mu_t * w0 - mu) ** 2 / (w0 * (1 - w0)).clamp_min(1e-12)
    t = between.argmax(1)  # class 0 is bins <= t
    return (bins > t[:, None]).reshape(x.shape[0], *x.shape[2:])


PREDICTORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "all-foreground": lambda x: torch.ones(x.shape[0], *x.shape[2:], dtype=torch.bool, device=x.device),
    "all-background": lambda x: torch.zeros(x.shape[0], *x.shape[2:], dtype=torch.bool, device=x.device),
    "otsu": otsu,
}


def counts(x: torch.Tensor, target: torch.Tensor) -> dict[str, dict[str, list[int]]]:
    """Per baseline, the overlap counts of its prediction on inputs ``x`` (a chunk record's
    ``baselines`` field)."""
    out = {}
    for name, predict in PREDICTORS.items():
        c = overlap_counts(predict(x), target)
        out[name] = {k: c[k].tolist() for k in ("inter", "union", "pred", "true")}
    return out


def assemble(conditions: list[Any], records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``{baseline: {"iou": {condition id: per-image IoU}}}`` from the chunk records (sorted by
    batch), for the conditions that recorded baselines; ``None`` when none did (a log written
    before baselines existed)."""
    out: dict[str, Any] = {}
    for name in PREDICTORS:
        per_cond = {}
        for cond in conditions:
            rs = [r for r in records if r["condition"] == cond.id and "baselines" in r]
            if not rs:
                continue
            c = {k: torch.tensor([v for r in rs for v in r["baselines"][name][k]]) for k in ("inter", "union", "pred", "true")}
            per_cond[cond.id] = iou_dice(c)[0].tolist()
        if per_cond:
            out[name] = {"iou": per_cond}
    return out or None


def summary(baselines: dict[str, Any] | None, conditions: list[dict[str, Any]]) -> dict[str, Any]:
    """Each baseline's clean IoU and corrupted IoU (means over images)."""
    out: dict[str, Any] = {}
    if not baselines:
        return out
    ref = next(c["id"] for c in conditions if c["kind"] == "reference")
    corr = [c["id"] for c in conditions if c["kind"] == "corruption"]
    for name, block in (baselines or {}).items():
        iou = block["iou"]
        n = len(iou[ref])
        per_image = [math.fsum(iou[c][i] for c in corr) / len(corr) for i in range(n)] if corr else []
        out[name] = {"clean_iou": math.fsum(iou[ref]) / n,
                     "corrupted_iou": math.fsum(per_image) / n if per_image else None}
    return out


CLASSICAL = "otsu"  # the non-learned segmenter a network must beat (flag ``below-classical``)


def classical_per_image(per_cond: Mapping[str, Sequence[float]], conditions: Sequence[Mapping[str, Any]]
                        ) -> dict[str, np.ndarray]:
    """A baseline's per-image ``clean_iou`` and ``corrupted_iou`` (each image's mean over the
    corruptions), as :func:`fmbench.scores.per_image` gives a model's, from its per-image IoU by
    condition id."""
    ref = [c["id"] for c in conditions if c["kind"] == "reference"]
    corr = [c["id"] for c in conditions if c["kind"] == "corruption"]
    out = {}
    if ref and ref[0] in per_cond:
        out["clean_iou"] = np.asarray(per_cond[ref[0]], float)
    if corr and all(c in per_cond for c in corr):
        out["corrupted_iou"] = np.mean([per_cond[c] for c in corr], axis=0)
    return out


def classical_flag(doc: Mapping[str, Any]) -> dict[str, str] | None:
    """``below-classical`` for a result whose clean or corrupted IoU is below that of Otsu's
    threshold on its own images (:func:`fmbench.scores.below_classical`), else ``None``."""
    block = (doc.get("baselines") or {}).get(CLASSICAL)
    if not block:
        return None
    mine = {k: scores.per_image(doc, k) for k in ("clean_iou", "corrupted_iou")}
    reason = scores.below_classical(mine, classical_per_image(block["iou"], doc["conditions"]))
    return {"flag": "below-classical", "reason": reason} if reason else None


BASELINES_KIND = "fmbench-baselines"


def measure(dataset: Any, dataset_ref: str, protocol: Any, registry: Any, *, device: Any = "cpu",
            batch_size: int = 8, n_images: int | None = None) -> dict[str, Any]:
    """A baselines document: every baseline at the reference condition and under every
    corruption of ``protocol`` (its attacks are not run), on the protocol's first images of
    ``dataset``, each input made by the same condition objects the engine runs."""
    from . import __version__
    from .conditions import BatchInputs, RunContext, plan
    from .data import iter_batches

    dev = torch.device(device)
    conds = [c for c in plan(protocol, registry, synthetic=bool(dataset.synthetic)) if c.kind != "attack"]
    run = RunContext(model=None, corruptions={e.name: registry.build_corruption(e.name) for e in protocol.corruptions},
                     attacks={})
    n = min(n_images or protocol.n_images, protocol.n_images, len(dataset))
    records: list[dict[str, Any]] = []
    ids: list[str] = []
    for batch in iter_batches(dataset, n, batch_size):
        key = getattr(dataset, "seed_name", None) or dataset_ref
        inputs = BatchInputs(batch.image.to(dev), batch.mask.to(dev), [f"{key}/{i}" for i in batch.ids],
                             protocol, bool(dataset.synthetic))
        ids += batch.ids
        for cond in conds:
            applied = cond.apply(inputs, run)
            assert applied.input is not None  # the reference and corruptions always make an input
            records.append({"batch": batch.index, "condition": cond.id, "baselines": counts(applied.input, applied.target)})
    per_image = assemble(conds, records) or {}
    cond_docs = [{"id": c.id, "kind": c.kind, "name": c.name, "family": c.family, "level": c.level, "label": c.label}
                 for c in conds]
    return {
        "schema_version": 1,
        "kind": BASELINES_KIND,
        "fmbench_version": __version__,
        "protocol": {"id": protocol.id, "name": protocol.name, "version": protocol.version, "hash": protocol.hash},
        "dataset": {"ref": dataset_ref, "split": protocol.split, "synthetic": bool(dataset.synthetic), "n_images": len(ids)},
        "conditions": cond_docs,
        "per_image": {"ids": ids, "iou": {name: block["iou"] for name, block in per_image.items()}},
        "summary": summary(per_image, cond_docs),
    }


def check(doc: dict[str, Any]) -> list[str]:
    """Problems with a baselines document: its summary against its per-image IoU, list lengths
    and values."""
    wrong = [f"{k} is not {t}" for k, t in (("protocol", "an object"), ("dataset", "an object"), ("per_image", "an object"),
                                         ("summary", "an object"), ("conditions", "a list"))
             if not isinstance(doc.get(k), list if t == "a list" else dict)]
    if not wrong:
        pi, summ = doc["per_image"], doc["summary"]
        wrong += [f"{k} is not a string" for k, v in (("protocol.hash", doc["protocol"].get("hash")),
                                                       ("dataset.ref", doc["dataset"].get("ref"))) if not isinstance(v, str)]
        wrong += [] if isinstance(pi.get("ids"), list) else ["per_image.ids is not a list"]
        iou_ok = isinstance(pi.get("iou"), dict) and all(isinstance(c, dict) and all(isinstance(v, list) for v in c.values())
                                                         for c in pi["iou"].values())
        wrong += [] if iou_ok else ["per_image.iou is not {baseline: {condition: [values]}}"]
        wrong += [f"summary.{k} is not an object" for k, v in summ.items() if not isinstance(v, dict)]
    if wrong:
        return [f"not a baselines document: {'; '.join(wrong)}"]
    problems = []
    try:
        ids = doc["per_image"]["ids"]
        iou = doc["per_image"]["iou"]
        for name, per_cond in iou.items():
            for cid, values in per_cond.items():
                if len(values) != len(ids):
                    problems.append(f"{name} {cid}: {len(values)} values for {len(ids)} images")
                elif not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in values):
                    problems.append(f"{name} {cid}: per-image IoU outside [0, 1]")
        if problems:
            return problems
        expected = summary({k: {"iou": v} for k, v in iou.items()}, doc["conditions"])
    except (KeyError, TypeError, AttributeError, StopIteration, ZeroDivisionError) as exc:
        return [f"not a baselines document ({type(exc).__name__}: {exc})"]
    for name, s in expected.items():
        for key, value in s.items():
            found = doc["summary"].get(name, {}).get(key)
            if value is None or found is None:
                if value != found:
                    problems.append(f"summary {name}.{key} is {found!r}, the per-image values give {value!r}")
            elif not math.isclose(value, found, rel_tol=0, abs_tol=1e-9):
                problems.append(f"summary {name}.{key} is {found!r}, the per-image values give {value!r}")
    return problems
