"""Model references, checkpoints and the model contract.

**Contract.** A model takes ``(B, 1, H, W)`` float32 in [0, 1] and returns logits
``(B, C, H, W)`` at the input size: ``C == 1`` is read with a sigmoid (``logit > 0`` is
foreground), ``C >= 2`` with a softmax (class 0 is background, class 1 foreground for binary
tasks).  :func:`probe` checks this on a probe batch before any run.

**References.** ``NAME`` is a registered model; ``scheme:rest`` is offered to the plugins'
``fmbench_resolve_model`` hook first (``mmseg:``, ``ts:``...); otherwise ``module:Attr`` (or
``path/to/file.py:Attr``) imports user-named code and calls ``Attr(**args)``.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import io
import json
import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError, ModelContractError, ModelLoadError
from .specs import ModelSpec

CHECKPOINT_FORMAT = "fmbench-checkpoint"


@dataclass
class LoadedModel:
    """A model ready to evaluate, with what identifies it in a result file."""

    module: nn.Module
    ref: str
    args: dict[str, Any]
    checkpoint: str | None = None
    weights_sha256: str | None = None
    spec: ModelSpec | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


def parse_model_args(items) -> dict[str, Any]:
    """``["depth=4", "encoder=resnet18", "pretrained=false"]`` -> typed keyword arguments.

    Values are read as Python literals (numbers, ``True``, ``None``, tuples, quoted strings);
    ``true``/``false``/``null`` are accepted too; anything else stays a string.
    """
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ModelLoadError(f"--model-arg {item!r}: expected KEY=VALUE with KEY a Python identifier")
        lowered = raw.strip().lower()
        if lowered in ("true", "false", "null", "none"):
            value: Any = {"true": True, "false": False, "null": None, "none": None}[lowered]
        else:
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                value = raw
        out[key] = value
    return out


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """A hash of tensor names, shapes, dtypes and bytes, independent of file serialisation."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return h.hexdigest()


def _import_attr(ref: str):
    modpart, _, attr = ref.rpartition(":")
    if not modpart or not attr:
        raise ModelLoadError(f"model reference {ref!r}: expected NAME, module:Attr or file.py:Attr")
    if modpart.endswith(".py"):
        path = Path(modpart)
        if not path.is_file():
            raise ModelLoadError(f"model reference {ref!r}: file {modpart} does not exist")
        name = f"fmbench_user_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise ModelLoadError(f"model file {modpart} failed to import: {type(exc).__name__}: {exc}") from exc
    else:
        if os.getcwd() not in sys.path and "" not in sys.path:
            # like `python -m`, let users name modules in the directory they run from
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(modpart)
        except ModuleNotFoundError as exc:
            if exc.name and (modpart == exc.name or modpart.startswith(exc.name + ".")):
                raise ModelLoadError(
                    f"model reference {ref!r}: no module named {exc.name!r} (is it installed, on "
                    f"PYTHONPATH or in the current directory?)"
                ) from exc
            raise ModelLoadError(f"module {modpart!r} failed to import: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            raise ModelLoadError(f"module {modpart!r} failed to import: {type(exc).__name__}: {exc}") from exc
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ModelLoadError(f"model reference {ref!r}: {modpart!r} has no attribute {attr!r}") from None
    return obj


def _construct(factory, args: dict, ref: str) -> nn.Module:
    try:
        module = factory(**args)
    except Exception as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        raise ModelLoadError(f"could not construct {ref}({shown}): {type(exc).__name__}: {exc}") from exc
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"{ref} returned a {type(module).__name__}, expected a torch.nn.Module")
    return module


def build_model(ref: str, args: dict[str, Any], registry, pm) -> tuple[nn.Module, ModelSpec | None]:
    """Resolve a reference to a freshly constructed module (no weights loaded yet)."""
    if ":" not in ref:
        spec = registry.model(ref)
        return _construct(spec.factory, {**spec.defaults, **args}, ref), spec
    try:
        module = pm.hook.fmbench_resolve_model(ref=ref, args=dict(args))
    except (ModelLoadError, CheckpointError):
        raise
    except Exception as exc:
        raise ModelLoadError(f"model reference {ref!r} failed to build: {type(exc).__name__}: {exc}") from exc
    if module is not None:
        if not isinstance(module, nn.Module):
            raise ModelLoadError(f"{ref} resolved to a {type(module).__name__}, expected a torch.nn.Module")
        return module, None
    return _construct(_import_attr(ref), args, ref), None


