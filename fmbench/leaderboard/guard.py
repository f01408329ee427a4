"""What an entry file may hold besides numbers that check: the checks against forged entries
whose every number is consistent (a forger's pass on 2026-11-30 got 16 such entries through
``validate``; docs/reliability.md lists what they were and what catches each now).

- An entry holds only the keys an entry has.  What the tables compute -- pooled seeds
  (``members``, ``seeds``, ``seed_spread``), flags, anything starting with ``_`` -- is never read
  from a file: a ``members`` list planted in one seed's entry had set its pooled row's value.
- A model reference is printable ASCII without spaces or brackets: no zero-width or
  right-to-left characters, no look-alike letters from other scripts, no ``[pgd-at]`` or
  ``(3 seeds)`` written into a name to fake a label.
- Its protocol's name and version are those of the registered protocol with its hash.
- One checkpoint is one row: two entries of one table with the same weights are refused, however
  they name the model or its seed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..recipe import DEFENSES

if TYPE_CHECKING:  # names for annotations only
    from ..plugins import Registry

ENTRY_KEYS = frozenset({"schema_version", "kind", "model", "dataset", "protocol", "provenance", "conditions",
                        "summary", "scores", "warnings", "per_image"})
# what the tables compute and attach to the entries they read: never taken from a file
DERIVED = ("members", "seeds", "seed_spread", "flags")
NOT_IN_REFS = set(" []()<>{}|\"'`\\")


def strip_derived(entry: Any) -> Any:
    """``entry`` without the keys the tables compute (also for readers that do not validate)."""
    if isinstance(entry, dict):
        for key in [k for k in entry if k in DERIVED or str(k).startswith("_")]:
            del entry[key]
    return entry


def ref_problem(ref: Any) -> str | None:
    """Why a model reference cannot name a leaderboard row, or ``None``."""
    if not isinstance(ref, str) or not ref:
        return "model.ref: missing"
    bad = sorted({c for c in ref if not 33 <= ord(c) <= 126 or c in NOT_IN_REFS})
    if bad:
        return (f"model.ref {ref.encode('ascii', 'backslashreplace').decode()!r} holds "
                f"{', '.join(repr(c) if c.isprintable() and c.isascii() else f'U+{ord(c):04X}' for c in bad[:4])}: "
                f"a model reference is printable ASCII without spaces or brackets (what a table shows as its name): "
                f"install the model as a package and name it pkg.module:Class, or use a path without spaces, "
                f"backslashes or brackets")
    return None


def entry_problems(entry: Mapping[str, Any], registry: Registry) -> list[str]:
    """The problems of an entry beyond its numbers (see the module docstring)."""
    problems = []
    extra = sorted(str(k) for k in entry if k not in ENTRY_KEYS)
    if extra:
        problems.append(f"holds keys an entry does not have: {', '.join(extra[:4])} (pooled seeds, flags and the "
                        f"like are computed by the tables, never read from a file)")
    model = entry.get("model")
    if isinstance(model, Mapping) and (found := ref_problem(model.get("ref"))):
        problems.append(found)
    if isinstance(model, Mapping) and isinstance(model.get("ref"), str):
        owner = registered_owner(model, registry)
        if owner is not None and owner[0] != model["ref"]:
            problems.append(f"evaluated with the registered weights {owner[1]!r} of {owner[0]!r} under the name "
                            f"{model['ref']!r}: registered weights are entered under their own model's name")
    training = model.get("training") if isinstance(model, Mapping) else None
    defense = training.get("defense") if isinstance(training, Mapping) else None
    if defense not in (None, *DEFENSES):
        problems.append(f"model.training.defense {str(defense)[:40]!r} is not a defence fmbench trains "
                        f"({', '.join(DEFENSES)}): a table shows it beside the model's name")
    if isinstance(training, Mapping):
        problems += training_claims(training, registry)
    proto = entry.get("protocol") or {}
    known = {p.hash: p for p in registry.protocols.values()}.get(proto.get("hash"))
    if known is not None and (proto.get("name"), proto.get("version")) != (known.name, known.version):
        problems.append(f"protocol name and version {proto.get('name')!r} v{proto.get('version')!r} are not those of "
                        f"the registered protocol with hash {proto.get('hash')} ({known.name!r} v{known.version})")
    return problems


def _label_noise(text: Any, registry: Registry | None) -> str:
    """A label-noise setting as the track names it (``boundary:0.2:2``; ``none`` for exact labels)."""
    if not text:
        return "none"
    from ..errors import ProtocolError, UnknownNameError
    from ..label_noise import parse_setting

    try:
        return parse_setting(str(text), registry).text if registry is not None else str(text)
    except (ProtocolError, UnknownNameError):
        return f"{str(text)[:40]} (not a label-noise setting)"


def training_claims(training: Mapping[str, Any], registry: Registry | None = None) -> list[str]:
    """An entry's training record must agree with itself, for any model (registered weights are
    checked against their registry as well): the defence it is shown with, its recipe's defence
    and its ``fmbench train`` command's ``--defense``; likewise its label noise (which decides the
    board it ranks on) and ``--label-noise``; its seed and the command's ``--seed``."""
    from ..weights import command_flag as flag

    recipe = training.get("recipe")
    claims = {"model.training.defense": training.get("defense") or "none"}
    if isinstance(recipe, Mapping) and "defense" in recipe:
        claims["its recipe's defense"] = recipe.get("defense") or "none"
    raw = training.get("command")
    command: str = raw if isinstance(raw, str) else ""
    words = command.split()  # `fmbench train ...`, also as `python -m fmbench train ...` or a path to fmbench
    ours = any(w.endswith("fmbench") and words[i + 1:i + 2] == ["train"] for i, w in enumerate(words[:4]))
    if ours:
        claims["its command's --defense"] = flag(command, "--defense") or "none"
    problems = []
    if len(set(map(str, claims.values()))) > 1:
        problems.append("the training record contradicts itself: " + ", ".join(f"{k} {str(v)[:40]!r}" for k, v in
                                                                          claims.items()) + " (a defended row must be "
                        "a defended training)")
    noise = {"model.training.label_noise": _label_noise(training.get("label_noise"), registry)}
    if isinstance(recipe, Mapping) and "label_noise" in recipe:
        noise["its recipe's label_noise"] = _label_noise(recipe.get("label_noise"), registry)
    if ours:
        noise["its command's --label-noise"] = _label_noise(flag(command, "--label-noise"), registry)
    if len(set(noise.values())) > 1:
        problems.append("the training record contradicts itself: " + ", ".join(f"{k} {v!r}" for k, v in noise.items())
                        + " (label noise decides which board an entry ranks on)")
    elif (said := noise["model.training.label_noise"]) != "none" and registry is not None and \
            "(not a label-noise setting)" not in said:  # a rate training refuses: it noises no mask of its images
        n = (recipe or {}).get("n_train", 256) if isinstance(recipe, Mapping) else 256
        rate = float(said.split(":")[1])
        if isinstance(n, int) and not isinstance(n, bool) and n > 0 and round(rate * n) == 0:
            problems.append(f"model.training.label_noise {said}: a rate of {rate:g} of {n} training images makes no "
                            f"mask noisy; `fmbench train` refuses it (an exact-label training)")
    made_under = training.get("protocol")
    if ours and registry is not None and isinstance(made_under, str) and made_under:  # where the command trains
        from ..weights import trained_under

        tier, proto, trained_on = trained_under(command, registry, made_under)
        if tier and (proto is None or proto.id != made_under):
            problems.append(f"model.training.protocol is {made_under!r}, but its command {command[:120]!r} trains "
                            f"under --tier {tier}")
        elif trained_on and isinstance(training.get("dataset"), str) and trained_on != training["dataset"]:
            problems.append(f"model.training.dataset is {training['dataset']!r}, but its command {command[:120]!r} "
                            f"trains on {trained_on!r}")
    seed = training.get("seed")
    if ours and isinstance(seed, int) and not isinstance(seed, bool) and str(seed) != (flag(command, "--seed") or "0"):
        problems.append(f"model.training.seed is {seed}, but its command {command[:120]!r} trains with "
                        f"--seed {flag(command, '--seed') or '0'}")
    return problems


