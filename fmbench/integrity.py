"""Internal consistency of a result or an entry: every number it shows recomputed from its
per-image IoU, its conditions those its protocol plans, its images the protocol's count, and
its weights the registered ones.  A forged entry must change per-image values to move a
score, and ``recheck`` re-evaluates images drawn at random to catch that.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .metrics import relative
from .protocol import DEFAULT_TIER
from .recipe import convergence_problems

if TYPE_CHECKING:  # names for annotations only
    from .plugins import Registry
    from .protocol import Protocol

TOLERANCE = 1e-9


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def per_image_problems(doc: Mapping[str, Any]) -> list[str]:
    """The per-image lists: present for every condition and only those, one finite value in
    [0, 1] per image, image ids unique."""
    per = doc.get("per_image")
    if not isinstance(per, Mapping) or not isinstance(per.get("ids"), list) or not isinstance(per.get("iou"), Mapping):
        return ["per_image: missing, or without ids and iou lists"]
    conds = doc.get("conditions")
    if not isinstance(conds, list) or not conds or not all(
            isinstance(c, Mapping) and isinstance(c.get("id"), str) and isinstance(c.get("kind"), str)
            and isinstance(c.get("family"), str) for c in conds):
        return ["conditions: expected a list of conditions, each with an id, kind and family"]
    ids = per["ids"]
    problems = []
    if not all(isinstance(i, str) for i in ids) or len(set(ids)) != len(ids):
        problems.append("per_image.ids: image ids must be unique strings")
    cond_ids = [str(c.get("id")) for c in doc.get("conditions", []) if isinstance(c, Mapping)]
    for kind in ("iou", "dice"):
        table = per.get(kind)
        if table is None and kind == "dice":
            continue
        if not isinstance(table, Mapping):
            problems.append(f"per_image.{kind}: expected an object of lists")
            continue
        if set(table) != set(cond_ids):
            missing = sorted(set(cond_ids) - set(table))
            extra = sorted(set(table) - set(cond_ids))
            problems.append(f"per_image.{kind}: conditions differ from the entry's (missing {missing[:3]}, extra "
                            f"{extra[:3]})")
            continue
        for cid, values in table.items():
            if not isinstance(values, list) or len(values) != len(ids):
                problems.append(f"per_image.{kind}.{cid}: {len(values) if isinstance(values, list) else 'no'} values "
                                f"for {len(ids)} images")
            elif not all(_number(v) and 0.0 <= v <= 1.0 for v in values):
                problems.append(f"per_image.{kind}.{cid}: a value is not a finite number in [0, 1]")
    return problems


def condition_problems(doc: Mapping[str, Any]) -> list[str]:
    """Each condition's mean IoU, Dice (from per-image Dice where it is kept, else from each
    image's IoU: 2J/(1+J) for one binary mask), image count and relative robustness against its
    per-image lists."""
    per = doc["per_image"]
    n = len(per["ids"])
    ref = per["iou"].get("reference")
    if ref is None:
        return ["per_image.iou: no reference condition"]
    problems = []
    for c in doc["conditions"]:
        values = per["iou"][c["id"]]
        expected = {"iou": math.fsum(values) / n if n else None, "n_images": n,
                    "robustness": relative(values, ref)[1]}
        if per.get("dice"):
            expected["dice"] = math.fsum(per["dice"][c["id"]]) / n if n else None
        elif c.get("dice") is not None and all(_number(v) and v > -1 for v in values):
            # one binary mask per image: its Dice is 2J / (1 + J) of its IoU J, exactly
            expected["dice"] = math.fsum(2 * v / (1 + v) for v in values) / n if n else None
        for key, want in expected.items():
            got = c.get(key)
            same = (want is None and got is None) or (
                _number(got) and want is not None and math.isclose(got, want, rel_tol=0, abs_tol=TOLERANCE))
            if not same:
                problems.append(f"conditions[{c['id']}].{key} is {got!r} but its per-image values give {want!r}")
    return problems


def plan_problems(doc: Mapping[str, Any], protocol: Protocol, registry: Registry) -> list[str]:
    """The conditions are exactly those the protocol plans (none dropped, none added, in
    order), and the images as many as it evaluates on a registered dataset."""
    from .conditions import plan

    synthetic = bool(doc["dataset"].get("synthetic", True))
    # labels (what a reader sees) from version 2 on: version-1 entries wrote older wordings
    v1 = protocol.version < 2
    planned = [(c.id, c.kind, c.name, c.family, float(c.level), c.norm, None if v1 else c.label)
               for c in plan(protocol, registry, synthetic=synthetic)]
    found = [(c.get("id"), c.get("kind"), c.get("name"), c.get("family"),
              float(c["level"]) if _number(c.get("level")) else c.get("level"), c.get("norm"),
              None if v1 else c.get("label"))
             for c in doc["conditions"]]
    problems = []
    spec = registry.datasets.get(str(doc["dataset"].get("ref")).split("@", 1)[0])
    if doc["dataset"].get("split") != protocol.split:
        problems.append(f"dataset.split is {doc['dataset'].get('split')!r}, but protocol {protocol.id} evaluates the "
                        f"{protocol.split!r} split")
    if spec is not None and doc["dataset"].get("synthetic") is not bool(spec.synthetic):
        problems.append(f"dataset.synthetic is {doc['dataset'].get('synthetic')!r}, but {doc['dataset']['ref']!r} is "
                        f"a registered dataset whose synthetic flag is {bool(spec.synthetic)}")
    if found != planned:
        missing = [p[0] for p in planned if p not in found]
        extra = [f[0] for f in found if f not in planned]
        problems.append(f"conditions are not those protocol {protocol.id} evaluates (missing {missing[:4]}, "
                        f"unexpected {extra[:4]}{', or out of order' if not missing and not extra else ''})")
    n = len(doc["per_image"]["ids"])
    if doc["dataset"].get("n_images") != n:
        problems.append(f"dataset.n_images is {doc['dataset'].get('n_images')!r} but per_image has {n} images")
    if str(doc["dataset"].get("ref")).split("@", 1)[0] in registry.datasets and n != protocol.n_images:
        problems.append(f"{n} images, but protocol {protocol.id} evaluates {protocol.n_images} of "
                        f"{doc['dataset']['ref']!r}")
    return problems


def track_weight_listed(entry: Mapping[str, Any], track_weights: Mapping[str, Any] | None) -> bool:
    """Whether a track's own weights registry (``FOLDER/weights/registry.json``: the study's
    trainings, by entry name, with their file and tensor hashes and training command; the caller
    passes the records of the entry's own file name) lists the entry's weights for its model,
    dataset and label-noise setting: both hashes must match, the entry's training command must
    be the record's, and that command's ``--seed`` and ``--label-noise`` must be the entry's
    training seed and setting (so a training cannot be relabelled as another seed or setting)."""
    from .weights import command_flag

    if not track_weights:
        return False
    model, ds = entry["model"], entry["dataset"]["ref"]
    training = model.get("training") or {}
    setting = training.get("label_noise") or None
    command = training.get("command")
    for w in (track_weights.get(model["ref"]) or {}).values():
        if not (isinstance(w, Mapping) and w.get("dataset") == ds and w.get("sha256") == model.get("weights_sha256")
                and w.get("state_sha256") is not None and w.get("state_sha256") == model.get("state_sha256")
                and (w.get("label_noise") or None) == setting):
            continue
        if not isinstance(command, str) or w.get("command") != command:
            continue
        if str(command_flag(command, "--seed") or "0") == str(training.get("seed") or 0) \
                and command_flag(command, "--label-noise") == setting:
            return True
    return False


def weights_problems(entry: Mapping[str, Any], registry: Registry,
                     track_weights: Mapping[str, Any] | None = None) -> list[str]:
    """A registered model's entry made with registered weights must have been made with those
    weights: the entry's weights name (or, in entries that name none, the weights the protocol
    would pick for the dataset) must be registered, and the file's sha256 and the tensors'
    sha256 must be the ones the registry pins.  In a track folder with its own weights registry
    (the label-noise study's trainings), weights listed there with both hashes are accepted too."""
    from .model import weights_for

    ref, ds = entry["model"]["ref"], entry["dataset"]["ref"]
    spec = registry.models.get(ref)
    if spec is None or ":" in ref:
        return []
    if entry["model"].get("weights") is None and track_weight_listed(entry, track_weights):
        return []
    if track_weights is not None:  # a track's trainings are its own registry's, never the main zoo's
        return [f"model {ref!r} on {ds!r}: its weights are not the ones this track's weights registry (weights/"
                f"registry.json) lists under this file's name: a track compares its own trainings only"]
    named = entry["model"].get("weights")
    if named is not None and named not in spec.weights:
        return [f"model {ref!r} on {ds!r} names weights {named!r}, which are not registered "
                f"(registered: {', '.join(sorted(spec.weights)) or 'none'})"]
    name = named or weights_for(spec, ds, int(entry.get("protocol", {}).get("version") or 1))
    w = spec.weights.get(name) if name else None
    if w is None:
        return []
    problems = []
    if w.sha256 and entry["model"].get("weights_sha256") != w.sha256:
        problems.append(f"model {ref!r} on {ds!r} was evaluated with weights sha256 "
                        f"{str(entry['model'].get('weights_sha256'))[:12]}..., not the registered {w.sha256[:12]}...")
    state = entry["model"].get("state_sha256")
    # a missing tensor hash passes only where the registry pins the file's bytes and they match, or in
    # a version-1 entry (made before entries recorded the hash of the tensors they were evaluated with)
    legacy = int(entry.get("protocol", {}).get("version") or 1) < 2
    file_pinned = bool(w.sha256) and entry["model"].get("weights_sha256") == w.sha256
    if w.state_sha256 and state != w.state_sha256 and not (state is None and (file_pinned or legacy)):
        problems.append(f"model {ref!r} on {ds!r} was evaluated with weights whose tensors hash to "
                        f"{str(state)[:12]}..., not the registered {name!r} ({w.state_sha256[:12]}...)")
    if w.command:
        problems += [f"model {ref!r} on {ds!r}: {p}"
                     # registered bytes that predate checkpoints recording their command stand for the registry's
                     for p in training_problems(entry["model"].get("training"), w.command, str(name), legacy or file_pinned,
                                                registry)]
    found = entry["model"].get("training")
    training: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    conv: Mapping[str, Any] = training["convergence"] if isinstance(training.get("convergence"), Mapping) else {}
    recipe: Mapping[str, Any] = training["recipe"] if isinstance(training.get("recipe"), Mapping) else {}
    best = conv.get("best_val_iou") if recipe.get("keep_best") else None  # else val_iou is the last validation's
    if w.convergence is not None and (said := (conv.get("state"), conv.get("best_step"), conv.get("stopped_at"))) != w.convergence:
        problems.append(f"model {ref!r} on {ds!r}: training.convergence (state, best step, stop) is {said}, but the "
                        f"registered weights {name!r} record {w.convergence}")
    for key, v in (("val_iou", training.get("val_iou")), ("convergence.best_val_iou", best)):
        if w.val_iou is not None and v is not None and not (_number(v) and abs(v - w.val_iou) <= 1e-6):
            problems.append(f"model {ref!r} on {ds!r}: training.{key} is {v!r}, but the registered weights {name!r} "
                            f"reached validation IoU {w.val_iou}")
    return problems


def weights_pinned(entry: Mapping[str, Any], registry: Registry, track_weights: Mapping[str, Any] | None = None) -> bool:
    """Whether a registry pins (by hash) the weights an entry was evaluated with -- a registered
    model's registered weights, or a track's own weights registry -- so that anyone can recheck
    its numbers; a contributor's own checkpoint is pinned by nothing but the entry's word."""
    from .model import weights_for

    if track_weight_listed(entry, track_weights):
        return True
    ref, ds = entry["model"]["ref"], entry["dataset"]["ref"]
    spec = registry.models.get(ref)
    if spec is None or ":" in ref:
        return False
    name = entry["model"].get("weights") or weights_for(spec, ds, int(entry.get("protocol", {}).get("version") or 1))
    w = spec.weights.get(name) if name else None
    return w is not None and bool(w.sha256 or w.state_sha256)  # (their match is weights_problems' check)


def _without_out(command: str) -> list[str]:
    words = command.split()
    if "--out" in words[:-1]:
        k = words.index("--out")
        del words[k : k + 2]
    return words


def training_problems(training: Any, command: str, name: str, legacy: bool = False,
                      registry: Registry | None = None) -> list[str]:
    """An entry made with registered weights must describe *their* training: its recorded training
    command must be the registered one (``--out`` aside), and its seed, defence and label noise
    (and its recipe's) must be that command's -- so that the registered weights of one training
    cannot be relabelled as another seed, a defended model or a label-noise setting (their
    numbers would recheck exactly: the weights are the registered ones).  ``legacy``: a version-1
    entry, whose weights may predate checkpoints recording their command (the rest is checked)."""
    from .weights import command_flag, pinned_tier, trained_under

    if not isinstance(training, Mapping):
        return [f"the entry records no training for the registered weights {name!r}"]
    recorded = training.get("command")
    made_under = training.get("protocol") if isinstance(training.get("protocol"), str) else None
    recorded = pinned_tier(recorded, made_under) if isinstance(recorded, str) else recorded
    command = pinned_tier(command, made_under)  # `--tier quick` recorded under quick-v1 is `--tier quick-v1`
    if not (recorded is None and legacy) and (not isinstance(recorded, str) or _without_out(recorded) != _without_out(command)):
        return [f"its training command {recorded!r} is not the registered weights' {name!r} ({command!r})"]
    found = training.get("recipe")
    recipe: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    want: dict[str, Any] = {"seed": int(command_flag(command, "--seed") or 0),
            "defense": command_flag(command, "--defense") or "none",
            "label_noise": command_flag(command, "--label-noise")}
    got = {"seed": training.get("seed", 0), "defense": training.get("defense") or "none",
           "label_noise": training.get("label_noise") or None}
    on = command_flag(command, "--dataset")
    if on and registry is not None:  # `--dataset nucleus --tier quick-v2` trains on nucleus@2
        resolved = trained_under(command, registry, default_tier=DEFAULT_TIER)[2]
        on = resolved or (name.split("/")[0] if "@" not in on and "@" in name.split("/")[0] else on)
    elif on and "@" not in on and "@" in name.split("/")[0]:  # no registry: the weights name says
        on = name.split("/")[0]
    if on:
        want["dataset"], got["dataset"] = on, training.get("dataset")
    problems = [f"training.{k} is {got[k]!r}, but the registered weights {name!r} were trained with {want[k]!r}"
                for k in want if got[k] != want[k]]
    for k, none in (("defense", "none"), ("label_noise", None)):
        if k in recipe and (recipe[k] or none) != want[k]:
            problems.append(f"training.recipe.{k} is {recipe[k]!r}, but the registered weights {name!r} were "
                            f"trained with {want[k]!r}")
    return problems


def consistency(doc: Mapping[str, Any], registry: Registry | None = None,
                track_weights: Mapping[str, Any] | None = None) -> list[str]:
    """Every internal-consistency problem of a result or entry (empty when consistent)."""
    if not isinstance(doc, Mapping):
        return [f"not a result or entry (a JSON {type(doc).__name__})"]
    for key in ("dataset", "protocol"):
        if not isinstance(doc.get(key), Mapping):
            return [f"{key}: missing or not an object"]
    if not isinstance(doc["protocol"].get("hash"), str):
        return ["protocol.hash: missing"]
    problems = per_image_problems(doc) + control_characters(doc)
    if problems:
        return problems
    problems = condition_problems(doc)
    if registry is not None:
        known = {p.hash: p for p in registry.protocols.values()}
        protocol = known.get(doc["protocol"]["hash"])
        if protocol is not None:
            problems += plan_problems(doc, protocol, registry)
        problems += label_noise_problems(doc, registry)
        if doc.get("kind") == "fmbench-leaderboard-entry":
            problems += weights_problems(doc, registry, track_weights)
            training = (doc.get("model") or {}).get("training") if isinstance(doc.get("model"), Mapping) else None
            problems += convergence_problems(training) if isinstance(training, Mapping) else []  # (recipe.py)
    return problems


INVISIBLE = {"Cf", "Cs", "Co", "Zl", "Zp"}  # zero-width, right-to-left overrides, surrogates, private use


def control_characters(doc: Any, where: str = "") -> list[str]:
    """Strings holding control or invisible characters (terminal escapes, NUL, newlines,
    zero-width and right-to-left marks): nothing fmbench writes has them, and shown in a terminal
    or page they could hide or fake what a reader sees."""
    if isinstance(doc, str):
        bad = [c for c in doc if ord(c) < 32 or 127 <= ord(c) < 160 or unicodedata.category(c) in INVISIBLE]
        return [f"{where or 'a string'} holds control or invisible characters ({', '.join(sorted({repr(c) for c in bad}))})"] \
            if bad else []
    if isinstance(doc, Mapping):  # (a checkpoint's own metadata is free text its author wrote: not checked)
        return [p for k, v in doc.items() if f"{where}.{k}" != "model.meta"
                for p in control_characters(k, f"{where}.{k}" if where else "a key")
                + control_characters(v, f"{where}.{k}" if where else str(k))][:3]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in control_characters(v, f"{where}[{i}]")][:3]
    return []


def label_noise_problems(doc: Mapping[str, Any], registry: Registry) -> list[str]:
    """A training label-noise setting must be a registered kind written as the trainer writes it
    (``KIND:RATE:SEVERITY``, :attr:`fmbench.label_noise.Setting.text`), so that the track's study
    reads exactly what was trained."""
    from .errors import FmbenchError
    from .label_noise import parse_setting

    text = (((doc.get("model") or {}).get("training") or {}) if isinstance(doc.get("model"), Mapping) else {}).get(
        "label_noise")
    if text is None or text == "":
        return []
    try:
        setting = parse_setting(str(text), registry)
    except FmbenchError as exc:
        return [f"model.training.label_noise: {exc}"]
    if setting.text != text:
        return [f"model.training.label_noise {text!r} is not written as training writes it ({setting.text!r})"]
    return []
