"""Gradient-masking checks of adversarially trained entries, and their flags in the tables.

An adversarially trained model (``pgd-at``) is scored by attacks on its own input gradient; if
training only made that gradient useless to the attacker (Athalye, Carlini & Wagner 2018), its
adversarial scores overstate its robustness.  ``benchmarks/gradient_masking.py`` runs the checks
the protocol's self-checks cannot afford on every entry (transfer attacks from other models, a
budget rising to 1, a stronger white-box attack) and records them, per checkpoint (state sha256),
in ``DIR/checks/gradient-masking.json``.  The tables then flag an adversarially trained row:

- ``masking-unchecked`` -- no check of its weights is on record: read its adversarial scores
  as an upper bound;
- ``gradient-masking`` -- a check on record found a sign of masking (its reason says which).

A row whose weights passed the check carries no flag.  The record is a claim like an entry: it
is read only if well-formed, and only the weights it names (by hash) are cleared by it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..errors import ResultError

KIND = "fmbench-gradient-masking-check"
FILE = Path("checks") / "gradient-masking.json"
ADVERSARIAL_DEFENSES = ("pgd-at",)
_HEX64 = re.compile(r"[0-9a-f]{64}")


def load(directory: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The check records of a leaderboard folder by the state sha256 of the weights they checked
    (``{}`` when the folder has none); a malformed file is an error, never silently ignored."""
    path = Path(directory) / FILE
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ResultError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND or not isinstance(doc.get("records"), list):
        raise ResultError(f"{path}: not a gradient-masking check document (kind {KIND!r} with a list of records)")
    out: dict[str, dict[str, Any]] = {}
    for k, rec in enumerate(doc["records"]):
        where = f"{path}: record {k}"
        if not isinstance(rec, dict) or not _HEX64.fullmatch(str(rec.get("state_sha256", ""))):
            raise ResultError(f"{where}: needs the checked weights' state_sha256 (64 hex digits)")
        flags = rec.get("masking_flags")
        if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
            raise ResultError(f"{where}: masking_flags must be a list of strings")
        for key in ("transfer_worst", "white_box_worst"):
            if not isinstance(rec.get(key), (int, float)) or not 0 <= rec[key] <= 1:
                raise ResultError(f"{where}: {key} must be an IoU in [0, 1]")
        if not isinstance(rec.get("sweep"), dict) or not rec["sweep"]:
            raise ResultError(f"{where}: sweep (IoU per budget) is missing")
        out[rec["state_sha256"]] = rec
    return out


def flag(entry: dict[str, Any], checks: dict[str, dict[str, Any]]) -> dict[str, str] | None:
    """The masking flag of one entry (see the module docstring), or None."""
    model = entry.get("model") or {}
    defense = (model.get("training") or {}).get("defense") or "none"
    if defense not in ADVERSARIAL_DEFENSES:
        return None
    rec = checks.get(str(model.get("state_sha256")))
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