def name_problems(path: str | os.PathLike, entry: Mapping[str, Any]) -> list[str]:
    """A file named as the campaign names entries (``MODEL[+DEFENCE][+seedS]__DATASET__PROTOCOL.json``)
    must say what its name says: the protocol id, the dataset, and a ``+seedS`` or defence in the name
    (a report page and a track's weights registry are keyed by the file name).  Other names are
    not read."""
    parts = Path(path).stem.split("__")
    if len(parts) != 3 or not isinstance(entry.get("model"), Mapping):
        return []
    head, ds, pid = parts
    training = entry["model"].get("training") if isinstance(entry["model"].get("training"), Mapping) else {}
    ref = str((entry.get("dataset") or {}).get("ref", ""))
    said = []
    if pid != (entry.get("protocol") or {}).get("id"):
        said.append(f"protocol {pid!r}")
    if ":" not in ref and ds not in (ref, ref.split("@", 1)[0]):
        said.append(f"dataset {ds!r}")
    tokens = head.split("+")[1:]
    if not any(t.startswith("seed") and t[4:].isdigit() for t in tokens) and training.get("seed") not in (0, None):
        said.append("seed 0")  # no `+seedS`: the campaign's seed 0
    for token in tokens:
        if token.startswith("seed") and token[4:].isdigit() and int(token[4:]) != training.get("seed", 0):
            said.append(f"seed {int(token[4:])}")
        if token in DEFENSES and token != (training.get("defense") or "none"):
            said.append(f"defence {token!r}")
        noise = str(training.get("label_noise") or "exact").replace(":", "-")
        if token.startswith("labels-") and token[len("labels-"):] != noise:  # the track's names (runner's stem_of)
            said.append(f"label noise {token[len('labels-'):]!r} (the entry: {noise!r})")
    return [f"the file name says {', '.join(said)}; the entry holds {ref!r}, protocol "
            f"{(entry.get('protocol') or {}).get('id')!r}, seed {training.get('seed', 0)!r}, defence "
            f"{training.get('defense') or 'none'!r}: rename the file after what it holds"] if said else []


