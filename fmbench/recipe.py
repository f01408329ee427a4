"""Training recipes: version 1's fixed recipe, version 2's (longer, early stopping on a
validation plateau, best weights kept) with per-architecture changes, and the measured verdict
on a training's validation curve (:func:`convergence`: plateaued or still rising)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # names for annotations only
    from .protocol import Protocol


@dataclass(frozen=True)
class Recipe:
    """Everything that defines a training run besides the model, dataset and seed."""

    steps: int = 800
    batch_size: int = 8
    crop: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    n_train: int = 256
    n_val: int = 16
    val_every: int = 250
    checkpoint_every: int = 100
    defense: str = "none"
    # early stopping (0: off, as in version 1): stop once the best validation IoU has not risen
    # by ``min_gain`` for ``patience`` steps (never before ``min_steps``); ``keep_best``: the
    # checkpoint holds the weights of the best validation, not the last step's
    patience: int = 0
    min_gain: float = 0.002
    min_steps: int = 0
    keep_best: bool = False
    # label noise on the training masks (fmbench.label_noise): "" none, else "KIND:RATE:SEVERITY"
    label_noise: str = ""


# The recipe of the version-2 zoo (protocols ``*-v2``): a longer budget, validation every 100
# steps on 32 images, early stopping on a plateau and the best weights kept -- so that the
# record says whether a model plateaued (and at what) or was still rising when the budget ended
RECIPE_V2 = Recipe(steps=1200, n_val=32, val_every=100, patience=400, min_steps=600, keep_best=True)

# a model is ``undertrained`` when its best validation IoU rose by more than this over the
# last quarter of a budget it used up (docs/zoo.md)
RISING = 0.01


def recipe_for(protocol: Protocol, overrides: dict[str, Any] | None = None, **changes: Any) -> Recipe:
    """The training recipe for a protocol's zoo: version 1's for version-1 protocols, else
    :data:`RECIPE_V2`; ``overrides`` (a model's recorded per-architecture changes, version 2
    on) and ``changes`` (the command line's) replace fields."""
    base = Recipe() if protocol.version < 2 else dataclasses.replace(RECIPE_V2, **(overrides or {}))
    return dataclasses.replace(base, **{k: v for k, v in changes.items() if v is not None})


def convergence(history: list[dict[str, Any]], recipe: Recipe, stopped_at: int) -> dict[str, Any]:
    """Whether a training plateaued or was still rising when its budget ended, measured on its
    validation curve: ``{"state": "plateaued"|"rising"|"unknown", "best_val_iou", "best_step",
    "gain_last_quarter", "stopped_at", "reason"}``."""
    vals = [(h["step"], h["val_iou"]) for h in history if "val_iou" in h]
    if not vals:
        return {"state": "unknown", "stopped_at": stopped_at, "reason": "no validation"}
    best_step, best = max(vals, key=lambda sv: (sv[1], -sv[0]))
    cut = stopped_at - max(1, stopped_at // 4)
    before = [v for s, v in vals if s <= cut]
    gain = best - max(before) if before else None
    early = stopped_at < recipe.steps
    if early:
        state = "plateaued"
    elif gain is None:
        state = "unknown"
    else:
        state = "rising" if gain > RISING else "plateaued"
    return {"state": state, "best_val_iou": best, "best_step": best_step,
            "gain_last_quarter": None if gain is None else round(gain, 6), "stopped_at": stopped_at,
            "reason": "early stop: no gain of %g in %d steps" % (recipe.min_gain, recipe.patience) if early
            else "budget used up"}


DEFENSES = ("none", "noise-aug", "pgd-at")
# pgd-at's attack: the quick tier's middle L-inf budget, a few steps (each step of adversarial
# training costs AT_STEPS extra forward+backward passes on half the batch)
AT_EPS, AT_STEPS = 4 / 255, 3


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _record_shape(conv: Mapping[str, Any], recipe: Mapping[str, Any], val_iou: Any) -> str | None:
    """What in a convergence record no training under ``recipe`` could write (:func:`convergence`
    and the trainer's early stop), or None."""
    steps: Any = recipe.get("steps")
    stopped, best_step = conv["stopped_at"], conv["best_step"]
    every: Any = recipe.get("val_every")
    patience: Any = recipe.get("patience")
    least: Any = recipe.get("min_steps")
    early = stopped < steps
    if stopped > steps or best_step > stopped or best_step <= 0:
        return f"best step {best_step} and stop at {stopped} do not fit a {steps}-step budget"
    # (the trainer also validates at the last step of the budget, on the grid or not)
    if _finite(every) and every > 0 and ((best_step % every and best_step != steps) or (early and stopped % every)):
        return f"it stopped at {stopped} or was best at {best_step}, where no validation ran (every {every} steps)"
    if early and _finite(patience) and (patience <= 0 or stopped < max(patience, least if _finite(least) else 0)):
        return f"an early stop at step {stopped} under patience {patience} and min_steps {least}"
    if early != conv["reason"].startswith("early stop"):
        return f"its reason {conv['reason'][:60]!r} is not how a training that {'stopped early' if early else 'used its budget'} ends"
    if recipe.get("keep_best") and _finite(val_iou) and abs(val_iou - conv["best_val_iou"]) > 1e-6:
        return f"the checkpoint keeps its best weights, yet its validation IoU {val_iou} is not the best {conv['best_val_iou']}"
    return None


def convergence_problems(training: Mapping[str, Any]) -> list[str]:
    """A training's convergence state must be the one its own record implies
    (:func:`fmbench.recipe.convergence`): it chooses between ``undertrained`` and
    ``architecture-limited``, so a state at odds with the record's gain and stop is refused."""
    conv, recipe = training.get("convergence"), training.get("recipe")
    if not isinstance(conv, Mapping) or conv.get("state") not in ("plateaued", "rising"):
        return []
    steps: Any = recipe.get("steps") if isinstance(recipe, Mapping) else None
    stopped: Any = conv.get("stopped_at")
    gain: Any = conv.get("gain_last_quarter")
    if not (_finite(steps) and _finite(stopped)):
        return ["training.convergence: a state without the recipe's steps and the step it stopped at"]
    if not (_finite(conv.get("best_val_iou")) and _finite(conv.get("best_step")) and isinstance(conv.get("reason"), str)):
        return ["training.convergence: a state without its best validation IoU, best step and reason"]
    if not _finite(gain) and stopped >= steps:
        return ["training.convergence: a state without the gain over the last quarter it rests on"]
    shape = _record_shape(conv, recipe if isinstance(recipe, Mapping) else {}, training.get("val_iou"))
    if shape:
        return [f"training.convergence: {shape}; no training makes that record"]
    if stopped >= steps and abs(gain - RISING) <= 1e-6:  # the record rounds the gain to 6 decimals
        return []
    implied = "plateaued" if stopped < steps else ("rising" if gain > RISING else "plateaued")
    return [] if conv["state"] == implied else [
        f"training.convergence.state is {conv['state']!r}, but its record (stopped at {stopped} of {steps} steps, gain "
        f"{gain} over the last quarter) implies {implied!r}"]
