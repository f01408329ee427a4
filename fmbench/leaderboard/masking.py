"""Gradient-masking checks of adversarially trained entries, and their flags in the tables.

An adversarially trained model (``pgd-at``) is scored by attacks on its own input gradient; if
training only made that gradient useless to the attacker (Athalye, Carlini & Wagner 2018), its
adversarial scores overstate its robustness.  ``benchmarks/gradient_masking.py`` runs the checks
the protocol's self-checks cannot afford on every entry (transfer attacks from other models, a
budget rising to 1, a stronger white-box attack) and records them, per checkpoint (state sha256),
in ``DIR/checks/gradient-masking.json``.  The tables then flag an adversarially trained row:

- ``masking-unchecked`` -- no check of its weights is on record: read its adversarial scores
  as an upper bound;
- ``gradient-masking`` -- a check on record found a sign of masking (its reason says which):
  transfer attacks beat the white-box ones, IoU stays above 0.05 at budget 1 or rises with the
  budget, or a stronger white-box attack lowers the defended model significantly more than the
  same architecture undefended (the protocol's attacks then favour the defence).

A row whose weights passed the check carries no flag.  The record is a claim like an entry: it
is read only if well-formed, and it clears only the weights it names (by hash) on the dataset and
protocol it ran on.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..errors import ResultError
from ..files import read_json

KIND = "fmbench-gradient-masking-check"
FILE = Path("checks") / "gradient-masking.json"
ADVERSARIAL_DEFENSES = ("pgd-at",)
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _number(v: Any, lo: float, hi: float) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi


def _iou(v: Any) -> bool:
    return _number(v, 0, 1)


def _difference(v: Any) -> bool:
    """``{"diff": number, "ci95": [lo, hi]}``, a paired difference of IoUs."""
    if not isinstance(v, dict) or not isinstance(v.get("ci95"), list) or len(v["ci95"]) != 2:
        return False
    return all(_number(x, -1, 1) for x in [v.get("diff"), *v["ci95"]])


def record_problem(rec: Any) -> str | None:
    """What is wrong with one check record (every field the tables read), or None."""
    if not isinstance(rec, dict) or not _HEX64.fullmatch(str(rec.get("state_sha256", ""))):
        return "needs the checked weights' state_sha256 (64 hex digits)"
    for key in ("dataset", "tier"):
        if not isinstance(rec.get(key), str) or not rec[key]:
            return f"needs the {key} the check ran on"
    flags = rec.get("masking_flags")
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        return "masking_flags must be a list of strings"
    for key in ("transfer_worst", "white_box_worst"):
        if not _iou(rec.get(key)):
            return f"{key} must be an IoU in [0, 1]"
    if rec.get("entry_worst_case") is not None and not _iou(rec["entry_worst_case"]):
        return "entry_worst_case must be an IoU in [0, 1]"
    sweep = rec.get("sweep")
    if not isinstance(sweep, dict) or not sweep or not all(_iou(v) for v in sweep.values()):
        return "sweep must map budgets to IoUs in [0, 1]"
    if not isinstance(rec.get("transfer", {}), dict):
        return "transfer must map attacks to their results"
    if not _difference(rec.get("transfer_vs_white")) or \
            ("stronger_vs_entry" in rec and not _difference(rec["stronger_vs_entry"])):
        return "transfer_vs_white and stronger_vs_entry must be paired differences {diff, ci95: [lo, hi]}"
    base = rec.get("baseline")
    if base is not None and not (isinstance(base, dict) and isinstance(base.get("model"), str)
                                 and _iou(base.get("entry_worst_case")) and _iou(rec.get("entry_worst_case"))
                                 and _difference(base.get("gain_vs_baseline"))
                                 and ("stronger_vs_entry" not in base or _difference(base["stronger_vs_entry"]))):
        return "baseline needs its model, both entries' worst cases and gain_vs_baseline {diff, ci95}"
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


def adversarial_defense(entry: dict[str, Any]) -> str | None:
    """The entry's defence when it is adversarial training (its scores then need a check), else None."""
    defense = ((entry.get("model") or {}).get("training") or {}).get("defense") or "none"
    return defense if defense in ADVERSARIAL_DEFENSES else None


def record_for(entry: dict[str, Any], checks: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The check of the entry's weights on its dataset and protocol, or None: a check on other
    images or another protocol says nothing about this row."""
    rec = checks.get(str((entry.get("model") or {}).get("state_sha256")))
    protocol = entry.get("protocol") or {}
    if rec is None or rec["dataset"] != (entry.get("dataset") or {}).get("ref") \
            or rec["tier"] not in (protocol.get("id"), protocol.get("name")):
        return None
    return rec


def flag(entry: dict[str, Any], checks: dict[str, dict[str, Any]]) -> dict[str, str] | None:
    """The masking flag of one entry (see the module docstring), or None."""
    defense = adversarial_defense(entry)
    if defense is None:
        return None
    rec = record_for(entry, checks)
    if rec is None:
        return {"flag": "masking-unchecked", "reason": (
            f"adversarially trained ({defense}) and no gradient-masking check of these weights is on record "
            f"(benchmarks/gradient_masking.py): its adversarial scores come from attacks on its own gradient "
            f"and are an upper bound until transfer attacks and a budget sweep confirm them")}
    if rec["masking_flags"]:
        return {"flag": "gradient-masking", "reason": (
            f"the gradient-masking check found: {'; '.join(rec['masking_flags'])}; its adversarial scores "
            f"overstate its robustness")}
    return None
