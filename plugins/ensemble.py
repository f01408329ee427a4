"""A worst-case ensemble (after the SEA evaluation of Croce et al., 2023): run several attacks
on the same images at the same budget and keep, per image, the strongest result.

"Strongest" is the lowest foreground IoU of the model's prediction on the adversarial image;
ties (common: several members may drive IoU to 0) go to the higher mean pixel loss.  Each
member draws its randomness from generators derived from the image's generator and the
member's name, so the ensemble is exactly reproducible and members do not share random starts.
Members are looked up by name in the registry the host passes, so a third-party attack can join.
"""

from __future__ import annotations

import inspect

import torch

from fmbench import (
    Attack,
    AttackSpec,
    ProtocolError,
    check_norm,
    derive_seed,
    hookimpl,
    per_image_iou,
    predict,
    segmentation_loss,
)

DEFAULT_MEMBERS = (("fgsm", ()), ("pgd", ()), ("segpgd", ()), ("cospgd", ()))


def _member_gens(gens, label):
    out = []
    for g in gens:
        h = torch.Generator(device=g.device)
        h.manual_seed(derive_seed(g.initial_seed(), "ensemble-member", label))
        out.append(h)
    return out


class WorstCase(Attack):
    """``members``: ``(name, params)`` pairs, ``params`` a tuple of ``(key, value)`` pairs
    (hashable, as protocol entries need); every member runs in the ensemble's norm.
    ``reuse=True`` (the v2 protocols): where the protocol itself runs every member at the
    ensemble's budget, norm and parameters, the engine scores the ensemble as the per-image
    worst of those results (:class:`fmbench.conditions.WorstOf`) instead of running the members
    again with fresh random starts; this class runs only where they are not all there.
    ``refine``: ``(name, params)`` of a gradient attack that accepts a ``start`` (the PGD
    family) run once more from each image's worst member result, and kept where it is worse
    still: a continuation from the strongest point found, where a second random start of every
    member would begin again from scratch (docs/attacks.md has the measurement)."""

    name = "worst-case"
    role = "ensemble"
    loss = "mixed"
    norms = ("linf", "l2")
    summary = "per image, the strongest of several attacks (SEA-style)"

    def __init__(self, norm: str = "linf", members=DEFAULT_MEMBERS, reuse: bool = False, refine=None, *, registry):
        self.norm = check_norm(norm, self.name)
        self.reuse = bool(reuse)
        self.refiner = None
        if refine is not None:
            name, params = (refine, ()) if isinstance(refine, str) else refine
            spec = registry.attack(name)
            if norm not in spec.norms:
                raise ProtocolError(f"attack {self.name!r}: refine attack {name!r} does not support norm {norm!r}")
            self.refiner = spec.build(registry, norm, **dict(params))
            if "start" not in inspect.signature(self.refiner.__call__).parameters:
                raise ProtocolError(f"attack {self.name!r}: refine attack {name!r} cannot continue from a given "
                                    f"start (its __call__ takes no 'start')")
        self.attacks = []
        labels = []
        for item in members:
            name, params = (item, ()) if isinstance(item, str) else item
            if name == self.name:
                raise ProtocolError(f"attack {self.name!r} cannot be its own member")
            spec = registry.attack(name)
            if norm not in spec.norms:
                raise ProtocolError(f"attack {self.name!r}: member {name!r} does not support norm {norm!r} "
                                    f"(it supports {', '.join(spec.norms)})")
            self.attacks.append(spec.build(registry, norm, **dict(params)))
            labels.append(name if name not in labels else f"{name}#{len(labels)}")
        if not self.attacks:
            raise ProtocolError(f"attack {self.name!r} needs at least one member")
        self.members = tuple(labels)

    def iterations(self, eps: float) -> int:
        return sum(a.iterations(eps) for a in self.attacks) + self.refine_iterations(eps)

    def refine_iterations(self, eps: float) -> int:
        return 0 if self.refiner is None else int(self.refiner.iterations(eps))

    def __call__(self, model, x, target, eps, gens):
        best = best_iou = best_loss = None
        for label, attack in zip(self.members, self.attacks):
            x_adv = attack(model, x, target, eps, _member_gens(gens, label)).detach()
            with torch.no_grad():
                logits = model(x_adv)
                iou = per_image_iou(predict(logits), target, torch.float32)
                loss = segmentation_loss(logits.float(), target).flatten(1).mean(1)
            if best is None:
                best, best_iou, best_loss = x_adv, iou, loss
                continue
            better = (iou < best_iou) | ((iou == best_iou) & (loss > best_loss))
            best = torch.where(better.reshape(-1, 1, 1, 1), x_adv, best)
            best_iou = torch.where(better, iou, best_iou)
            best_loss = torch.where(better, loss, best_loss)
        if self.refiner is not None:
            best = self.refine(model, x, target, eps, gens, best, best_iou, best_loss)
        return best

    def refine(self, model, x, target, eps, gens, best, best_iou, best_loss):
        """Continue from ``best`` (each image's strongest result so far, with its IoU) with the
        refine attack; keep, per image, whichever of the two leaves the lower IoU."""
        x_ref = self.refiner(model, x, target, eps, _member_gens(gens, "refine"), start=best).detach()
        with torch.no_grad():
            logits = model(x_ref)
            iou = per_image_iou(predict(logits), target, torch.float32)
            loss = segmentation_loss(logits.float(), target).flatten(1).mean(1)
        better = (iou < best_iou) | ((iou == best_iou) & (loss > best_loss))
        return torch.where(better.reshape(-1, 1, 1, 1), x_ref, best)


@hookimpl
def fmbench_attacks():
    return [AttackSpec.of(WorstCase)]
