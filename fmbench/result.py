"""Result files: atomic writes, the append-only partial log that makes runs resumable, the
final result document and its terminal summary.

Everything that varies between two identical runs (dates, durations, host, the command line)
lives under the single key ``"run"``; the rest of a result file is a pure function of the
model, data, protocol and device.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ResultError

SCHEMA_VERSION = 1


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write a file through a temporary sibling and ``os.replace``: readers never see half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a result is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    text = dumps(obj)
    atomic_write(path, lambda f: f.write(text), mode="w")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ResultError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def partial_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial.jsonl")


class PartialLog:
    """An append-only JSON-lines log of finished (batch, condition) chunks.

    The first line is the run's identity; ``resume=True`` checks it against the current run
    and returns the chunks already done.  A line cut short by a kill is ignored.
    """

    def __init__(self, path: Path, header: dict[str, Any], resume: bool):
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []
        if resume and self.path.exists():
            lines = self.path.read_text().splitlines()
            try:
                first = json.loads(lines[0]) if lines else None
            except json.JSONDecodeError:
                first = None
            if first != {"header": header}:
                diff = []
                if isinstance(first, dict) and isinstance(first.get("header"), dict):
                    diff = [k for k in header if first["header"].get(k) != header[k]]
                what = f" ({', '.join(diff)} differ)" if diff else ""
                raise ResultError(
                    f"partial run {self.path} was made with different settings{what}; "
                    f"use --overwrite to start over"
                )
            for line in lines[1:]:
                try:
                    self.records.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # the last line of a killed run
            good = "".join(json.dumps(x) + "\n" for x in [{"header": header}] + self.records)
            atomic_write(self.path, lambda f: f.write(good), mode="w")
        else:
            line = json.dumps({"header": header}) + "\n"
            atomic_write(self.path, lambda f: f.write(line), mode="w")
        self.done = {(r["batch"], r["condition"]) for r in self.records}

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)
        self.done.add((record["batch"], record["condition"]))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return math.fsum(values) / len(values) if values else None


def summarize(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    """Clean IoU, robustness per family, and overall corruption and attack robustness.

    A family's robustness is the mean of its conditions' robustness; the corruption (attack)
    robustness is the mean over corruption (attack) families, each family weighted equally.
    """
    ref = next(c for c in conditions if c["kind"] == "reference")
    families: dict[str, dict[str, Any]] = {}
    for c in conditions:
        if c["kind"] == "reference":
            continue
        fam = families.setdefault(c["family"], {"kind": c["kind"], "conditions": []})
        fam["conditions"].append(c)
    fam_out = {}
    for name, fam in families.items():
        fam_out[name] = {
            "kind": fam["kind"],
            "robustness": _mean(c["robustness"] for c in fam["conditions"]),
            "iou": _mean(c["iou"] for c in fam["conditions"]),
            "worst_iou": min(c["iou"] for c in fam["conditions"]),
            "n_conditions": len(fam["conditions"]),
        }
    return {
        "clean_iou": ref["iou"],
        "clean_dice": ref["dice"],
        "corruption_robustness": _mean(f["robustness"] for f in fam_out.values() if f["kind"] == "corruption"),
        "adversarial_robustness": _mean(f["robustness"] for f in fam_out.values() if f["kind"] == "attack"),
        "families": fam_out,
    }


def summary_table(result: dict[str, Any]):
    """A rich table of a result: one row per condition, then the summary scores."""
    from rich.markup import escape
    from rich.table import Table

    model = result["model"]["ref"]
    recipe = (result["model"].get("meta") or {}).get("recipe") or {}
    if recipe.get("defense", "none") != "none":
        model += f" [{recipe['defense']}]"  # a defended model is marked wherever results appear
    title = (f"fmbench {result['protocol']['id']}  ·  {escape(model)} on {result['dataset']['ref']} "
             f"({result['dataset']['n_images']} images)")
    table = Table(title=title, title_justify="left")
    for col, just in [("condition", "left"), ("family", "left"), ("IoU", "right"), ("Dice", "right"),
                      ("robustness", "right"), ("fwd/bwd passes", "right")]:
        table.add_column(col, justify=just)

    def fmt(v):
        return "—" if v is None else f"{v:.3f}"

    for c in result["conditions"]:
        table.add_row(c["label"], c["family"], fmt(c["iou"]), fmt(c["dice"]), fmt(c["robustness"]),
                      f"{c['passes']['forward_images']}/{c['passes']['backward_images']}")
    s = result["summary"]
    table.add_section()
    table.add_row("[b]clean IoU[/b]", "", fmt(s["clean_iou"]), fmt(s["clean_dice"]), "", "")
    for name, fam in s["families"].items():
        table.add_row(f"[b]{name}[/b] (mean)", fam["kind"], fmt(fam["iou"]), "", fmt(fam["robustness"]), "")
    table.add_row("[b]corruption robustness[/b]", "", "", "", fmt(s["corruption_robustness"]), "")
    table.add_row("[b]adversarial robustness[/b]", "", "", "", fmt(s["adversarial_robustness"]), "")
    return table
