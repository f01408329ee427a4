"""The evaluation loop: batches x conditions -> chunk records.

For each batch of clean images the engine applies every condition of the protocol in plan
order (:mod:`fmbench.conditions`), runs the model on the input the condition made, and
appends one record per finished (batch, condition) chunk to the run's log, so a killed run
resumes where it stopped and ends with the same file.  Memory holds one batch of images at a
time.  The result document is assembled from the records by :mod:`fmbench.result`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from . import __version__, baselines
from .attack import PassCounter
from .conditions import BatchInputs, Condition, RunContext, WorstOf, plan
from .data import iter_batches
from .distributed import SINGLE, Shard, barrier
from .errors import DataError, FmbenchError, ModelContractError, ResultError
from .measured import Kept, screen, targets
from .measured import data_warnings as measured_data_warnings
from .metrics import output_problem, overlap_counts, predict
from .preparation import prepare_attacks
from .protocol import Protocol
from .result import assemble
from .runlog import PartialLog
from .selfcheck import review

if TYPE_CHECKING:  # names for annotations only
    from .data import Dataset
    from .model import LoadedModel
    from .plugins import Registry


Progress = Callable[[int, int, str], None]
STARTING = "starting"  # the label of the one progress call made before the first chunk


def resolve_device(name: str | torch.device) -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FmbenchError(f"device {name!r} was asked for but no CUDA device is available", hints=("device",))
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise FmbenchError(f"unknown device {name!r} ({str(exc).splitlines()[0]})", hints=("device",)) from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise FmbenchError(f"device {name!r} cannot run an evaluation (fmbench runs on cpu, cuda or mps)",
                           hints=("device",))
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise FmbenchError(f"device {name!r} was asked for but MPS is not available", hints=("device",))
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise FmbenchError(f"device {name!r}: there are {torch.cuda.device_count()} CUDA devices", hints=("device",))
    return dev


def _settings(module: torch.nn.Module) -> dict[str, Any]:
    """A module's settings that are not tensors (``Thresh(t=0.3)``'s ``t``, a conv's stride):
    plain values as they are, anything else by its type's name."""
    def plain(v: Any) -> bool:
        return v is None or isinstance(v, (bool, int, float, str)) or (
            isinstance(v, (tuple, list)) and all(plain(x) for x in v))

    return {k: v if plain(v) else f"<{type(v).__module__}.{type(v).__qualname__}>"
            for k, v in sorted(vars(module).items()) if not k.startswith("_") and k != "training"}


