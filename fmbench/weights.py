"""Registered weights: where they live (shipped in a package or in the user cache), whether a
file is the registered one (or a reproduction accepted by measurement), installing downloaded
reference files, and fetching them from a URL a plugin names."""

from __future__ import annotations

import hashlib
import io
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .checkpoint import read_checkpoint, state_sha256
from .errors import CheckpointError
from .files import atomic_write, sha256_file
from .protocol import DEFAULT_TIER

if TYPE_CHECKING:  # names for annotations only
    from .specs import Weights


def cache_dir() -> Path:
    """fmbench's user cache: ``$FMBENCH_CACHE``, else ``$XDG_CACHE_HOME/fmbench``, else
    ``~/.cache/fmbench``."""
    if os.environ.get("FMBENCH_CACHE"):
        return Path(os.environ["FMBENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fmbench"


def weights_path(weights: Weights) -> Path:
    """Where registered weights live: inside their package (shipped), at an absolute path, or
    under the user cache (``cache_dir()/weights/PATH``) for weights too large to ship."""
    if weights.package:
        import importlib.resources

        return Path(str(importlib.resources.files(weights.package).joinpath(weights.path)))
    path = Path(weights.path).expanduser()
    return path if path.is_absolute() else cache_dir() / "weights" / path


def reproduce_hint(weights: Weights, path: Path) -> str:
    """The command that makes ``path`` (``--out PATH`` added when the command has none).  A
    training command that names no protocol trains under the default tier's *newest* version,
    which need not be the one the weights were made under: the hint says so."""
    import shlex

    cmd = weights.command
    hint = cmd if " --out " in f" {cmd} " else f"{cmd} --out {shlex.quote(str(path))}"
    if " train " in f" {cmd} " and command_flag(cmd, "--tier", "--protocol") is None:
        hint += (" (it names no --tier: add the protocol version the weights were made under, e.g. "
                 "--tier quick-v1, or it trains under the default tier's newest version)")
    return hint


def command_flag(command: str, *names: str) -> str | None:
    """The value of the first of ``names`` (``--seed``, ``--tier``/``--protocol``...) in a recorded
    command line, or None where it is not given."""
    words = command.split()
    for name in names:
        if name in words[:-1]:
            return words[words.index(name) + 1]
        given = next((w for w in words if w.startswith(name + "=")), None)  # the --name=value spelling
        if given is not None:
            return given.split("=", 1)[1]
    return None


def pinned_tier(command: str, protocol_id: str | None) -> str:
    """``command`` (an ``fmbench train`` line) with its protocol named by the version it ran under:
    a tier name (``--tier quick``) means the tier's newest released version, which changes when
    the next version is released, so a recorded ``--tier quick`` made under ``quick-v1`` reads
    ``--tier quick-v1``; a command that names no tier (the default tier, ``quick``) made under a
    ``quick`` version gets ``--tier PROTOCOL_ID`` appended.  Other words are kept as they are.
    ``protocol_id`` None: the command as it is."""
    import re

    if not isinstance(protocol_id, str) or not protocol_id or not isinstance(command, str):
        return command
    name = protocol_id.rsplit("-v", 1)[0]
    flag = re.search(r"(?:^|\s)--(?:tier|protocol)[ =](\S+)", command)
    if flag is None:
        return f"{command} --tier {protocol_id}" if name == DEFAULT_TIER else command
    if flag.group(1) != name:
        return command
    start = flag.start(1) - 1  # the space or `=` before the value: written as `--tier VALUE`
    return command[:start] + " " + protocol_id + command[flag.end(1):]


def trained_under(command: str, registry: Any, made_under: str | None = None,
                  default_tier: str | None = None) -> tuple[str | None, Any, str | None]:
    """Where an ``fmbench train`` command trains: the tier it names (pinned to ``made_under``,
    the protocol version it ran under; ``default_tier`` where it names none), that tier's
    protocol and the dataset it trains on under it (``--dataset nucleus --tier quick-v2`` trains
    on ``nucleus@2``).  The protocol is None for a tier the registry does not know (and then the
    dataset too), the dataset None where the command names none; a name the protocol does not
    resolve comes back as written (it then matches no entry's dataset)."""
    tier = command_flag(pinned_tier(command, made_under), "--tier", "--protocol") or default_tier
    on = command_flag(command, "--dataset")
    try:
        proto = registry.protocol(tier) if tier else None
    except Exception:  # noqa: BLE001 - a tier the registry does not know
        return tier, None, None
    try:
        return tier, proto, (proto.dataset_ref(on) if proto is not None and on else None)
    except Exception:  # noqa: BLE001 - a dataset the registry does not know
        return tier, proto, None


def check_weights(weights: Weights, data: bytes | None = None, path: Path | None = None,
                  state: Mapping[str, torch.Tensor] | None = None, digest: str | None = None) -> str | None:
    """Why the weights (the bytes ``data``, or the file ``path``) are not the registered ones,
    or ``None`` when they are: the file's sha256 and/or its state's sha256."""
    import io

    if data is None and path is None:
        raise ValueError("check_weights needs the bytes or the path of the weights")
    if weights.sha256:  # the file's bytes (``digest`` is the state's: a different hash)
        file_digest = hashlib.sha256(data).hexdigest() if data is not None else sha256_file(path)  # type: ignore[arg-type]
        if file_digest != weights.sha256:
            return f"sha256 {file_digest[:12]}..., expected {weights.sha256[:12]}..."
    if weights.state_sha256:
        if digest is None and state is None:  # ``state`` / ``digest``: already read / hashed by the caller
            try:
                state, _ = read_checkpoint(io.BytesIO(data) if data is not None else path)  # type: ignore[arg-type]
            except CheckpointError as exc:
                return str(exc)
        got = digest or state_sha256(state)  # type: ignore[arg-type]
        if got != weights.state_sha256:
            return f"state sha256 {got[:12]}..., expected {weights.state_sha256[:12]}..."
    return None


# a checkpoint re-made by the registered command on another CPU is accepted when its recorded
# validation IoU lies this close to the registered one (training is deterministic per machine,
# not across CPU types: docs/zoo.md)
REPRODUCED_VAL_TOLERANCE = 0.01


def accept_reproduced(weights: Weights, got: str, meta: Mapping[str, Any],
                      path: Path, measure: Callable[[], float]) -> dict[str, Any] | str:
    """Registered weights whose tensors differ: accepted by measurement (a record with the note a
    result carries) when they were made by the registered command and their validation IoU,
    *measured now* by ``measure`` (the weights loaded, the registered command's validation split,
    condition and seed: :func:`fmbench.train.measure_val_iou`), is within
    :data:`REPRODUCED_VAL_TOLERANCE` of the registered one; otherwise why not, and what to do (a
    string; ``got``: the state sha256 of the weights).  The validation IoU a checkpoint records about
    itself is not trusted."""
    exact = ("install the exact file with `fmbench zoo install PATH` (docs/zoo.md), or remake them with: "
             f"{reproduce_hint(weights, path)}")
    if weights.val_iou is None or not weights.state_sha256 or not weights.command:
        return f"remake them with: {reproduce_hint(weights, path)}"
    command = meta.get("command")
    made_under = meta.get("protocol") if isinstance(meta.get("protocol"), str) else None
    if not isinstance(command, str) or pinned_tier(command, made_under) != pinned_tier(weights.command, made_under):
        return f"they were made by {command!r}, not by the registered {weights.command!r}; {exact}"
    val = measure()
    if not math.isfinite(val) or abs(val - weights.val_iou) > REPRODUCED_VAL_TOLERANCE:
        return (f"they were made by the registered command, but their validation IoU, measured now, is {val:.4f}: "
                f"not within {REPRODUCED_VAL_TOLERANCE} of the registered {weights.val_iou}; {exact}")
    note = (f"reproduced weights: {path} were re-made by the registered command (state sha256 {got[:12]}..., "
            f"registered {weights.state_sha256[:12]}...) and accepted by measurement: validation IoU {val:.4f}, "
            f"measured now, against the registered {weights.val_iou:.4f} (tolerance {REPRODUCED_VAL_TOLERANCE}); "
            f"training differs across CPU types, and one training run's robustness can differ from the registered "
            f"run's far more than its clean IoU (docs/zoo.md), so compare robustness with the leaderboard's seed "
            f"spread, not its single entry")
    return {"note": note, "state_sha256": got, "registered_state_sha256": weights.state_sha256,
            "val_iou": float(val), "registered_val_iou": weights.val_iou, "tolerance": REPRODUCED_VAL_TOLERANCE}


def weights_name(dataset: str, generation: int = 1, seed: int = 0, defense: str | None = "none") -> str:
    """The name a zoo registers weights under: the dataset reference for the version-1 zoo
    (``nucleus``); from version 2 on, ``DATASET/vN`` plus ``/seedS`` for a seed other than 0 and
    ``/DEFENSE`` for a defended training (``nucleus@2/v2``, ``er/v2/seed1``, ``mito/v2/pgd-at``)."""
    if generation < 2:
        return dataset
    name = f"{dataset}/v{generation}"
    if seed:
        name += f"/seed{seed}"
    if defense and defense != "none":
        name += f"/{defense}"
    return name


def name_from_meta(meta: Mapping[str, Any]) -> str | None:
    """The zoo weights name of a checkpoint, from its training metadata (None if it has none)."""
    dataset, protocol = meta.get("dataset"), meta.get("protocol")
    if not isinstance(dataset, str):
        return None
    try:
        generation = int(str(protocol).split("-v", 1)[1].split("+", 1)[0]) if isinstance(protocol, str) else 1
    except (IndexError, ValueError):
        generation = 1
    recipe = meta.get("recipe")
    defense = recipe.get("defense", "none") if isinstance(recipe, Mapping) else "none"
    seed = meta.get("seed")
    return weights_name(dataset, generation, seed if isinstance(seed, int) else 0, defense)


def meta_problem(meta: Mapping[str, Any], weights: Weights) -> str | None:
    """Why a checkpoint with the registered tensors still cannot be installed as them: its
    metadata -- what every result made from it records about its training -- says another
    command, validation IoU or defence than the registry does (or contradicts itself)."""
    command, val = meta.get("command"), meta.get("val_iou")
    proto = meta.get("protocol") if isinstance(meta.get("protocol"), str) else None
    if weights.command and isinstance(command, str) and pinned_tier(command, proto) != pinned_tier(weights.command, proto):
        return f"its metadata names the training command {command[:160]!r}, registered {weights.command!r}"
    if isinstance(val, (int, float)) and weights.val_iou is not None and abs(val - weights.val_iou) > 1e-6:
        return f"its metadata records validation IoU {val:.6f}, registered {weights.val_iou:.6f}"
    recipe = meta.get("recipe")
    said = {str(meta["defense"]) if meta.get("defense") else "none",
            str(recipe.get("defense") or "none") if isinstance(recipe, Mapping) else "none"}
    if "defense" in meta and len(said) > 1:
        return f"its metadata contradicts itself on the defence ({', '.join(sorted(said))})"
    return None


def install(paths: list[Path], registry: Any, overwrite: bool = False) -> list[tuple[Path, bool, str]]:
    """Install reference weights a user downloaded (checkpoint files, or folders of them) into
    the user cache, each checked against the registry first: ``(file, installed, what happened)``."""
    files = [q for p in paths for q in (sorted(p.glob("*.pt")) if p.is_dir() else [p])]
    out = []
    for f in files:
        try:  # read once: the bytes checked are the bytes installed
            if not f.is_file():
                raise CheckpointError(f"checkpoint {f} is not a readable file")
            data = f.read_bytes()
            state, meta = read_checkpoint(io.BytesIO(data), name=str(f))
        except OSError as exc:
            out.append((f, False, f"checkpoint {f} could not be read: {exc.strerror or exc}"))
            continue
        except CheckpointError as exc:
            out.append((f, False, str(exc)))
            continue
        model, dataset = meta.get("model"), meta.get("dataset")
        spec = registry.models.get(model) if isinstance(model, str) else None
        name = name_from_meta(meta)
        w = spec.weights.get(name) if spec is not None and name else None
        if w is None:
            out.append((f, False, f"no registered weights {name!r} for model {model!r} (trained on dataset "
                                  f"{dataset!r})"))
            continue
        problem = check_weights(w, data=data, state=state) or meta_problem(meta, w)
        if problem:
            out.append((f, False, f"not the registered weights of {model} on {dataset}: {problem}"))
            continue
        target = weights_path(w)
        if target.exists() and target.resolve() == f.resolve():
            out.append((f, True, "already in place"))
            continue
        if target.exists() and check_weights(w, path=target) is None:
            out.append((f, True, f"already installed at {target}"))
            continue
        if (target.exists() or target.is_symlink()) and not overwrite:  # a dangling link too
            out.append((f, False, f"{target} holds other weights (yours?); pass --overwrite to replace them"))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda fh: fh.write(data), replace=overwrite)
        out.append((f, True, f"installed {model} on {dataset} at {target}"))
    return out


def fetch_weights(weights: Weights, path: Path) -> None:
    """Download ``weights.url`` to ``path`` (checked first, then written atomically); any
    failure is one :class:`CheckpointError` that says how to make the file instead."""
    import urllib.request



    hint = f"reproduce them with: {reproduce_hint(weights, path)}"
    if not weights.url:
        raise CheckpointError(f"weights are missing at {path} and have no download address; {hint}")
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


