"""APGD: PGD with an adaptive step size and momentum (Croce & Hein, ICML 2020), for segmentation.

As in AutoAttack's APGD-CE, adapted the way the SEA segmentation benchmark adapts it (Croce,
Singh & Hein, "Towards reliable evaluation and fast training of robust semantic segmentation
models", ECCV 2024):

- a random start in the L-inf box, a first step of ``2 * eps``, momentum 0.75;
- at checkpoints ``w_j ~ p_j * N`` (``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1}
  - 0.03, 0.06)``, :func:`checkpoints`) an image's step is halved when fewer than 75 % of its steps since the last
  checkpoint raised its loss, or when neither its step nor its best loss changed since then;
  a halved step restarts from the image's best point;
- the returned point is, per image, the evaluated iterate with the **lowest IoU** (AutoAttack
  returns the iterate that fools the classifier; for segmentation the measure of being fooled is
  the IoU, read off the forward pass every gradient already makes: no extra pass).

``steps`` counts input gradients, so ``apgd`` with ``steps=5`` costs what PGD-5 costs (one
forward and one backward pass per step and image).  ``loss="ce"`` is cross-entropy; ``"masked-ce"``
(SEA's masked cross-entropy) counts only the pixels still classified correctly, so the attack
stops pushing pixels it has already flipped.  ``"to-background"`` is targeted at the IoU itself:
the log-probability of background on the true foreground pixels (maximised), i.e. no true
positive left, which is IoU 0 whatever the background pixels do.  Cross-entropy can be met by
flipping every pixel to foreground instead (IoU = the foreground share, not 0), so a budget sweep
that asks whether IoU reaches 0 needs this loss beside the others.
"""

from __future__ import annotations

import torch

from fmbench import (
    Attack,
    AttackSpec,
    ProtocolError,
    check_norm,
    hookimpl,
    input_gradient,
    per_image_iou,
    predict,
    project_linf,
    random_start,
    segmentation_loss,
    two_class_logits,
)


def checkpoints(n: int) -> list[int]:
    """The iterations at which APGD may halve the step (Croce & Hein 2020, Sec. 3.2), in
    AutoAttack's integer form: the first after ``max(int(0.22 n), 1)``, each next interval
    ``max(int(0.03 n), 1)`` shorter, down to ``max(int(0.06 n), 1)``."""
    k, decr, floor = max(int(0.22 * n), 1), max(int(0.03 * n), 1), max(int(0.06 * n), 1)
    out, at = [], k
    while at < n:
        out.append(at)
        k = max(k - decr, floor)
        at += k
    return out


def masked_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the pixels still classified correctly (0 elsewhere)."""
    ce = segmentation_loss(logits, target)
    with torch.no_grad():
        right = (two_class_logits(logits).argmax(1) != 0) == target
    return ce * right.to(ce.dtype)


def to_background(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Log-probability of background on the true foreground pixels (0 elsewhere): maximal when
    no foreground pixel is found, i.e. at IoU 0."""
    return -segmentation_loss(logits, torch.zeros_like(target)) * target.to(logits.dtype)


LOSSES = {"ce": segmentation_loss, "masked-ce": masked_ce, "to-background": to_background}


class APGD(Attack):
    name = "apgd"
    norms = ("linf",)
    summary = "APGD: adaptive step size and momentum, lowest-IoU iterate kept (Croce & Hein 2020)"

    def __init__(self, norm: str = "linf", steps: int = 10, loss: str = "ce", momentum: float = 0.75,
                 rho: float = 0.75):
        self.norm = check_norm(norm, self.name, ("linf",))
        if int(steps) != steps or steps < 2:
            raise ProtocolError(f"attack 'apgd': steps must be an integer >= 2, got {steps!r}")
        if loss not in LOSSES:
            raise ProtocolError(f"attack 'apgd': loss must be one of {', '.join(map(repr, LOSSES))}, got {loss!r}")
        self.steps, self.loss, self.momentum, self.rho = int(steps), loss, float(momentum), float(rho)

    def iterations(self, eps: float) -> int:
        return self.steps

    def __call__(self, model, x, target, eps, gens):
        loss_fn = LOSSES[self.loss]
        seen: list[torch.Tensor] = []

        def traced(logits, tgt):  # the forward pass a gradient makes also gives the iterate's IoU
            seen.append(logits.detach())
            return loss_fn(logits, tgt)

        def evaluate(point):
            seen.clear()
            grad, loss = input_gradient(model, point, target, traced, where="attack 'apgd'")
            return grad, loss, per_image_iou(predict(seen[0]), target)

        B = x.shape[0]
        view = (B,) + (1,) * (x.dim() - 1)
        marks = set(checkpoints(self.steps))
        step = torch.full(view, 2.0 * eps, dtype=x.dtype, device=x.device)

        x_k = random_start(x, eps, "linf", gens)
        grad, loss, iou = evaluate(x_k)
        best_x, best_iou = x_k.clone(), iou.clone()  # the returned point: lowest IoU
        top_x, top_loss, top_grad = x_k.clone(), loss.clone(), grad.clone()  # restarts: highest loss
        x_prev = x_k
        rises = torch.zeros(B, device=x.device)
        since, top_at_mark = 0, top_loss.clone()
        step_at_mark = step.clone()
        for k in range(1, self.steps):
            z = project_linf(x_k + step * grad.sign(), x, eps)
            a = 1.0 if k == 1 else self.momentum
            x_new = project_linf(x_k + a * (z - x_k) + (1 - a) * (x_k - x_prev), x, eps)
            x_prev, x_k = x_k, x_new
            grad, new_loss, iou = evaluate(x_k)
            rises += (new_loss > loss).to(rises.dtype)
            loss = new_loss
            since += 1
            better = iou < best_iou
            best_x[better], best_iou[better] = x_k[better], iou[better]
            up = loss > top_loss
            top_x[up], top_loss[up], top_grad[up] = x_k[up], loss[up], grad[up]
            if k in marks:
                few = rises < self.rho * since
                stuck = (step.flatten() == step_at_mark.flatten()) & (top_loss <= top_at_mark)
                halve = few | stuck
                step[halve] = step[halve] / 2
                # a halved step restarts from the image's highest-loss point (and its gradient)
                x_k[halve], x_prev[halve], grad[halve], loss[halve] = (
                    top_x[halve], top_x[halve], top_grad[halve], top_loss[halve])
                rises.zero_()
                since, top_at_mark, step_at_mark = 0, top_loss.clone(), step.clone()
        return best_x


@hookimpl
def fmbench_attacks():
    return [AttackSpec.of(APGD)]
