"""The Python front door: ``fmbench.evaluate(model, dataset, protocol)`` and its helpers.

The CLI, the benchmarks and the tests all run an evaluation through :func:`evaluate`:
resolve the model, dataset and protocol -> probe the model contract -> plan the conditions ->
run the engine -> a :class:`fmbench.Result`.  Without ``out`` nothing is written to disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from . import cache as result_cache
from .conditions import plan
from .datasets import canonical_ref
from .datasets import open_dataset as _open
from .distributed import SINGLE, Shard, barrier, device_for, shard
from .engine import Run, check_call, resolve_device, run, run_header
from .errors import DataError, ModelContractError, ModelLoadError, ProtocolError, ResultError
from .files import atomic_write, dumps
from .model import LoadedModel, check_image_sizes, output_range_notes, probe
from .model import load_model as _load
from .precision import in_precision
from .protocol import DEFAULT_TIER, Protocol, checked_overrides
from .result import Result
from .runlog import PartialLog, RunLock, partial_path, partial_paths

if TYPE_CHECKING:  # names for annotations only
    from .data import Dataset


PLUGIN_KINDS = ("models", "datasets", "corruptions", "attacks", "protocols", "label_noises")


def _registry():
    from .plugins import get_plugin_manager, get_registry

    pm = get_plugin_manager()
    return pm, get_registry(pm)


def get_protocol(name: str | Protocol = DEFAULT_TIER, **overrides: Any) -> Protocol:
    """A registered protocol by tier (``"quick"``: its newest version) or id (``"quick-v1"``),
    optionally customised (``n_images``, ``seed``, ``image_size``, ``corruptions``,
    ``attacks``, ``reference_snr``: a variant whose id and hash differ from the original's; a
    lower reference SNR drops the noise levels at or above it).  Names in
    ``corruptions``/``attacks`` are checked against the registry (``["none"]``: none)."""
    _, registry = _registry()
    protocol = name if isinstance(name, Protocol) else registry.protocol(name)
    overrides = checked_overrides(overrides)
    for key, lookup in (("corruptions", registry.corruption), ("attacks", registry.attack)):
        for item in overrides.get(key) or ():
            # attack families such as "pgd-l2" are checked by the protocol itself
            if item != "none" and not (key == "attacks" and "-" in item):
                lookup(item)  # unknown names fail here, with suggestions
    base = float(protocol.reference_snr)
    protocol = protocol.customized(**overrides)
    if overrides.get("reference_snr") is not None:  # noise levels are SNRs below the reference: none at or above it
        ref = float(overrides["reference_snr"])
        if not (math.isfinite(ref) and 0 < ref <= base):
            raise ProtocolError(f"reference SNR {ref:g}: must be a number above 0 and at most the protocol's own "
                                f"{base:g} (it is for images recorded dimmer; noise cannot be removed)")
        kept = [dataclasses.replace(e, levels=tuple(v for v in e.levels if v < ref))
                if registry.corruption(e.name).exposure else e for e in protocol.corruptions]
        gone = [e.name for e in kept if not e.levels]
        if gone:
            raise ProtocolError(f"no level of {', '.join(gone)} lies below the reference SNR {ref:g}; leave "
                                f"{'it' if len(gone) == 1 else 'them'} out with --corruptions, or choose a higher "
                                f"--reference-snr")
        protocol = dataclasses.replace(protocol, corruptions=tuple(kept))
    protocol.validate(registry)
    return protocol


def list_plugins(kind: str) -> dict[str, Any]:
    """What the loaded plugins registered of one kind (``models``, ``datasets``,
    ``corruptions``, ``attacks``, ``protocols``), by name; each spec names its plugin."""
    if kind not in PLUGIN_KINDS:
        raise ValueError(f"kind must be one of {', '.join(PLUGIN_KINDS)}, got {kind!r}")
    _, registry = _registry()
    return dict(sorted(getattr(registry, kind).items()))


def open_dataset(ref: str, split: str = "test", image_size: int | None = None, *, seed: int | None = None) -> Dataset:
    """A dataset split by reference: a registered name (``"nucleus"``) or ``scheme:rest``
    (``"folder:PATH"``); ``image_size`` defaults to the quick protocol's."""
    pm, registry = _registry()
    size = image_size if image_size is not None else registry.protocol(DEFAULT_TIER).image_size
    return _open(ref, split, size, seed=seed, registry=registry, pm=pm)


