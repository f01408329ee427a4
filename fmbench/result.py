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

from . import __version__, baselines, scores
from .errors import ResultError
from .files import atomic_write, dumps, read_json
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
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": "fmbench-result",
        "fmbench_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "protocol": {"id": protocol.id, "name": protocol.name, "version": protocol.version,
                     "hash": protocol.hash, "content": protocol.content()},
        "model": {
            "ref": loaded.ref, "args": loaded.args, "checkpoint_sha256": loaded.weights_sha256,
            **({"state_sha256": loaded.state_sha256} if loaded.state_sha256 else {}),
            **({"weights": loaded.weights_name} if loaded.weights_name else {}),
            **({"source": src} if (src := getattr(loaded.module, "fmbench_source", None)) else {}),
            "parameters": loaded.n_parameters,
            "meta": loaded.meta,
            "plugin": loaded.spec.plugin if loaded.spec else None,
            **({"reproduced": loaded.reproduced} if loaded.reproduced else {}),
        },
        "dataset": {"ref": dataset_ref, "split": protocol.split, "synthetic": bool(dataset.synthetic),
                    "n_images": len(ids)},
        "device": device.type,
        "batch_size": header["batch_size"],
        "conditions": cond_out,
        "summary": summarize(cond_out),
        "scores": scores.compute(cond_out, per_image["iou"]),
        "flags": [],
        "passes": totals,
        "per_image": {"ids": ids, **per_image},
        "baselines": baselines.assemble(list(conditions), records),
    }
    doc["flags"] = flags(doc)
    return doc


def flags(doc: Mapping[str, Any]) -> list[dict[str, str]]:
    """What a reader must know before reading a result's numbers: ``degenerate`` (its clean IoU
    does not clearly beat the best trivial baseline on its own images), else ``below-classical``
    (Otsu's threshold does better), ``reproduced-weights`` (registered weights re-made on another
    machine, accepted by their validation IoU)."""
    out = []
    base = doc.get("baselines") or {}
    trivial = {k: v["iou"]["reference"] for k, v in base.items() if "reference" in v["iou"]}
    reason = scores.degenerate(doc["per_image"]["iou"]["reference"], trivial)
    if reason:
        out.append({"flag": "degenerate", "reason": reason})
    elif (below := baselines.classical_flag(doc)) is not None:
        out.append(below)
    if doc["model"].get("reproduced"):
        out.append({"flag": "reproduced-weights", "reason": doc["model"]["reproduced"]["note"]})
    return out


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
        # set by fmbench.evaluate: where an identical finished run's result was found (the run
        # was not repeated), and the file a different run's result kept at the requested path
        self.reused: Path | None = None
        self.displaced: tuple[Path, list[str]] | None = None

    # the mapping view
    def __getitem__(self, key: str) -> Any:
        return self.document[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.document)

    def __len__(self) -> int:
        return len(self.document)

    def __repr__(self) -> str:
        s = self.document.get("scores") or {}
        flags = "".join(f", {f['flag']}" for f in self.flags)
        return (f"Result({self.model['ref']!r} on {self.dataset['ref']!r}, {self.protocol['id']}: "
                f"robust IoU {scores.fmt(s.get('robust_iou'))}, corrupted IoU {scores.fmt(s.get('corrupted_iou'))}, "
                f"clean IoU {scores.fmt(s.get('clean_iou'))}{flags})")

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
    def scores(self) -> dict[str, Any]:
        """Headline scores with their 95 % intervals (:mod:`fmbench.scores`)."""
        return self.document["scores"]

    @property
    def flags(self) -> list[dict[str, str]]:
        """Why a number should not be read at face value (``degenerate``...), with reasons."""
        return list(self.document.get("flags", []))

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
        text = dumps(self.document)
        atomic_write(path, lambda f: f.write(text), mode="w", replace=overwrite)
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Result":
        """A result file, checked: every number it shows must follow from its per-image values."""
        from .integrity import consistency

        result = cls(read_json(path), path)
        problems = consistency(result.document)
        if problems:
            raise ResultError(f"{path}: {problems[0]}")
        return result

    def table(self) -> Table:
        """A rich table: one row per condition, then the scores with their intervals."""
        return result_table(self.document)


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def model_label(result: Mapping[str, Any]) -> str:
    model = result["model"]["ref"]
    recipe = (result["model"].get("meta") or {}).get("recipe") or {}
    if recipe.get("defense", "none") != "none":
        model += f" [{recipe['defense']}]"  # a defended model is marked wherever results appear
    return model


def result_table(result: Mapping[str, Any]) -> Table:
    """One row per condition, then the headline scores with their 95 % intervals, the study's
    relative robustness, and the baselines measured on the same inputs."""
    from rich.markup import escape
    from rich.table import Table

    title = (f"fmbench {result['protocol']['id']}  ·  {escape(model_label(result))} on {result['dataset']['ref']} "
             f"({result['dataset']['n_images']} images)")
    table = Table(title=title, title_justify="left")
    for col, just in [("condition", "left"), ("family", "left"), ("IoU", "right"), ("Dice", "right"),
                      ("rel. robustness", "right"), ("fwd/bwd passes", "right")]:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for c in result["conditions"]:
        table.add_row(escape(c["label"]), c["family"], _f(c["iou"]), _f(c["dice"]), _f(c["robustness"]),
                      f"{c['passes']['forward_images']}/{c['passes']['backward_images']}")
    s = result.get("scores")
    if s:
        table.add_section()
        head = s["headline"]
        table.add_row(f"[b]robust IoU[/b] (per image, the worst attack at {head['label']})", "",
                      scores.fmt(s["robust_iou"]), "", "", "")
        table.add_row("[b]corrupted IoU[/b] (mean over every corruption)", "", scores.fmt(s["corrupted_iou"]), "", "", "")
        table.add_row("[b]clean IoU[/b] (reference condition)", "", scores.fmt(s["clean_iou"]),
                      _f(result["summary"]["clean_dice"]), "", "")
        titles = _family_titles(result)
        for name, fam in s["families"].items():
            table.add_row(f"  {titles.get(name, name)} (mean)", fam["kind"], scores.fmt(fam["iou"]), "",
                          _f(result["summary"]["families"][name]["robustness"]), "")
        table.add_row("relative robustness (study): corruption", "", "", "", scores.fmt(s["corruption_robustness"]), "")
        table.add_row("relative robustness (study): adversarial", "", "", "", scores.fmt(s["adversarial_robustness"]), "")
    base = baselines.summary(result.get("baselines"), result["conditions"])
    if base:
        table.add_section()
        for name, b in base.items():
            table.add_row(f"[dim]baseline: {name}[/dim]", "", f"[dim]clean {_f(b['clean_iou'])}[/dim]", "",
                          f"[dim]corrupted {_f(b['corrupted_iou'])}[/dim]", "")
    return table


def _family_titles(result: Mapping[str, Any]) -> dict[str, str]:
    """A one-corruption family by its title (``sib``: space-invariant blur), from labels "TITLE, LEVEL"."""
    return {c["family"]: c["label"].split(", ", 1)[0] for c in reversed(result["conditions"])
            if c["kind"] == "corruption" and c["family"] == c["name"] and ", " in c["label"]}
