"""Leaderboard entries: one JSON file per (model, dataset, protocol), built from a result."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import scores
from ..errors import ResultError
from ..files import write_json
from ..result import summarize

ENTRY_SCHEMA_VERSION = 2
ENTRY_KIND = "fmbench-leaderboard-entry"
CONDITION_FIELDS = ("id", "kind", "name", "family", "level", "label", "norm", "iou", "dice", "robustness",
                    "n_images")


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


def training_record(meta: Any) -> dict[str, Any]:
    """An entry's ``model.training``: what a checkpoint's metadata says about its training."""
    meta = meta if isinstance(meta, dict) else {}
    recipe = meta.get("recipe") if isinstance(meta.get("recipe"), dict) else None
    defense = meta.get("defense")
    if defense is None and recipe is not None:
        defense = recipe.get("defense")
    return {
        "recipe": recipe,
        "seed": meta.get("seed") if isinstance(meta.get("seed"), int) else None,
        "defense": defense if isinstance(defense, str) else None,
        # rough training annotations (fmbench.label_noise): its own leaderboard track
        "label_noise": (recipe or {}).get("label_noise") or None,
        "dataset": meta.get("dataset"),
        "protocol": meta.get("protocol"),
        "val_iou": meta.get("val_iou"),
        # plateaued or still rising when the budget ended (fmbench.train.convergence)
        "convergence": meta.get("convergence") if isinstance(meta.get("convergence"), dict) else None,
        "command": meta.get("command") if isinstance(meta.get("command"), str) else None,
        # where it was trained: the same command gives other weights on another CPU type or thread count
        "machine": {k: meta[m] for k, m in (("threads", "threads"), ("cpu_capability", "cpu_capability"),
                                            ("torch", "torch_version")) if isinstance(meta.get(m), (int, str))} or None,
    }


def build_entry(result: dict[str, Any], *, hardware: str | None = None, command: str | None = None) -> dict[str, Any]:
    """A leaderboard entry from a result document: provenance, every condition's scores, the
    summary (recomputed from those conditions) and the per-image IoU.  Training recipe, seed
    and defense come from the checkpoint metadata when the checkpoint carries it, else null."""
    if result.get("kind") != "fmbench-result":
        raise ResultError(f"expected an fmbench result document, found kind {result.get('kind')!r}")
    if result["model"].get("reproduced"):
        raise ResultError("a leaderboard entry is made with the registered weights themselves, not with weights "
                          "re-made on another machine and accepted by measurement; install the exact file "
                          "(`fmbench zoo install PATH`) or submit your own checkpoint (--checkpoint)")
    meta = result["model"].get("meta") or {}
    run = result.get("run") or {}
    conditions = [{k: c[k] for k in CONDITION_FIELDS} for c in result["conditions"]]
    per_image = result.get("per_image") or {}
    if not per_image.get("iou"):
        raise ResultError("the result has no per-image IoU; an entry's scores are computed from it")
    entry = {
        "schema_version": ENTRY_SCHEMA_VERSION,
        "kind": ENTRY_KIND,
        "model": {
            "ref": result["model"]["ref"],
            "args": {**(meta["model_args"] if isinstance(meta.get("model_args"), dict) else {}),
                     **(result["model"].get("args") or {})},
            "weights_sha256": result["model"].get("checkpoint_sha256"),
            # the registered weights' name, and the tensors' hash the registry pins zoo weights by
            "weights": result["model"].get("weights"),
            # computed from the tensors when the model was loaded, never the checkpoint's own claim
            "state_sha256": result["model"].get("state_sha256"),
            "parameters": result["model"].get("parameters"),
            "plugin": result["model"].get("plugin"),
            "training": training_record(meta),
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
            "command": command or run.get("command") or "",
            "batch_size": result["batch_size"],
            "seconds": run.get("seconds"),
        },
        "conditions": conditions,
        "summary": summarize(conditions),
        "scores": scores.compute(conditions, per_image["iou"]),
        "warnings": list(result.get("warnings", [])),
        "per_image": {"ids": list(per_image["ids"]), "iou": per_image["iou"]},
    }
    return entry


def rescore(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry of an earlier schema brought to this one: its scores recomputed from its
    per-image IoU (nothing is re-evaluated; every other field is kept as it is)."""
    if entry.get("kind") != ENTRY_KIND:
        raise ResultError(f"not a leaderboard entry (kind {entry.get('kind')!r})")
    if not (entry.get("per_image") or {}).get("iou"):
        raise ResultError("the entry has no per-image IoU to compute its scores from")
    out = {k: v for k, v in entry.items() if k not in ("scores", "per_image", "warnings", "_path")}
    out["schema_version"] = ENTRY_SCHEMA_VERSION
    training = dict(out["model"].get("training") or {})
    if "defence" in training:  # schema 1's spelling; one spelling throughout since schema 2
        training["defense"] = training.pop("defence")
        out["model"] = {**out["model"], "training": training}
    out["scores"] = scores.compute(entry["conditions"], entry["per_image"]["iou"])
    out["warnings"] = list(entry.get("warnings", []))
    out["per_image"] = entry["per_image"]
    return out


def write_entry(path: str | os.PathLike, entry: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write an entry atomically; an existing file is kept unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ResultError(f"{path} already exists", hints=("overwrite",))
    write_json(path, entry)
    return path


def as_entry(doc: dict[str, Any]) -> dict[str, Any]:
    """An entry from an entry or a result document."""
    if doc.get("kind") == ENTRY_KIND:
        return doc
    return build_entry(doc, hardware="", command="")


def model_label(entry: dict[str, Any], seed: bool = True) -> str:
    """``unet-r18``, ``unet-r18 [pgd-at]``; with ``seed``, ``unet-r18 (seed 1)`` for a training
    seed other than 0 (seeds of one architecture are separate entries; tables pool them)."""
    training = entry["model"]["training"]
    defense = training.get("defense")
    label = entry["model"]["ref"]
    if defense and defense != "none":
        label += f" [{defense}]"
    if training.get("label_noise"):
        label += f" [labels {training['label_noise']}]"
    if seed and isinstance(training.get("seed"), int) and training["seed"] != 0:
        label += f" (seed {training['seed']})"
    return label
