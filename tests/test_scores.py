"""Scores that tell the truth: absolute robust IoU first, baselines, intervals, flags, and
honest labels on measured images."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import fmbench
from fmbench import AttackEntry, CorruptionEntry, Protocol, scores
from fmbench.baselines import otsu
from fmbench.files import read_json, write_json
from fmbench.leaderboard import build_entry, validate_dir
from fmbench.leaderboard.compare import compare

from .helpers import write_mymod
from .test_engine import Thresh

SMALL = Protocol(name="small", version=1, description="test", n_images=4, image_size=64, reference_snr=8.0,
                 corruptions=(CorruptionEntry("noise", (5.0, 2.0)), CorruptionEntry("sib", (2.0, 4.0))),
                 attacks=(AttackEntry("fgsm", (2 / 255, 8 / 255)), AttackEntry("pgd", (8 / 255,),
                                                                                params=(("steps", 2),))))


class Untrained(nn.Module):
    """The issue's case: a small network nobody trained (about 2.5k parameters)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(16, 1, 1))

    def forward(self, x):
        return self.net(x) + 5.0  # an untrained net that calls (almost) everything foreground


@pytest.fixture(scope="module")
def runs():
    torch.manual_seed(0)
    untrained = fmbench.evaluate(Untrained(), "mito", SMALL, batch_size=4)
    thresh = fmbench.evaluate(Thresh(), "mito", SMALL, batch_size=4)
    return untrained, thresh


def test_scores_are_the_per_image_worst_case_and_mean(runs):
    _, r = runs
    s = r.scores
    iou = r.per_image["iou"]
    top = ["fgsm@8/255", "pgd@8/255"]
    assert s["headline"]["conditions"] == top and s["headline"]["label"] == "8/255"
    worst = np.min([iou[c] for c in top], axis=0)
    assert s["robust_iou"]["value"] == pytest.approx(worst.mean(), abs=1e-12)
    assert s["robust_iou"]["value"] <= min(r.condition(c)["iou"] for c in top) + 1e-12  # worst per image
    corr = [c["id"] for c in r.conditions if c["kind"] == "corruption"]
    assert s["corrupted_iou"]["value"] == pytest.approx(np.mean([iou[c] for c in corr]), abs=1e-12)
    assert s["clean_iou"]["value"] == r.summary["clean_iou"]
    for key in ("corruption_robustness", "adversarial_robustness"):
        assert s[key]["value"] == pytest.approx(r.summary[key], abs=1e-12)
    for key in ("clean_iou", "corrupted_iou", "robust_iou", "corruption_robustness", "adversarial_robustness"):
        lo, hi = s[key]["ci95"]
        assert lo <= s[key]["value"] <= hi
    # recomputed from the per-image values, the same numbers: the bootstrap is seeded
    assert scores.compute(r.conditions, iou) == s


def test_the_untrained_network_is_degenerate_and_not_ranked(runs, tmp_path):
    untrained, thresh = runs
    base = untrained["baselines"]["all-foreground"]["iou"]["reference"]
    clean = untrained.per_image["iou"]["reference"]
    # as in the issue: clean IoU no better than predicting foreground everywhere
    assert abs(np.mean(clean) - np.mean(base)) < 0.05
    assert [f["flag"] for f in untrained.flags] == ["degenerate"]
    assert "all-foreground" in untrained.flags[0]["reason"]
    assert "degenerate" not in [f["flag"] for f in thresh.flags]  # (a smoothed threshold: below Otsu on mito)
    # a study-ratio ranking would have put it first: its relative robustness is near 1
    assert untrained.summary["adversarial_robustness"] > thresh.summary["adversarial_robustness"]
    data = compare(untrained.document, [build_entry(thresh.document)])
    assert data["ranked"] is False and all(r["rank"] is None for r in data["rows"])
    assert compare(thresh.document, [build_entry(untrained.document)])["ranked"] is True


