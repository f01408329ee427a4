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
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .checkpoint import load_state, read_checkpoint, state_sha256
from .errors import CheckpointError, ModelContractError, ModelLoadError
from .files import sha256_file
from .specs import ModelSpec, Weights
from .weights import accept_reproduced, check_weights, fetch_weights, reproduce_hint, weights_path

if TYPE_CHECKING:  # names for annotations only
    import pluggy

    from .plugins import Registry


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
    # registered weights re-made on another machine and accepted by measurement (its note, hashes
    # and validation IoUs; fmbench.weights.accept_reproduced), else None
    reproduced: dict[str, Any] | None = None
    # sha256 of the checkpoint's tensors as read (fmbench.checkpoint.state_sha256), computed here:
    # what an entry records, never the hash a checkpoint's metadata claims for itself
    state_sha256: str | None = None
    channels: int | None = None  # the output channels the probe found; every later batch must keep them
    # the registered weights' name (``nucleus``, ``nucleus@2/v2``, ``er/v2/seed1``), else None
    weights_name: str | None = None

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


def parse_model_args(items: Iterable[str] | None) -> dict[str, Any]:
    """``["depth=4", "encoder=resnet18", "pretrained=false"]`` -> typed keyword arguments.

    Values are read as Python literals (numbers, ``True``, ``None``, tuples, quoted strings);
    ``true``/``false``/``null`` are accepted too; anything else stays a string.
    """
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ModelLoadError(f"model argument {item!r}: expected KEY=VALUE with KEY a Python identifier")
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


def _import_attr(ref: str) -> Any:
    modpart, _, attr = ref.rpartition(":")
    if not modpart or not attr:
        raise ModelLoadError(f"model reference {ref!r}: expected NAME, module:Attr or file.py:Attr")
    if modpart.endswith(".py"):
        path = Path(modpart)
        if not path.is_file():
            raise ModelLoadError(f"model reference {ref!r}: file {modpart} does not exist")
        name = f"fmbench_user_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ModelLoadError(f"model file {modpart} cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:  # a model calling sys.exit, too
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
        except (Exception, SystemExit) as exc:  # a model calling sys.exit, too
            raise ModelLoadError(f"module {modpart!r} failed to import: {type(exc).__name__}: {exc}") from exc
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ModelLoadError(f"model reference {ref!r}: {modpart!r} has no attribute {attr!r}") from None
    return obj


def _construct(factory: Callable[..., Any], args: dict[str, Any], ref: str) -> nn.Module:
    try:
        module = factory(**args)
    except Exception as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        raise ModelLoadError(f"could not construct {ref}({shown}): {type(exc).__name__}: {exc}") from exc
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"{ref} returned a {type(module).__name__}, expected a torch.nn.Module")
    return module


def build_model(ref: str, args: dict[str, Any], registry: Registry, pm: pluggy.PluginManager) -> tuple[nn.Module, ModelSpec | None]:
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


def weights_for(spec: ModelSpec, dataset: str | None, generation: int = 1) -> str | None:
    """The name of ``spec``'s registered weights for ``dataset`` under a protocol of version
    ``generation``: those the zoo of that generation trained (``DATASET/vN``: ``nucleus@2/v2``),
    else those registered for the dataset reference (``nucleus@2``), else for its name
    (``nucleus``: weights registered by name serve every version of the dataset); None if none."""
    if not dataset:
        return None
    base = dataset.split("@", 1)[0]
    names = ([f"{dataset}/v{generation}"] if generation >= 2 else []) + [dataset, base]
    return next((n for n in names if n in spec.weights), None)


