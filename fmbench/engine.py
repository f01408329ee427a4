"""The evaluation engine: dataset -> condition -> model -> metrics, streamed in batches.

For each batch of clean images the engine runs every condition of the protocol in a fixed
order: the reference condition (detector noise at the reference SNR), each corruption at each
severity, each attack at each budget (on the normalised reference image).  Each finished
(batch, condition) chunk is appended to a partial log, so a killed run resumes where it
stopped and ends with the same file.  Memory holds one batch of images at a time.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from . import __version__
from .attack import PassCounter, check_adversarial, frozen_params, prepare_attacks, track_gradients
from .corruption import Sensor
from .data import iter_batches, normalize
from .metrics import iou_dice, predict, relative
from .protocol import Protocol, eps_label
from .result import SCHEMA_VERSION, PartialLog, summarize
from .seeding import generators
from .selfcheck import attack_checks, review


@dataclass(frozen=True)
class Condition:
    """One evaluation condition; ``level`` is a severity (corruptions) or ``eps`` (attacks)."""

    id: str
    kind: str  # "reference" | "corruption" | "attack"
    name: str
    family: str
    level: float
    label: str
    norm: str | None = None


def plan(protocol: Protocol, registry) -> list[Condition]:
    """The protocol's conditions, in evaluation order."""
    conds = [Condition("reference", "reference", "reference", "reference", protocol.reference_snr,
                       f"reference (SNR {protocol.reference_snr:g})")]
    for entry in protocol.corruptions:
        spec = registry.corruption(entry.name)
        for level in entry.levels:
            conds.append(Condition(f"{entry.name}@{level:g}", "corruption", entry.name,
                                   spec.family or spec.name, float(level), f"{entry.name} {spec.label(level)}"))
    for entry in protocol.attacks:
        for eps in entry.eps:
            lab = eps_label(eps, entry.norm)
            conds.append(Condition(f"{entry.family}@{lab}", "attack", entry.name, entry.family, float(eps),
                                   f"{entry.family} ε={lab}", entry.norm))
    return conds


def resolve_device(name: str) -> torch.device:
    from .errors import FmbenchError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FmbenchError("--device cuda was asked for but no CUDA device is available")
    return torch.device(name)


def run_header(loaded, dataset_ref: str, protocol: Protocol, device: torch.device, batch_size: int) -> dict:
    """What identifies a run; a resumed run must match it exactly."""
    return {
        "protocol_hash": protocol.hash,
        "protocol_id": protocol.id,
        "model_ref": loaded.ref,
        "model_args": loaded.args,
        "weights_sha256": loaded.weights_sha256,
        "dataset": dataset_ref,
        "device": device.type,
        "batch_size": batch_size,
        "fmbench_version": __version__,
    }


