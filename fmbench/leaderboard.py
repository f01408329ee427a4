"""Leaderboard entries: one JSON file per (model, dataset, protocol), built from a result,
validated against ``fmbench/schema/leaderboard-entry.schema.json``, ranked, compared with a
user's result, and rendered as the README's leaderboard table.

Entries are only ever ranked with entries of the same protocol hash and dataset: a different
protocol version (or a customised ``+variant``) measures something else.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import ResultError
from .result import read_json, summarize, write_json

ENTRY_SCHEMA_VERSION = 1
ENTRY_KIND = "fmbench-leaderboard-entry"
SCHEMA_PATH = Path(__file__).parent / "schema" / "leaderboard-entry.schema.json"
README_START = "<!-- leaderboard:start -->"
README_END = "<!-- leaderboard:end -->"
SORT_KEYS = {"adversarial": "adversarial_robustness", "corruption": "corruption_robustness", "clean": "clean_iou"}
TOLERANCE = 1e-9
CONDITION_FIELDS = ("id", "kind", "name", "family", "level", "label", "norm", "iou", "dice", "robustness",
                    "n_images")


# ---------------------------------------------------------------- building entries

def describe_hardware(device: str) -> str:
    """A short description of the machine a result was computed on."""
    if device.startswith("cuda"):
        try:
            import torch

            if torch.cuda.is_available():
                return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
        except Exception:  # pragma: no cover - a broken CUDA install still gets an entry
            pass
        return "CUDA device"
    cpu = platform.processor() or platform.machine() or "unknown CPU"
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()}"


def build_entry(result: dict[str, Any], *, hardware: str | None = None, command: str | None = None) -> dict[str, Any]:
    """A leaderboard entry from a result document: provenance, every condition's scores, the
    summary (recomputed from those conditions) and the per-image IoU.  Training recipe, seed
    and defence come from the checkpoint metadata when the checkpoint carries it, else null."""
    if result.get("kind") != "fmbench-result":
        raise ResultError(f"expected an fmbench result document, found kind {result.get('kind')!r}")
    meta = result["model"].get("meta") or {}
    recipe = meta.get("recipe") if isinstance(meta.get("recipe"), dict) else None
    defence = meta.get("defence", meta.get("defense"))
    if defence is None and recipe is not None:
        defence = recipe.get("defence", recipe.get("defense"))
    run = result.get("run") or {}
    conditions = [{k: c[k] for k in CONDITION_FIELDS} for c in result["conditions"]]
    per_image = result.get("per_image") or {}
    entry = {
        "schema_version": ENTRY_SCHEMA_VERSION,
        "kind": ENTRY_KIND,
        "model": {
            "ref": result["model"]["ref"],
            "args": {**(meta.get("model_args") or {}), **(result["model"].get("args") or {})},
            "weights_sha256": result["model"].get("checkpoint_sha256"),
            "parameters": result["model"].get("parameters"),
            "plugin": result["model"].get("plugin"),
            "training": {
                "recipe": recipe,
                "seed": meta.get("seed") if isinstance(meta.get("seed"), int) else None,
                "defence": defence if isinstance(defence, str) else None,
                "dataset": meta.get("dataset"),
                "protocol": meta.get("protocol"),
                "val_iou": meta.get("val_iou"),
                "command": meta.get("command") if isinstance(meta.get("command"), str) else None,
            },
        },
        "dataset": dict(result["dataset"]),
        "protocol": {k: result["protocol"][k] for k in ("id", "name", "version", "hash")},
        "provenance": {
            "fmbench_version": result["fmbench_version"],
            "torch_version": result["torch_version"],
            "python_version": result.get("python_version", ""),
            "date": run.get("finished") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "device": result["device"],
            "hardware": hardware or describe_hardware(result["device"]),
            "command": command or run.get("command", ""),
            "batch_size": result["batch_size"],
            "seconds": run.get("seconds"),
        },
        "conditions": conditions,
        "summary": summarize(conditions),
        "warnings": list(result.get("warnings", [])),
    }
    if per_image.get("ids") and per_image.get("iou"):
        entry["per_image"] = {"ids": list(per_image["ids"]), "iou": per_image["iou"]}
    return entry


def write_entry(path: str | os.PathLike, entry: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write an entry atomically; an existing file is kept unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ResultError(f"{path} already exists; pass --overwrite to replace it")
    write_json(path, entry)
    return path


def as_entry(doc: dict[str, Any]) -> dict[str, Any]:
    """An entry from an entry or a result document."""
    if doc.get("kind") == ENTRY_KIND:
        return doc
    return build_entry(doc, hardware="", command="")


# ---------------------------------------------------------------- validation

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

    def check(entry):
        out = []
        for err in sorted(validator.iter_errors(entry), key=lambda e: list(e.absolute_path)):
            path = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err.absolute_path)
            out.append(f"{path.replace('.[', '[') or '(top level)'}: {err.message}")
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


def check_entry(entry: Any, registry, schema_check) -> list[str]:
    """Every problem with one entry: schema, protocol hash, summaries against details."""
    problems = schema_check(entry)
    if problems:
        return problems
    proto = entry["protocol"]
    known = {p.hash: p for p in registry.protocols.values()}
    if proto["hash"] not in known:
        ids = ", ".join(f"{p.id} {p.hash}" for p in registry.protocols.values())
        problems.append(f"protocol hash {proto['hash']} ({proto['id']}) is not a registered protocol version "
                        f"(registered: {ids or 'none'})")
    elif known[proto["hash"]].id != proto["id"]:
        problems.append(f"protocol id {proto['id']!r} does not match its hash {proto['hash']}, "
                        f"which is {known[proto['hash']].id!r}")
    try:
        expected = summarize(entry["conditions"])
    except (StopIteration, KeyError, TypeError, ValueError) as exc:
        return problems + [f"conditions cannot be summarised ({type(exc).__name__}: no reference condition?)"]
    problems += _compare(expected, entry["summary"], "summary")
    return problems


def entry_paths(directory: str | os.PathLike) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        raise ResultError(f"leaderboard directory {directory} does not exist")
    return sorted(directory.glob("*.json"))


def validate_dir(directory: str | os.PathLike, registry) -> tuple[str, int, list[str]]:
    """``(validator name, number of files, problems)``; each problem is one line naming its file."""
    name, schema_check = schema_validator()
    problems = []
    paths = entry_paths(directory)
    for path in paths:
        try:
            entry = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            problems.append(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
            continue
        problems += [f"{path}: {p}" for p in check_entry(entry, registry, schema_check)]
    return name, len(paths), problems


def load_entries(directory: str | os.PathLike, registry=None) -> list[dict[str, Any]]:
    """Every entry of a directory; when ``registry`` is given, an invalid entry is an error
    (nothing is ranked from a file that does not validate)."""
    entries = []
    schema_check = schema_validator()[1] if registry is not None else None
    for path in entry_paths(directory):
        entry = read_json(path)
        if registry is not None:
            problems = check_entry(entry, registry, schema_check)
            if problems:
                raise ResultError(f"{path}: {problems[0]} (run `fmbench leaderboard validate`)")
        entry["_path"] = str(path)
        entries.append(entry)
    return entries


# ---------------------------------------------------------------- ranking

def model_label(entry: dict[str, Any]) -> str:
    defence = entry["model"]["training"].get("defence")
    label = entry["model"]["ref"]
    if defence and defence != "none":
        label += f" [{defence}]"
    return label


def select(entries, *, dataset: str | None = None, tier: str | None = None) -> list[dict[str, Any]]:
    """Entries on ``dataset`` under protocol ``tier`` (a name such as ``quick`` or an id)."""
    out = []
    for e in entries:
        if dataset and e["dataset"]["ref"] != dataset:
            continue
        if tier and tier not in (e["protocol"]["name"], e["protocol"]["id"]):
            continue
        out.append(e)
    return out


def _score(entry, key: str) -> float | None:
    return entry["summary"].get(key) if key in entry["summary"] else entry["summary"]["families"].get(key, {}).get("robustness")


def groups(entries, sort: str = "adversarial") -> list[dict[str, Any]]:
    """Entries grouped by (protocol hash, dataset), each group ranked by ``sort`` (higher
    first, missing scores last).  Groups are never merged."""
    key = SORT_KEYS[sort]
    by: dict[tuple[str, str], list] = {}
    for e in entries:
        by.setdefault((e["protocol"]["hash"], e["dataset"]["ref"]), []).append(e)
    out = []
    for (h, ds), es in sorted(by.items(), key=lambda kv: (kv[1][0]["protocol"]["id"], kv[0][1], kv[0][0])):
        es = sorted(es, key=lambda e: (_score(e, key) is None, -(_score(e, key) or 0.0), model_label(e)))
        out.append({"protocol_id": es[0]["protocol"]["id"], "protocol_hash": h, "dataset": ds, "sort": sort,
                    "entries": es})
    return out


def rows(group: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for rank, e in enumerate(group["entries"], 1):
        s = e["summary"]
        out.append({
            "rank": rank, "model": model_label(e), "dataset": e["dataset"]["ref"],
            "protocol": e["protocol"]["id"], "protocol_hash": e["protocol"]["hash"],
            "clean_iou": s["clean_iou"], "corruption_robustness": s["corruption_robustness"],
            "adversarial_robustness": s["adversarial_robustness"], "n_images": e["dataset"]["n_images"],
            "weights_sha256": e["model"].get("weights_sha256"),
        })
    return out


def _f(v) -> str:
    return "—" if v is None else f"{v:.3f}"


COLUMNS = [("rank", "#"), ("model", "model"), ("clean_iou", "clean IoU"),
           ("corruption_robustness", "corruption rob."), ("adversarial_robustness", "adversarial rob."),
           ("n_images", "images")]


def _cell(row, key) -> str:
    from rich.markup import escape

    v = row[key]
    return _f(v) if key.endswith(("_iou", "_robustness")) else escape(str(v))  # "m [pgd-at]" is not markup


def _title(group) -> str:
    return (f"{group['dataset']} · {group['protocol_id']} (protocol {group['protocol_hash']}), "
            f"sorted by {group['sort']} robustness" if group["sort"] != "clean" else
            f"{group['dataset']} · {group['protocol_id']} (protocol {group['protocol_hash']}), sorted by clean IoU")


def render_tables(gs) -> list:
    """One rich table per (protocol, dataset) group."""
    from rich.table import Table

    tables = []
    for g in gs:
        t = Table(title=_title(g), title_justify="left")
        for key, head in COLUMNS:
            t.add_column(head, justify="left" if key == "model" else "right")
        for r in rows(g):
            t.add_row(*[_cell(r, k) for k, _ in COLUMNS])
        tables.append(t)
    return tables


def render_markdown(gs) -> str:
    """Markdown tables, one per (protocol, dataset) group; an honest line when empty."""
    if not gs:
        return "No entries yet.\n"
    parts = []
    for g in gs:
        lines = [f"**{_title(g)}**", "", "| " + " | ".join(h for _, h in COLUMNS) + " |",
                 "| " + " | ".join("---" if k == "model" else "---:" for k, _ in COLUMNS) + " |"]
        lines += ["| " + " | ".join(_cell(r, k) for k, _ in COLUMNS) + " |" for r in rows(g)]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def render_csv(gs) -> str:
    buf = io.StringIO()
    fields = ["protocol", "protocol_hash", "dataset", "rank", "model", "clean_iou", "corruption_robustness",
              "adversarial_robustness", "n_images", "weights_sha256"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for g in gs:
        for r in rows(g):
            w.writerow({k: r[k] for k in fields})
    return buf.getvalue()


def render_json(gs) -> str:
    return json.dumps([{k: g[k] for k in ("protocol_id", "protocol_hash", "dataset", "sort")} | {"rows": rows(g)}
                       for g in gs], indent=2) + "\n"


# ---------------------------------------------------------------- README

def readme_section(entries) -> str:
    """The generated text that goes between the README markers."""
    note = ("<!-- generated by `fmbench leaderboard --update-readme` from leaderboard/*.json; "
            "do not edit by hand -->\n")
    gs = groups(entries, "adversarial")
    return note + render_markdown(gs) + (correlation_markdown(gs) if gs else "")


def correlation_markdown(gs) -> str:
    """The README's correlation summary: per protocol and dataset, across its models, overall
    corruption robustness against adversarial robustness (``fmbench analyze``'s numbers:
    2000 bootstrap resamples, seed 0)."""
    from .analysis import PARTIAL, across_entries

    def f(v, fmt=".2f"):
        return "—" if v is None else format(v, fmt)

    lines = ["", "Corruption robustness against adversarial robustness across the models of each table "
             "(`fmbench analyze --dataset D`; 95 % bootstrap CIs). The partial ρ holds clean IoU fixed: "
             "robustness is relative to each model's clean IoU, so weak models tend to score high on both "
             "and can make the plain correlation look stronger than it is.", "",
             "| protocol | dataset | models | Spearman ρ [95 % CI] | p | Pearson r [95 % CI] | p "
             "| partial ρ, clean IoU fixed [95 % CI] | p |",
             "| --- | --- | ---: | --- | ---: | --- | ---: | --- | ---: |"]
    for g in gs:
        es = [e for e in g["entries"] if e["summary"]["adversarial_robustness"] is not None
              and e["summary"]["corruption_robustness"] is not None]
        head = f"| {g['protocol_id']} | {g['dataset']} | {len(es)} |"
        if len(es) < 3:
            lines.append(head + " needs ≥ 3 models | | | | | |")
            continue
        cs = across_entries(es)["correlations"]
        cells = []
        for c, k in ((cs["corruption (overall)"], "spearman"), (cs["corruption (overall)"], "pearson"),
                     (cs[PARTIAL], "spearman")):
            lo, hi = c[k]["ci95"]
            cells += [f"{f(c[k]['r'])} [{f(lo)}, {f(hi)}]", f(c[k]["p"], ".2g")]
        lines.append(head + " " + " | ".join(cells) + " |")
    if any(3 <= len(g["entries"]) < 10 for g in gs):
        lines += ["", "With fewer than about ten models these are weak evidence: a percentile bootstrap over a "
                  "handful of points is unreliable (degenerate for three), and Spearman's permutation p-value "
                  "cannot fall below 2/n! (0.33 for three models, 0.083 for four)."]
    return "\n".join(lines) + "\n"


def replace_section(text: str, section: str) -> str:
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ResultError(f"README has no {README_START} ... {README_END} markers")
    return text[:start + len(README_START)] + "\n" + section + text[end:]


def readme_is_current(readme: str | os.PathLike, entries) -> bool:
    text = Path(readme).read_text()
    return replace_section(text, readme_section(entries)) == text


def update_readme(readme: str | os.PathLike, entries) -> bool:
    """Regenerate the README's leaderboard section; True when the file changed."""
    path = Path(readme)
    text = path.read_text()
    new = replace_section(text, readme_section(entries))
    if new == text:
        return False
    from .result import atomic_write

    atomic_write(path, lambda f: f.write(new), mode="w")
    return True


