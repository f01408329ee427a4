"""FGSM (Goodfellow et al., ICLR 2015): one signed-gradient step of size eps (L-inf), or one
normalised-gradient step (L2)."""

from __future__ import annotations

from fmbench import (
    Attack,
    AttackSpec,
    ProtocolError,
    hookimpl,
    input_gradient,
    project_l2,
    project_linf,
)


class FGSM(Attack):
    name = "fgsm"
    norms = ("linf", "l2")
    summary = "fast gradient sign method, one step (Goodfellow et al. 2015)"

    def __init__(self, norm: str = "linf"):
        if norm not in ("linf", "l2"):
            raise ProtocolError(f"attack 'fgsm': unsupported norm {norm!r} (use 'linf' or 'l2')")
        self.norm = norm

    def __call__(self, model, x, target, eps, gens):
        grad, _ = input_gradient(model, x, target)
        if self.norm == "linf":
            return project_linf(x + eps * grad.sign(), x, eps)
        norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).reshape(-1, 1, 1, 1)
        return project_l2(x + eps * grad / norms, x, eps)


@hookimpl
def fmbench_attacks():
    return [AttackSpec.of(FGSM)]