def evaluate(loaded, dataset, dataset_ref: str, protocol: Protocol, registry, *, device: torch.device,
             batch_size: int, log_path, resume: bool = False,
             on_progress: Callable[[int, int, str], None] | None = None, train_dataset=None) -> dict[str, Any]:
    """Run the protocol on one model and dataset; returns the result document (without the
    ``run`` section, which the caller adds).  ``train_dataset`` is the training split for
    attacks that learn on it (universal perturbations); by default the registered dataset
    ``dataset_ref`` is opened with ``split="train"`` when one is needed."""
    conditions = plan(protocol, registry)
    corruptions = {e.name: registry.corruption(e.name).factory() for e in protocol.corruptions}
    attacks = {e.family: registry.attack(e.name).factory(norm=e.norm, **dict(e.params)) for e in protocol.attacks}
    header = run_header(loaded, dataset_ref, protocol, device, batch_size)
    log = PartialLog(log_path, header, resume=resume)
    model = PassCounter(loaded.module.to(device).eval())
    lo, hi = protocol.normalization
    n_images = min(protocol.n_images, len(dataset))
    total = math.ceil(n_images / batch_size) * len(conditions)
    step = sum(1 for _ in log.done)
    warnings: list[str] = []
    started = time.perf_counter()
    preparation = prepare_attacks(model, attacks, conditions, protocol, train=train_dataset, dataset_ref=dataset_ref,
                                  registry=registry, batch_size=batch_size, device=device)
    top_eps = {e.family: max(e.eps) for e in protocol.attacks}

    for batch in iter_batches(dataset, n_images, batch_size):
        todo = [c for c in conditions if (batch.index, c.id) not in log.done]
        if not todo:
            continue
        x = batch.image.to(device)
        mask = batch.mask.to(device)
        keys = [f"{dataset_ref}/{i}" for i in batch.ids]
        sensor = Sensor(x, mask, protocol.camera, protocol.reference_snr)
        x_ref = None

        def reference_input():
            y = sensor.expose(x, generators(protocol.seed, keys, "reference", device)) if dataset.synthetic else x
            return normalize(y, lo, hi)

        for cond in todo:
            t0 = time.perf_counter()
            before = model.counts()
            target = mask
            gens = generators(protocol.seed, keys, cond.id, device)
            if cond.kind == "reference":
                x_ref = xin = reference_input()
            elif cond.kind == "corruption":
                y, target = corruptions[cond.name](x, mask, cond.level, sensor, gens)
                xin = normalize(y, lo, hi)
            else:
                if x_ref is None:
                    x_ref = reference_input()
                attack = attacks[cond.family]
                control = (generators(protocol.seed, keys, f"{cond.id}/random", device)
                           if cond.level == top_eps[cond.family] and getattr(attack, "role", "gradient") in ("gradient", "ensemble") else None)
                with frozen_params(model), track_gradients() as tracker:
                    xin = attack(model, x_ref, mask, cond.level, gens)
                    check_adversarial(xin, x_ref, f"attack {cond.family!r}")
                    xin = xin.detach()
                    checks = attack_checks(model, attack, tracker, x_ref, xin, mask, cond.norm, cond.level, control)
            with torch.inference_mode():
                logits = model(xin)
            pred = predict(logits)
            t = target.flatten(1)
            p = pred.flatten(1)
            after = model.counts()
            record = {
                "batch": batch.index,
                "condition": cond.id,
                "ids": batch.ids,
                "inter": (p & t).sum(1).tolist(),
                "union": (p | t).sum(1).tolist(),
                "pred": p.sum(1).tolist(),
                "true": t.sum(1).tolist(),
                "passes": {k: after[k] - before[k] for k in after},
                "seconds": time.perf_counter() - t0,
            }
            if cond.kind == "attack":
                record["checks"] = checks
            log.append(record)
            step += 1
            if on_progress:
                on_progress(step, total, cond.label)

    result = assemble(header, protocol, conditions, log.records, loaded, dataset, dataset_ref, device)
    result["checks"], attack_warnings = review(result, log.records, preparation)
    result["warnings"] = sorted(set(warnings)) + attack_warnings
    result["_seconds"] = {
        "total": time.perf_counter() - started,
        "conditions": {c.id: sum(r["seconds"] for r in log.records if r["condition"] == c.id)
                       + preparation.get(c.id, {}).get("seconds", 0.0) for c in conditions},
    }
    return result


def assemble(header, protocol: Protocol, conditions: list[Condition], records, loaded, dataset,
             dataset_ref: str, device: torch.device) -> dict[str, Any]:
    """The result document from the chunk records (any order; resumed or not)."""
    records = sorted(records, key=lambda r: r["batch"])
    ids: list[str] = []
    for r in records:
        if r["condition"] == "reference":
            ids.extend(r["ids"])
    per_image: dict[str, dict[str, list[float]]] = {"iou": {}, "dice": {}}
    cond_out = []
    for cond in conditions:
        rs = [r for r in records if r["condition"] == cond.id]
        counts = {k: torch.tensor([v for r in rs for v in r[k]]) for k in ("inter", "union", "pred", "true")}
        iou, dice = iou_dice(counts)
        iou_l, dice_l = iou.tolist(), dice.tolist()
        per_image["iou"][cond.id] = iou_l
        per_image["dice"][cond.id] = dice_l
        passes = {k: sum(r["passes"][k] for r in rs) for k in ("forward_calls", "forward_images",
                                                               "backward_calls", "backward_images")}
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