# ---------------------------------------------------------------- compare

def compare(doc: dict[str, Any], entries, sort: str = "adversarial") -> dict[str, Any]:
    """Where a result would rank among entries with its protocol hash and dataset: for the
    clean IoU, the overall scores and each family, the rank it would take, the entries just
    above and below it and the best entry, with differences (yours minus theirs).

    An entry of the same model (same reference and defence) is the one the result would
    replace: it is left out of the ranking and reported on its own (``own``), so a re-run of a
    listed model is not ranked against itself."""
    mine = as_entry(doc)
    h, ds = mine["protocol"]["hash"], mine["dataset"]["ref"]
    peers = [e for e in entries if e["protocol"]["hash"] == h and e["dataset"]["ref"] == ds]
    label = model_label(mine)
    own = next((e for e in peers if model_label(e) == label), None)
    peers = [e for e in peers if model_label(e) != label]
    if not peers and own is None:
        others = sorted({f"{e['dataset']['ref']} · {e['protocol']['id']} ({e['protocol']['hash']})" for e in entries})
        raise ResultError(f"no leaderboard entry has protocol {mine['protocol']['id']} ({h}) and dataset {ds!r}; "
                          f"entries exist for: {', '.join(others) or 'none'}")
    metrics = [("clean_iou", "clean IoU"), ("corruption_robustness", "corruption robustness"),
               ("adversarial_robustness", "adversarial robustness")]
    fams = list(mine["summary"]["families"])
    metrics += [(f, f"{f} ({mine['summary']['families'][f]['kind']})") for f in fams]
    def versus(yours, x):
        return None if x is None else {"model": x[1], "score": x[0], "diff": yours - x[0]}

    out_rows = []
    for key, text in metrics:
        yours = _score(mine, key)
        scored = sorted(((s, model_label(e)) for e in peers if (s := _score(e, key)) is not None),
                        key=lambda x: -x[0])
        theirs = None if own is None else _score(own, key)
        if yours is None or (not scored and theirs is None):
            continue
        rank = 1 + sum(1 for s, _ in scored if s > yours)
        above = scored[rank - 2] if rank >= 2 else None
        below = scored[rank - 1] if rank - 1 < len(scored) else None
        out_rows.append({
            "metric": key, "label": text, "yours": yours, "rank": rank, "of": len(scored) + 1,
            "best": versus(yours, scored[0] if scored else None), "above": versus(yours, above),
            "below": versus(yours, below), "own": versus(yours, None if theirs is None else (theirs, label)),
        })
    return {"model": label, "dataset": ds, "protocol_id": mine["protocol"]["id"], "protocol_hash": h,
            "n_entries": len(peers), "own_entry": own is not None, "rows": out_rows}


