"""fmbench checkpoints: weights-only reading, strict loading, atomic writing, and the hash of
a state's tensors.

Every checkpoint is read with ``torch.load(..., weights_only=True)``: a file that pickles
anything beyond tensors and plain data is refused with the names of what it pickles.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError
from .files import atomic_write

CHECKPOINT_FORMAT = "fmbench-checkpoint"


def state_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """A hash of tensor names, shapes, dtypes and bytes, independent of file serialisation."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return h.hexdigest()


# where training scripts put the state dict beside an optimiser's (besides fmbench's "state_dict")
WRAPPERS = ("model_state_dict", "model", "net")
# key prefixes wrappers add: DataParallel / DDP, Lightning, torch.compile
PREFIXES = ("module.", "model.", "_orig_mod.", "net.")

# tensor types a checkpoint may hold: dense tensors of these dtypes (what the hash and numpy read)
DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8,
                    torch.int16, torch.int32, torch.int64, torch.bool})


def read_checkpoint(path: str | os.PathLike | io.BytesIO,
                    name: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict and metadata of a checkpoint, loaded with ``weights_only=True`` (``name``:
    what messages call bytes given as a ``BytesIO``).

    Accepts an fmbench checkpoint (``{"format", "state_dict", "meta"}``), a
    ``{"state_dict": ...}`` wrapper, or a bare state dict: string keys and dense tensors of
    :data:`DTYPES`; metadata must be a mapping of plain JSON (no NaN), since results and entries
    carry it.  Anything else is one :class:`CheckpointError` that says what and where.
    """
    where = name or ("the checkpoint bytes" if isinstance(path, io.BytesIO) else str(path))
    if not isinstance(path, io.BytesIO):
        path = Path(path)
        if not path.exists():
            raise CheckpointError(f"checkpoint {where} does not exist")
        if not path.is_file():
            raise CheckpointError(f"checkpoint {where} is not a regular file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        unsafe = _unsafe_globals(path)
        if unsafe:  # say what it pickles instead of torch's generic first line
            first = (f"it pickles {', '.join(unsafe[:4])}{' ...' if len(unsafe) > 4 else ''}, which fmbench does "
                     f"not unpickle; save just the state dict (and plain-JSON metadata) instead")
        elif (head := _head(path))[:2] != b"PK" and head[:1] != b"\x80":  # neither a zip archive nor a pickle
            first = (f"it is not a torch file (torch.save writes a zip archive; this one begins "
                     f"{head!r}): save the state dict with torch.save")
        elif len(first) < 12 or "weights_only" in str(exc):  # torch's own line says nothing ("101") or
            # advises unpickling with weights_only=False, which is never passed on
            first = ("it is not a weights-only torch file (an old-format or foreign pickle, or not a torch file); "
                     "fmbench does not unpickle arbitrary objects: save just the state dict with torch.save")
        raise CheckpointError(f"checkpoint {where} could not be read as a weights-only torch file: {first}") from exc
    meta: Any = {}
    if isinstance(obj, Mapping) and "state_dict" in obj:
        meta = obj.get("meta") or {}
        obj = obj["state_dict"]
    elif isinstance(obj, Mapping):  # a training script's {"model_state_dict": ..., "optimizer": ...}
        for key in WRAPPERS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = (f" (its top-level keys: {', '.join(repr(k) for k in list(obj)[:6])}; the state dict is read from "
                 f"the file itself or from one of {', '.join(repr(k) for k in ('state_dict', *WRAPPERS))})"
                 if isinstance(obj, Mapping) else f" (it holds a {type(obj).__name__})")
        raise CheckpointError(f"checkpoint {where} holds no state dict (a mapping of names to tensors){found}")
    for key, t in obj.items():
        if not isinstance(key, str):
            raise CheckpointError(f"checkpoint {where}: state dict key {key!r} is not a string")
        if t.layout != torch.strided or t.is_quantized or t.dtype not in DTYPES:
            raise CheckpointError(f"checkpoint {where}: tensor {key!r} is a {t.layout} {t.dtype} tensor; fmbench "
                                  f"reads dense tensors of {', '.join(sorted(str(d) for d in DTYPES))}")
    if not isinstance(meta, Mapping):
        raise CheckpointError(f"checkpoint {where}: its metadata is a {type(meta).__name__}, not a mapping")
    try:
        json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {where}: its metadata is not plain JSON ({exc})") from None
    return dict(obj), dict(meta)


def _head(path: Path | io.BytesIO) -> bytes:
    """The first bytes of a file or buffer (empty if unreadable)."""
    try:
        if isinstance(path, io.BytesIO):
            return path.getvalue()[:8]
        with open(path, "rb") as f:
            return f.read(8)
    except OSError:
        return b""


def _unsafe_globals(path: str | os.PathLike | io.BytesIO) -> list[str]:
    """The classes and functions a torch file pickles beyond weights-only types, if torch can
    list them without unpickling (a zip checkpoint); else an empty list."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:
        return []


def load_state(module: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Load a state dict strictly, explaining any mismatch in one line."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    # a float parameter from an integer or bool tensor would be cast silently (weights that are not weights)
    kinds = [k for k in own if k in state and isinstance(state[k], torch.Tensor) and own[k].is_floating_point()
             and not (state[k].is_floating_point() or state[k].is_complex())]
    if missing or unexpected or shapes or kinds:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} shape mismatches (e.g. {k}: checkpoint "
                         f"{tuple(state[k].shape)} vs model {tuple(own[k].shape)})")
        if kinds:
            k = kinds[0]
            parts.append(f"{len(kinds)} floating-point parameters stored as non-float tensors (e.g. {k}: "
                         f"{state[k].dtype})")
        hint = next((f"; every key of the checkpoint starts with {p!r} (saved from a wrapped model): save "
                     f"the inner model's state dict, or strip the prefix" for p in PREFIXES
                     if state and all(k.startswith(p) for k in state)
                     and {k[len(p):] for k in state} == set(own)), "")
        raise CheckpointError(f"{where} does not fit the model: " + "; ".join(parts) + hint)
    module.load_state_dict(state, strict=True)


def save_checkpoint(path: str | os.PathLike, module: nn.Module, meta: dict[str, Any], half: bool = False) -> str:
    """Write an fmbench checkpoint atomically; returns the state hash stored in ``meta``."""


    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in module.state_dict().items()}
    # plain JSON types only, so the file loads with weights_only=True (torch.__version__, for
    # one, is a str subclass the weights-only unpickler refuses)
    meta = json.loads(json.dumps(dict(meta, state_sha256=state_sha256(state)), default=str))
    atomic_write(path, lambda f: torch.save({"format": CHECKPOINT_FORMAT, "state_dict": state, "meta": meta}, f))
    return meta["state_sha256"]