def test_the_leaderboard_refuses_a_degenerate_entry(runs, tmp_path, register_plugin):
    from fmbench import hookimpl
    from fmbench.baselines import measure
    from fmbench.plugins import get_registry, make_plugin_manager

    class Small:
        @hookimpl
        def fmbench_protocols(self):
            return [SMALL]

    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(Small(), name="small")
    registry = get_registry(pm)
    untrained, thresh = runs
    d = tmp_path / "lb"
    write_json(d / "untrained.json", build_entry(untrained.document))
    write_json(d / "thresh.json", build_entry(thresh.document))
    _, _, problems = validate_dir(d, registry)
    assert len(problems) == 2 and all("no baselines for mito under small-v1" in p for p in problems)
    write_json(d / "baselines" / "mito__small-v1.json",
               measure(registry.dataset("mito").factory(split="test", image_size=64), "mito", SMALL, registry))
    _, _, problems = validate_dir(d, registry)
    assert problems == [f"{d / 'untrained.json'}: degenerate: {untrained.flags[0]['reason']}"]
    # a number edited in an entry is caught: every score is recomputed from the per-image IoU
    e = read_json(d / "thresh.json")
    e["scores"]["robust_iou"]["value"] += 0.1
    write_json(d / "thresh.json", e)
    _, _, problems = validate_dir(d, registry)
    assert any("thresh.json: scores.robust_iou.value is" in p and "the per-image IoU gives" in p for p in problems)


def test_the_cli_flags_a_degenerate_result_in_red_and_does_not_rank_it(tmp_path, cli):
    write_mymod(tmp_path)
    r = cli("eval", "--model", "mymod:MyNet", "--dataset", "mito", "--n-images", "2", "--image-size", "64",
            "--corruptions", "noise", "--attacks", "fgsm", "--quiet", "--out", "r.json", cwd=tmp_path,
            env={"FORCE_COLOR": "1"})
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    # an untrained MyNet (its start is seeded: the same every run) predicts noise: degenerate
    assert [f["flag"] for f in doc["flags"]] == ["degenerate"]
    assert "\x1b[1;31mdegenerate:" in r.stdout and "not ranked: degenerate" in r.stdout


def test_otsu_matches_a_brute_force_search():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(np.concatenate([rng.normal(0.25, 0.08, (3, 1, 40, 40)), rng.normal(0.7, 0.1, (3, 1, 40, 24))],
                                        axis=3).clip(0, 1)).float()
    pred = otsu(x)
    for b in range(3):
        levels = np.round(x[b, 0].numpy() * 255).astype(int).ravel()
        best, best_t = -1.0, 0
        for t in range(255):
            lo, hi = levels[levels <= t], levels[levels > t]
            if lo.size == 0 or hi.size == 0:
                continue
            between = lo.size * hi.size * (lo.mean() - hi.mean()) ** 2
            if between > best:
                best, best_t = between, t
        assert torch.equal(pred[b].flatten(), torch.from_numpy(levels > best_t))
    assert pred[:, :, 40:].float().mean() > 0.95 and pred[:, :, :40].float().mean() < 0.05


def test_paired_difference_says_when_it_is_inside_the_noise():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 0.9, 16)
    same = scores.paired_difference(a, a + rng.normal(0, 0.01, 16))
    assert same["within_noise"] and same["ci95"][0] <= 0 <= same["ci95"][1]
    apart = scores.paired_difference(a + 0.1, a)
    assert not apart["within_noise"] and apart["diff"] == pytest.approx(0.1)