def compare_table(data: dict[str, Any]):
    from rich.markup import escape
    from rich.table import Table

    own = data.get("own_entry")
    t = Table(title=(f"{escape(data['model'])} against {data['n_entries']} "
                     f"{'other ' if own else ''}entries on {data['dataset']} · "
                     f"{data['protocol_id']} (protocol {data['protocol_hash']}); Δ = yours − theirs"
                     + ("; its own entry is left out of the ranking and shown last" if own else "")),
              title_justify="left")
    cols = ("score", "yours", "rank", "best (Δ)", "above (Δ)", "below (Δ)") + (("its entry (Δ)",) if own else ())
    for col in cols:
        t.add_column(col, justify="left" if col == "score" else "right")

    def nb(x):
        return "—" if x is None else f"{escape(x['model'])} {x['score']:.3f} ({x['diff']:+.3f})"

    for r in data["rows"]:
        t.add_row(r["label"], f"{r['yours']:.3f}", f"{r['rank']}/{r['of']}", nb(r["best"]), nb(r["above"]),
                  nb(r["below"]), *((nb(r["own"]),) if own else ()))
    return t


# ---------------------------------------------------------------- re-evaluation

# options of the recorded command that recheck replaces or that do not change scores
_RECHECK_DROP = {"--out": 1, "--leaderboard-entry": 1, "--n-images": 1, "--resume": 0, "--overwrite": 0,
                 "--json": 0, "--quiet": 0}