def source_sha256(module: torch.nn.Module, ref: str | None = None) -> str | None:
    """The sha256 of the model's code and settings: the files that define the class of every
    submodule (a factory's ``Sequential(A())`` included), TorchScript code, each submodule's
    non-tensor settings, and the file a ``module:Attr`` reference names.  ``None`` where some
    class has no source file (a class defined in a notebook or on stdin): such a run is never
    reused from the cache, and a resumed run cannot tell whether the code changed."""
    import hashlib
    import inspect
    import json
    import sys

    h = hashlib.sha256()
    sources: dict[type, str | None] = {}  # each class's file, looked up once
    for name, sub in module.named_modules():
        cls = type(sub)
        h.update(f"{name}={cls.__module__}.{cls.__qualname__};".encode())
        h.update(json.dumps(_settings(sub), sort_keys=True, default=str).encode())
        code = getattr(sub, "code", None)  # a TorchScript module's compiled code
        if isinstance(code, str):
            h.update(code.encode())
        if cls not in sources:
            try:
                path = inspect.getsourcefile(cls)
            except (TypeError, OSError):  # OSError: a class of a `__main__` with no file (a notebook)
                path = None
            sources[cls] = path if path and os.path.isfile(path) else None
        if sources[cls] is None and not isinstance(code, str):
            return None
    files = {p for p in sources.values() if p}
    target = (ref or "").rpartition(":")[0]
    if target.endswith(".py") and os.path.isfile(target):
        files.add(target)
    elif target in sys.modules:  # the module a reference named, imported when the model was loaded
        origin = getattr(sys.modules[target], "__file__", None)
        if origin and os.path.isfile(origin):
            files.add(origin)
    for path in sorted(files):
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def run_header(loaded: LoadedModel, dataset_ref: str, protocol: Protocol, device: torch.device, batch_size: int,
               dataset_sha256: str | None = None) -> dict:
    """What identifies a run (:mod:`fmbench.cache`): a resumed run must match it exactly (the
    model's tensors and source file included, so no run mixes two models' chunks), and a
    finished result of the same identity is reused.  ``dataset_sha256``: the fingerprint of the
    images the run reads (:func:`fmbench.cache.fingerprint`)."""
    from .checkpoint import state_sha256

    # a model read from a package (bioimage.io) names it: its description's hash is part of the run
    source = getattr(loaded.module, "fmbench_source", None)
    return {
        **({"model_source": source} if source else {}),
        "protocol_hash": protocol.hash,
        "protocol_id": protocol.id,
        "model_ref": loaded.ref,
        "model_args": loaded.args,
        "weights_sha256": loaded.weights_sha256,
        "model_state_sha256": state_sha256(loaded.module.state_dict()),
        "model_source_sha256": source_sha256(loaded.module, loaded.ref),
        "dataset": dataset_ref,
        "dataset_sha256": dataset_sha256,
        "device": device.type,
        "batch_size": batch_size,
        "fmbench_version": __version__,
    }


def pass_cost(cond: Condition, ctx: RunContext) -> int:
    """A condition's model work per image, in forward-pass equivalents: 1 to score it, and for
    an attack 3 per gradient step (a forward and a backward pass) plus its checks; 0 for one
    scored from other conditions' results."""
    if cond.kind != "attack":
        return 1
    if cond.family not in ctx.attacks:
        return 0
    if isinstance(cond, WorstOf):  # scored from its members, plus its refinement if any
        refine = getattr(ctx.attacks[cond.family], "refine_iterations", lambda eps: 0)(cond.level)
        return 1 + 3 * int(refine) if refine else 0
    steps = ctx.attacks[cond.family].iterations(cond.level)
    return 2 + 3 * int(steps)


@dataclass
class Run:
    """What the loop produced: the result document (without its ``run`` section) and the
    seconds spent, in total and per condition (preparation included)."""

    document: dict[str, Any]
    seconds: float
    seconds_per_condition: dict[str, float]


