"""Evaluation conditions as objects, and the reference exposure in its one home.

A protocol plans a list of conditions (:func:`plan`): the reference condition, each
corruption at each severity, each attack at each budget.  Each condition knows how to make the
model's input for a batch (:meth:`Condition.apply`), so the engine runs them all alike.

The **reference exposure** -- the detector of the protocol's camera at its reference SNR,
then the protocol's normalisation -- is made only by :func:`expose` and
:func:`reference_input`; the engine, the attacks' training batches, training, the gallery and
the preview all call them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .attack import PassCounter, check_adversarial, frozen_params, track_gradients
from .corruption import Sensor
from .data import normalize
from .measured import MeasuredSensor
from .protocol import Protocol, eps_label
from .seeding import generators
from .selfcheck import attack_checks

if TYPE_CHECKING:  # names for annotations only
    from .plugins import Registry
    from .specs import CorruptionSpec


def sensor_for(protocol: Protocol, x: torch.Tensor, mask: torch.Tensor, synthetic: bool = True) -> Sensor | MeasuredSensor:
    """The protocol's camera for a batch: for noise-free (synthetic) images, exposed for the
    reference SNR; for measured images, the one that adds only the noise each image lacks
    (:mod:`fmbench.measured`)."""
    if synthetic:
        return Sensor(x, mask, protocol.camera, protocol.reference_snr)
    return MeasuredSensor(x, mask, protocol.camera, protocol.reference_snr)


def expose(protocol: Protocol, x: torch.Tensor, mask: torch.Tensor, gens: list[torch.Generator],
           snr: float | None = None, sensor: Sensor | MeasuredSensor | None = None,
           synthetic: bool = True) -> torch.Tensor:
    """Images ``x`` through the protocol's detector at the reference SNR, or at ``snr``: noise-free
    images exposed (ADU), measured ones brought there from their own noise; image ``b`` draws
    its noise from ``gens[b]``."""
    sensor = sensor if sensor is not None else sensor_for(protocol, x, mask, synthetic)
    return sensor.expose(x, gens, snr=snr)


def reference_input(protocol: Protocol, x: torch.Tensor, mask: torch.Tensor, gens: list[torch.Generator], *,
                    synthetic: bool = True, sensor: Sensor | MeasuredSensor | None = None) -> torch.Tensor:
    """The model's input at the reference condition: the images at the reference SNR (synthetic
    ones exposed, measured ones with the noise they lack added), then the protocol's
    normalisation."""
    return normalize(expose(protocol, x, mask, gens, sensor=sensor, synthetic=synthetic), *protocol.normalization)


# -- one batch and one run -------------------------------------------------------------------

@dataclass
class BatchInputs:
    """A batch of clean images as every condition starts from it."""

    x: torch.Tensor  # (B, 1, H, W) noise-free expected photons (synthetic) or measured images
    mask: torch.Tensor  # (B, H, W) bool
    keys: list[str]  # "dataset/id": what per-image randomness is derived from
    protocol: Protocol
    synthetic: bool
    sensor: Sensor | MeasuredSensor = field(init=False)
    _reference: torch.Tensor | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.sensor = sensor_for(self.protocol, self.x, self.mask, self.synthetic)

    def gens(self, condition: str) -> list[torch.Generator]:
        return generators(self.protocol.seed, self.keys, condition, self.x.device)

    def reference(self) -> torch.Tensor:
        """The reference-condition input (made once per batch, shared by every attack)."""
        if self._reference is None:
            self._reference = reference_input(self.protocol, self.x, self.mask, self.gens("reference"),
                                              synthetic=self.synthetic, sensor=self.sensor)
        return self._reference


@dataclass
class RunContext:
    """What conditions need beyond the batch: the counted model and the corruption and attack
    instances of the protocol (by corruption name and attack family)."""

    model: PassCounter | None  # None where no attack runs (the gallery)
    corruptions: dict[str, Any]
    attacks: dict[str, Any]
    # this batch's overlap counts per finished condition (what a WorstOf condition combines)
    scored: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    # this batch's adversarial inputs per finished attack condition (where a WorstOf refines from)
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    # the run's conditions by id: a member whose input this process does not hold (a resumed
    # run) is applied again, deterministically
    plan: dict[str, Condition] = field(default_factory=dict)


@dataclass
class Applied:
    """A condition's input for the model, the mask to score against, and what it recorded;
    ``counts``: the overlap counts themselves, for a condition scored without a model pass."""

    input: torch.Tensor | None
    target: torch.Tensor
    record: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, torch.Tensor] | None = None


# -- the conditions --------------------------------------------------------------------------

@dataclass(frozen=True)
class Condition:
    """One evaluation condition; ``level`` is a severity (corruptions), an SNR (the reference)
    or a budget ``eps`` (attacks)."""

    id: str
    kind: str  # "reference" | "corruption" | "attack"
    name: str
    family: str
    level: float
    label: str
    norm: str | None = None

    def apply(self, batch: BatchInputs, run: RunContext) -> Applied:
        raise NotImplementedError


@dataclass(frozen=True)
class Reference(Condition):
    def apply(self, batch: BatchInputs, run: RunContext) -> Applied:
        return Applied(batch.reference(), batch.mask)


@dataclass(frozen=True)
class CorruptionAt(Condition):
    def apply(self, batch: BatchInputs, run: RunContext) -> Applied:
        y, target = run.corruptions[self.name](batch.x, batch.mask, self.level, batch.sensor, batch.gens(self.id))
        return Applied(normalize(y, *batch.protocol.normalization), target)


@dataclass(frozen=True)
class AttackAt(Condition):
    """An attack family at one budget, on the reference input.  ``top``: the family's
    largest budget, where a gradient or ensemble attack is also checked against random noise."""

    top: bool = False

    def apply(self, batch: BatchInputs, run: RunContext) -> Applied:
        x_ref = batch.reference()
        attack = run.attacks[self.family]
        assert run.model is not None, "an attack condition needs the model"
        control = (batch.gens(f"{self.id}/random")
                   if self.top and getattr(attack, "role", "gradient") in ("gradient", "ensemble") else None)
        with frozen_params(run.model), track_gradients() as tracker:
            x_adv = attack(run.model, x_ref, batch.mask, self.level, batch.gens(self.id))
            check_adversarial(x_adv, x_ref, f"attack {self.family!r}")
            x_adv = x_adv.detach()
            checks = attack_checks(run.model, attack, tracker, x_ref, x_adv, batch.mask, self.norm, self.level,
                                   control)
        return Applied(x_adv, batch.mask, {"checks": checks})

    def adversarial(self, batch: BatchInputs, run: RunContext) -> torch.Tensor:
        """The adversarial input alone, exactly as :meth:`apply` makes it (the same generators),
        without its checks: what a refining ensemble needs from a member an earlier process ran."""
        assert run.model is not None, "an attack condition needs the model"
        with frozen_params(run.model):
            return run.attacks[self.family](run.model, batch.reference(), batch.mask, self.level,
                                            batch.gens(self.id)).detach()


@dataclass(frozen=True)
class WorstOf(AttackAt):
    """An ensemble attack scored from its members' results: per image, the member condition
    (same budget, same norm, same parameters, already run on this batch) that left the lowest
    IoU.  It costs no model pass; its record names the member each image took."""

    members: tuple[str, ...] = ()

    def apply(self, batch: BatchInputs, run: RunContext) -> Applied:
        missing = [m for m in self.members if m not in run.scored]
        if missing:
            raise RuntimeError(f"{self.id}: member conditions {missing} were not scored on this batch first")
        iou = _iou(torch.stack([run.scored[m]["inter"] for m in self.members]),
                   torch.stack([run.scored[m]["union"] for m in self.members]))
        pick = iou.argmin(0)  # ties: the first member in protocol order
        counts = {k: torch.stack([run.scored[m][k] for m in self.members]).gather(0, pick[None])[0]
                  for k in ("inter", "union", "pred", "true")}
        names = [self.members[i] for i in pick.tolist()]
        refiner = getattr(run.attacks.get(self.family), "refiner", None)
        if refiner is None:
            return Applied(None, batch.mask, {"worst_of": names}, counts)
        return self._refine(batch, run, refiner, pick, iou.gather(0, pick[None])[0], counts, names)

    def materialize(self, batch: BatchInputs, run: RunContext) -> None:
        """Before this condition is applied (and its passes counted): remake the inputs of
        members an earlier process ran (a resumed run), so the refinement starts where an
        unbroken run's would and the result file is the same (the remade passes are not the
        protocol's and are not counted)."""
        if getattr(run.attacks.get(self.family), "refiner", None) is None:
            return
        for member in self.members:
            cond = run.plan.get(member)
            if member not in run.inputs and isinstance(cond, AttackAt):
                run.inputs[member] = cond.adversarial(batch, run)

    def _refine(self, batch: BatchInputs, run: RunContext, refiner: Any, pick: torch.Tensor, best_iou: torch.Tensor,
                counts: dict[str, torch.Tensor], names: list[str]) -> Applied:
        """Continue from each image's worst member input with the ensemble's refine attack and
        keep its result where the IoU is strictly lower (one more attack run, in the pass counts)."""
        from .metrics import overlap_counts, predict

        assert run.model is not None, "a refined ensemble needs the model"
        x_ref = batch.reference()
        self.materialize(batch, run)  # (the engine has already; here for a caller that has not)
        inputs = torch.stack([run.inputs[m] for m in self.members])
        start = inputs[pick.to(inputs.device), torch.arange(inputs.shape[1], device=inputs.device)]
        gens = batch.gens(f"{self.id}/refine")
        with frozen_params(run.model), track_gradients() as tracker:
            x_adv = refiner(run.model, x_ref, batch.mask, self.level, gens, start=start)
            check_adversarial(x_adv, x_ref, f"attack {self.family!r} (refine)")
            x_adv = x_adv.detach()
            checks = attack_checks(run.model, refiner, tracker, x_ref, x_adv, batch.mask, self.norm, self.level)
        # members by attack name, as an ensemble run on its own records them (the self-check that an
        # ensemble is no weaker than each member reads them)
        names_ = [run.plan[m].name if m in run.plan else m for m in self.members]
        checks.update(role="ensemble", members=[*names_, f"{getattr(refiner, 'name', 'refine')}#refine"])
        with torch.inference_mode():
            refined = {k: v.detach().cpu() for k, v in overlap_counts(predict(run.model(x_adv)), batch.mask).items()}
        better = _iou(refined["inter"], refined["union"]) < best_iou
        counts = {k: torch.where(better, refined[k], counts[k]) for k in counts}
        names = ["refine" if b else n for b, n in zip(better.tolist(), names)]
        return Applied(None, batch.mask, {"worst_of": names, "checks": checks}, counts)


