"""The attack interface, segmentation losses, pass counting, gradient tracking and L-inf / L2
geometry.

Attacks perturb the *normalised* reference-condition image (model input space, [0, 1]), so a
budget ``eps`` means the same for every model.  The model is in eval mode with its
parameters frozen: no gradient ever accumulates on them.

Every input gradient an attack takes goes through :func:`input_gradient`, which reports to
the active :func:`track_gradients` tracker; the engine's self-checks
(:mod:`fmbench.selfcheck`) read it to flag zero or non-finite gradients, the commonest sign
of gradient masking.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ModelContractError, ProtocolError
from .seeding import rand_per_image, randn_per_image

NORMS = ("linf", "l2")


class Attack:
    """Base class of attacks.

    ``__call__(model, x, target, eps, gens)`` returns adversarial inputs: ``x`` is the
    ``(B, 1, H, W)`` clean input in [0, 1], ``target`` the ``(B, H, W)`` bool ground truth,
    ``eps`` the budget in the attack's ``norm``, ``gens`` one generator per image (for random
    starts).  The result must lie within the budget and in [0, 1].

    What the self-checks need to know about an attack: ``role`` is ``"gradient"`` (a
    per-image gradient attack), ``"ensemble"`` (keeps the worst case of ``members``),
    ``"universal"`` (one perturbation for all images) or ``"control"`` (random noise);
    ``loss`` names the objective; :meth:`iterations` the gradient steps at a budget.

    An attack that must see the training split first (a universal perturbation) overrides
    :meth:`prepare`; the engine calls it once per budget before the first batch, with the
    passes it spends counted.
    """

    name: str = "attack"
    summary: str = ""
    norms: tuple[str, ...] = ("linf",)  # the threat models it supports
    norm: str = "linf"
    role: str = "gradient"
    loss: str = "ce"
    members: tuple[str, ...] = ()
    needs_preparation: bool = False

    def __call__(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, eps: float,
                 gens: list[torch.Generator]) -> torch.Tensor:
        raise NotImplementedError

    def iterations(self, eps: float) -> int:
        """Gradient steps per image at budget ``eps``."""
        return 1

    def prepare(self, model: nn.Module, batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]],
                eps: float, gen: torch.Generator) -> None:
        """Learn whatever the attack needs from the training split (``batches()`` yields
        ``(x, target)`` reference-condition inputs), at budget ``eps``, drawing randomness
        only from ``gen``.  The default does nothing."""


def check_norm(norm: str, attack: str, norms: tuple[str, ...] = NORMS) -> str:
    """``norm`` if ``attack`` supports it, else a :class:`ProtocolError` naming both."""
    if norm not in norms:
        raise ProtocolError(f"attack {attack!r}: unsupported norm {norm!r} (use {' or '.join(map(repr, norms))})")
    return norm


# -- losses ---------------------------------------------------------------------------------

def two_class_logits(logits: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` logits with ``C >= 2``: a sigmoid logit ``z`` (``C == 1``) becomes
    ``[0, z]``, whose softmax is ``[1 - sigmoid(z), sigmoid(z)]`` and whose cross-entropy is
    the binary cross-entropy of ``z``.  Lets every loss treat both conventions alike."""
    if logits.shape[1] == 1:
        return torch.cat([torch.zeros_like(logits), logits], 1)
    return logits


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel loss ``(B, H, W)`` for either output convention.

    ``C == 1``: binary cross-entropy on the sigmoid logit; ``C >= 2``: cross-entropy with
    class 1 as foreground and class 0 as background.
    """
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype), reduction="none")
    return F.cross_entropy(logits, target.long(), reduction="none")


# -- gradients ------------------------------------------------------------------------------

class GradientTracker:
    """Per image of one attack call: how many input gradients were taken, whether any was
    non-finite, and whether *every* one was exactly zero (no signal for the attack at all)."""

    def __init__(self) -> None:
        self.evaluations = 0
        self.any_nonzero: torch.Tensor | None = None
        self.nonfinite = torch.zeros(0, dtype=torch.bool)

    def update(self, grad: torch.Tensor) -> None:
        flat = grad.detach().flatten(1)
        finite = torch.isfinite(flat).all(1)
        nonzero = flat.abs().amax(1) > 0
        self.evaluations += flat.shape[0]
        if self.any_nonzero is None:
            self.any_nonzero = torch.zeros_like(nonzero)
            self.nonfinite = torch.zeros_like(finite)
        if self.any_nonzero.shape != nonzero.shape:
            return  # a differently sized batch (only inside a custom attack): counted, not tracked
        self.any_nonzero = self.any_nonzero | (nonzero & finite)
        self.nonfinite = self.nonfinite | ~finite

    def report(self) -> dict[str, int]:
        if self.any_nonzero is None:
            return {"evaluations": 0, "images": 0, "zero": 0, "nonfinite": 0}
        return {"evaluations": self.evaluations, "images": int(self.any_nonzero.numel()),
                "zero": int((~self.any_nonzero).sum()), "nonfinite": int(self.nonfinite.sum())}


_tracker: contextvars.ContextVar[GradientTracker | None] = contextvars.ContextVar("fmbench_grad_tracker",
                                                                                  default=None)


@contextlib.contextmanager
def track_gradients() -> Iterator[GradientTracker]:
    """Collect every :func:`input_gradient` taken inside the block into one tracker."""
    tracker = GradientTracker()
    token = _tracker.set(tracker)
    try:
        yield tracker
    finally:
        _tracker.reset(token)


def input_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                   loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = segmentation_loss,
                   where: str = "attack") -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the summed per-image mean loss with respect to the input, and the loss per
    image.  ``loss_fn(logits, target)`` returns a per-pixel loss ``(B, H, W)``.  A model whose
    output does not depend differentiably on its input raises :class:`ModelContractError`."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = model(x)
        loss = loss_fn(out, target).flatten(1).mean(1)
        if not loss.requires_grad:
            raise ModelContractError(f"{where}: no gradient path from the model output to its input "
                                     f"(the output does not require grad; is forward() detaching it or "
                                     f"running under torch.no_grad()?)")
        (grad,) = torch.autograd.grad(loss.sum(), x, allow_unused=True)
    if grad is None:
        raise ModelContractError(f"{where}: no gradient path from the model output to its input "
                                 f"(the loss does not depend on the input)")
    tracker = _tracker.get()
    if tracker is not None:
        tracker.update(grad)
    return grad, loss.detach()


# -- geometry -------------------------------------------------------------------------------

def project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Nearest point within the L-inf ball around ``x`` and inside [0, 1].

    Written as ``x + clamp(x_adv - x)`` (as torchattacks does) so that the same steps give
    bit-identical iterates in both."""
    delta = torch.clamp(x_adv - x, min=-eps, max=eps)
    return torch.clamp(x + delta, min=0.0, max=1.0)


