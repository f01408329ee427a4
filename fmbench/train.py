"""The fixed, seeded training recipe.

A model is trained at the reference condition only (detector noise at the protocol's
reference SNR -- measured images get only the noise they lack, :mod:`fmbench.measured` -- then
the fixed percentile normalisation), with random crops, flips and 90°
rotations, Dice + cross-entropy loss, AdamW and a cosine schedule with warm-up.  Each step's
batch is a pure function of (seed, step), so training is deterministic on CPU and a run
resumed from its periodic state file ends with the same weights as an unbroken one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from .checkpoint import load_state, save_checkpoint
from .conditions import expose, reference_input
from .data import normalize
from .errors import CheckpointError, ProtocolError, ResultError
from .files import atomic_write
from .measured import MeasuredSensor, OwnNoise, own_noises
from .metrics import iou_dice, overlap_counts, predict
from .protocol import DEFAULT_TIER, AttackEntry, Protocol
from .recipe import AT_EPS, AT_STEPS, DEFENSES, RECIPE_V2, RISING, Recipe, convergence, recipe_for  # noqa: F401
from .seeding import derive_seed, generators

if TYPE_CHECKING:  # names for annotations only
    from .data import Dataset
    from .plugins import Registry


# training's intra-op thread count, whatever the machine: the thread count changes the weights a
# CPU training makes (benchmarks/train_determinism.py); the reference zoo was trained with 2
TRAIN_THREADS = 2


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (binary or multi-class) plus soft Dice on the foreground."""
    if logits.shape[1] == 1:
        ce = F.binary_cross_entropy_with_logits(logits[:, 0], target.float())
        prob = torch.sigmoid(logits[:, 0])
    else:
        ce = F.cross_entropy(logits, target.long())
        prob = 1 - torch.softmax(logits, 1)[:, 0]
    t = target.float()
    inter = (prob * t).sum((1, 2))
    dice = 1 - (2 * inter + 1) / (prob.sum((1, 2)) + t.sum((1, 2)) + 1)
    return ce + dice.mean()


