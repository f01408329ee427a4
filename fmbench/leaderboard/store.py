"""Checking entries (JSON Schema, registered protocol hash, summaries against conditions) and
loading a folder of them."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import integrity, scores
from . import guard, masking
from ..baselines import BASELINES_KIND
from ..baselines import check as check_baselines
from ..errors import ResultError
from ..files import read_json
from ..result import summarize
from .entry import model_label

if TYPE_CHECKING:  # names for annotations only
    from ..plugins import Registry


SCHEMA_PATH = Path(__file__).parent.parent / "schema" / "leaderboard-entry.schema.json"
TOLERANCE = 1e-9


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _builtin_errors(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str = "") -> list[str]:
    """The subset of JSON Schema our entry schema uses ($ref, type, const, enum, required,
    properties, additionalProperties, items, minItems, minimum, minLength, pattern)."""
    if "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return _builtin_errors(value, node, root, where)
    at = where or "(top level)"
    if "const" in schema and value != schema["const"]:
        return [f"{at}: expected {schema['const']!r}, found {value!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{at}: {value!r} is not one of {schema['enum']}"]
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            return [f"{at}: {value!r} is not of type {' or '.join(types)}"]
    errors = []
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{at}: required field {key!r} is missing")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            if key in props:
                errors += _builtin_errors(sub, props[key], root, f"{where}.{key}" if where else key)
            elif isinstance(extra, dict):
                errors += _builtin_errors(sub, extra, root, f"{where}.{key}" if where else key)
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{at}: needs at least {schema['minItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                errors += _builtin_errors(item, schema["items"], root, f"{where}[{i}]")
    if _TYPES["number"](value) and "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{at}: {value} is below the minimum {schema['minimum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{at}: is empty")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{at}: {value!r} does not match {schema['pattern']}")
    return errors


def schema_validator():
    """``(name, check)``: ``check(entry)`` returns a list of messages; jsonschema when it is
    installed (the ``dev`` extra), else the built-in subset validator."""
    schema = load_schema()
    try:
        import jsonschema
    except ImportError:
        return "built-in validator (jsonschema not installed)", lambda e: _builtin_errors(e, schema, schema)
    validator = jsonschema.Draft202012Validator(schema)

    def check(entry: dict[str, Any]) -> list[str]:
        out = []
        for err in sorted(validator.iter_errors(entry), key=lambda e: list(e.absolute_path)):
            path = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err.absolute_path)
            msg = err.message if len(err.message) <= 240 else f"{err.message[:120]} ... {err.message[-80:]}"
            out.append(f"{path.replace('.[', '[') or '(top level)'}: {msg}")
        return out

    return "jsonschema Draft 2020-12", check


def _compare(expected: Any, found: Any, where: str) -> list[str]:
    if isinstance(expected, dict):
        if not isinstance(found, dict):
            return [f"{where} is {found!r}, expected an object"]
        out = []
        for key in sorted(set(expected) | set(found)):
            if key not in found:
                out.append(f"{where}.{key} is missing")
            elif key not in expected:
                out.append(f"{where}.{key} is not computed from the conditions")
            else:
                out += _compare(expected[key], found[key], f"{where}.{key}")
        return out
    if isinstance(expected, float) or isinstance(found, float):
        if expected is None or found is None or isinstance(found, (str, bool)) or \
                not math.isclose(expected, found, rel_tol=0, abs_tol=TOLERANCE):
            return [f"{where} is {found!r} but the conditions give {expected!r}"]
        return []
    return [] if expected == found else [f"{where} is {found!r} but the conditions give {expected!r}"]


TRACK_WEIGHTS = Path("weights") / "registry.json"  # a track folder's own weights registry
TRACKS = ("label-noise",)  # the folders whose own weights registry is honoured


def track_weights(directory: str | os.PathLike) -> dict[str, Any] | None:
    """``DIR/weights/registry.json`` (model -> entry name -> dataset, sha256, state_sha256,
    command, label-noise setting), where a track's runner records the weights it trained; None
    where there is none, and for every folder that is not a track (``TRACKS``): the main board
    accepts registered weights only, whatever files sit beside its entries."""
    path = Path(directory) / TRACK_WEIGHTS
    if Path(directory).resolve().name not in TRACKS or not path.is_file():
        return None
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("kind") != "fmbench-track-weights" or not isinstance(doc.get("weights"), dict):
        raise ResultError(f"{path}: not a track weights registry (kind fmbench-track-weights)")
    seen: dict[str, str] = {}
    for model, records in doc["weights"].items():
        for stem, w in (records.items() if isinstance(records, dict) else ()):
            for key in ("sha256", "state_sha256"):
                h = w.get(key) if isinstance(w, dict) else None
                if isinstance(h, str) and seen.setdefault(h.lower(), stem) != stem:
                    raise ResultError(f"{path}: {model} {stem!r} lists the same weights ({key} {h[:12]}…) as "
                                      f"{seen[h.lower()]!r}; one training cannot be two entries")
    return doc["weights"]


def for_entry(track: dict[str, Any] | None, path: str | os.PathLike) -> dict[str, Any] | None:
    """The records of a track registry that belong to one entry file (keyed by its stem)."""
    if not track:
        return None
    stem = Path(path).stem
    return {m: {stem: d[stem]} for m, d in track.items() if isinstance(d, dict) and stem in d}


def check_entry(entry: Any, registry: Registry, schema_check: Callable[[Any], list[str]],
                baselines: dict[tuple[str, str], dict[str, Any]] | None = None,
                require_baselines: bool = True, track: dict[str, Any] | None = None) -> list[str]:
    """Every problem with one entry: schema, protocol hash, summaries against the conditions,
    scores against the per-image IoU, and (given the folder's ``baselines``) the degenerate
    check; without baselines for its table that check cannot run, a problem when
    ``require_baselines``."""
    problems = schema_check(entry)
    if problems:
        return problems
    problems = guard.entry_problems(entry, registry)
    proto = entry["protocol"]
    known = {p.hash: p for p in registry.protocols.values()}
    if proto["hash"] not in known:
        ids = ", ".join(f"{p.id} {p.hash}" for p in registry.protocols.values())
        problems.append(f"protocol hash {proto['hash']} ({proto['id']}) is not a registered protocol version "
                        f"(registered: {ids or 'none'})")
    elif known[proto["hash"]].id != proto["id"]:
        problems.append(f"protocol id {proto['id']!r} does not match its hash {proto['hash']}, "
                        f"which is {known[proto['hash']].id!r}")
    consistency = integrity.consistency(entry, registry, track)
    if consistency:  # the per-image values are what every other number is checked against
        return problems + consistency
    try:
        expected = summarize(entry["conditions"])
    except (StopIteration, KeyError, TypeError, ValueError) as exc:
        return problems + [f"conditions cannot be summarised ({type(exc).__name__}: no reference condition?)"]
    problems += _compare(expected, entry["summary"], "summary")
    try:
        computed = scores.compute(entry["conditions"], entry["per_image"]["iou"])
    except (KeyError, TypeError, ValueError, StopIteration) as exc:
        return problems + [f"scores cannot be computed from per_image ({type(exc).__name__}: {exc})"]
    problems += [p.replace("the conditions give", "the per-image IoU gives")
                 for p in _compare(computed, entry["scores"], "scores")]
    if baselines is not None:
        problems += _baseline_problems(entry, baselines, require_baselines)
    return problems


def _baseline_problems(entry: dict[str, Any], docs: dict[tuple[str, str], dict[str, Any]],
                       required: bool = True) -> list[str]:
    """The entry against its table's baselines: they exist, cover its images, and its clean
    IoU clearly beats the best trivial one (else it is degenerate and not ranked)."""
    key = (entry["protocol"]["hash"], entry["dataset"]["ref"])
    doc = docs.get(key)
    if doc is None:
        return [] if not required else [f"no baselines for {key[1]} under {entry['protocol']['id']} in the baselines/ folder "
                f"(make them with `fmbench leaderboard baselines --dataset {key[1]} --tier {entry['protocol']['id']}`)"]
    where = {image: k for k, image in enumerate(doc["per_image"]["ids"])}
    ids = entry["per_image"]["ids"]
    if any(i not in where for i in ids):
        return [f"the baselines of {key[1]} under {entry['protocol']['id']} do not cover the entry's images"]
    trivial = {name: [per_cond["reference"][where[i]] for i in ids] for name, per_cond in doc["per_image"]["iou"].items()}
    reason = scores.degenerate(entry["per_image"]["iou"]["reference"], trivial)
    return [f"degenerate: {reason}"] if reason else []


def entry_paths(directory: str | os.PathLike) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        raise ResultError(f"leaderboard directory {directory} does not exist")
    return sorted(directory.glob("*.json"))


def default_dir() -> Path:
    """Where the entries are read from unless a folder is named: ``./leaderboard`` when there is
    one (a clone of the repository, a contributor's work), else the reference entries installed
    with fmbench (the ``fmbench_leaderboard`` package), so the commands work from any folder."""
    here = Path("leaderboard")
    if here.is_dir():
        return here
    import importlib.resources

    try:
        return Path(str(importlib.resources.files("fmbench_leaderboard")))
    except ModuleNotFoundError:
        return here


def load_baselines(directory: str | os.PathLike) -> tuple[dict[tuple[str, str], dict[str, Any]], list[str]]:
    """The baselines documents of ``directory/baselines/``, by (protocol hash, dataset), and
    one problem line for each that does not check."""
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    problems = []
    for path in sorted((Path(directory) / "baselines").glob("*.json")):
        try:
            doc = read_json(path)
        except ResultError as exc:
            problems.append(_file_problem(path, exc))
            continue
        found = check_baselines(doc) if isinstance(doc, dict) and doc.get("kind") == BASELINES_KIND \
            else [f"not a baselines document (kind {doc.get('kind') if isinstance(doc, dict) else None!r})"]
        problems += [f"{path}: {p}" for p in found]
        if not found:
            docs[(doc["protocol"]["hash"], doc["dataset"]["ref"])] = doc
    return docs, problems


def _file_problem(path: Path, exc: ResultError) -> str:
    """``PATH: what is wrong`` from :func:`fmbench.files.read_json`'s error."""
    msg = exc.message
    for prefix in (f"{path} is ", f"{path} "):
        if msg.startswith(prefix):
            return f"{path}: {msg[len(prefix):]}"
    return f"{path}: {msg}"


def validate_dir(directory: str | os.PathLike, registry: Registry) -> tuple[str, int, list[str]]:
    """``(validator name, number of files, problems)``; each problem is one line naming its file."""
    name, schema_check = schema_validator()
    paths = entry_paths(directory)
    base, problems = load_baselines(directory)
    track = track_weights(directory)
    try:
        checks = masking.load(directory)
    except ResultError as exc:
        problems.append(str(exc))
        checks = {}
    loaded = []
    for path in paths:
        try:
            entry = read_json(path)
        except ResultError as exc:  # not JSON, not UTF-8, a duplicate key, too deep or too large
            problems.append(_file_problem(path, exc))
            continue
        found = check_entry(entry, registry, schema_check, base, track=for_entry(track, path))
        found += guard.name_problems(path, entry) if isinstance(entry, dict) else []
        mismatch = None if found else masking.entry_problem(entry, checks)
        found += [f"the gradient-masking check of its weights ({masking.FILE}) is not of this entry: {mismatch}"
                  ] if mismatch else []
        problems += [f"{path}: {p}" for p in found]
        if not found:
            loaded.append((str(path), entry))
    if Path(directory).resolve().name in TRACKS:  # the study made of the track's entries must be one it can make
        from ..noise_study import studies
        problems += [f"{directory}: {m} on {d} ({pid}): {err}" for m, d, pid, err in
                     studies([{**e, "_path": p} for p, e in loaded]) if isinstance(err, ResultError)]
    return name, len(paths), problems + duplicates(loaded) + guard.same_weights(loaded)


def load_entries(directory: str | os.PathLike, registry: Registry | None = None) -> list[dict[str, Any]]:
    """Every entry of a directory; when ``registry`` is given, an invalid entry is an error
    (nothing is ranked from a file that does not validate, nor a degenerate one where the
    folder has its table's baselines)."""
    entries = []
    schema_check = schema_validator()[1] if registry is not None else None
    base = load_baselines(directory)[0] if registry is not None else None
    track = track_weights(directory) if registry is not None else None
    checks = masking.load(directory) if registry is not None else {}
    for path in entry_paths(directory):
        entry = guard.strip_derived(read_json(path)) if registry is None else read_json(path)
        if registry is not None and schema_check is not None:
            problems = check_entry(entry, registry, schema_check, base, require_baselines=False,
                                   track=for_entry(track, path)) + guard.name_problems(path, entry)
            if problems:
                raise ResultError(f"{path}: {problems[0]} (every problem: `fmbench leaderboard validate`)")
        entry["_path"] = str(path)
        if registry is not None:  # read by the tables' `unpinned-weights` flag
            entry["_pinned"] = integrity.weights_pinned(entry, registry, for_entry(track, path))
        entries.append(entry)
    by_sha = {str(e["model"].get("state_sha256")): e for e in entries}
    for entry in entries if registry is not None else ():
        entry["_masking"] = masking.flag(entry, checks, by_sha)  # read by the tables' masking flags
    twice = duplicates([(e["_path"], e) for e in entries]) + guard.same_weights([(e["_path"], e) for e in entries])
    if registry is not None and twice:
        raise ResultError(f"{twice[0]}; an entry is ranked once (every problem: `fmbench leaderboard validate`)")
    return entries


def duplicates(entries: list[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """One problem per entry that repeats another's (model, defense, dataset, protocol)."""
    seen: dict[tuple[str, str, str], str] = {}
    problems = []
    for path, e in entries:
        try:
            key = (model_label(dict(e)), e["dataset"]["ref"], e["protocol"]["hash"])
        except (KeyError, TypeError):
            continue
        if key in seen:
            problems.append(f"{path}: the same model, defense, dataset and protocol as {seen[key]}")
        else:
            seen[key] = path
    return problems