def _norms(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).reshape(-1, *([1] * (t.dim() - 1)))


def project_l2(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Shrink ``x_adv - x`` into the L2 ball of radius ``eps`` (per image), then clip to [0, 1]
    (clipping only shortens the perturbation)."""
    delta = x_adv - x
    delta = delta * torch.clamp(eps / _norms(delta).clamp_min(1e-12), max=1.0)
    return (x + delta).clamp_(0.0, 1.0)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    return project_linf(x_adv, x, eps) if norm == "linf" else project_l2(x_adv, x, eps)


def ascend(x_adv: torch.Tensor, grad: torch.Tensor, step: float, norm: str) -> torch.Tensor:
    """One steepest-ascent step of length ``step`` in the norm: the gradient's sign (L-inf) or
    its direction (L2; a zero gradient stays zero)."""
    if norm == "linf":
        return x_adv + step * grad.sign()
    return x_adv + step * grad / _norms(grad).clamp_min(1e-12)


def random_start(x: torch.Tensor, eps: float, norm: str, gens: list[torch.Generator]) -> torch.Tensor:
    """A uniformly random point of the budget around ``x``, clipped to [0, 1]: uniform in the
    L-inf box, or a uniform direction at a uniform radius in [0, eps] (L2).  Image ``b`` draws
    only from ``gens[b]``."""
    shape = tuple(x.shape[1:])
    if norm == "linf":
        u = rand_per_image(shape, gens, x.device, x.dtype)
        return torch.clamp(x + (2 * u - 1) * eps, 0.0, 1.0)
    direction = randn_per_image(shape, gens, x.device, x.dtype)
    radius = rand_per_image((1,) * len(shape), gens, x.device, x.dtype)
    return project_l2(x + eps * radius * direction / _norms(direction).clamp_min(1e-12), x, eps)


def random_noise(x: torch.Tensor, eps: float, norm: str, gens: list[torch.Generator]) -> torch.Tensor:
    """Random noise that spends the whole budget: random signs of size ``eps`` (L-inf; the
    corner of the box an untargeted sign step would reach) or a uniform direction of length
    ``eps`` (L2); clipped to [0, 1].  The control every attack must beat by far."""
    shape = tuple(x.shape[1:])
    if norm == "linf":
        u = rand_per_image(shape, gens, x.device, x.dtype)
        return torch.clamp(x + eps * torch.where(u < 0.5, -1.0, 1.0).to(x.dtype), 0.0, 1.0)
    direction = randn_per_image(shape, gens, x.device, x.dtype)
    return project_l2(x + eps * direction / _norms(direction).clamp_min(1e-12), x, eps)


# -- passes and parameters --------------------------------------------------------------------

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

    def since(self, before: dict[str, int]) -> dict[str, int]:
        """The passes counted since ``before`` (an earlier :meth:`counts`)."""
        return {k: v - before[k] for k, v in self.counts().items()}


@contextlib.contextmanager
def frozen_params(model: nn.Module) -> Iterator[None]:
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
    if not isinstance(x_adv, torch.Tensor) or x_adv.shape != x.shape:
        found = tuple(x_adv.shape) if isinstance(x_adv, torch.Tensor) else type(x_adv).__name__
        raise ModelContractError(f"{where}: returned {found}, expected a tensor of shape {tuple(x.shape)}")
