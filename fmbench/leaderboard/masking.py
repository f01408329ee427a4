"""Gradient-masking checks of adversarially trained entries, and their flags in the tables.

An adversarially trained model (``pgd-at``) is scored by attacks on its own input gradient; if
training only made that gradient useless to the attacker (Athalye, Carlini & Wagner 2018), its
adversarial scores overstate its robustness.  ``benchmarks/gradient_masking.py`` runs the checks
the protocol's self-checks cannot afford on every entry (transfer attacks from other models, a
budget rising to 1, a stronger white-box attack) and records them, per checkpoint (state sha256),
in ``DIR/checks/gradient-masking.json``.  The tables then flag an adversarially trained row:

- ``masking-unchecked`` -- no check of its weights on its images is on record (or the record
  does not match the entry): read its adversarial scores as an upper bound;
- ``gradient-masking`` -- the check found a sign of masking (its reason says which):
  transfer attacks beat the white-box ones, IoU stays above 0.05 at budget 1 or rises with the
  budget, or a stronger white-box attack lowers the defended model significantly more than the
  same architecture undefended (the protocol's attacks then favour the defence).

A record is a contributor's claim like an entry, so its words are never read: it holds the
per-image IoUs it measured, and every comparison and verdict is computed here from them and from
the entries' own per-image IoUs (``measure``).  It clears only the weights it names (by hash), on
the dataset, protocol and all the images it ran on, and only if its clean IoUs are the entry's
(the same inputs); its summary numbers must be the means of its per-image ones.  The per-image
IoUs themselves are its contributor's measurements: ``benchmarks/gradient_masking.py --recheck``
re-measures clean IoUs, the white-box attack, the budget sweep and (where the record keeps each
attack's per-image IoUs) one transfer attack on a few images; what it does not re-run (the other
images, the other transfer attacks, the undefended baseline) rests on the contributor's word, as
an unpinned entry's numbers do.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import ResultError
from ..files import read_json
from ..scores import paired_difference, per_image

KIND = "fmbench-gradient-masking-check"
FILE = Path("checks") / "gradient-masking.json"
ADVERSARIAL_DEFENSES = ("pgd-at",)
UNBOUNDED_IOU = 0.05  # at budget 1 (the largest of the sweep) the IoU must fall below this
UNBOUNDED = "255/255"
SAME = 1e-6  # the same inputs give the same clean IoUs (checked by the script when it ran)
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _iou(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1


def _series(v: Any, n: int) -> bool:
    return isinstance(v, list) and len(v) == n and all(_iou(x) for x in v)


_BUDGET = re.compile(r"[0-9]{1,3}/[1-9][0-9]{0,3}")
SWEEP = ("8/255", "16/255", "32/255", "64/255", "128/255", UNBOUNDED)  # the budgets a record must hold
# the APGD losses of the sweep (per image the lowest IoU); a record without settings.sweep_losses
# was made with cross-entropy alone, which can stall at the foreground share (all pixels foreground)
SWEEP_LOSSES = ("ce", "masked-ce", "to-background")


def sweep_losses(rec: Mapping[str, Any]) -> list[str]:
    return list(rec["settings"].get("sweep_losses", ["ce"]))


def _budget(key: str) -> float:
    num, _, den = key.partition("/")
    return float(num) / float(den)


def _per_image_problem(pi: Any, n: int, sweep: Mapping[str, Any], what: str = "") -> str | None:
    if not isinstance(pi, dict) or not isinstance(pi.get("ids"), list) or len(pi["ids"]) != n \
            or not all(isinstance(i, str) for i in pi["ids"]) or len(set(pi["ids"])) != n:
        return f"{what}per_image needs the ids of its n_images images"
    for key in ("clean", "white_box", *(() if what else ("transfer",))):
        if not _series(pi.get(key), n):
            return f"{what}per_image.{key} must hold one IoU in [0, 1] per image"
    if not what and (not isinstance(pi.get("sweep"), dict) or list(pi["sweep"]) != list(sweep)
                     or not all(_series(v, n) for v in pi["sweep"].values())):
        return "per_image.sweep must hold one IoU per image for each budget of the sweep, in its order"
    return None


def record_problem(rec: Any) -> str | None:
    """What is wrong with one check record, or None: every field the tables read is there and
    well-formed, and its summary numbers are the means of its per-image IoUs."""
    if not isinstance(rec, dict) or not _HEX64.fullmatch(str(rec.get("state_sha256", ""))):
        return "needs the checked weights' state_sha256 (64 hex digits)"
    for key in ("dataset", "tier"):
        if not isinstance(rec.get(key), str) or not rec[key]:
            return f"needs the {key} the check ran on"
    n = rec.get("n_images")
    if type(n) is not int or n < 1:
        return "n_images must be a positive integer"
    sweep = rec.get("sweep")
    if not isinstance(sweep, dict) or UNBOUNDED not in sweep or not all(_iou(v) for v in sweep.values()):
        return f"sweep must map budgets, up to {UNBOUNDED}, to IoUs in [0, 1]"
    if not all(isinstance(k, str) and _BUDGET.fullmatch(k) for k in sweep):
        return "sweep's budgets must be written like 16/255"
    if sorted(map(_budget, sweep)) != list(map(_budget, sweep)) or _budget(UNBOUNDED) != max(map(_budget, sweep)):
        return f"sweep's budgets must rise to {UNBOUNDED}"
    if not set(SWEEP) <= set(sweep):
        return f"sweep must hold the budgets {', '.join(SWEEP)} (a shorter sweep cannot show IoU rising with the budget)"
    if not isinstance(rec.get("target"), str) or not rec["target"]:
        return "needs the target it checked (MODEL:WEIGHTS or REF=CHECKPOINT)"
    settings = rec.get("settings")
    if not isinstance(settings, dict) or not all(type(settings.get(k)) is int and settings[k] > 0
                                                 for k in ("steps", "restarts", "sweep_steps")):
        return "settings must give the attacks' steps, restarts and sweep_steps as positive integers"
    losses = settings.get("sweep_losses", ["ce"])
    if not isinstance(losses, list) or not losses or not all(isinstance(v, str) and v in SWEEP_LOSSES for v in losses) \
            or len(set(losses)) != len(losses):
        return f"settings.sweep_losses must list distinct losses of {', '.join(SWEEP_LOSSES)}"
    if not isinstance(rec.get("transfer", {}), dict) or not all(isinstance(v, dict) for v in rec.get("transfer", {}).values()):
        return "transfer must map attacks to their results"
    pi: dict[str, Any] = rec.get("per_image") or {}
    problem = _per_image_problem(pi, n, sweep)
    if problem:
        return problem
    each = [v["per_image"] for v in rec.get("transfer", {}).values() if "per_image" in v]
    if each and (len(each) != len(rec["transfer"]) or not all(_series(v, n) for v in each)
                 or float(np.abs(np.min(each, axis=0) - np.asarray(pi["transfer"])).max()) > 1e-9):
        return "per_image.transfer must be, image by image, the lowest of every transfer attack's per-image IoUs"
    means = {"clean_iou": pi["clean"], "transfer_worst": pi["transfer"],
             **{f"sweep {k}": pi["sweep"][k] for k in sweep}}
    stated = {"clean_iou": rec.get("clean_iou"), "transfer_worst": rec.get("transfer_worst"),
              **{f"sweep {k}": v for k, v in sweep.items()}}
    for key, values in means.items():
        if stated[key] is not None and not (_iou(stated[key]) and abs(stated[key] - float(np.mean(values))) <= SAME):
            return f"{key} is not the mean of its per-image IoUs"
    base: Any = rec.get("baseline")
    if base is not None:
        if not isinstance(base, dict) or not isinstance(base.get("model"), str) \
                or not _HEX64.fullmatch(str(base.get("state_sha256", ""))):
            return "baseline needs its model and its weights' state_sha256"
        problem = _per_image_problem(base.get("per_image"), n, sweep, "baseline.")
        if problem:
            return problem
        if base["per_image"]["ids"] != pi["ids"]:
            return "baseline.per_image must be of the same images"
    return None


def load(directory: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The check records of a leaderboard folder by the state sha256 of the weights they checked
    (``{}`` when the folder has none); a malformed file is an error, never silently ignored."""
    path = Path(directory) / FILE
    if not path.is_file():
        return {}
    doc = read_json(path)  # size, encoding, duplicate keys and depth checked as for entries
    if not isinstance(doc, dict) or doc.get("kind") != KIND or not isinstance(doc.get("records"), list):
        raise ResultError(f"{path}: not a gradient-masking check document (kind {KIND!r} with a list of records)")
    out: dict[str, dict[str, Any]] = {}
    for k, rec in enumerate(doc["records"]):
        problem = record_problem(rec)
        if problem:
            raise ResultError(f"{path}: record {k}: {problem}")
        if rec["state_sha256"] in out:
            raise ResultError(f"{path}: record {k}: a second record of weights {rec['state_sha256'][:12]}...")
        out[rec["state_sha256"]] = rec
    return out


