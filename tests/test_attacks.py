"""The attack suite: budgets, determinism, frozen parameters, strength ordering on a trained
tiny model, the gradient-masking self-checks, and a cross-check against torchattacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fmbench_plugins.pgd import cospgd_loss, kurakin_iterations, segpgd_loss
from torch import nn

import fmbench
from fmbench import AttackEntry, Protocol
from fmbench.attack import (
    PassCounter,
    frozen_params,
    input_gradient,
    random_noise,
    segmentation_loss,
    track_gradients,
    two_class_logits,
)
from fmbench.data import Sample, normalize
from fmbench.engine import run as run_engine
from fmbench.errors import ModelContractError, ProtocolError, UnknownNameError
from fmbench.metrics import predict
from fmbench.model import LoadedModel
from fmbench.runlog import PartialLog
from fmbench.seeding import generators
from fmbench.selfcheck import within_budget

SIZE = 32
EPS = {"linf": 8 / 255, "l2": 0.5}


def blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` noisy images of 1-3 bright discs on a dark background, normalised, and masks."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    masks = torch.zeros(n, SIZE, SIZE, dtype=torch.bool)
    for i in range(n):
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            cy, cx = torch.randint(4, SIZE - 4, (2,), generator=g).tolist()
            r = float(torch.empty(1).uniform_(3, 7, generator=g))
            masks[i] |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    x = 0.2 + 0.3 * masks.float() + 0.1 * torch.randn(n, SIZE, SIZE, generator=g)
    return normalize(x[:, None]), masks


class Tiny(nn.Module):
    def __init__(self, classes: int = 1):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(8, classes, 3, padding=1))

    def forward(self, x):
        return self.net(x)


class Quantised(nn.Module):
    """Masks gradients: rounds its input to 8 levels first (``round`` has a zero gradient)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.round(x * 8) / 8)