def _load_split(dataset: Dataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    samples = [dataset[i] for i in range(min(n, len(dataset)))]
    x = torch.from_numpy(np.stack([s.image for s in samples]).astype(np.float32))[:, None]
    m = torch.from_numpy(np.stack([s.mask for s in samples]))
    return x, m


def noise_levels(protocol: Protocol, registry: Registry) -> tuple[float, ...]:
    """The SNRs ``noise-aug`` draws from: the reference SNR and the levels of the protocol's
    exposure corruptions (those whose level is the detector's SNR: the noise family)."""
    entries = [e for e in protocol.corruptions if registry.corruption(e.name).exposure]
    if not entries:
        raise ProtocolError(f"defense noise-aug: protocol {protocol.id} has no exposure (noise) corruption "
                            f"to draw SNRs from")
    return tuple(sorted({float(protocol.reference_snr), *(float(v) for e in entries for v in e.levels)}, reverse=True))


def _step_batch(x_all: torch.Tensor, m_all: torch.Tensor, keys: list[str], recipe: Recipe, protocol: Protocol, seed: int, step: int,
                levels: tuple[float, ...] = (), own: list[OwnNoise | None] | None = None,
                exact: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of one step: images, reference-condition noise (``noise-aug``: an SNR drawn
    per image from :func:`noise_levels`), crop, flip, rotation.  ``own``: measured images' own
    noise (:mod:`fmbench.measured`), estimated once; they get only the noise they lack.  Images
    are exposed by their ``exact`` masks (default ``m_all``): a rough annotation never changes an image."""
    g = torch.Generator().manual_seed(derive_seed("train", seed, step))
    idx = torch.randint(0, x_all.shape[0], (recipe.batch_size,), generator=g)
    x, m, e = x_all[idx], m_all[idx], (m_all if exact is None else exact)[idx]
    gens = generators(seed, [keys[i] for i in idx.tolist()], f"train-step-{step}")

    def sensor(b: slice) -> MeasuredSensor | None:
        if own is None:
            return None
        return MeasuredSensor(x[b], e[b], protocol.camera, protocol.reference_snr,
                              own=[own[i] for i in idx[b].tolist()])

    if recipe.defense == "noise-aug":
        pick = torch.randint(0, len(levels), (recipe.batch_size,), generator=g).tolist()
        # per image: photon_scale depends on each image's own foreground and background
        y = torch.cat([expose(protocol, x[b : b + 1], e[b : b + 1], [gens[b]], snr=levels[pick[b]],
                              sensor=sensor(slice(b, b + 1)))
                       for b in range(recipe.batch_size)])
    else:
        y = expose(protocol, x, e, gens, sensor=sensor(slice(None)))
    H, W = x.shape[-2:]
    c = min(recipe.crop, H, W)
    out_x, out_m = [], []
    for b in range(recipe.batch_size):
        top = int(torch.randint(0, H - c + 1, (1,), generator=g))
        left = int(torch.randint(0, W - c + 1, (1,), generator=g))
        k = int(torch.randint(0, 4, (1,), generator=g))
        flip = bool(torch.randint(0, 2, (1,), generator=g))
        xi = normalize(y[b : b + 1], *protocol.normalization)[0, :, top : top + c, left : left + c]
        mi = m[b, top : top + c, left : left + c]
        xi, mi = torch.rot90(xi, k, (1, 2)), torch.rot90(mi, k, (0, 1))
        if flip:
            xi, mi = xi.flip(2), mi.flip(1)
        out_x.append(xi)
        out_m.append(mi)
    return torch.stack(out_x), torch.stack(out_m)


def _adversarial_half(module: nn.Module, attack: Any, xb: torch.Tensor, mb: torch.Tensor, seed: int, step: int) -> torch.Tensor:
    """``pgd-at``: the first half of the batch replaced by examples of the registered PGD
    attack (L-inf, ``AT_EPS``, ``AT_STEPS`` steps of ``2.5 * AT_EPS / AT_STEPS`` from a random
    start), computed in eval mode so the attack does not move the BatchNorm statistics."""
    from .attack import frozen_params

    n = xb.shape[0] // 2
    if n == 0:
        return xb
    gens = generators(seed, [f"pgd-at/{step}/{b}" for b in range(n)], "pgd-at")
    module.eval()
    with frozen_params(module):
        x_adv = attack(module, xb[:n], mb[:n].bool(), AT_EPS, gens)
    module.train()
    return torch.cat([x_adv.detach(), xb[n:]])


def validate(module: nn.Module, x_val: torch.Tensor, m_val: torch.Tensor, keys: list[str], protocol: Protocol, seed: int,
             own: list[OwnNoise | None] | None = None) -> float:
    """Mean foreground IoU on the validation images at the reference condition (measured
    images: ``own`` is their own noise)."""
    module.eval()
    sensor = None if own is None else MeasuredSensor(x_val, m_val, protocol.camera, protocol.reference_snr, own=own)
    x = reference_input(protocol, x_val, m_val, generators(seed, keys, "validation"), sensor=sensor)
    with torch.inference_mode():
        pred = predict(module(x))
    iou, _ = iou_dice(overlap_counts(pred, m_val))
    module.train()
    return float(iou.mean())


def _key_name(dataset: Any, dataset_ref: str) -> str:
    """What per-image randomness is keyed by: a folder's ``seed_name`` (never its path), else the
    dataset's reference."""
    return getattr(dataset, "seed_name", None) or dataset_ref


def measure_val_iou(module: nn.Module, command: str, registry: Registry, pm: Any) -> float:
    """``module``'s validation IoU measured exactly as the training ``command`` (an ``fmbench
    train`` command line) measured it: its protocol's reference condition, its dataset's validation
    split and count, its seed.  How reproduced zoo weights are accepted by measurement
    (:func:`fmbench.weights.accept_reproduced`) rather than on a checkpoint's own word."""
    from .datasets import open_dataset
    from .weights import command_flag

    protocol = registry.protocol(command_flag(command, "--tier", "--protocol") or DEFAULT_TIER)
    dataset_ref = protocol.dataset_ref(command_flag(command, "--dataset") or "")
    spec = registry.models.get(command_flag(command, "--model") or "")
    recipe = recipe_for(protocol, dict(spec.recipe) if spec else None)
    ds_val = open_dataset(dataset_ref, "val", protocol.image_size, registry=registry, pm=pm)
    x_va, m_va = _load_split(ds_val, recipe.n_val)
    own = own_noises(x_va, m_va) if not getattr(ds_val, "synthetic", True) else None
    keys = [f"{_key_name(ds_val, dataset_ref)}/val/{i}" for i in range(x_va.shape[0])]
    try:
        return validate(module, x_va, m_va, keys, protocol, int(command_flag(command, "--seed") or 0), own)
    finally:
        module.eval()


def train_threads() -> int:
    """The intra-op threads training uses: :data:`TRAIN_THREADS`, or ``$FMBENCH_TRAIN_THREADS``."""
    value = os.environ.get("FMBENCH_TRAIN_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else TRAIN_THREADS


def train(module: torch.nn.Module, dataset_train: Dataset, dataset_val: Dataset, **kwargs: Any) -> dict[str, Any]:
    """Train ``module`` with the recipe and write the checkpoint ``out``; returns its metadata
    (arguments: :func:`_train`).

    As deterministic as PyTorch allows: a fixed thread count (the number of threads changes the
    weights a CPU training makes), ``torch.use_deterministic_algorithms`` (warning where an op
    has no deterministic kernel), and both recorded in the checkpoint with the CPU's vector
    capability.  What still differs across CPU types is measured in docs/zoo.md."""
    threads, was_deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(train_threads())
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        return _train(module, dataset_train, dataset_val, **kwargs)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(was_deterministic)


def _train(module: torch.nn.Module, dataset_train: Dataset, dataset_val: Dataset, *, model_name: str, model_args: dict,
           dataset_ref: str, protocol: Protocol, registry: Registry, recipe: Recipe, seed: int, out: Path,
           resume: bool = False, overwrite: bool = False, half: bool = False, command: str | None = None,
           on_progress: Callable[[int, int, dict], None] | None = None) -> dict[str, Any]:
    """Train ``module`` with the recipe and write the checkpoint ``out``; returns its metadata.

    Every ``checkpoint_every`` steps the full state (weights, optimiser, schedule, history)
    is saved to ``out + '.state.pt'``; ``resume=True`` continues from it.  ``command`` (the
    command line that reproduces the run, without its output path, so the same command
    writes the same bytes wherever it writes them) is stored in the checkpoint's metadata.
    """
    if recipe.defense not in DEFENSES:
        raise ProtocolError(f"unknown defense {recipe.defense!r} (known: {', '.join(DEFENSES)})")
    torch.manual_seed(derive_seed("init", seed))
    state_file = Path(str(out) + ".state.pt")
    x_tr, m_tr = _load_split(dataset_train, recipe.n_train)
    x_va, m_va = _load_split(dataset_val, recipe.n_val)  # validation masks stay exact
    key, m_exact = _key_name(dataset_train, dataset_ref), m_tr  # the images' exposure: always the exact masks
    if recipe.label_noise:  # rough annotations on the chosen training images (fmbench.label_noise)
        from .label_noise import apply_setting, parse_setting

        setting = parse_setting(recipe.label_noise, registry)
        m_tr = torch.from_numpy(apply_setting(m_tr.numpy().astype(bool), [f"{key}/train/{i}" for i in
                                                                          range(m_tr.shape[0])], setting, seed,
                                              registry)).to(m_tr.dtype)
    # measured images keep their own noise and get only what they lack (estimated once)
    measured = not getattr(dataset_train, "synthetic", True)
    own_tr = own_noises(x_tr, m_exact) if measured else None
    own_va = own_noises(x_va, m_va) if measured else None
    keys_tr = [f"{key}/train/{i}" for i in range(x_tr.shape[0])]
    keys_va = [f"{key}/val/{i}" for i in range(x_va.shape[0])]
    opt = torch.optim.AdamW(module.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)

    def lr_at(step: int) -> float:
        if step < recipe.warmup:
            return (step + 1) / recipe.warmup
        progress = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    start, history, seconds = 0, [], 0.0
    best: dict[str, Any] = {"val_iou": -1.0, "step": 0, "state": None}  # keep_best: the best validation's weights
    identity = {"model": model_name, "model_args": model_args, "dataset": dataset_ref, "seed": seed,  # (rough labels:
                "recipe": dataclasses.asdict(recipe), "protocol": protocol.id,  # images exposed on the exact masks since 29a30fd)
                **({"label_noise_exposure": "exact masks"} if recipe.label_noise else {})}
    levels: tuple[float, ...] = ()
    attack = None
    if recipe.defense == "noise-aug":
        levels = noise_levels(protocol, registry)
        identity["defense_params"] = {"snrs": list(levels)}
    elif recipe.defense == "pgd-at":
        identity["defense_params"] = {"attack": "pgd", "eps": AT_EPS, "steps": AT_STEPS, "rel_step": 2.5,
                                      "norm": "linf", "fraction": 0.5}
        attack = registry.build_attack(AttackEntry("pgd", (AT_EPS,), params=(("steps", AT_STEPS), ("rel_step", 2.5))))
    saved, parts = None, ("identity", "model", "optimizer", "scheduler", "step", "history", "seconds")
    if resume and state_file.exists():
        try:
            st = torch.load(state_file, map_location="cpu", weights_only=True)
            missing = [k for k in parts if k not in st]
            if missing:
                raise KeyError(f"no {', '.join(missing)}")
            saved = st["identity"]
            if isinstance(saved, dict) and isinstance(saved.get("recipe"), dict):
                # a state written before a recipe field existed has that field's default
                saved = {**saved, "recipe": {**dataclasses.asdict(Recipe()), **saved["recipe"]}}
        except Exception as exc:  # noqa: BLE001 - damaged, cut short, empty, not a state: one line
            if not overwrite:  # (with --overwrite it is dropped, as another run's state is)
                raise CheckpointError(f"training state {state_file} cannot be read ({type(exc).__name__}: {exc}"[:200]
                                      + "); delete it, or --overwrite to start again") from None
        if saved != identity and not overwrite:
            raise ResultError(f"training state {state_file} belongs to a different run", hints=("overwrite",))
    elif resume:
        raise CheckpointError(f"no training state to resume at {state_file}")
    if saved is not None and saved == identity:  # (with --overwrite, another run's state is dropped)
        try:
            load_state(module, st["model"], f"training state {state_file}")
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"training state {state_file} is damaged ({type(exc).__name__}); delete it to "
                                  f"start again") from None
        start, history, seconds = int(st["step"]), list(st["history"]), float(st["seconds"])
        best = dict(st["best"]) if st.get("best") is not None else best

    def plateaued(done: int) -> bool:
        if not recipe.patience or done < max(recipe.min_steps, recipe.patience):
            return False
        vals = [(h["step"], h["val_iou"]) for h in history]
        before = max((v for s, v in vals if s <= done - recipe.patience), default=None)
        return before is not None and max(v for _, v in vals) < before + recipe.min_gain

    module.train()
    t0 = time.perf_counter()
    stopped_at = recipe.steps
    for step in range(start, recipe.steps):
        if plateaued(step):  # (re-checked first after a resume)
            stopped_at = step
            break
        xb, mb = _step_batch(x_tr, m_tr, keys_tr, recipe, protocol, seed, step, levels, own_tr, m_exact)
        if attack is not None:
            xb = _adversarial_half(module, attack, xb, mb, seed, step)
        loss = _loss(module(xb), mb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        done = step + 1
        entry: dict[str, Any] = {}
        if done % recipe.val_every == 0 or done == recipe.steps:
            entry = {"step": done, "loss": round(float(loss.detach()), 6),
                     "val_iou": round(validate(module, x_va, m_va, keys_va, protocol, seed, own_va), 6)}
            history.append(entry)
            if recipe.keep_best and entry["val_iou"] > best["val_iou"]:
                best = {"val_iou": entry["val_iou"], "step": done,
                        "state": {k: v.detach().clone() for k, v in module.state_dict().items()}}
        if done % recipe.checkpoint_every == 0 and done < recipe.steps:
            snap = {"identity": identity, "model": module.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "step": done, "history": history,
                    "seconds": seconds + time.perf_counter() - t0, "best": best if recipe.keep_best else None}
            atomic_write(state_file, lambda f: torch.save(snap, f))
        if on_progress:
            on_progress(done, recipe.steps, {"loss": float(loss.detach()), **entry})
    if recipe.keep_best and best["state"] is not None:
        load_state(module, best["state"], "the best validation's weights")
    module.eval()
    meta = {
        **identity,
        "fmbench_version": __version__,
        "torch_version": str(torch.__version__),
        "command": command,
        "history": history,
        # the weights' own validation IoU (the best one's when the recipe keeps the best)
        "val_iou": (best["val_iou"] if recipe.keep_best and best["state"] is not None
                    else history[-1]["val_iou"] if history else None),
        "convergence": convergence(history, recipe, stopped_at),
        "train_seconds": round(seconds + time.perf_counter() - t0, 1),
        "images_used": {"train": int(x_tr.shape[0]), "val": int(x_va.shape[0])},  # a small folder: fewer
        "half": half,
        # what training numerics depend on besides the recipe (benchmarks/train_determinism.py)
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    meta["state_sha256"] = save_checkpoint(out, module, {k: v for k, v in meta.items() if k != "train_seconds"}, half=half)
    state_file.unlink(missing_ok=True)
    return meta