def run(loaded: LoadedModel, dataset: Dataset, dataset_ref: str, protocol: Protocol, registry: Registry, *, device: torch.device,
        batch_size: int, log: PartialLog, on_progress: Progress | None = None, train_dataset: Any = None,
        shard: Shard = SINGLE, gather: Callable[[], list[dict[str, Any]]] | None = None) -> Run | None:
    """Run the protocol on one model and dataset, appending chunks to ``log`` (which may hold
    chunks of an earlier, killed run).  ``train_dataset`` is the training split for attacks
    that learn on it (a dataset, a zero-argument callable opening one, or ``None``: the
    registered dataset ``dataset_ref`` opened with ``split="train"``).  In a distributed run
    (:mod:`fmbench.distributed`) this rank evaluates the batches ``shard`` deals it; rank 0 then
    adds the other ranks' chunks (``gather()``) and assembles the result, the others return ``None``."""
    conditions = plan(protocol, registry, synthetic=bool(dataset.synthetic))
    measured = None
    if not dataset.synthetic:  # measured images: only those that reach every SNR the protocol asks for
        measured = screen(dataset, protocol.n_images, targets(protocol, registry))
        if not measured.kept:
            defined = [r["own_snr"] for r in measured.left_out if r["own_snr"] is not None]
            if not defined:
                raise DataError(f"no image of {dataset_ref!r} can be scored: "
                                f"{measured.left_out[0]['reason'] if measured.left_out else 'no images'} "
                                f"(every image: {', '.join(r['id'] for r in measured.left_out[:3])}"
                                f"{', ...' if len(measured.left_out) > 3 else ''})")
            worst = max(defined)
            raise DataError(f"no image of {dataset_ref!r} reaches the SNRs protocol {protocol.id} asks for "
                            f"({', '.join(f'{v:g}' for v in targets(protocol, registry))}); the best own SNR is "
                            f"{worst:.2f}, and noise cannot be removed: the reference condition is SNR "
                            f"{protocol.reference_snr:g}; score them at a lower one with --reference-snr "
                            f"{max(0.1, math.floor(worst * 10) / 10):g} (a variant, never ranked), or "
                            f"record brighter images (longer exposure, more excitation, binning)")
        dataset = Kept(dataset, measured.kept)
    model = PassCounter(loaded.module.to(device).eval())
    ctx = RunContext(model=model,
                     corruptions={e.name: registry.build_corruption(e.name) for e in protocol.corruptions},
                     attacks={e.family: registry.build_attack(e) for e in protocol.attacks},
                     plan={c.id: c for c in conditions})
    n_images = min(protocol.n_images, len(dataset))
    # progress counts model work, not chunks: an attack chunk costs its gradient steps, so the
    # ETA does not swing between cheap corruption chunks and expensive attack ones
    cost = {c.id: pass_cost(c, ctx) for c in conditions}
    combines = any(isinstance(c, WorstOf) for c in conditions)  # only then are a batch's results kept
    n_batches = math.ceil(n_images / batch_size)
    sizes = [min(batch_size, n_images - b * batch_size) for b in range(n_batches)]
    total = sum(cost[c.id] * sizes[b] for b in range(n_batches) for c in conditions
                if shard.mine(b) or (b, c.id) in log.done)
    step = sum(cost[c] * sizes[b] for b, c in log.done if b < n_batches and c in cost)
    started = time.perf_counter()
    if on_progress:
        on_progress(step, total, STARTING)  # the model is loaded and probed: the run begins
    preparation = prepare_attacks(model, ctx.attacks, conditions, protocol, train=train_dataset,
                                  dataset_ref=dataset_ref, registry=registry, batch_size=batch_size, device=device)

    # per-image randomness is keyed by the dataset's name: an exported copy of a dataset read back
    # as a folder (its seed_name the original's) draws exactly the noise the original draws
    seed_name = getattr(dataset, "seed_name", None) or dataset_ref
    recorded_ids = {r["batch"]: r["ids"] for r in log.records}
    for batch in iter_batches(dataset, n_images, batch_size):
        if batch.index in recorded_ids and recorded_ids.pop(batch.index) != batch.ids:
            raise ResultError(f"the partial log's batch {batch.index} holds other images than this run's "
                              f"({', '.join(batch.ids[:3])}...): it belongs to another run", hints=("overwrite",))
        todo = [c for c in conditions if (batch.index, c.id) not in log.done]
        if not todo or not shard.mine(batch.index):
            continue
        inputs = BatchInputs(batch.image.to(device), batch.mask.to(device), [f"{seed_name}/{i}" for i in batch.ids],
                             protocol, bool(dataset.synthetic))
        # what this batch already scored (a resumed run: from the log), for conditions built on it
        ctx.scored = {r["condition"]: {k: torch.tensor(r[k]) for k in ("inter", "union", "pred", "true")}
                      for r in log.records if r["batch"] == batch.index} if combines else {}
        ctx.inputs = {}
        for cond in todo:
            t0 = time.perf_counter()
            if isinstance(cond, WorstOf):  # a resumed run: remake what it refines from, outside its counts
                cond.materialize(inputs, ctx)
            before = model.counts()
            try:  # the model's passes (an attack's backward ones too): a failure is one line naming the image
                applied = cond.apply(inputs, ctx)
                if applied.counts is None:
                    with torch.inference_mode():
                        logits = model(applied.input)
            except FmbenchError:
                raise
            except (Exception, SystemExit) as exc:  # out of memory, an image size it cannot take, a sys.exit
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise ModelContractError(f"{cond.label} failed on image {', '.join(batch.ids[:3])} of {dataset_ref!r} "
                                         f"({'x'.join(str(s) for s in batch.image.shape[-2:])}): "
                                         f"{type(exc).__name__}: {first}", hints=("traceback",)) from exc
            if applied.counts is not None:  # scored from other conditions' results, no model pass
                counts = applied.counts
            else:
                wrong = output_problem(logits, applied.input, loaded.channels) if applied.input is not None else None
                if wrong:
                    raise ModelContractError(f"the model's output {wrong} on image {', '.join(batch.ids[:3])} of "
                                             f"{dataset_ref!r} under {cond.label}")
                if not torch.isfinite(logits).all():
                    bad = [i for i, ok in zip(batch.ids, torch.isfinite(logits).flatten(1).all(1).tolist()) if not ok]
                    raise ModelContractError(f"the model's output has NaN or infinite values on image "
                                             f"{', '.join(bad[:3])} of {dataset_ref!r} under {cond.label}")
                counts = overlap_counts(predict(logits), applied.target)
            if combines:
                ctx.scored[cond.id] = {k: v.detach().cpu() for k, v in counts.items()}
                if cond.kind == "attack" and applied.input is not None:
                    ctx.inputs[cond.id] = applied.input.detach()
            extra = dict(applied.record)
            if cond.kind != "attack" and applied.input is not None:  # the baselines, on the same input
                extra["baselines"] = baselines.counts(applied.input, applied.target)
            log.append({
                "batch": batch.index,
                "condition": cond.id,
                "ids": batch.ids,
                **{k: counts[k].tolist() for k in ("inter", "union", "pred", "true")},
                "passes": model.since(before),
                "seconds": time.perf_counter() - t0,
                **extra,
            })
            step += cost[cond.id] * len(batch.ids)
            if on_progress:
                on_progress(step, total, cond.label)

    if shard.distributed:
        barrier(shard)  # every rank's chunks are logged
        if shard.rank != 0:
            return None
        log.adopt(gather() if gather is not None else [])
        missing = [(b, c.id) for b in range(math.ceil(n_images / batch_size)) for c in conditions
                   if (b, c.id) not in log.done]
        if missing:
            raise ResultError(f"the ranks' logs miss {len(missing)} chunks (first: batch {missing[0][0]}, "
                              f"{missing[0][1]}): a rank did not finish", hints=("resume",))
    if recorded_ids:
        raise ResultError(f"the partial log has chunks of batch {min(recorded_ids)}, which this run does not have "
                          f"({math.ceil(n_images / batch_size)} batches): it belongs to another run", hints=("overwrite",))
    document = assemble(run_header(loaded, dataset_ref, protocol, device, batch_size), protocol, conditions,
                        log.records, loaded, dataset, dataset_ref, device)
    document["checks"], attack_warnings = review(document, log.records, preparation)
    if measured is not None:
        document["dataset"]["noise"] = measured.record()
    document["warnings"] = attack_warnings + measured_data_warnings(document)
    per_condition = {c.id: sum(r["seconds"] for r in log.records if r["condition"] == c.id)
                     + preparation.get(c.id, {}).get("seconds", 0.0) for c in conditions}
    return Run(document, time.perf_counter() - started, per_condition)


def check_call(dataset: Any, device: Any, batch_size: Any) -> None:
    """`evaluate`'s own arguments, one clear error each (a ZeroDivisionError or an AttributeError had been)."""
    from .errors import DataError, ProtocolError

    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ProtocolError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")
    if not isinstance(device, (str, torch.device)):
        raise ProtocolError(f"device must be 'auto', 'cpu', 'cuda[:N]' or a torch.device, got {device!r}")
    if not isinstance(dataset, str) and not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise DataError(f"dataset must be a name ('nucleus', 'folder:PATH') or a dataset object with __len__ and "
                        f"__getitem__, got {type(dataset).__name__}")
