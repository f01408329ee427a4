"""A universal adversarial perturbation: one perturbation, learned on the training split, added
to every test image (Moosavi-Dezfooli et al., CVPR 2017; learned here by stochastic projected
sign-gradient ascent as in Shafahi et al., AAAI 2020).  A single pattern that fools a model on
unseen images is a realistic threat for a deployed medical-imaging model: it needs no access to
the image being attacked.

Preparation (once per budget, before the first test batch): start from uniform noise in the
budget (drawn from the preparation generator), then for ``epochs`` passes over the first
``n_train`` training images, step the shared perturbation along the sign (L-inf) or direction
(L2) of the gradient of the batch's mean cross-entropy and project it back into the budget.
The step is ``step`` (default ``eps / 4``).  At test time the perturbation is added and the
result clipped to [0, 1]; it is tiled (or cropped) when a test image has another size.
"""

from __future__ import annotations

import torch

from fmbench import (
    Attack,
    AttackSpec,
    FmbenchError,
    ProtocolError,
    ascend,
    check_norm,
    hookimpl,
    input_gradient,
    project,
    random_start,
)


def _fit(delta: torch.Tensor, shape) -> torch.Tensor:
    """``delta`` (1, 1, h, w) tiled and cropped to ``(H, W)``."""
    h, w = delta.shape[-2:]
    H, W = shape[-2:]
    if (h, w) != (H, W):
        delta = delta.repeat(1, 1, -(-H // h), -(-W // w))[..., :H, :W]
    return delta


def _into_ball(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    return delta * torch.clamp(eps / delta.norm().clamp_min(1e-12), max=1.0)


class Universal(Attack):
    name = "universal"
    role = "universal"
    norms = ("linf", "l2")
    summary = "one perturbation learned on the training split for all images"
    needs_preparation = True

    def __init__(self, norm: str = "linf", epochs: int = 5, n_train: int = 32, step: float | None = None):
        self.norm = check_norm(norm, self.name)
        for key, value in (("epochs", epochs), ("n_train", n_train)):
            if int(value) != value or value < 1:
                raise ProtocolError(f"attack {self.name!r}: {key} must be a positive integer, got {value!r}")
        self.epochs, self.n_train, self.step = int(epochs), int(n_train), step
        self._delta: dict[float, torch.Tensor] = {}

    def iterations(self, eps: float) -> int:
        return 0  # per test image; the preparation's passes are counted apart

    def prepare(self, model, batches, eps, gen):
        step = self.step if self.step is not None else eps / 4
        delta = None
        seen = 0
        for _ in range(self.epochs):
            seen = 0
            for x, target in batches():
                if seen >= self.n_train:
                    break
                x, target = x[: self.n_train - seen], target[: self.n_train - seen]
                seen += x.shape[0]
                if delta is None:
                    base = torch.full_like(x[:1], 0.5)  # the start lives in the budget, not the image
                    delta = random_start(base, eps, self.norm, [gen]) - base
                d = delta.detach().requires_grad_(True)
                x_adv = (x + d).clamp(0.0, 1.0)
                # the gradient with respect to the shared perturbation is the sum of the
                # per-image input gradients (the clamp passes it where the image is not clipped)
                grad, _ = input_gradient(model, x_adv, target, where=f"attack {self.name!r}")
                g = (grad * ((x + delta > 0) & (x + delta < 1))).sum(0, keepdim=True)
                delta = _into_ball(ascend(delta, g, step, self.norm), eps, self.norm)
        if delta is None:
            raise FmbenchError(f"attack {self.name!r}: no training images to learn the perturbation from")
        self._delta[float(eps)] = delta.detach()

    def __call__(self, model, x, target, eps, gens):
        delta = self._delta.get(float(eps))
        if delta is None:
            raise FmbenchError(f"attack {self.name!r} was not prepared for eps={eps:g}: the engine calls "
                               f"prepare() on the training split first")
        delta = _fit(delta.to(x.device, x.dtype), x.shape)
        return project(x + delta, x, eps, self.norm)


@hookimpl
def fmbench_attacks():
    return [AttackSpec.of(Universal)]