def _iou(inter: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
    """Per-image IoU from overlap counts, in float64; 1 where both masks are empty."""
    inter, union = inter.double(), union.double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def _covering_members(entry: Any, protocol: Protocol) -> dict[float, tuple[str, ...]] | None:
    """For an ensemble entry with ``reuse``: per budget, the protocol's own conditions that are
    its members (same name, norm and parameters, at that budget); ``None`` when any is missing."""
    params = dict(entry.params)
    if not params.get("reuse"):
        return None
    out: dict[float, tuple[str, ...]] = {}
    for eps in entry.eps:
        ids = []
        for item in params.get("members", ()):
            name, mparams = (item, ()) if isinstance(item, str) else item
            match = next((e for e in protocol.attacks if e.name == name and e.norm == entry.norm
                          and dict(e.params) == dict(mparams) and eps in e.eps), None)
            if match is None:
                return None
            ids.append(f"{match.family}@{eps_label(eps, entry.norm)}")
        out[eps] = tuple(ids)
    return out


def corruption_at(spec: CorruptionSpec, level: float, synthetic: bool = True,
                  levels: Sequence[float] = ()) -> CorruptionAt:
    """The condition of a registered corruption (its spec) at one severity.  On measured
    images a noise level is reached from each image's own noise (:mod:`fmbench.measured`);
    other corruptions act on the measured image, and their labels say so."""
    label = spec.condition_label(level)
    if not synthetic and not spec.exposure:
        label += " (on the measured image)"
    return CorruptionAt(f"{spec.name}@{level:g}", "corruption", spec.name, spec.family or spec.name, float(level),
                        label)


def plan(protocol: Protocol, registry: Registry, synthetic: bool = True) -> list[Condition]:
    """The protocol's conditions, in evaluation order: reference, corruptions, attacks.
    ``synthetic=False`` (measured images): each image is brought to the reference SNR from its
    own noise, and the labels say so."""
    ref_label = f"reference (SNR {protocol.reference_snr:g})"
    if not synthetic:
        ref_label = f"reference (SNR {protocol.reference_snr:g}, reached from each image's own noise)"
    conds: list[Condition] = [Reference("reference", "reference", "reference", "reference",
                                        protocol.reference_snr, ref_label)]
    for entry in protocol.corruptions:
        spec = registry.corruption(entry.name)
        conds += [corruption_at(spec, level, synthetic, entry.levels) for level in entry.levels]
    ensembles: list[Condition] = []  # scored from their members: after every other attack
    for a in protocol.attacks:
        covered = _covering_members(a, protocol)
        for eps in a.eps:
            lab = eps_label(eps, a.norm)
            if covered is not None:
                ensembles.append(WorstOf(f"{a.family}@{lab}", "attack", a.name, a.family, float(eps),
                                         f"{a.family} ε={lab} (worst of its members' results)", a.norm,
                                         members=covered[eps]))
                continue
            conds.append(AttackAt(f"{a.family}@{lab}", "attack", a.name, a.family, float(eps),
                                  f"{a.family} ε={lab}", a.norm, top=eps == max(a.eps)))
    return conds + ensembles


def of_kind(conditions: Sequence[Condition], kind: str) -> list[Condition]:
    return [c for c in conditions if c.kind == kind]