def adversarial_defense(entry: Mapping[str, Any]) -> str | None:
    """The entry's defence when it is adversarial training (its scores then need a check), else None."""
    defense = _defense(entry)
    return defense if defense in ADVERSARIAL_DEFENSES else None


def _defense(entry: Mapping[str, Any]) -> str:
    return str(((entry.get("model") or {}).get("training") or {}).get("defense") or "none")


def record_for(entry: Mapping[str, Any], checks: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The check of the entry's weights on its dataset and protocol, or None: a check on other
    images or another protocol says nothing about this row."""
    rec = checks.get(str((entry.get("model") or {}).get("state_sha256")))
    return rec if rec is not None and _same_table(rec, entry) else None


def _same_table(rec: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    """Whether the record ran on the entry's dataset and protocol."""
    protocol = entry.get("protocol") or {}
    return rec["dataset"] == (entry.get("dataset") or {}).get("ref") and rec["tier"] in (protocol.get("id"),
                                                                                         protocol.get("name"))


def bound(pi: Mapping[str, Any], entry: Mapping[str, Any], what: str) -> tuple[np.ndarray, str | None]:
    """The entry's per-image robust IoU on the record's images, and why the record is not of
    the entry's inputs (or None)."""
    ids = (entry.get("per_image") or {}).get("ids")
    clean, worst = per_image(entry, "clean_iou"), per_image(entry, "robust_iou")
    if ids != pi["ids"] or clean is None or worst is None:
        return np.zeros(0), f"{what} ran on other images than its entry's ({len(pi['ids'])} against {len(ids or [])})"
    gap = float(np.abs(np.asarray(pi["clean"]) - clean).max())
    if gap > SAME:
        return worst, f"{what}'s clean IoUs are {gap:.2g} from its entry's: not the entry's inputs"
    return worst, None


def measure(rec: Mapping[str, Any], entry: Mapping[str, Any],
            base_entry: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every comparison of a check and its verdict, computed from the record's per-image IoUs and
    the entries' (paired 95 % bootstrap intervals over the images): ``{"mismatch": why the record
    is not of this entry, or None, "findings": signs of masking, ...}``."""
    pi = rec["per_image"]
    worst, mismatch = bound(pi, entry, "the check")
    out: dict[str, Any] = {"mismatch": mismatch, "findings": []}
    if mismatch:
        return out
    white = np.minimum(np.asarray(pi["white_box"], float), worst)  # the entry's attacks and APGD, per image
    transfer = np.asarray(pi["transfer"], float)
    sweep = {k: np.asarray(v, float) for k, v in pi["sweep"].items()}
    out.update(entry_worst_case=float(worst.mean()), white_box_worst=float(white.mean()),
               stronger_vs_entry=paired_difference(white, worst), transfer_worst=float(transfer.mean()),
               transfer_vs_white=paired_difference(transfer, white),
               sweep={k: float(v.mean()) for k, v in sweep.items()})
    found = out["findings"]
    tv = out["transfer_vs_white"]
    if tv["ci95"][1] < 0:
        found.append(f"transfer attacks beat the white-box ones by {-tv['diff']:.3f} (masked gradient)")
    if out["sweep"][UNBOUNDED] >= UNBOUNDED_IOU:
        losses = sweep_losses(rec)
        found.append(f"IoU {out['sweep'][UNBOUNDED]:.3f} at budget 1 (should reach ~0: masked gradient)" + (
            "" if "to-background" in losses else f" under APGD with {', '.join(losses)} only: an upper bound, "
            "as the loss can be met without lowering IoU (re-measure with benchmarks/gradient_masking.py --resweep)"))
    keys = sorted(sweep, key=_budget)
    rises = [f"{a} to {b}" for a, b in zip(keys, keys[1:])
             if paired_difference(sweep[b], sweep[a])["ci95"][0] > 0]  # beyond the random starts' noise
    if rises:
        found.append(f"IoU rises with the budget ({', '.join(rises)})")
    sv = out["stronger_vs_entry"]
    out["under_stated"] = bool(sv["ci95"][0] < -0.01 and sv["diff"] < -0.02)
    base = rec.get("baseline")
    if base and base_entry is not None:
        bworst, bmismatch = bound(base["per_image"], base_entry, "the baseline's check")
        out["baseline_mismatch"] = bmismatch
        if not bmismatch:
            bwhite = np.minimum(np.asarray(base["per_image"]["white_box"], float), bworst)
            extra = paired_difference(white - worst, bwhite - bworst)
            out["baseline"] = {"model": base["model"], "entry_worst_case": float(bworst.mean()),
                               "white_box_worst": float(bwhite.mean()),
                               "stronger_vs_entry": paired_difference(bwhite, bworst),
                               "gain_vs_baseline": paired_difference(white, bwhite), "extra_drop": extra}
            if extra["ci95"][1] < 0:
                found.append(f"a stronger white-box attack lowers it {-extra['diff']:.3f} more than the same "
                             f"architecture undefended: the protocol's attacks favour the defence")
    return out


def flag(entry: Mapping[str, Any], checks: Mapping[str, Mapping[str, Any]],
         by_sha: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, str] | None:
    """The masking flag of one entry (see the module docstring), or None; ``by_sha``: the board's
    entries by weights, where the record's undefended baseline is looked up."""
    defense = adversarial_defense(entry)
    if defense is None:
        return None
    rec = record_for(entry, checks)
    m = measure(rec, entry, baseline_entry(rec, entry, by_sha)) if rec is not None else None
    if m is None or m["mismatch"]:
        why = (f"the check on record does not match this entry ({m['mismatch']})" if m else
               "no gradient-masking check of these weights is on record (benchmarks/gradient_masking.py)")
        return {"flag": "masking-unchecked", "reason": (
            f"adversarially trained ({defense}) and {why}: its adversarial scores come from attacks on its own "
            f"gradient and are an upper bound until transfer attacks and a budget sweep confirm them")}
    if m["findings"]:
        return {"flag": "gradient-masking", "reason": (
            f"the gradient-masking check found: {'; '.join(m['findings'])}; its adversarial scores "
            f"overstate its robustness")}
    return None


def baseline_entry(rec: Mapping[str, Any] | None, entry: Mapping[str, Any],
                   by_sha: Mapping[str, Mapping[str, Any]] | None) -> Mapping[str, Any] | None:
    """The board's entry of the record's baseline, or None where the board has none: the same
    architecture undefended, on the record's dataset and protocol."""
    base: dict[str, Any] = (rec or {}).get("baseline") or {}
    found = (by_sha or {}).get(base["state_sha256"]) if rec and base else None
    if rec is None or found is None or _defense(found) != "none" or not _same_table(rec, found) \
            or (found.get("model") or {}).get("ref") != (entry.get("model") or {}).get("ref"):
        return None
    return found


def entry_problem(entry: Mapping[str, Any], checks: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Why the check on record for this entry's weights is not of this entry (``leaderboard
    validate`` reports it), or None."""
    rec = record_for(entry, checks)
    return None if rec is None else bound(rec["per_image"], entry, "the check")[1]
