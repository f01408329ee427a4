"""Random noise that spends the whole budget: the control an attack must beat by far.

L-inf: every pixel moves by ``+eps`` or ``-eps`` at random; L2: a uniformly random direction
of length ``eps``; then clipped to [0, 1].  The engine's self-checks run this control at the
largest budget of every attack family (see ``docs/attacks.md``); registering it as an attack
lets a protocol show it as its own condition too.  It is not an attack: a protocol that
lists it has its noise counted in the adversarial robustness, so the built-in tiers do not.
"""

from __future__ import annotations

from fmbench import Attack, AttackSpec, check_norm, hookimpl, random_noise


class RandomNoise(Attack):
    name = "random"
    role = "control"
    norms = ("linf", "l2")
    summary = "control: random sign (L-inf) or sphere (L2) noise of the full budget"
    loss = "none"

    def __init__(self, norm: str = "linf"):
        self.norm = check_norm(norm, self.name)

    def iterations(self, eps: float) -> int:
        return 0

    def __call__(self, model, x, target, eps, gens):
        return random_noise(x, eps, self.norm, gens)


@hookimpl
def fmbench_attacks():
    return [AttackSpec.of(RandomNoise)]