def load_model(ref: str, args: dict[str, Any], registry: Registry, pm: pluggy.PluginManager, *, checkpoint: str | os.PathLike | None = None,
               dataset: str | None = None, random_init: bool = False, weights: str | None = None,
               generation: int = 1) -> LoadedModel:
    """Build a model and load its weights: ``checkpoint`` if given, else the registered
    weights named ``weights``, else those for ``dataset`` (:func:`weights_for`: the zoo
    generation ``generation``'s first).  A registered model that lists weights, but none that
    fit, is refused unless ``random_init`` (an untrained model measures nothing)."""
    module, spec = build_model(ref, args, registry, pm)
    loaded = LoadedModel(module=module, ref=ref, args=dict(args), spec=spec)
    path: Path | None = None
    w: Weights | None = None  # registered weights from the spec: checked against its sha256s once read
    if checkpoint:
        path = Path(checkpoint)
    elif spec is not None and (spec.weights or spec.needs_weights) and not random_init:
        # a spec that lists no weights at all builds its own (its factory loads them)
        name = weights_for(spec, weights or dataset, generation)
        w = spec.weights.get(name) if name else None
        loaded.weights_name = name
        if w is None:
            have = ", ".join(sorted(spec.weights)) or "none"
            if weights:
                raise CheckpointError(f"model {ref!r} has no weights named {weights!r} (it has weights trained on: "
                                      f"{have})")
            # your own images are for testing: the advice is the shipped weights, never training on them
            own = bool(dataset and ":" in dataset)
            raise CheckpointError(f"model {ref!r} has no trained weights for dataset {dataset!r} (it has weights "
                                  f"trained on: {have})",
                                  hints=("weights", "random_init") if own and spec.weights else ("checkpoint", "random_init"))
        path = weights_path(w)
        if not path.is_file() and w.url:
            fetch_weights(w, path)
        if not path.is_file():
            raise CheckpointError(f"weights {name!r} for {ref!r} are missing at {path}; reproduce them with: "
                                  f"{reproduce_hint(w, path)} (or, holding the reference file, `fmbench zoo install FILE`)")
    if path is not None:
        state, meta = read_checkpoint(path)
        loaded.state_sha256 = state_sha256(state)  # hashed once: checked here, recorded by results
        problem = check_weights(w, path=path, digest=loaded.state_sha256) if w is not None else None
        if problem and w is not None:
            def measure() -> float:
                from .train import measure_val_iou
                from .weights import pinned_tier

                load_state(module, state, f"checkpoint {path}")  # (a command naming no tier: the file's version)
                return measure_val_iou(module, pinned_tier(str(w.command), meta.get("protocol")), registry, pm)

            verdict = accept_reproduced(w, loaded.state_sha256, meta, path, measure)
            if isinstance(verdict, str):
                raise CheckpointError(f"weights {path} are not the registered ones: {problem}; {verdict}")
            loaded.reproduced = verdict
        load_state(module, state, f"checkpoint {path}")
        loaded.checkpoint = str(path)
        loaded.weights_sha256 = sha256_file(path)
        loaded.meta = meta
    module.eval()
    return loaded


