"""The result of a run: the document assembled from the chunk records, its summaries, and
:class:`Result`, the typed view over it that the API returns and the CLI, the leaderboard
code and the benchmarks read.

Everything that varies between two identical runs (dates, durations, host, the command line)
lives under the single key ``"run"``; the rest of a result document is a pure function of
the model, data, protocol and device.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import __version__
from .errors import ResultError
from .files import dumps, read_json, write_json
from .metrics import iou_dice, relative

if TYPE_CHECKING:  # names for annotations only
    from rich.table import Table

    from .conditions import Condition
    from .data import Dataset
    from .model import LoadedModel
    from .protocol import Protocol


SCHEMA_VERSION = 1
PASS_KEYS = ("forward_calls", "forward_images", "backward_calls", "backward_images")


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return math.fsum(kept) / len(kept) if kept else None


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


def assemble(header: dict[str, Any], protocol: Protocol, conditions: Sequence[Condition], records: list[dict[str, Any]], loaded: LoadedModel, dataset: Dataset, dataset_ref: str,
             device: torch.device) -> dict[str, Any]:
    """The result document from the chunk records (any order; resumed or not)."""
    records = sorted(records, key=lambda r: r["batch"])
    ids: list[str] = []
    for r in records:
        if r["condition"] == "reference":
            ids.extend(r["ids"])
    per_image: dict[str, dict[str, list[float]]] = {"iou": {}, "dice": {}}
    cond_out: list[dict[str, Any]] = []
    for cond in conditions:
        rs = [r for r in records if r["condition"] == cond.id]
        counts = {k: torch.tensor([v for r in rs for v in r[k]]) for k in ("inter", "union", "pred", "true")}
        iou, dice = iou_dice(counts)
        iou_l, dice_l = iou.tolist(), dice.tolist()
        per_image["iou"][cond.id] = iou_l
        per_image["dice"][cond.id] = dice_l
        passes = {k: sum(r["passes"][k] for r in rs) for k in PASS_KEYS}
        inter, union = int(counts["inter"].sum()), int(counts["union"].sum())
        pt = int((counts["pred"] + counts["true"]).sum())
        cond_out.append({
            "id": cond.id, "kind": cond.kind, "name": cond.name, "family": cond.family,
            "level": cond.level, "label": cond.label, "norm": cond.norm,
            "iou": math.fsum(iou_l) / len(iou_l), "dice": math.fsum(dice_l) / len(dice_l),
            "iou_pooled": inter / union if union else 1.0, "dice_pooled": 2 * inter / pt if pt else 1.0,
            "n_images": len(iou_l), "passes": passes,
        })
    ref_iou = per_image["iou"]["reference"]
    for c in cond_out:
        ratios, mean = relative(per_image["iou"][c["id"]], ref_iou)
        c["robustness"] = mean
        c["n_images_without_ratio"] = sum(r is None for r in ratios)
    totals = {k: sum(c["passes"][k] for c in cond_out) for k in cond_out[0]["passes"]}
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "fmbench-result",
        "fmbench_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "protocol": {"id": protocol.id, "name": protocol.name, "version": protocol.version,
                     "hash": protocol.hash, "content": protocol.content()},
        "model": {
            "ref": loaded.ref, "args": loaded.args, "checkpoint_sha256": loaded.weights_sha256,
            "parameters": loaded.n_parameters,
            "meta": loaded.meta,
            "plugin": loaded.spec.plugin if loaded.spec else None,
        },
        "dataset": {"ref": dataset_ref, "split": protocol.split, "synthetic": bool(dataset.synthetic),
                    "n_images": len(ids)},
        "device": device.type,
        "batch_size": header["batch_size"],
        "conditions": cond_out,
        "summary": summarize(cond_out),
        "passes": totals,
        "per_image": {"ids": ids, **per_image},
    }


class Result(Mapping):
    """A result document with typed access: ``.summary``, ``.conditions``, ``.per_image``...

    It is also a read-only mapping over the document (``result["summary"]``), so code that
    reads result JSON reads a :class:`Result` the same way.  :meth:`to_json` and :meth:`save`
    write exactly the document; :meth:`load` reads one back.
    """

    def __init__(self, document: dict[str, Any], path: str | os.PathLike | None = None):
        if not isinstance(document, dict) or document.get("kind") != "fmbench-result":
            found = document.get("kind") if isinstance(document, dict) else type(document).__name__
            raise ResultError(f"{path or 'document'}: not an fmbench result (kind {found!r})")
        self.document = document
        self.path = Path(path) if path is not None else None

    # the mapping view
    def __getitem__(self, key: str) -> Any:
        return self.document[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.document)

    def __len__(self) -> int:
        return len(self.document)

    def __repr__(self) -> str:
        s = self.summary
        return (f"Result({self.model['ref']!r} on {self.dataset['ref']!r}, {self.protocol['id']}: "
                f"clean IoU {_fmt(s['clean_iou'])}, corruption robustness {_fmt(s['corruption_robustness'])}, "
                f"adversarial robustness {_fmt(s['adversarial_robustness'])})")

    @property
    def summary(self) -> dict[str, Any]:
        return self.document["summary"]

    @property
    def conditions(self) -> list[dict[str, Any]]:
        return self.document["conditions"]

    @property
    def per_image(self) -> dict[str, Any]:
        return self.document["per_image"]

    @property
    def protocol(self) -> dict[str, Any]:
        return self.document["protocol"]

    @property
    def model(self) -> dict[str, Any]:
        return self.document["model"]

    @property
    def dataset(self) -> dict[str, Any]:
        return self.document["dataset"]

    @property
    def warnings(self) -> list[str]:
        return list(self.document.get("warnings", []))

    @property
    def run(self) -> dict[str, Any]:
        return dict(self.document.get("run") or {})

    def condition(self, cond_id: str) -> dict[str, Any]:
        """One condition's scores by id (``"noise@2"``, ``"pgd@8/255"``)."""
        for c in self.conditions:
            if c["id"] == cond_id:
                return c
        raise ResultError(f"no condition {cond_id!r} in this result "
                          f"(it has: {', '.join(c['id'] for c in self.conditions)})")

    def to_json(self) -> str:
        return dumps(self.document)

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the document atomically; an existing file is kept unless ``overwrite``."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise ResultError(f"{path} already exists", hints=("overwrite", "out"))
        write_json(path, self.document)
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Result":
        return cls(read_json(path), path)

    def table(self) -> Table:
        """A rich table: one row per condition, then the summary scores."""
        return summary_table(self.document)


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def summary_table(result: Mapping[str, Any]) -> Table:
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
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for c in result["conditions"]:
        table.add_row(c["label"], c["family"], _fmt(c["iou"]), _fmt(c["dice"]), _fmt(c["robustness"]),
                      f"{c['passes']['forward_images']}/{c['passes']['backward_images']}")
    s = result["summary"]
    table.add_section()
    table.add_row("[b]clean IoU[/b]", "", _fmt(s["clean_iou"]), _fmt(s["clean_dice"]), "", "")
    for name, fam in s["families"].items():
        table.add_row(f"[b]{name}[/b] (mean)", fam["kind"], _fmt(fam["iou"]), "", _fmt(fam["robustness"]), "")
    table.add_row("[b]corruption robustness[/b]", "", "", "", _fmt(s["corruption_robustness"]), "")
    table.add_row("[b]adversarial robustness[/b]", "", "", "", _fmt(s["adversarial_robustness"]), "")
    return table
