"""The projected-gradient family: iterative FGSM, PGD, SegPGD and CosPGD.

All four share one loop (:class:`PGD`): take the input gradient of a per-pixel loss, step in
the norm's steepest-ascent direction, project back into the budget and [0, 1].  They differ
in the start, the step and the loss:

- ``ifgsm`` (Kurakin, Goodfellow & Bengio, ICLR 2017 workshop): no random start, step 1/255,
  ``min(eps*255 + 4, 1.25 * eps*255)`` steps rounded down (the study's schedule).
- ``pgd`` (Madry et al., ICLR 2018): uniform random start in the budget, 10 steps of 2/255
  (L-inf, the study's setting) or of ``2.5 * eps / steps`` (L2), cross-entropy.
- ``segpgd`` (Gu et al., ECCV 2022): PGD whose loss weights correctly classified pixels by
  ``1 - lambda_t`` and misclassified ones by ``lambda_t``, ``lambda_t = t / (2T)`` for step
  ``t = 0 .. T-1``: first push the pixels still right, later keep the wrong ones wrong.
- ``cospgd`` (Agnihotri et al., ICML 2024): PGD whose per-pixel cross-entropy is weighted by
  the cosine similarity of the softmax prediction and the one-hot label (detached): pixels
  already fooled stop dominating the gradient.

A sigmoid model (``C == 1``) is treated as the two-class softmax ``[0, z]``, so every loss
is the same for both output conventions.  Randomness (the random start) comes only from the
per-image generators.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fmbench import (
    Attack,
    AttackSpec,
    ProtocolError,
    ascend,
    check_norm,
    hookimpl,
    input_gradient,
    project,
    random_start,
    segmentation_loss,
    two_class_logits,
)


def kurakin_iterations(eps: float) -> int:
    """The iterative-FGSM schedule of Kurakin et al. with ``eps`` in [0, 1]:
    ``min(eps*255 + 4, 1.25 * eps*255)`` steps rounded down (as torchattacks' BIM does), at
    least one.  A tiny slack keeps ``k/255`` budgets on their integer (``8/255 -> 10``)."""
    k = eps * 255
    return max(1, int(math.floor(min(k + 4, 1.25 * k) + 1e-9)))


def segpgd_loss(step: int, steps: int):
    """SegPGD's per-pixel loss at step ``step`` of ``steps`` (0-based)."""
    lam = step / (2 * steps)

    def loss(logits, target):
        ce = segmentation_loss(logits, target)
        with torch.no_grad():
            wrong = (two_class_logits(logits).argmax(1) != 0) != target
        return ce * torch.where(wrong, lam, 1.0 - lam).to(ce.dtype)

    return loss


def cospgd_loss(logits, target):
    """CosPGD's per-pixel loss: cross-entropy times ``cos(softmax(logits), onehot(target))``."""
    ce = segmentation_loss(logits, target)
    with torch.no_grad():
        z = two_class_logits(logits)
        onehot = F.one_hot(target.long(), z.shape[1]).permute(0, 3, 1, 2).to(z.dtype)
        weight = F.cosine_similarity(z.softmax(1), onehot, dim=1)
    return ce * weight


class PGD(Attack):
    """Projected gradient ascent; see the module docstring.  ``step`` is absolute in [0, 1]
    units; ``rel_step`` instead sets it to ``rel_step * eps / steps`` (Madry et al. use 2.5:
    the steps can cross the budget 2.5 times, so a random start can reach every corner);
    with neither, 2/255 for L-inf (the study) and ``2.5 * eps / steps`` for L2."""

    name = "pgd"
    loss = "ce"
    norms = ("linf", "l2")
    summary = "PGD with random start, 10 steps of 2/255 (Madry et al. 2018)"

    def __init__(self, norm: str = "linf", steps: int = 10, step: float | None = None,
                 random_start: bool = True, rel_step: float | None = None):
        self.norm = check_norm(norm, self.name)
        if steps is None and type(self).iterations is PGD.iterations:
            raise ProtocolError(f"attack {self.name!r}: steps must be a positive integer, got None")
        if steps is not None and (int(steps) != steps or steps < 1):
            raise ProtocolError(f"attack {self.name!r}: steps must be a positive integer, got {steps!r}")
        for key, value in (("step", step), ("rel_step", rel_step)):
            if value is not None and not value > 0:
                raise ProtocolError(f"attack {self.name!r}: {key} must be > 0, got {value!r}")
        if step is not None and rel_step is not None:
            raise ProtocolError(f"attack {self.name!r}: give step or rel_step, not both")
        self.steps = None if steps is None else int(steps)
        self.step = step
        self.random_start = bool(random_start)
        self.rel_step = rel_step

    def iterations(self, eps: float) -> int:
        return self.steps

    def step_size(self, eps: float) -> float:
        if self.step is not None:
            return self.step
        if self.rel_step is not None:
            return self.rel_step * eps / self.iterations(eps)
        return 2 / 255 if self.norm == "linf" else 2.5 * eps / self.iterations(eps)

    def loss_at(self, step: int, steps: int):
        return segmentation_loss

    def start(self, x: torch.Tensor, eps: float, gens) -> torch.Tensor:
        return random_start(x, eps, self.norm, gens) if self.random_start else x.clone()

    def __call__(self, model, x, target, eps, gens, start=None):
        """``start``: an adversarial input inside the budget to continue from (a worst-case
        ensemble's refinement) instead of the attack's own start."""
        steps, alpha = self.iterations(eps), self.step_size(eps)
        x_adv = self.start(x, eps, gens) if start is None else project(start.detach().clone(), x, eps, self.norm)
        for t in range(steps):
            grad, _ = input_gradient(model, x_adv, target, self.loss_at(t, steps), where=f"attack {self.name!r}")
            x_adv = project(ascend(x_adv, grad, alpha, self.norm), x, eps, self.norm)
        return x_adv


class IFGSM(PGD):
    """Iterative FGSM (basic iterative method); ``steps=None`` follows Kurakin's schedule."""

    name = "ifgsm"
    norms = ("linf",)
    summary = "iterative FGSM, step 1/255, Kurakin's schedule (Kurakin et al. 2017)"

    def __init__(self, norm: str = "linf", steps: int | None = None, step: float = 1 / 255):
        check_norm(norm, self.name, ("linf",))
        super().__init__(norm=norm, steps=steps, step=step, random_start=False)

    def iterations(self, eps: float) -> int:
        return self.steps if self.steps is not None else kurakin_iterations(eps)


class SegPGD(PGD):
    name = "segpgd"
    loss = "segpgd"
    summary = "SegPGD: PGD re-weighting right and wrong pixels (Gu et al. 2022)"

    def loss_at(self, step, steps):
        return segpgd_loss(step, steps)


class CosPGD(PGD):
    name = "cospgd"
    loss = "cospgd"
    summary = "CosPGD: PGD with cosine-weighted pixel loss (Agnihotri et al. 2024)"

    def loss_at(self, step, steps):
        return cospgd_loss


@hookimpl
def fmbench_attacks():
    return [AttackSpec.of(cls) for cls in (IFGSM, PGD, SegPGD, CosPGD)]
