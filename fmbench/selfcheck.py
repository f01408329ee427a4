"""Self-checks on every attack run: the signs of a weak attack or of gradient masking.

A robustness number is worth something only if the attack was strong and its gradients were
real.  While a run goes, :func:`attack_checks` records per (batch, attack condition) what the
checks need (it lands in the partial log, so a resumed run checks every chunk); at the end
:func:`review` turns the records into the result's ``checks`` section and into warnings
(printed by the CLI, stored in ``result["warnings"]``):

1. **budget** -- every perturbation within its budget, exactly up to float32 rounding
   (``size <= eps * (1 + 1e-5) + 1e-6``), inside [0, 1] and finite;
2. **gradients** -- no image whose input gradient was exactly zero at every step of an attack
   (no signal at all), and none that was ever non-finite;
3. **attack vs clean** -- the mean adversarial IoU not above the clean IoU;
4. **stronger vs weaker** -- within a family, a larger budget not weaker than a smaller one;
   at one budget and norm, an iterative gradient attack not weaker than a single-step one with
   the same loss (PGD and iterative FGSM against FGSM: the check of Carlini et al. 2019, "On
   evaluating adversarial robustness"); an ensemble not weaker than any of its members.  Two
   iterative attacks are not compared: their step sizes and starts differ, so more steps need
   not mean stronger (10 steps of 1/255 from the image, as iterative FGSM takes at 8/255, travel
   no further than 5 of 2/255 from a random start, and are routinely weaker);
5. **random control** -- at the largest budget of every gradient or ensemble family, random
   noise of the same budget (:func:`fmbench.attack.random_noise`, one extra forward pass per
   image, counted in that condition's passes) must hurt much less than the attack: flagged
   when its IoU drop exceeds the noise tolerance and is at least half the attack's drop.

"Beyond noise" (checks 3-5) means by more than ``max(0.01, 2 * SE)`` in mean IoU, with ``SE``
the standard error of the paired per-image IoU differences of the two conditions.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .attack import Attack, GradientTracker, random_noise
from .metrics import per_image_iou, predict

ABS_TOL = 0.01  # the smallest IoU difference a check reports
SMALL_EFFECT, SMALL_EFFECT_EPS = 0.01, 4 / 255  # check 6: an IoU drop below this at a budget of at least this
RANDOM_SHARE = 0.5  # random noise may cost at most this share of the attack's IoU drop


def budget(x_adv: torch.Tensor, x: torch.Tensor, norm: str | None) -> dict[str, Any]:
    """The largest perturbation of a batch in its norm, and whether it left [0, 1] or was
    non-finite."""
    delta = (x_adv - x).flatten(1)
    size = delta.norm(dim=1).max() if norm == "l2" else delta.abs().max()
    finite = bool(torch.isfinite(x_adv).all())
    return {"max_perturbation": float(size) if finite else None,
            "outside_unit": bool(finite and (x_adv.min() < 0 or x_adv.max() > 1)),
            "nonfinite": not finite}


def within_budget(size: float, eps: float) -> bool:
    return size <= eps * (1 + 1e-5) + 1e-6


def attack_checks(model: nn.Module, attack: Attack, tracker: GradientTracker, x: torch.Tensor, x_adv: torch.Tensor,
                  target: torch.Tensor, norm: str | None, eps: float, control_gens: list[torch.Generator] | None = None) -> dict[str, Any]:
    """What :func:`review` needs from one (batch, attack condition).  With ``control_gens``
    the random-noise control is run here (one forward pass) and its per-image IoU kept."""
    out = {
        "role": getattr(attack, "role", "gradient"),
        "loss": getattr(attack, "loss", "ce"),
        "members": list(getattr(attack, "members", ())),
        "iterations": int(attack.iterations(eps)) if hasattr(attack, "iterations") else None,
        "gradients": tracker.report(),
        "budget": budget(x_adv, x, norm),
    }
    if control_gens is not None:
        x_rand = random_noise(x, eps, norm or "linf", control_gens)
        with torch.inference_mode():
            out["random_iou"] = per_image_iou(predict(model(x_rand)), target).tolist()
    return out


def _paired_tol(a: list[float], b: list[float]) -> float:
    n = len(a)
    if n < 2:
        return ABS_TOL
    d = [x - y for x, y in zip(a, b)]
    mean = math.fsum(d) / n
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in d) / (n - 1))
    return max(ABS_TOL, 2 * sd / math.sqrt(n))


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def review(result: dict[str, Any], records: list[dict[str, Any]],
           preparation: dict[str, dict] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The ``checks`` section and the warnings of a finished run (see the module docstring).
    Adds each condition's preparation passes to its pass counts and the run's totals."""
    preparation = preparation or {}
    conds = {c["id"]: c for c in result["conditions"] if c["kind"] == "attack"}
    per_image = result["per_image"]["iou"]
    clean = per_image["reference"]
    warnings: list[str] = []
    checks: dict[str, Any] = {}
    info: dict[str, dict[str, Any]] = {}

    for cid, c in conds.items():
        rs = sorted((r for r in records if r["condition"] == cid and "checks" in r), key=lambda r: r["batch"])
        if not rs:
            continue
        first = rs[0]["checks"]
        grads = {k: sum(r["checks"]["gradients"][k] for r in rs) for k in ("evaluations", "images", "zero", "nonfinite")}
        sizes = [r["checks"]["budget"]["max_perturbation"] for r in rs]
        rand = [v for r in rs for v in r["checks"].get("random_iou", [])]
        info[cid] = {**first, "random_iou": rand if len(rand) == c["n_images"] else None}
        entry = {"role": first["role"], "loss": first["loss"], "iterations": first["iterations"],
                 "gradients": grads,
                 "max_perturbation": None if None in sizes else max(sizes),
                 "random_iou": _mean(rand) if info[cid]["random_iou"] else None}
        if cid in preparation:
            entry["preparation"] = preparation[cid]["passes"]
        checks[cid] = entry

        # 1. budget
        if None in sizes or any(r["checks"]["budget"]["nonfinite"] for r in rs):
            warnings.append(f"{cid}: adversarial input has non-finite values")
        elif not within_budget(max(sizes), c["level"]):
            warnings.append(f"{cid}: perturbation {max(sizes):.6g} exceeds the budget {c['level']:.6g}")
        if any(r["checks"]["budget"]["outside_unit"] for r in rs):
            warnings.append(f"{cid}: adversarial input leaves [0, 1]")
        # 2. gradients
        if grads["zero"]:
            warnings.append(f"{cid}: {grads['zero']} of {grads['images']} images got an exactly zero input "
                            f"gradient at every step (gradient masking? the attack had no signal)")
        if grads["nonfinite"]:
            warnings.append(f"{cid}: {grads['nonfinite']} of {grads['images']} images got a non-finite input "
                            f"gradient (gradient masking or a numerically unstable model)")
        # 3. attack vs clean
        adv = per_image[cid]
        tol = _paired_tol(adv, clean)
        if _mean(adv) > _mean(clean) + tol:
            warnings.append(f"{cid}: adversarial IoU {_mean(adv):.3f} is above the clean IoU {_mean(clean):.3f} "
                            f"(tolerance {tol:.3f}); the attack is not working")
        # 5. random control
        if info[cid]["random_iou"]:
            drop_attack = _mean(clean) - _mean(adv)
            drop_random = _mean(clean) - _mean(rand)
            tol_r = _paired_tol(rand, clean)
            if drop_random > tol_r and drop_random >= RANDOM_SHARE * drop_attack:
                warnings.append(f"{cid}: random noise of the same budget lowers IoU by {drop_random:.3f}, the "
                                f"attack only by {drop_attack:.3f}; the attack is not much stronger than noise "
                                f"(gradient masking?)")
            # 6. an attack that barely moves a working model at a large budget: its gradients may be
            # masked (outputs saturated, as by a steep sigmoid), which the controls above can miss
            elif first["role"] == "gradient" and c["level"] >= SMALL_EFFECT_EPS and _mean(clean) > SMALL_EFFECT \
                    and drop_attack < SMALL_EFFECT:
                warnings.append(f"{cid}: the attack lowers IoU by only {drop_attack:.3f} at this budget; a model "
                                f"this robust is rare, and saturated outputs (a steep sigmoid, probabilities for "
                                f"logits) hide the gradient from it (gradient masking?)")

    def weaker(strong: str, weak: str, why: str) -> None:
        a, b = per_image[strong], per_image[weak]
        tol = _paired_tol(a, b)
        if _mean(a) > _mean(b) + tol:
            warnings.append(f"{strong}: IoU {_mean(a):.3f} is above {_mean(b):.3f} of {weak} although {why} "
                            f"(tolerance {tol:.3f}); the stronger attack is weaker (gradient masking?)")

    # 4. stronger vs weaker
    ids = [cid for cid in conds if cid in info]
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            ca, cb = conds[a], conds[b]
            if ca["family"] == cb["family"]:
                if ca["level"] != cb["level"]:
                    big, small = (a, b) if ca["level"] > cb["level"] else (b, a)
                    weaker(big, small, "its budget is larger")
                continue
            if ca["norm"] != cb["norm"] or not math.isclose(ca["level"], cb["level"], rel_tol=1e-9):
                continue
            for s, w in ((a, b), (b, a)):
                cw, js, jw = conds[w], info[s], info[w]
                if js["role"] == jw["role"] == "gradient" and js["iterations"] and jw["iterations"] \
                        and js["iterations"] > jw["iterations"] == 1 and js["loss"] == jw["loss"]:
                    weaker(s, w, f"it takes {js['iterations']} steps to {jw['iterations']}")
                if js["role"] == "ensemble" and cw["name"] in {m.split("#")[0] for m in js["members"]}:
                    weaker(s, w, f"{cw['name']} is one of its members")

    # preparation passes belong to their condition
    for cid, prep in preparation.items():
        c = next((c for c in result["conditions"] if c["id"] == cid), None)
        if c is None:
            continue
        for k, v in prep["passes"].items():
            c["passes"][k] += v
            result["passes"][k] += v
    return checks, warnings