def test_own_images_suggest_the_shipped_weights_never_training_on_them(tmp_path, cli):
    out = tmp_path / "exp"
    r = cli("data", "export", "--dataset", "nucleus", "--n", "2", "--image-size", "64", "--out", str(out))
    assert r.returncode == 0, r.stderr
    r = cli("eval", "--model", "unet-small", "--dataset", f"folder:{out}", "--quiet", cwd=tmp_path)
    assert r.returncode == 1
    err = r.stderr.strip()
    assert "\n" not in err and "it has weights trained on: er, mito, nucleus" in err
    assert "pass --weights NAME" in err and "fmbench train" not in err
    r = cli("eval", "--model", "unet-small", "--dataset", f"folder:{out}", "--weights", "nucleus", "--n-images", "2",
            "--image-size", "64", "--corruptions", "none", "--attacks", "none", "--quiet", "--out", "r.json",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["model"]["meta"]["dataset"] == "nucleus@2" and math.isfinite(doc["scores"]["clean_iou"]["value"])


def test_below_classical_compares_paired_per_image_scores_with_otsu():
    otsu_ = {"clean_iou": np.array([0.8, 0.7, 0.9, 0.6]), "corrupted_iou": np.array([0.6, 0.5, 0.7, 0.4])}
    above = {k: v + 0.05 for k, v in otsu_.items()}
    assert scores.below_classical(above, otsu_) is None
    worse = {"clean_iou": otsu_["clean_iou"] - 0.1, "corrupted_iou": otsu_["corrupted_iou"] + 0.1}
    reason = scores.below_classical(worse, otsu_)
    assert reason.startswith("below Otsu's threshold on the same images: clean IoU 0.650 against 0.750")
    assert "corrupted IoU" not in reason and "does better here" in reason  # every image lower: interval below 0
    mixed = {"clean_iou": otsu_["clean_iou"] + np.array([0.1, -0.1, 0.05, -0.07])}
    assert scores.below_classical(mixed, otsu_) is None  # inside these images' noise: no claim
    assert scores.below_classical({"clean_iou": otsu_["clean_iou"][:2]}, otsu_) is None  # other images: no claim


class Blurry(nn.Module):
    """A network that segments, but worse than a threshold: it calls a wide rim around every
    object foreground (a box blur of the input, thresholded low)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 9, padding=4)
        with torch.no_grad():
            self.conv.weight.fill_(1 / 81)
            self.conv.bias.fill_(-0.05)

    def forward(self, x):
        return 40 * self.conv(x)


def test_a_network_a_threshold_beats_is_flagged_in_eval_and_on_the_leaderboard(runs, tmp_path):
    from fmbench.leaderboard import rank

    blurry = fmbench.evaluate(Blurry(), "mito", SMALL, batch_size=4)
    otsu_clean = np.mean(blurry["baselines"]["otsu"]["iou"]["reference"])
    assert otsu_clean - 0.05 > blurry.scores["clean_iou"]["value"] > np.mean(
        blurry["baselines"]["all-foreground"]["iou"]["reference"]) + 0.05  # worse than Otsu, not degenerate
    assert [f["flag"] for f in blurry.flags] == ["below-classical"]
    assert f"against {otsu_clean:.3f}" in blurry.flags[0]["reason"]
    # on the leaderboard, against its table's baselines file (the entry carries no flags of its own)
    untrained, thresh = runs
    iou = {name: b["iou"] for name, b in blurry["baselines"].items()}  # a baselines file's layout
    base = {"per_image": {"ids": blurry.per_image["ids"], "iou": iou}}
    entries = [build_entry(blurry.document), build_entry(thresh.document)]
    key = (entries[0]["protocol"]["hash"], "mito")
    (g,) = rank.groups(entries, baselines={key: base})
    (mine,) = [label for label in g["flags"] if "Blurry" in label]
    assert [f["flag"] for f in g["flags"][mine]][0] == "below-classical"
    # baselines that do not cover its images make no claim
    other = {"per_image": {"ids": ["elsewhere"] * 4, "iou": iou}}
    (g,) = rank.groups(entries[:1], baselines={key: other})
    assert g["flags"][mine] == []  # (alone in its table: nothing to be undertrained against)


def test_a_model_returning_probabilities_is_told_so():
    """A final sigmoid makes every output positive: read as logits, every pixel is foreground.
    The run says what it looks like and what to do; a logits model gets no such note."""
    probs = fmbench.evaluate(nn.Sequential(Thresh(), nn.Sigmoid()), "mito", SMALL, batch_size=4)
    (note,) = [w for w in probs.warnings if "looks like it returns probabilities" in w]
    assert "torch.logit" in note
    assert [f["flag"] for f in probs.flags] == ["degenerate"]  # all foreground, as the note predicts
    logits = fmbench.evaluate(Thresh(), "mito", SMALL, batch_size=4)
    assert not [w for w in logits.warnings if "probabilities" in w]


class BreaksLater(nn.Module):
    """Keeps the contract on the probe, then breaks it from its ``at``-th call on."""

    def __init__(self, at: int, how: str):
        super().__init__()
        self.inner, self.at, self.how, self.calls = Thresh(), at, how, 0

    def forward(self, x):
        self.calls += 1
        out = self.inner(x)
        if self.calls < self.at:
            return out
        return {"shape": out[..., :-2], "tuple": (out,), "int": (out > 0).long(), "empty": out[:, :0]}[self.how]


@pytest.mark.parametrize("how,said", [("shape", "has shape"), ("tuple", "is a tuple, not a logits tensor"),
                                      ("int", "expected floating-point logits"), ("empty", "has 0 channels")])
def test_a_model_that_breaks_its_contract_mid_run_gets_one_line_naming_the_image(how, said):
    from fmbench.errors import ModelContractError

    protocol = Protocol(name="tiny", version=1, description="t", n_images=4, image_size=64, reference_snr=8.0,
                        corruptions=(CorruptionEntry("noise", (5.0,)),), attacks=())
    with pytest.raises(ModelContractError, match=f"the model.s output .*{said}.* on image .* under "):
        fmbench.evaluate(BreaksLater(7, how), "mito", protocol, batch_size=2, cache=False)


class Exits(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner, self.calls = Thresh(), 0

    def forward(self, x):
        import sys

        self.calls += 1
        if self.calls >= 7:
            sys.exit(3)
        return self.inner(x)


def test_a_model_calling_sys_exit_mid_run_is_one_line_not_a_silent_exit():
    from fmbench.errors import ModelContractError

    protocol = Protocol(name="tiny", version=1, description="t", n_images=4, image_size=64, reference_snr=8.0,
                        corruptions=(CorruptionEntry("noise", (5.0,)),), attacks=())
    with pytest.raises(ModelContractError, match=r"failed on image .*SystemExit: 3"):
        fmbench.evaluate(Exits(), "mito", protocol, batch_size=2, cache=False)


def test_a_reused_result_carries_the_flags_this_fmbench_computes(tmp_path):
    """A result made before a flag existed (here: its flags emptied) and reused as an identical
    run gets the flags the current code gives, not the stale list it was written with."""
    from fmbench.files import read_json, write_json

    out = tmp_path / "b.json"
    first = fmbench.evaluate(Blurry(), "mito", SMALL, batch_size=4, out=out)
    assert [f["flag"] for f in first.flags] == ["below-classical"]
    doc = read_json(out)
    doc["flags"] = []
    write_json(out, doc)
    again = fmbench.evaluate(Blurry(), "mito", SMALL, batch_size=4, out=out)
    assert again.reused is not None and [f["flag"] for f in again.flags] == ["below-classical"]
    assert [f["flag"] for f in read_json(out)["flags"]] == ["below-classical"]  # and the file says so too


def test_one_image_has_no_interval():
    """A bootstrap over one image is that image every time: [v, v] read as certainty."""
    conds = [{"id": "reference", "kind": "reference", "family": "reference"},
             {"id": "noise@2", "kind": "corruption", "family": "noise"}]
    one = scores.compute(conds, {"reference": [0.8], "noise@2": [0.6]})
    assert one["clean_iou"] == {"value": 0.8, "ci95": None} and one["families"]["noise"]["iou"]["ci95"] is None
    assert one["corruption_robustness"]["ci95"] is None
    two = scores.compute(conds, {"reference": [0.8, 0.7], "noise@2": [0.6, 0.5]})
    assert two["clean_iou"]["ci95"] == [0.7, 0.8]
    # two images, one with reference IoU 0: the ratio rests on one image, so it has no interval either
    one_ratio = scores.compute(conds, {"reference": [0.8, 0.0], "noise@2": [0.6, 0.5]})
    assert one_ratio["corruption_robustness"]["ci95"] is None and one_ratio["clean_iou"]["ci95"] is not None
