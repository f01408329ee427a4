"""The attack interface, segmentation losses, pass counting and L-inf / L2 geometry.

Attacks perturb the *normalised* reference-condition image (model input space, [0, 1]), so a
budget ``eps`` means the same for every model.  The model is in eval mode with its
parameters frozen: no gradient ever accumulates on them.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ModelContractError


class Attack:
    """Base class of attacks.

    ``__call__(model, x, target, eps, gens)`` returns adversarial inputs: ``x`` is the
    ``(B, 1, H, W)`` clean input in [0, 1], ``target`` the ``(B, H, W)`` bool ground truth,
    ``eps`` the budget in the attack's ``norm``, ``gens`` one generator per image (for random
    starts).  The result must lie within the budget and in [0, 1].
    """

    norm: str = "linf"

    def __call__(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, eps: float,
                 gens: list[torch.Generator]) -> torch.Tensor:
        raise NotImplementedError


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel loss ``(B, H, W)`` for either output convention.

    ``C == 1``: binary cross-entropy on the sigmoid logit; ``C >= 2``: cross-entropy with
    class 1 as foreground and class 0 as background.
    """
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype), reduction="none")
    return F.cross_entropy(logits, target.long(), reduction="none")


def input_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor, loss_fn=segmentation_loss):
    """Gradient of the summed loss with respect to the input, and the loss per image."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(model(x), target).flatten(1).mean(1)
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return grad, loss.detach()


def project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Nearest point within the L-inf ball around ``x`` and inside [0, 1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def project_l2(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Shrink ``x_adv - x`` into the L2 ball of radius ``eps`` (per image), then clip to [0, 1]."""
    delta = x_adv - x
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12).reshape(-1, 1, 1, 1)
    delta = delta * torch.clamp(eps / norms, max=1.0)
    return (x + delta).clamp_(0.0, 1.0)


class PassCounter(nn.Module):
    """Wraps a model and counts forward and backward passes (calls and images)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.forward_calls = self.forward_images = 0
        self.backward_calls = self.backward_images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        self.forward_calls += 1
        self.forward_images += x.shape[0]
        if isinstance(out, torch.Tensor) and out.requires_grad:
            n = x.shape[0]

            def count(grad):
                self.backward_calls += 1
                self.backward_images += n

            out.register_hook(count)
        return out

    def counts(self) -> dict[str, int]:
        return {"forward_calls": self.forward_calls, "forward_images": self.forward_images,
                "backward_calls": self.backward_calls, "backward_images": self.backward_images}


@contextlib.contextmanager
def frozen_params(model: nn.Module):
    """Parameters stop requiring gradients for the duration (restored after), so an attack
    neither accumulates nor wastes time computing parameter gradients."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def check_adversarial(x_adv: torch.Tensor, x: torch.Tensor, where: str) -> None:
    if x_adv.shape != x.shape:
        raise ModelContractError(f"{where}: returned shape {tuple(x_adv.shape)}, expected {tuple(x.shape)}")