RECHECK_TOLERANCE = 0.01


def recheck_command(entry: dict[str, Any], n_images: int, out: str | os.PathLike) -> list[str]:
    """The entry's recorded ``fmbench eval`` command, restricted to its first ``n_images``
    images and writing its result to ``out`` (arguments after ``fmbench``)."""
    import shlex

    cmd = shlex.split(entry["provenance"]["command"] or "")
    if cmd[:2] != ["fmbench", "eval"]:
        raise ResultError(f"the entry's recorded command is not an `fmbench eval` command: {entry['provenance']['command']!r}")
    args, i = [], 2
    while i < len(cmd):
        name = cmd[i].split("=", 1)[0]
        if name in _RECHECK_DROP:
            i += 1 + (_RECHECK_DROP[name] if "=" not in cmd[i] else 0)
            continue
        args.append(cmd[i])
        i += 1
    return ["eval", *args, "--n-images", str(n_images), "--out", str(out), "--quiet"]


def recheck_compare(entry: dict[str, Any], result: dict[str, Any], tolerance: float = RECHECK_TOLERANCE):
    """Compare a re-evaluation on a subset of images with the entry's per-image IoU.

    Returns ``(rows, problems)``: one row per condition ``(condition, recorded mean, new mean,
    difference)`` over the re-evaluated images; a problem for each condition whose mean IoU
    differs by more than ``tolerance`` and for missing images or conditions.
    """
    old, new = entry.get("per_image") or {}, result.get("per_image") or {}
    if not old.get("ids"):
        raise ResultError("the entry has no per-image IoU to compare with")
    where = {image: k for k, image in enumerate(old["ids"])}
    missing = [image for image in new["ids"] if image not in where]
    problems = [f"image {image} is not in the entry" for image in missing]
    rows = []
    for cond, values in new["iou"].items():
        if cond not in old["iou"]:
            problems.append(f"condition {cond} is not in the entry")
            continue
        pairs = [(old["iou"][cond][where[image]], v) for image, v in zip(new["ids"], values) if image in where]
        if not pairs:
            continue
        a = sum(p[0] for p in pairs) / len(pairs)
        b = sum(p[1] for p in pairs) / len(pairs)
        rows.append((cond, a, b, b - a))
        if abs(b - a) > tolerance:
            problems.append(f"{cond}: mean IoU {b:.4f} over {len(pairs)} images, entry has {a:.4f} "
                            f"(difference {b - a:+.4f} > tolerance {tolerance})")
    return rows, problems