def read_checkpoint(path: str | os.PathLike | io.BytesIO) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict and metadata of a checkpoint, loaded with ``weights_only=True``.

    Accepts an fmbench checkpoint (``{"format", "state_dict", "meta"}``), a
    ``{"state_dict": ...}`` wrapper, or a bare state dict.
    """
    if not isinstance(path, io.BytesIO):
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        unsafe = _unsafe_globals(path)
        if unsafe:  # say what it pickles instead of torch's generic first line
            first = (f"it pickles {', '.join(unsafe[:4])}{' ...' if len(unsafe) > 4 else ''}, which fmbench does "
                     f"not unpickle; save just the state dict (and plain-JSON metadata) instead")
        raise CheckpointError(f"checkpoint {path} could not be read as a weights-only torch file: {first}") from exc
    meta: dict[str, Any] = {}
    if isinstance(obj, Mapping) and "state_dict" in obj:
        meta = dict(obj.get("meta") or {})
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} holds no state dict (a mapping of names to tensors)")
    return dict(obj), meta


def _unsafe_globals(path) -> list[str]:
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
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} shape mismatches (e.g. {k}: checkpoint "
                         f"{tuple(state[k].shape)} vs model {tuple(own[k].shape)})")
        raise CheckpointError(f"{where} does not fit the model: " + "; ".join(parts))
    module.load_state_dict(state, strict=True)


def cache_dir() -> Path:
    """fmbench's user cache: ``$FMBENCH_CACHE``, else ``$XDG_CACHE_HOME/fmbench``, else
    ``~/.cache/fmbench``."""
    if os.environ.get("FMBENCH_CACHE"):
        return Path(os.environ["FMBENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fmbench"


def weights_path(weights) -> Path:
    """Where registered weights live: inside their package (shipped), at an absolute path, or
    under the user cache (``cache_dir()/weights/PATH``) for weights too large to ship."""
    if weights.package:
        import importlib.resources

        return Path(str(importlib.resources.files(weights.package).joinpath(weights.path)))
    path = Path(weights.path).expanduser()
    return path if path.is_absolute() else cache_dir() / "weights" / path


def reproduce_hint(weights, path: Path) -> str:
    """The command that makes ``path`` (``--out PATH`` added when the command has none)."""
    import shlex

    cmd = weights.command
    return cmd if " --out " in f" {cmd} " else f"{cmd} --out {shlex.quote(str(path))}"


def check_weights(weights, data: bytes | None = None, path: Path | None = None,
                  state: Mapping[str, torch.Tensor] | None = None) -> str | None:
    """Why the weights (the bytes ``data``, or the file ``path``) are not the registered ones,
    or ``None`` when they are: the file's sha256 and/or its state's sha256."""
    import io

    if weights.sha256:
        digest = hashlib.sha256(data).hexdigest() if data is not None else sha256_file(path)
        if digest != weights.sha256:
            return f"sha256 {digest[:12]}..., expected {weights.sha256[:12]}..."
    if weights.state_sha256:
        if state is None:  # ``state``: already read from ``path`` by the caller
            try:
                state, _ = read_checkpoint(io.BytesIO(data) if data is not None else path)
            except CheckpointError as exc:
                return str(exc)
        digest = state_sha256(state)
        if digest != weights.state_sha256:
            return f"state sha256 {digest[:12]}..., expected {weights.state_sha256[:12]}..."
    return None


def fetch_weights(weights, path: Path) -> None:
    """Download ``weights.url`` to ``path`` (checked first, then written atomically); any
    failure is one :class:`CheckpointError` that says how to make the file instead."""
    import urllib.request

    from .result import atomic_write

    hint = f"reproduce them with: {reproduce_hint(weights, path)}"
    try:
        with urllib.request.urlopen(weights.url, timeout=60) as resp:  # noqa: S310 (a URL the plugin names)
            data = resp.read()
    except OSError as exc:
        raise CheckpointError(f"weights are missing at {path} and could not be downloaded from {weights.url} "
                              f"({type(exc).__name__}: {exc}); {hint}, or copy the file there") from None
    problem = check_weights(weights, data=data)
    if problem:
        raise CheckpointError(f"download {weights.url} has {problem}; nothing was written; {hint}")
    atomic_write(path, lambda f: f.write(data))


def load_model(ref: str, args: dict[str, Any], registry, pm, *, checkpoint: str | None = None,
               dataset: str | None = None, random_init: bool = False) -> LoadedModel:
    """Build a model and load its weights: ``checkpoint`` if given, else the registered
    weights for ``dataset``.  A registered model that lists weights, but none for
    ``dataset``, is refused unless ``random_init`` (an untrained model measures nothing)."""
    module, spec = build_model(ref, args, registry, pm)
    loaded = LoadedModel(module=module, ref=ref, args=dict(args), spec=spec)
    path: Path | None = None
    registered = False  # weights from the spec: checked against its sha256s once read
    if checkpoint:
        path = Path(checkpoint)
    elif spec is not None and (spec.weights or spec.needs_weights) and not random_init:
        # a spec that lists no weights at all builds its own (its factory loads them)
        w = spec.weights.get(dataset) if dataset else None
        if w is None:
            have = ", ".join(sorted(spec.weights)) or "none"
            raise CheckpointError(
                f"model {ref!r} has no trained weights for dataset {dataset!r} (it has: {have}); "
                f"train them with `fmbench train --model {ref} --dataset {dataset}` and pass "
                f"--checkpoint, or pass --random-init to evaluate an untrained model"
            )
        path, registered = weights_path(w), True
        if not path.is_file() and w.url:
            fetch_weights(w, path)
        if not path.is_file():
            raise CheckpointError(f"weights for {ref!r} on {dataset!r} are missing at {path}; reproduce them with: "
                                  f"{reproduce_hint(w, path)}")
    if path is not None:
        state, meta = read_checkpoint(path)
        problem = check_weights(w, path=path, state=state) if registered else None
        if problem:
            raise CheckpointError(f"weights {path} are not the registered ones: {problem}; remake them with: "
                                  f"{reproduce_hint(w, path)}")
        load_state(module, state, f"checkpoint {path}")
        loaded.checkpoint = str(path)
        loaded.weights_sha256 = sha256_file(path)
        loaded.meta = meta
    module.eval()
    return loaded


def probe(module: nn.Module, image_size: int, device: torch.device, batch: int = 2) -> int:
    """Check the model contract on a random batch; return the number of output channels.

    Every violation found is reported, in plain words, in one :class:`ModelContractError`.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, image_size, image_size, generator=g).to(device)
    module.eval()
    problems: list[str] = []
    try:
        with torch.no_grad():
            out1 = module(x)
            out2 = module(x)
    except Exception as exc:
        raise ModelContractError(
            f"model failed on a probe batch of shape {tuple(x.shape)} (float32 in [0, 1]): "
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        ) from exc
    if not isinstance(out1, torch.Tensor):
        raise ModelContractError(
            f"model returned a {type(out1).__name__}, expected a logits tensor of shape "
            f"(B, C, H, W); wrap it so forward() returns the tensor"
        )
    expected = f"({batch}, C, {image_size}, {image_size})"
    if out1.dim() != 4 or out1.shape[0] != batch or tuple(out1.shape[2:]) != (image_size, image_size):
        problems.append(f"output has shape {tuple(out1.shape)} for input {tuple(x.shape)}, expected {expected} "
                        f"(logits at input size)")
    if not out1.is_floating_point():
        problems.append(f"output dtype is {out1.dtype}, expected floating-point logits")
    elif not torch.isfinite(out1).all():
        n = int((~torch.isfinite(out1)).sum())
        problems.append(f"output has {n} NaN or infinite values")
    elif out1.shape == out2.shape and not torch.allclose(out1, out2, rtol=1e-4, atol=1e-5):
        problems.append("two forward passes of the same input in eval mode differ (dropout or other "
                        "randomness left on?)")
    if not problems:
        xg = x.clone().requires_grad_(True)
        try:
            with torch.enable_grad():
                out = module(xg)
                from .attack import segmentation_loss

                target = torch.zeros(batch, image_size, image_size, dtype=torch.bool, device=device)
                target[:, : image_size // 2] = True
                loss = segmentation_loss(out.float(), target).mean()
                (grad,) = torch.autograd.grad(loss, xg, allow_unused=True)
        except RuntimeError as exc:
            problems.append(f"no gradient path from the output to the input ({str(exc).splitlines()[0]})")
        else:
            if grad is None or not torch.isfinite(grad).all() or grad.abs().sum() == 0:
                problems.append("the gradient of the loss with respect to the input is zero or not finite "
                                "(attacks cannot be measured)")
    if problems:
        raise ModelContractError("model breaks the fmbench contract: " + "; ".join(problems))
    return int(out1.shape[1])


def save_checkpoint(path: str | os.PathLike, module: nn.Module, meta: dict[str, Any], half: bool = False) -> str:
    """Write an fmbench checkpoint atomically; returns the state hash stored in ``meta``."""
    from .result import atomic_write

    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in module.state_dict().items()}
    # plain JSON types only, so the file loads with weights_only=True (torch.__version__, for
    # one, is a str subclass the weights-only unpickler refuses)
    meta = json.loads(json.dumps(dict(meta, state_sha256=state_sha256(state)), default=str))
    atomic_write(path, lambda f: torch.save({"format": CHECKPOINT_FORMAT, "state_dict": state, "meta": meta}, f))
    return meta["state_sha256"]