class Shattered(nn.Module):
    """Shatters gradients: a tiny fast wiggle on the input makes the input gradient point
    anywhere, so the attack is no better than random noise although gradients are not zero."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x + 0.002 * torch.sin(3000 * x))


@pytest.fixture(scope="module")
def trained():
    """A tiny conv net trained for a few seconds on the blobs; IoU well above chance."""
    torch.manual_seed(0)
    model = Tiny()
    x, m = blobs(64, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for step in range(60):
        idx = torch.arange(16) + 16 * (step % 4)
        loss = segmentation_loss(model(x[idx]), m[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="module")
def test_set():
    return blobs(16, seed=2)


def make(registry, name, norm="linf", **params):
    return registry.attack(name).build(registry, norm, **params)


def iou(model, x, m):
    with torch.no_grad():
        p = predict(model(x)).flatten(1)
    t = m.flatten(1)
    return ((p & t).sum(1) / (p | t).sum(1).clamp_min(1)).float()


def gens(n, cond="c", seed=0):
    return generators(seed, [f"img{i}" for i in range(n)], cond)


def run(model, attack, x, m, eps, seed=0):
    with frozen_params(model):
        return attack(model, x, m, eps, gens(len(x), seed=seed)).detach()


CHEAP = {"pgd": {"steps": 3}, "segpgd": {"steps": 3}, "cospgd": {"steps": 3}, "apgd": {"steps": 4},
         "worst-case": {"members": (("fgsm", ()), ("pgd", (("steps", 2),)), ("cospgd", (("steps", 2),)))}}
CASES = [(n, norm) for n in ("fgsm", "ifgsm", "pgd", "segpgd", "cospgd", "apgd", "worst-case", "universal", "random")
         for norm in ("linf", "l2") if not (n in ("ifgsm", "apgd") and norm == "l2")]


@pytest.mark.parametrize("name,norm", CASES)
def test_budget_exact_and_deterministic(registry, trained, test_set, name, norm):
    x, m = test_set
    x, m = x[:4], m[:4]
    eps = EPS[norm]
    attack = make(registry, name, norm, **CHEAP.get(name, {}))
    if attack.needs_preparation:
        attack.prepare(PassCounter(trained), lambda: iter([blobs(8, seed=5)]), eps, gens(1)[0])
    a = run(trained, attack, x, m, eps)
    b = run(trained, attack, x, m, eps)
    delta = (a - x).flatten(1)
    size = delta.norm(dim=1).max() if norm == "l2" else delta.abs().max()
    assert within_budget(float(size), eps), (name, norm, float(size))
    assert float(size) > 0.5 * eps  # the budget is used, not ignored
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    if name in ("pgd", "segpgd", "cospgd", "apgd", "random"):
        assert not torch.equal(a, run(trained, attack, x, m, eps, seed=1))  # the seed reaches the start


def test_parameters_untouched_and_without_gradients(registry, trained, test_set):
    x, m = test_set
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    for name in ("fgsm", "pgd", "worst-case"):
        run(PassCounter(trained), make(registry, name, **CHEAP.get(name, {})), x[:2], m[:2], 4 / 255)
    for k, v in trained.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None and p.requires_grad for p in trained.parameters())


def test_kurakin_schedule():
    assert [kurakin_iterations(k / 255) for k in (1, 2, 4, 8, 16, 32)] == [1, 2, 5, 10, 20, 36]
    for k in range(1, 100):
        assert kurakin_iterations(k / 255) == max(1, int(min(k + 4, 1.25 * k)))


def test_sigmoid_and_softmax_losses_agree():
    torch.manual_seed(0)
    z = torch.randn(2, 1, 8, 8)
    t = torch.rand(2, 8, 8) > 0.5
    z2 = two_class_logits(z)
    for loss in (segmentation_loss, segpgd_loss(3, 10), cospgd_loss):
        torch.testing.assert_close(loss(z, t), loss(z2, t))


def test_segpgd_weights_shift_from_right_to_wrong_pixels():
    z = torch.tensor([[[[5.0, -5.0]]]])  # pixel 0 predicted foreground, pixel 1 background
    t = torch.tensor([[[True, True]]])  # so pixel 0 is right, pixel 1 wrong
    ce = segmentation_loss(z, t)
    w0 = segpgd_loss(0, 10)(z, t) / ce
    w9 = segpgd_loss(9, 10)(z, t) / ce
    torch.testing.assert_close(w0, torch.tensor([[[1.0, 0.0]]]))
    torch.testing.assert_close(w9, torch.tensor([[[0.55, 0.45]]]))


def test_attack_strength_ordering_on_a_trained_model(registry, trained, test_set):
    x, m = test_set
    eps = 8 / 255
    clean = iou(trained, x, m)
    assert clean.mean() > 0.8
    fgsm = iou(trained, run(trained, make(registry, "fgsm"), x, m, eps), m)
    pgd = iou(trained, run(trained, make(registry, "pgd"), x, m, eps), m)
    ens_attack = make(registry, "worst-case")
    ens = iou(trained, run(trained, ens_attack, x, m, eps), m)
    assert fgsm.mean() < clean.mean() - 0.03
    assert pgd.mean() <= fgsm.mean() + 0.02
    assert (ens <= fgsm).all()  # FGSM is deterministic, so the ensemble holds the same result
    for name in ("pgd", "segpgd", "cospgd"):
        member = iou(trained, run(trained, make(registry, name), x, m, eps), m)
        assert ens.mean() <= member.mean() + 0.02, name


def test_torchattacks_pgd_gives_the_same_perturbation(registry):
    torchattacks = pytest.importorskip("torchattacks")
    torch.manual_seed(0)
    model = Tiny(classes=2).eval()
    x, m = blobs(4, seed=3)
    eps, alpha, steps = 8 / 255, 2 / 255, 10
    ours = make(registry, "pgd", steps=steps, step=alpha)
    # the same random start for both: torchattacks draws it from the global generator
    torch.manual_seed(123)
    start = torch.clamp(x + torch.empty_like(x).uniform_(-eps, eps), 0, 1)
    ours.start = lambda x_, eps_, gens_: start.clone()
    torch.manual_seed(123)
    theirs = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, m.long())
    mine = run(model, ours, x, m, eps)
    torch.testing.assert_close(mine - x, theirs - x, rtol=0, atol=1e-6)


# -- the engine's self-checks ----------------------------------------------------------------

class Blobs:
    name = "blobs"
    # taken as expected photons: the protocol's detector exposes them at its reference SNR (as
    # measured images their own SNR, about 3, would be below it and the run would refuse them)
    synthetic = True

    def __init__(self, n, seed):
        self.x, self.m = blobs(n, seed)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return Sample(f"b{i}", self.x[i, 0].numpy().astype(np.float32), self.m[i].numpy())


def protocol(attacks):
    return Protocol(name="t", version=1, description="", n_images=16, image_size=SIZE, reference_snr=8.0,
                    corruptions=(), attacks=attacks)


def checked(registry, model, tmp_path, attacks):
    p = protocol(attacks)
    p.validate(registry)
    # the engine itself, without the API's model-contract probe: these tests feed it models whose
    # gradients are masked on purpose, to see the run's own self-checks fire
    return run_engine(LoadedModel(module=model, ref="tiny", args={}), Blobs(16, 2), "blobs", p, registry,
                      device=torch.device("cpu"), batch_size=8, log=PartialLog(None, {}),
                      train_dataset=Blobs(8, 5)).document


SUITE = (AttackEntry("fgsm", (2 / 255, 8 / 255)), AttackEntry("ifgsm", (2 / 255, 8 / 255)),
         AttackEntry("pgd", (2 / 255, 8 / 255), params=(("steps", 5), ("rel_step", 2.5))),
         AttackEntry("cospgd", (8 / 255,), params=(("steps", 5), ("rel_step", 2.5))),
         AttackEntry("worst-case", (8 / 255,), params=(("members", (("fgsm", ()), ("pgd", (("steps", 3),)))),)),
         AttackEntry("universal", (8 / 255,), params=(("epochs", 2), ("n_train", 8))))


def test_checks_stay_quiet_on_a_normal_model(registry, trained, tmp_path):
    result = checked(registry, trained, tmp_path, SUITE)
    assert result["warnings"] == []
    checks = result["checks"]
    assert checks["pgd@8/255"]["gradients"] == {"evaluations": 80, "images": 16, "zero": 0, "nonfinite": 0}
    pgd = next(c for c in result["conditions"] if c["id"] == "pgd@8/255")
    # the control ran: random noise of the same budget is no stronger than the attack
    assert pgd["iou"] <= checks["pgd@8/255"]["random_iou"] <= 1
    assert checks["pgd@2/255"]["random_iou"] is None  # only at the family's largest budget
    uni = next(c for c in result["conditions"] if c["id"] == "universal@8/255")
    assert checks["universal@8/255"]["preparation"] == {"forward_calls": 2, "forward_images": 16,
                                                        "backward_calls": 2, "backward_images": 16}
    assert uni["passes"]["backward_images"] == 16  # preparation counted with its condition
    pgd = next(c for c in result["conditions"] if c["id"] == "pgd@8/255")
    assert pgd["passes"]["backward_images"] == 80 and pgd["passes"]["forward_images"] == 80 + 16 + 16


def test_checks_fire_on_a_gradient_masking_model(registry, trained, tmp_path):
    result = checked(registry, Quantised(trained), tmp_path, SUITE[:3])
    zero = [w for w in result["warnings"] if "zero input gradient" in w]
    assert {w.split(":")[0] for w in zero} == {"fgsm@2/255", "fgsm@8/255", "ifgsm@2/255", "ifgsm@8/255",
                                               "pgd@2/255", "pgd@8/255"}
    assert "16 of 16 images" in zero[0]


def test_random_noise_check_fires_on_shattered_gradients(registry, trained, tmp_path):
    result = checked(registry, Shattered(trained), tmp_path, (AttackEntry("fgsm", (32 / 255,)),))
    assert any(w.startswith("fgsm@32/255: random noise of the same budget") for w in result["warnings"]), \
        result["warnings"]


# -- bad input -------------------------------------------------------------------------------

def test_bad_budgets_norms_and_names_give_one_clear_message(registry):
    with pytest.raises(ProtocolError, match=r"L-inf budget eps=1\.5 is outside \[0, 1\]"):
        protocol((AttackEntry("pgd", (1.5,)),)).validate(registry)
    with pytest.raises(ProtocolError, match="attack 'ifgsm' does not support norm 'l2'"):
        protocol((AttackEntry("ifgsm", (1.0,), norm="l2"),)).validate(registry)
    with pytest.raises(ProtocolError, match="unsupported norm 'l1'"):
        make(registry, "pgd", norm="l1")
    with pytest.raises(UnknownNameError, match="unknown attack 'pgdd'; did you mean 'pgd'"):
        registry.attack("pgdd")
    with pytest.raises(ProtocolError, match="member 'ifgsm' does not support norm 'l2'"):
        make(registry, "worst-case", norm="l2", members=(("ifgsm", ()),))


def test_model_without_gradient_path_gives_one_clear_message(registry, trained, test_set):
    class Detached(nn.Module):
        def forward(self, x):
            return trained(x).detach()

    x, m = test_set
    with pytest.raises(ModelContractError, match="attack 'pgd': no gradient path from the model output to its input"):
        run(Detached(), make(registry, "pgd"), x[:2], m[:2], 2 / 255)


def test_gradient_tracker_counts_zero_and_nonfinite_images(trained, test_set):
    x, m = test_set
    with track_gradients() as tracker:
        input_gradient(Quantised(trained), x[:3], m[:3])
    assert tracker.report() == {"evaluations": 3, "images": 3, "zero": 3, "nonfinite": 0}
    with track_gradients() as tracker:
        input_gradient(trained, x[:3], m[:3])
    assert tracker.report()["zero"] == 0


def test_random_noise_spends_the_budget(test_set):
    x, _ = test_set
    x = x.clamp(0.1, 0.9)  # away from the clip, so the full budget shows
    lin = random_noise(x, 0.05, "linf", gens(len(x)))
    torch.testing.assert_close((lin - x).abs(), torch.full_like(x, 0.05))
    l2 = random_noise(x, 0.05, "l2", gens(len(x)))
    torch.testing.assert_close((l2 - x).flatten(1).norm(dim=1), torch.full((len(x),), 0.05))


def test_review_flags_weaker_stronger_attacks():
    """The comparison checks on hand-made numbers: a larger budget, an iterative attack against
    a single-step one and an ensemble that come out weaker, and an attack that raises IoU; two
    iterative attacks of different schedules are not compared."""
    from fmbench.selfcheck import review

    n = 8
    clean = [0.8] * n
    spec = {  # id: (name, family, level, iterations, role, loss, members, per-image IoU)
        "fgsm@2/255": ("fgsm", "fgsm", 2 / 255, 1, "gradient", "ce", [], [0.6] * n),
        "fgsm@8/255": ("fgsm", "fgsm", 8 / 255, 1, "gradient", "ce", [], [0.7] * n),  # larger eps, weaker
        "pgd@8/255": ("pgd", "pgd", 8 / 255, 10, "gradient", "ce", [], [0.75] * n),  # more steps, weaker
        "ifgsm@8/255": ("ifgsm", "ifgsm", 8 / 255, 12, "gradient", "ce", [], [0.77] * n),  # weaker than fgsm,
        # but not flagged against pgd: two iterative attacks are not compared
        "cospgd@8/255": ("cospgd", "cospgd", 8 / 255, 10, "gradient", "cospgd", [], [0.72] * n),  # other loss
        "worst-case@8/255": ("worst-case", "worst-case", 8 / 255, 21, "ensemble", "mixed", ["fgsm", "pgd"],
                             [0.75] * n),  # weaker than its member fgsm
        "universal@8/255": ("universal", "universal", 8 / 255, 0, "universal", "ce", [], [0.85] * n),  # above clean
    }
    conditions = [{"id": "reference", "kind": "reference"}]
    per_image = {"reference": clean}
    records = []
    for cid, (name, fam, level, its, role, loss, members, ious) in spec.items():
        conditions.append({"id": cid, "kind": "attack", "name": name, "family": fam, "level": level, "norm": "linf",
                           "n_images": n, "passes": {"forward_images": 0}})
        per_image[cid] = ious
        records.append({"batch": 0, "condition": cid, "checks": {
            "role": role, "loss": loss, "members": members, "iterations": its,
            "gradients": {"evaluations": n * its, "images": n, "zero": 0, "nonfinite": 0},
            "budget": {"max_perturbation": level, "outside_unit": False, "nonfinite": False}}})
    result = {"conditions": conditions, "per_image": {"iou": per_image}, "passes": {"forward_images": 0}}
    _, warnings = review(result, records)
    heads = sorted(w.split(" although ")[0].split(":")[0] + (" / " + w.split(" of ")[1].split(" ")[0]
                                                          if " although " in w else "") for w in warnings)
    assert heads == ["fgsm@8/255 / fgsm@2/255", "ifgsm@8/255 / fgsm@8/255", "pgd@8/255 / fgsm@8/255",
                     "universal@8/255",
                     "worst-case@8/255 / fgsm@8/255"], warnings


def test_universal_perturbation_is_shared_and_reproducible(registry, trained, test_set):
    x, m = test_set
    x = x.clamp(0.1, 0.9)  # keep away from the clip so the shared pattern shows everywhere
    train = [blobs(8, seed=5)]
    deltas = []
    for _ in range(2):
        attack = make(registry, "universal", epochs=2, n_train=8)
        attack.prepare(PassCounter(trained), lambda: iter(train), 8 / 255, gens(1)[0])
        deltas.append(run(trained, attack, x, m, 8 / 255) - x)
    torch.testing.assert_close(deltas[0], deltas[1], rtol=0, atol=0)
    torch.testing.assert_close(deltas[0], deltas[0][:1].expand_as(deltas[0]), rtol=0, atol=1e-6)
    with pytest.raises(Exception, match="was not prepared for eps=0.5"):
        run(trained, make(registry, "universal"), x, m, 0.5)


def test_apgd_spends_one_gradient_per_step_and_keeps_its_lowest_iou_iterate(registry, trained, test_set):
    """APGD costs what PGD costs (``steps`` input gradients per image) and returns, per image,
    the evaluated iterate with the lowest IoU: never worse than its own random start."""
    from fmbench.attack import track_gradients
    from fmbench_plugins.apgd import checkpoints

    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]  # Croce & Hein's schedule (AutoAttack's)
    assert checkpoints(5) == [1, 2, 3, 4]
    x, m = test_set
    x, m = x[:6], m[:6]
    eps = 8 / 255
    for loss in ("ce", "masked-ce", "to-background"):
        attack = make(registry, "apgd", steps=6, loss=loss)
        with track_gradients() as tr:
            adv = run(trained, attack, x, m, eps)
        assert tr.report()["evaluations"] == 6 * len(x)
        start = fmbench.random_start(x, eps, "linf", gens(len(x)))  # its first iterate
        assert (iou(trained, adv, m) <= iou(trained, start, m) + 1e-6).all()
        # measured here: clean 0.842, PGD-6 0.776, APGD-CE 0.771, APGD masked-CE 0.810
        assert iou(trained, adv, m).mean() < iou(trained, x, m).mean() - 0.02
        if loss == "ce":
            pgd = run(trained, make(registry, "pgd", steps=6, rel_step=2.5), x, m, eps)
            assert iou(trained, adv, m).mean() <= iou(trained, pgd, m).mean() + 0.02
    with pytest.raises(fmbench.ProtocolError, match="loss must be"):
        make(registry, "apgd", loss="dice")


def test_apgd_to_background_loss_targets_the_iou(registry, trained, test_set):
    """``to-background`` counts only the true foreground pixels and is highest when each is
    called background; with the whole [0, 1] range as budget it takes the IoU to about 0."""
    from fmbench_plugins.apgd import to_background

    m = torch.zeros(1, 4, 4, dtype=torch.long)
    m[0, :2] = 1
    sure_bg = torch.zeros(1, 2, 4, 4)
    sure_bg[:, 0] = 20.0
    per_pixel = to_background(sure_bg, m)
    assert (per_pixel[0, 2:] == 0).all() and (per_pixel[0, :2] > -1e-6).all()  # background pixels do not count
    sure_fg = sure_bg.flip(1)
    assert (to_background(sure_fg, m)[0, :2] < -10).all()  # foreground kept: far from the maximum
    x, m = test_set
    x, m = x[:4], m[:4]
    adv = run(trained, make(registry, "apgd", steps=10, loss="to-background"), x, m, 1.0)
    assert iou(trained, adv, m).max() < 0.05
    with pytest.raises(fmbench.ProtocolError, match="unsupported norm"):
        make(registry, "apgd", "l2")


class _Thresh(torch.nn.Module):
    def __init__(self, steep: bool = False):
        super().__init__()
        self.steep = steep
        self.s = torch.nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        if self.steep:  # the same predictions, its gradient saturated to exactly zero almost everywhere
            return self.s * (2 * torch.sigmoid(1e3 * (x - 0.5)) - 1)
        return self.s * (x - 0.5)


def test_an_attack_that_barely_moves_a_model_at_a_large_budget_is_flagged():
    """A steep sigmoid predicts what a plain threshold predicts but hides the gradient: the attacks
    lower its IoU by almost nothing and the random control does not notice (noise raises IoU on
    these images).  The plain threshold is not flagged."""
    import fmbench

    kw = dict(n_images=2, image_size=64, corruptions=["none"], attacks=["fgsm", "pgd"], cache=False)
    plain = fmbench.evaluate(_Thresh(), "nucleus", "quick-v1", **kw)  # on v1 images, where the threshold segments
    steep = fmbench.evaluate(_Thresh(steep=True), "nucleus", "quick-v1", **kw)  # on v1 images, where the threshold segments
    assert steep.per_image["iou"]["reference"] == plain.per_image["iou"]["reference"]
    assert not any("lowers IoU by only" in w for w in plain.warnings), plain.warnings
    assert any(w.startswith("fgsm@8/255: the attack lowers IoU by only") for w in steep.warnings), steep.warnings