def probe(module: nn.Module, image_size: int | tuple[int, int], device: torch.device, batch: int = 2) -> int:
    """Check the model contract on a random batch of ``image_size`` (a side, or (H, W));
    return the number of output channels.

    Every violation found is reported, in plain words, in one :class:`ModelContractError`.
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, h, w, generator=g).to(device)
    module.eval()
    problems: list[str] = []
    try:
        with torch.no_grad():
            out1 = module(x)
            out2 = module(x)
    except (Exception, SystemExit) as exc:  # a model calling sys.exit, too
        raise ModelContractError(
            f"model failed on a probe batch of shape {tuple(x.shape)} (float32 in [0, 1]): "
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        ) from exc
    if not isinstance(out1, torch.Tensor):
        raise ModelContractError(
            f"model returned a {type(out1).__name__}, expected a logits tensor of shape "
            f"(B, C, H, W); wrap it so forward() returns the tensor"
        )
    expected = f"({batch}, C, {h}, {w})"
    if out1.dim() != 4 or out1.shape[0] != batch or tuple(out1.shape[2:]) != (h, w):
        problems.append(f"output has shape {tuple(out1.shape)} for input {tuple(x.shape)}, expected {expected} "
                        f"(logits at input size)")
    if out1.dim() == 4 and out1.shape[1] == 0:
        problems.append("output has 0 channels, expected 1 (sigmoid) or at least 2 (softmax)")
    elif not out1.is_floating_point():
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

                target = torch.zeros(batch, h, w, dtype=torch.bool, device=device)
                target[:, : h // 2] = True
                loss = segmentation_loss(out.float(), target).mean()
                (grad,) = torch.autograd.grad(loss, xg, allow_unused=True)
        except Exception as exc:  # a model may raise anything; the contract says what it broke
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            problems.append(f"no gradient path from the output to the input ({first})")
        else:
            if grad is None or not torch.isfinite(grad).all() or grad.abs().sum() == 0:
                problems.append("the gradient of the loss with respect to the input is zero or not finite "
                                "(attacks cannot be measured)")
    if problems:
        raise ModelContractError("model breaks the fmbench contract: " + "; ".join(problems))
    return int(out1.shape[1])


def output_range_notes(module: nn.Module, image_size: int | tuple[int, int], device: torch.device) -> list[str]:
    """A note when a one-channel model's outputs on the probe batch all lie in [0, 1]: it most
    likely returns probabilities (a sigmoid at its end), which fmbench would read as logits and
    threshold at 0 -- every pixel foreground -- and whose saturated gradient weakens attacks."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    x = torch.rand(2, 1, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    try:
        with torch.no_grad():
            out = module(x)
    except (Exception, SystemExit):  # noqa: BLE001 - a model that fails now fails in the run, in one line
        return []
    if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[1] == 1 and bool(((out >= 0) & (out <= 1)).all()) and float(out.max() - out.min()) > 0:
        return [f"the model's outputs on a probe batch all lie in [0, 1] ({float(out.min()):.3f} to "
                f"{float(out.max()):.3f}): it looks like it returns probabilities, but fmbench expects logits "
                f"(foreground where the logit is above 0); remove its final sigmoid, or wrap it to return "
                f"torch.logit(p, eps=1e-6)"]
    return []


LARGE = 4  # an image with more than this many times the protocol's pixels gets a warning
MAX_PROBED_SIZES = 8  # distinct image sizes probed before a run (the rest fail, if at all, in one line mid-run)


def check_image_sizes(module: nn.Module, data: Any, protocol: Any, device: torch.device) -> list[str]:
    """Probe the model at each of the dataset's own image sizes that differ from the protocol's
    (a dataset that lists them, ``image_shapes``: ``{id: (H, W)}``, as a folder does; else its
    first image's), the largest first, and warn, before anything runs, about images far larger
    than the protocol's.  A size the model cannot take is one error naming an image of that size."""
    import logging
    import time

    try:
        listed = getattr(data, "image_shapes", None)
        by_shape: dict[tuple[int, ...], str] = {}
        for image_id, shape in (listed.items() if listed else [(data[0].id, data[0].image.shape)]):
            by_shape.setdefault(tuple(int(s) for s in shape), str(image_id))
    except Exception:  # an empty or broken dataset is reported by the run itself, with its name
        return []
    side = protocol.image_size
    todo = sorted((s for s in by_shape if len(s) == 2 and s != (side, side)), key=lambda s: (-s[0] * s[1], s))
    notes = []
    for k, shape in enumerate(todo[:MAX_PROBED_SIZES]):
        t0 = time.perf_counter()
        try:
            probe(module, (shape[0], shape[1]), device, batch=1)
        except ModelContractError as exc:
            raise ModelContractError(f"image {by_shape[shape]} is {shape[0]}x{shape[1]}: {exc}") from exc
        ratio = shape[0] * shape[1] / side**2
        if k == 0 and ratio > LARGE:
            note = (f"image {by_shape[shape]} is {shape[0]}x{shape[1]}, {ratio:.0f} times the protocol's {side}x{side} "
                    f"pixels: every forward and backward pass costs about {ratio:.0f} times as much time and memory "
                    f"(the contract probe alone took {time.perf_counter() - t0:.1f} s per image); consider tiles of "
                    f"about {side}x{side}")
            logging.getLogger("fmbench").warning(note)
            notes.append(note)
    return notes