def load_model(model: str | nn.Module, *, model_args: Mapping[str, Any] | None = None,
               checkpoint: str | os.PathLike | None = None, dataset: str | None = None,
               random_init: bool = False, weights: str | None = None, generation: int = 1) -> LoadedModel:
    """A model ready to evaluate: a reference (registered name, ``module:Attr``,
    ``file.py:Attr``, ``scheme:...``; registered weights for ``dataset`` are loaded: the zoo
    ``generation``'s first, :func:`fmbench.model.weights_for`) or an ``nn.Module`` you built
    (``checkpoint`` loads a state dict into it)."""
    pm, registry = _registry()
    if isinstance(model, nn.Module):
        if model_args:
            raise ModelLoadError("model_args apply to a model reference, not to a module already built")
        inner: Any = model  # named by what it wraps: DataParallel / DDP's .module, torch.compile's ._orig_mod
        while isinstance(getattr(inner, "_orig_mod", None), nn.Module) or \
                isinstance(inner, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            inner = getattr(inner, "_orig_mod", None) or inner.module
        loaded = LoadedModel(module=model, ref=f"{type(inner).__module__}:{type(inner).__qualname__}", args={})
        if checkpoint is not None:
            from .checkpoint import load_state, read_checkpoint
            from .files import sha256_file

            state, meta = read_checkpoint(checkpoint)
            load_state(model, state, f"checkpoint {checkpoint}")
            loaded.checkpoint, loaded.weights_sha256, loaded.meta = str(checkpoint), sha256_file(checkpoint), meta
        model.eval()
        return loaded
    if not isinstance(model, str):
        raise ModelLoadError(f"model must be a reference string or a torch.nn.Module, got {type(model).__name__}")
    return _load(model, dict(model_args or {}), registry, pm, checkpoint=checkpoint, dataset=dataset,
                 random_init=random_init, weights=weights, generation=generation)


def _output_files(out: str | os.PathLike | None, resume: bool, overwrite: bool, exists_ok: bool = False,
                  part: Shard = SINGLE, own_log_only: bool = False, logs_ok: bool = False
                  ) -> tuple[Path | None, Path | None]:
    """The result path and this process's chunk log, after the checks that nothing is
    overwritten unasked (``exists_ok``: an existing result is looked at later, once the run's
    identity is known).  Every chunk log of the output counts, a distributed run's ranks' too
    (``own_log_only``: this rank's alone -- once the ranks have started, the others' logs are
    theirs)."""
    if out is None:
        if resume:
            raise ResultError("resume needs the output file of the run to continue")
        if part.distributed:
            raise ResultError("a distributed run needs an output file (its ranks log their chunks beside it)",
                              hints=("out",))
        return None, None
    out_path = Path(out)
    log_path = partial_path(out_path, part.rank if part.distributed else None)
    logs = ([log_path] if log_path.exists() else []) if own_log_only else partial_paths(out_path)
    if out_path.exists() and not overwrite and not exists_ok:
        raise ResultError(f"{out_path} already exists", hints=("overwrite", "out"))
    if logs and not (resume or overwrite or logs_ok):  # logs_ok: the default name; _unique decides
        raise ResultError(f"an unfinished run exists ({logs[0]})", hints=("resume", "overwrite"))
    if resume and not overwrite and not partial_paths(out_path):
        raise ResultError(f"no unfinished run to resume at {log_path}")
    return out_path, log_path


def evaluate(model: str | nn.Module | LoadedModel, dataset: Any, protocol: str | Protocol = DEFAULT_TIER, *,
             device: str | torch.device = "auto", batch_size: int = 8, out: str | os.PathLike | None = None,
             resume: bool = False, overwrite: bool = False, progress: Callable[[int, int, str], None] | None = None,
             model_args: Mapping[str, Any] | None = None, checkpoint: str | os.PathLike | None = None,
             random_init: bool = False, weights: str | None = None, train_dataset: Any = None,
             command: str | None = None, cache: bool = True, recompute: bool = False, unique_out: bool = False,
             **protocol_overrides: Any) -> Result:
    """Evaluate a model on a dataset under a protocol; returns the :class:`Result`.

    ``model``: a reference string (with ``model_args``, ``checkpoint``, ``random_init``, and
    ``weights``: the registered weights trained on another dataset, for your own images), an
    ``nn.Module``, or a :class:`LoadedModel`.  ``dataset``: a reference string or a dataset
    object (``name``, ``synthetic``, ``__len__``, ``__getitem__`` returning a
    :class:`fmbench.Sample`).  ``protocol``: a tier, an id or a :class:`Protocol`;
    ``protocol_overrides`` (``n_images=4``, ``attacks=["fgsm"]``...) make a variant.  With
    ``out`` the result is written there atomically and a killed run continues with
    ``resume=True``; without it nothing touches the disk.  ``progress(done, total, label)`` is
    called once with the label ``"starting"`` when the run begins (after the model was loaded
    and probed), then after every (batch, condition) chunk.  ``command`` is recorded in the result's
    ``run`` section (the CLI passes its reproducing command line).

    Re-running is free (:mod:`fmbench.cache`): a finished result of the same identity -- at ``out`` or in the
    user cache -- is returned at once (``result.reused`` says where; with ``out`` it is also written there)
    unless ``recompute=True``; every finished run is cached unless ``cache=False``.  An ``out`` holding
    another run's result is an error, or with ``unique_out=True`` (the CLI's default file name) the result
    goes to the next free name (``NAME-2.json``...) and ``result.displaced`` says which file was kept and why.
    """
    pm, registry = _registry()
    check_call(dataset, device, batch_size)
    proto = get_protocol(protocol, **{k: v for k, v in protocol_overrides.items() if v is not None})
    if isinstance(dataset, str):
        dataset = proto.dataset_ref(dataset)  # a bare name: the generator version the protocol pins
    dataset_ref: str = (canonical_ref(dataset, registry) if isinstance(dataset, str)
                        else str(getattr(dataset, "ref", None) or getattr(dataset, "name", type(dataset).__name__)))
    data = _open(dataset, proto.split, proto.image_size, registry=registry, pm=pm) if isinstance(dataset, str) else dataset
    _check_size_override(data, dataset_ref, proto.image_size if "image_size=" in (proto.variant or "") else None)
    if train_dataset is None and isinstance(dataset, str) and ":" in dataset:
        def train_dataset():  # opened only if an attack learns on it
            return _open(dataset, "train", proto.image_size, registry=registry, pm=pm)
    part = shard()  # a distributed run under torchrun (fmbench.distributed), else rank 0 of 1
    reuse = cache and not (recompute or overwrite or resume or part.distributed)
    _output_files(out, resume, overwrite, exists_ok=reuse or unique_out, part=part, logs_ok=unique_out)  # fail fast
    dev = resolve_device(device_for(str(device), part) if isinstance(device, str) else device)
    if isinstance(model, LoadedModel):
        loaded = model
    elif isinstance(model, str):
        torch.manual_seed(proto.seed)  # a model that draws random weights draws the same ones every run
        loaded = load_model(model, model_args=model_args, checkpoint=checkpoint, dataset=dataset_ref,
                            random_init=random_init, weights=weights, generation=proto.version)
    else:
        loaded = load_model(model, model_args=model_args, checkpoint=checkpoint)
    try:
        loaded.module.to(dev)
    except Exception as exc:
        raise ModelContractError(f"the model cannot be moved to {dev}: {type(exc).__name__}: {exc}") from None
    loaded.channels = probe(loaded.module, proto.image_size, dev)
    notes = check_image_sizes(loaded.module, data, proto, dev) + output_range_notes(loaded.module, proto.image_size, dev)
    identity = run_header(loaded, dataset_ref, proto, dev, batch_size,
                          dataset_sha256=result_cache.fingerprint(data, min(proto.n_images, len(data))))
    out_path = Path(out) if out is not None else None
    displaced = None
    reuse = reuse and identity["model_source_sha256"] is not None  # code that cannot be hashed is never reused
    if reuse:
        found = result_cache.reusable(identity, out_path)
        if found is not None:
            if loaded.state_sha256 and "state_sha256" not in found.document["model"]:  # an older result
                found.document["model"]["state_sha256"] = loaded.state_sha256
            return found
    if out_path is not None and unique_out and not overwrite:
        out_path, displaced = _unique(out_path, identity, resume)

    started = datetime.now(timezone.utc)
    if part.distributed:
        if overwrite and part.rank == 0 and out_path is not None:
            for p in partial_paths(out_path):
                p.unlink()
        barrier(part)  # every rank checked the output before any writes to it
    lock_on = out_path if not part.distributed or out_path is None else partial_path(out_path, part.rank)
    with RunLock(lock_on) if lock_on is not None else contextlib.nullcontext():
        # again, now that it is ours; the other ranks of a distributed run may be writing theirs by now
        out_path, log_path = _output_files(out_path, resume, overwrite, part=part, own_log_only=part.distributed)
        synthetic = bool(data.synthetic)
        conditions = {c.id for c in plan(proto, registry, synthetic=synthetic)}
        own_exists = log_path is not None and log_path.exists()
        log = PartialLog(log_path, identity, resume=resume and not overwrite and own_exists, conditions=conditions)

        def others() -> list[dict[str, Any]]:  # what the other ranks (or an earlier run's ranks) logged
            if out_path is None:
                return []
            return [r for p in partial_paths(out_path) if p != log_path
                    for r in PartialLog.read(p, identity, conditions)]

        if resume:
            log.adopt(others())
        try:
            with in_precision(loaded, proto.precision):  # the protocol's arithmetic, for this run only
                done = run(loaded, data, dataset_ref, proto, registry, device=dev, batch_size=batch_size, log=log,
                           on_progress=progress, train_dataset=train_dataset, shard=part, gather=others)
        except BaseException:
            if not log.records and not log.resumed:
                log.remove()  # a run that failed before its first chunk leaves nothing behind
            raise
        if done is None:  # another rank than 0 of a distributed run: rank 0 writes the result
            barrier(part)
            assert out_path is not None
            return Result.load(out_path)
        document = done.document
        document["warnings"] = notes + document["warnings"]
        document["identity"] = result_cache.stamped(identity)
        result = _finish(document, done, started, command, resume, out_path, overwrite,
                         cache and identity["model_source_sha256"] is not None, part.world)
        result.displaced = displaced
        log.remove()
        if out_path is not None:
            for p in partial_paths(out_path):
                p.unlink(missing_ok=True)
        barrier(part)  # the other ranks read the result once it is written
    return result


def _unique(out_path: Path, identity: dict[str, Any], resume: bool) -> tuple[Path, tuple[Path, list[str]] | None]:
    """The default output name for this run: itself when free (or, resuming, when its partial
    log is this run's), else the first ``NAME-k.json`` that is; and the file kept, with how its
    run differs."""
    def candidates():
        yield out_path
        for k in range(2, 10_000):
            yield out_path.with_name(f"{out_path.stem}-{k}{out_path.suffix}")

    for path in candidates():
        log = partial_path(path)
        if resume:
            if log.exists() and result_cache.key(PartialLog.header_of(log) or {}) == result_cache.key(identity):
                return path, None
            continue
        if path == out_path and log.exists() and \
                result_cache.key(PartialLog.header_of(log) or {}) == result_cache.key(identity):
            raise ResultError(f"an unfinished run of this same run exists ({log})", hints=("resume", "overwrite"))
        if not path.exists() and not log.exists():
            if path == out_path:
                return path, None
            kept = out_path
            old = (result_cache.identity_of(kept) if kept.exists()
                   else PartialLog.header_of(partial_path(kept)))
            return path, (kept, result_cache.differences(old, identity))
    raise ResultError(f"no unfinished run of this identity to resume beside {out_path}", hints=("overwrite",))


def _finish(document: dict[str, Any], done: Run, started: datetime, command: str | None, resume: bool,
            out_path: Path | None, overwrite: bool, cache: bool = True, world_size: int = 1) -> Result:
    document["run"] = {
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(done.seconds, 3),
        "seconds_per_condition": {k: round(v, 3) for k, v in done.seconds_per_condition.items()},
        "host": socket.gethostname(),
        "resumed": bool(resume),
        "world_size": world_size,
    }
    result = Result(document, out_path)
    text = dumps(document)
    if out_path is not None:
        # a file that appeared at out_path while this run went on is not replaced (unless overwrite)
        atomic_write(out_path, lambda f: f.write(text), mode="w", replace=overwrite)
    if cache:
        result_cache.store(document, text)
    return result


def _check_size_override(data: Any, dataset_ref: str, side: int | None) -> None:
    """An image size asked for must be the one the images have: a generated dataset draws them at
    that size, a folder of images is evaluated at their own (nothing resizes them)."""
    if side is None:
        return
    try:
        shape = tuple(int(s) for s in data[0].image.shape)
    except Exception:  # an empty or broken dataset is reported by the run itself, with its name
        return
    if shape != (side, side):
        raise DataError(f"image size {side} was asked for, but the images of {dataset_ref!r} are their own size "
                        f"({shape[0]}x{shape[-1]} for the first): nothing resizes them; leave out --image-size")


__all__: Sequence[str] = ("evaluate", "load_model", "open_dataset", "get_protocol", "list_plugins")