def registered_owner(model: Mapping[str, Any], registry: Registry) -> tuple[str, str] | None:
    """The registered (model, weights name) whose file or tensor hash an entry's weights have."""
    mine = {h for h in (model.get("weights_sha256"), model.get("state_sha256")) if isinstance(h, str) and h}
    for name, spec in registry.models.items():
        for wname, w in spec.weights.items():
            if mine & {h for h in (w.sha256, w.state_sha256) if h}:
                return name, wname
    return None


def same_weights(entries: list[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """One problem per entry of a table (dataset and protocol) that shares a recorded weights
    hash (tensor or file) with another, or whose per-image IoU under every condition is another's
    to within :data:`SAME_IOU` -- in any order of the images (each condition's values are
    compared sorted): two trainings never agree that closely, whatever hashes a file states, and
    a nudge of 1e-12 or a reordering must not make one training two seeds.  One checkpoint is
    one row, whatever it is called."""
    import numpy as np

    seen: dict[tuple[str, ...], str] = {}
    profiles: dict[tuple[Any, ...], list[tuple[str, Any]]] = {}  # (table, conditions) -> (path, values)
    problems = []
    for path, e in entries:
        try:
            model, table = e["model"], (e["dataset"]["ref"], e["protocol"]["hash"])
            iou = e["per_image"]["iou"]
            conds = tuple(sorted(iou))
            values = np.concatenate([np.sort(np.asarray(iou[c], float)) for c in conds]) if conds else np.zeros(0)
        except (KeyError, TypeError, AttributeError, ValueError):
            continue
        comparable = values.size > 0 and bool(np.isfinite(values).all())
        keys = [("weights", h.lower(), *table) for h in (model.get("state_sha256"), model.get("weights_sha256"))
                if isinstance(h, str) and h]  # a hash in capitals is the same hash
        twin = next((k for k in keys if k in seen), None)
        if twin is not None:
            problems.append(f"{path}: the same {twin[0]} ({twin[1][:12]}...) as {seen[twin]} on the same dataset and "
                            f"protocol; one checkpoint is one row")
        elif comparable:
            same = next((p for p, v in profiles.get((*table, conds), []) if v.shape == values.shape
                         and _copied(v, values)), None)
            if same is not None:
                problems.append(f"{path}: the same per-image IoU (in any image order: half of the values to "
                                f"{SAME_IOU:g}, or a median difference below {SAME_MEDIAN:g}) as {same} on the same "
                                f"dataset and protocol; one checkpoint is one row")
        for k in keys:
            seen.setdefault(k, path)
        if comparable:
            profiles.setdefault((*table, conds), []).append((path, values))
    return problems


# two trainings' per-image IoUs never agree this closely on every image and condition
SAME_IOU = 1e-6
# measured over every pair of distinct trainings on the boards (2026-11-30, 874 pairs): at most
# 0.9 % of their sorted per-image values agree to SAME_IOU, and the median difference is at
# least 0.0035; a copy with some values nudged is far inside both (a copy moved by more than
# SAME_MEDIAN everywhere is not caught: no per-image threshold can tell it from a training)
SAME_SHARE, SAME_MEDIAN = 0.5, 1e-3


def _copied(a: Any, b: Any) -> bool:
    """Whether two profiles of sorted per-image IoUs are one training's: half of the values that
    say something (not 0 or 1 in both) agree to SAME_IOU, or their median difference is below
    SAME_MEDIAN -- nudging some values does not make a copy another training."""
    import numpy as np

    d = np.abs(a - b)
    telling = ~(((a == 0) & (b == 0)) | ((a == 1) & (b == 1)))
    if not telling.any():
        return True
    d = d[telling]
    return bool((d <= SAME_IOU).mean() >= SAME_SHARE or np.median(d) < SAME_MEDIAN)
