"""Forged entries whose every number is consistent with its per-image values (a forger's pass,
2026-11-30, got each of these through `leaderboard validate`; fmbench/leaderboard/guard.py)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

from fmbench.errors import ResultError
from fmbench.files import read_json
from fmbench.leaderboard import load_entries, validate_dir

from .test_integrity import _board, _recompute, _registry

ROOT = Path(__file__).resolve().parents[1]
V2 = "unet-r18__nucleus__quick-v2.json"
V1 = "fpn-r18__mito__quick-v1.json"


def _members(e):
    other = read_json(ROOT / "leaderboard" / "unetpp-mbv2__nucleus__quick-v2.json")
    e["members"] = [other]


def _fewer_images(e):
    p = e["per_image"]
    p["ids"] = p["ids"][:15]
    for kind in ("iou", "dice"):
        for c in p.get(kind) or {}:
            p[kind][c] = p[kind][c][:15]
    e["dataset"]["n_images"] = 15
    _recompute(e)


def _convergence(e):
    e["model"]["training"]["convergence"] = dict(e["model"]["training"]["convergence"], state="rising")


@pytest.mark.parametrize("name, entry, forge, message", [
    ("members", V2, _members, "holds keys an entry does not have: members"),
    ("flags", V2, lambda e: e.__setitem__("flags", [{"flag": "rechecked", "reason": "trust me"}]),
     "holds keys an entry does not have: flags"),
    ("private key", V2, lambda e: e.__setitem__("_pinned", True), "holds keys an entry does not have: _pinned"),
    ("15 of 16 images on nucleus@2", V2, _fewer_images, "15 images, but protocol quick-v2 evaluates 16"),
    ("trained elsewhere", V1, lambda e: e["model"]["training"].__setitem__("dataset", "mito@2"),
     "training.dataset is 'mito@2', but the registered weights"),
    ("protocol version", V2, lambda e: e["protocol"].__setitem__("version", 1),
     "are not those of the registered protocol"),
    ("protocol name", V2, lambda e: e["protocol"].__setitem__("name", "full"), "are not those of the registered protocol"),
    ("zero-width ref", V2, lambda e: e["model"].__setitem__("ref", "unet-r18\u200b"), "control or invisible|U+200B"),
    ("label in a ref", V2, lambda e: e["model"].__setitem__("ref", "unet-r18 [pgd-at]"), "printable ASCII without"),
    ("NaN", V2, lambda e: e["provenance"].__setitem__("seconds", float("nan")), "NaN is not a JSON number"),
    ("validation IoU", V2, lambda e: e["model"]["training"].__setitem__("val_iou", 0.99), "reached validation IoU"),
    ("convergence state", V2, _convergence, "training.convergence.state is 'rising', but its record"),
    ("registered weights renamed", V2, lambda e: e["model"].update(ref="mynets:Net", weights=None),
     "evaluated with the registered weights 'nucleus@2/v2' of 'unet-r18' under the name 'mynets:Net'"),
    ("defence as free text", V2, lambda e: e["model"]["training"].update(defense="pgd-at] (3 seeds"),
     "is not a defence fmbench trains"),
    ("a float beyond range", V2, lambda e: e["provenance"].__setitem__("seconds", "INF"), "not a finite number"),
    ("split", V1, lambda e: e["dataset"].__setitem__("split", "train"), "dataset.split is 'train'"),
    ("synthetic", V1, lambda e: e["dataset"].__setitem__("synthetic", False), "dataset.synthetic is False"),
    ("condition label", V2, lambda e: e["conditions"][1].__setitem__("label", "noise, SNR 8"), "conditions are not those"),
])
def test_a_forged_field_is_refused(tmp_path, name, entry, forge, message):
    import re

    e = read_json(ROOT / "leaderboard" / entry)
    assert validate_dir(_board(tmp_path / "ok", json.loads(json.dumps(e))), _registry())[2] == []
    forge(e)
    d = _board(tmp_path / "forged", e)
    if name == "a float beyond range":  # json.dumps cannot write 1e999: as a forger's editor would
        (d / "forged.json").write_text((d / "forged.json").read_text().replace('"INF"', "1e999"))
    _, _, problems = validate_dir(d, _registry())
    assert any(re.search(message, p) for p in problems), (name, problems)


def test_one_checkpoint_is_one_row_whatever_it_is_called(tmp_path):
    """Three copies of one contributor's entry labelled seeds 0, 1 and 2 of a model no registry
    knows had pooled into a row with a seed spread of 0."""
    e = read_json(ROOT / "leaderboard" / "unet-small__nucleus__quick-v2.json")
    e["model"]["ref"], e["model"]["weights"] = "my-unet", None
    e["model"]["weights_sha256"] = e["model"]["state_sha256"] = "c" * 64  # (the registered ones are refused: above)
    d = _board(tmp_path, e)
    command = e["model"]["training"]["command"]
    for seed in (1, 2):
        e["model"]["training"]["seed"] = seed  # and its command: a careful forger's record agrees with itself
        e["model"]["training"]["command"] = command.replace("--seed 0", f"--seed {seed}")
        (d / f"seed{seed}.json").write_text(json.dumps(e))
    _, _, problems = validate_dir(d, _registry())
    assert sum("the same weights" in p for p in problems) == 2, problems
    with pytest.raises(ResultError, match="the same weights"):
        load_entries(d, _registry())
    # without hashes, or with a made-up one per copy: the same per-image values give them away
    for k, path in enumerate(sorted(d.glob("*.json"))):
        doc = json.loads(path.read_text())
        doc["model"]["weights_sha256"] = doc["model"]["state_sha256"] = None if k == 0 else f"{k}" * 64
        path.write_text(json.dumps(doc))
    _, _, problems = validate_dir(d, _registry())
    assert sum("the same per-image IoU" in p for p in problems) == 2, problems
    # nor does a nudge far below any tolerance, or the images in another order (every condition alike)
    for k, path in enumerate(sorted(d.glob("*.json"))):
        doc = json.loads(path.read_text())
        for cond, values in doc["per_image"]["iou"].items():
            values = [v + 1e-12 * k if i == 0 else v for i, v in enumerate(values)]
            doc["per_image"]["iou"][cond] = values[::-1] if k == 2 else values
        path.write_text(json.dumps(_recompute(doc)))  # the scores re-made from the altered values
    _, _, problems = validate_dir(d, _registry())
    assert sum("the same per-image IoU" in p for p in problems) == 2, problems
    # nor a nudge of 3e-6 on one image per condition (beyond the 1e-6 tolerance), nor every value
    # nudged by a different multiple of 3e-4: the median difference gives them away
    for k, path in enumerate(sorted(d.glob("*.json"))):
        doc = json.loads(path.read_text())
        for cond, values in doc["per_image"]["iou"].items():
            doc["per_image"]["iou"][cond] = [min(1.0, v + 3e-4 * k * (1 + (i % 3 == 0))) if v < 1 else v
                                             for i, v in enumerate(values)]
        path.write_text(json.dumps(_recompute(doc)))
    _, _, problems = validate_dir(d, _registry())
    assert sum("the same per-image IoU" in p for p in problems) == 2, problems


def test_a_convergence_state_follows_its_record_within_the_records_rounding():
    from fmbench.recipe import convergence_problems

    record = {"state": "rising", "best_val_iou": 0.883, "best_step": 800, "stopped_at": 800, "reason": "budget used up"}
    recipe = {"steps": 800}
    assert convergence_problems({"recipe": recipe, "convergence": {**record, "gain_last_quarter": 0.01}}) == []
    assert convergence_problems({"recipe": recipe, "convergence": {**record, "gain_last_quarter": 0.003}})
    assert convergence_problems({"recipe": recipe, "convergence": {"state": "plateaued", "stopped_at": 1}}) == [
        "training.convergence: a state without its best validation IoU, best step and reason"]


@pytest.mark.parametrize("change, said", [
    ({"stopped_at": 500, "best_step": 400}, "an early stop at step 500"),
    ({"best_step": 1150, "stopped_at": 900}, "do not fit"),
    ({"best_step": 650}, "where no validation ran"),
    ({"reason": "budget used up"}, "is not how a training that stopped early ends"),
    ({"best_val_iou": 0.99}, "yet its validation IoU"),
])
def test_a_convergence_record_no_training_could_write_is_refused(change, said):
    """An entry chooses between architecture-limited and undertrained by its convergence record;
    one at odds with its recipe (an early stop before min_steps, a best step after the stop or
    between validations, an early stop called a used-up budget) is no training's record."""
    from fmbench.recipe import convergence_problems

    t = read_json(ROOT / "leaderboard" / "fcn8s-r18__er__quick-v2.json")["model"]["training"]
    assert t["convergence"]["stopped_at"] < t["recipe"]["steps"] and convergence_problems(t) == []
    forged = {**t, "convergence": {**t["convergence"], **change}}
    (problem,) = convergence_problems(forged)
    assert said in problem and "no training makes that record" in problem


def test_registered_weights_pin_their_convergence_record(tmp_path):
    """A registered training's record forged whole -- state, gain, stop and reason consistent with
    each other and with the recipe -- would turn architecture-limited into undertrained; the
    registry pins state, best step and stop (plugins/zoo_weights.json)."""
    name = "fcn8s-r18__er__quick-v2.json"
    e = read_json(ROOT / "leaderboard" / name)
    e["model"]["training"]["convergence"].update(state="rising", gain_last_quarter=0.05, stopped_at=1200,
                                                 reason="budget used up")
    d = _board(tmp_path, e)
    _, _, problems = validate_dir(d, _registry())
    assert any("training.convergence (state, best step, stop) is ('rising', 600, 1200), but the registered weights "
               "'er/v2' record ('plateaued', 600, 800)" in p for p in problems), problems


def test_a_genuine_record_whose_last_validation_is_off_the_grid_passes():
    """The trainer validates at the budget's last step too: version 1's 800 steps with validation
    every 250, or --steps 1250, may be best there."""
    from fmbench.recipe import RECIPE_V2, Recipe, convergence, convergence_problems

    for recipe in (Recipe(steps=800, val_every=250, patience=0, keep_best=False),
                   dataclasses.replace(RECIPE_V2, steps=1250)):
        steps = [*range(recipe.val_every, recipe.steps, recipe.val_every), recipe.steps]
        history = [{"step": k, "val_iou": 0.5 + 0.3 * k / recipe.steps} for k in steps]
        conv = convergence(history, recipe, recipe.steps)
        assert conv["best_step"] == recipe.steps
        training = {"recipe": dataclasses.asdict(recipe), "convergence": conv, "val_iou": history[-1]["val_iou"]}
        assert convergence_problems(training) == [], (recipe, conv)


def test_every_registered_training_pins_the_convergence_record_of_its_entry():
    """plugins/zoo_weights.json pins each registered v2 training's record (state, best step, stop)
    as its board entry states it (a campaign registration without one, or a row re-made from other
    weights, shows here)."""
    reg = json.loads((ROOT / "plugins" / "zoo_weights.json").read_text())["weights"]
    unpinned = []
    for path in (ROOT / "leaderboard").glob("*__quick-v2.json"):
        e = read_json(path)
        conv = e["model"]["training"].get("convergence") or {}
        w = reg.get(e["model"]["ref"], {}).get(e["model"].get("weights") or "")
        if not w or conv.get("state") not in ("plateaued", "rising") or w["state_sha256"] != e["model"]["state_sha256"]:
            continue
        if w.get("convergence") != {k: conv[k] for k in ("state", "best_step", "stopped_at")}:
            unpinned.append(path.name)
    assert unpinned == []


def test_a_pooled_row_is_architecture_limited_only_when_every_seed_plateaued():
    from fmbench.leaderboard.rank import convergence_flag

    seeds = [read_json(ROOT / "leaderboard" / f"lraspp-mbv3{s}__nucleus__quick-v2.json") for s in ("", "+seed1", "+seed2")]
    pooled = {**seeds[0], "members": seeds}
    assert convergence_flag(pooled, "clean IoU far below")["flag"] == "architecture-limited"
    seeds[2] = json.loads(json.dumps(seeds[2]))
    seeds[2]["model"]["training"]["convergence"].update(state="rising", gain_last_quarter=0.02)
    got = convergence_flag({**seeds[0], "members": seeds}, "clean IoU far below")
    assert got["flag"] == "undertrained" and "seed 2's validation IoU was still rising" in got["reason"]


def test_readers_that_do_not_validate_never_take_computed_keys_from_a_file(tmp_path):
    e = read_json(ROOT / "leaderboard" / V2)
    e["members"], e["seed_spread"], e["flags"], e["_pinned"] = [{}], {"x": 1}, "x", True
    (got,) = load_entries(_board(tmp_path, e))
    assert not {"members", "seed_spread", "flags", "_pinned"} & set(got)
    shutil.rmtree(tmp_path / "lb")


def test_a_training_record_that_contradicts_itself_is_refused_for_any_model(tmp_path):
    """A contributor's own model (no registry to check against) shown as defended, or as another
    seed, while its recipe and its train command say otherwise."""
    base = read_json(ROOT / "leaderboard" / "deeplabv3plus-r18+seed1__nucleus__quick-v2.json")
    base["model"]["ref"], base["model"]["weights"] = "mynet", None
    base["model"]["weights_sha256"] = base["model"]["state_sha256"] = "d" * 64
    base["model"]["training"]["command"] = "fmbench train --model mynet --dataset nucleus --seed 1 --tier quick-v2"
    d = _board(tmp_path, base)
    _, _, problems = validate_dir(d, _registry())
    assert problems == [], problems  # as it is: consistent
    for change, message in ((lambda t: t.update(defense="pgd-at"), r"contradicts itself: model.training.defense "
                             r"'pgd-at', its recipe's defense 'none', its command's --defense 'none'"),
                            (lambda t: t["recipe"].update(defense="noise-aug"), "contradicts itself"),
                            (lambda t: t.update(seed=7), "model.training.seed is 7, but its command .* --seed 1"),
                            # a noisy-label training shown with exact labels would rank on the main board
                            (lambda t: t["recipe"].update(label_noise="boundary:1:2"),
                             r"model.training.label_noise 'none', its recipe's label_noise 'boundary:1:2'"),
                            (lambda t: t.update(command=t["command"] + " --label-noise boundary:1"),
                             r"its command's --label-noise 'boundary:1:2'"),
                            (lambda t: t.update(command="python -m " + t["command"] + " --label-noise boundary:1"),
                             r"its command's --label-noise 'boundary:1:2'"),
                            (lambda t: t.update(label_noise="boundary:0.2:2", command=t["command"] + " --label-noise "
                                                "boundary:1:2", recipe={**t["recipe"], "label_noise": "boundary:1:2"}),
                             r"model.training.label_noise 'boundary:0.2:2', its recipe's label_noise 'boundary:1:2'")):
        e = json.loads(json.dumps(base))
        change(e["model"]["training"])
        (d / "forged.json").write_text(json.dumps(e))
        _, _, problems = validate_dir(d, _registry())
        assert any(re.search(message, p) for p in problems), (message, problems)
    e = json.loads(json.dumps(base))  # all three saying pgd-at: consistent (whether it is true is the recheck's)
    e["model"]["training"].update(defense="pgd-at", command=base["model"]["training"]["command"] + " --defense=pgd-at")
    e["model"]["training"]["recipe"]["defense"] = "pgd-at"
    (d / "forged.json").write_text(json.dumps(e))
    assert not [p for p in validate_dir(d, _registry())[2] if "contradicts" in p]


def test_a_file_named_as_the_campaign_names_entries_says_what_its_name_says(tmp_path):
    name = "deeplabv3plus-r18+seed1__nucleus__quick-v2.json"
    e = read_json(ROOT / "leaderboard" / name)
    d = _board(tmp_path, e)
    (d / "forged.json").unlink()
    for wrong, said in (("deeplabv3plus-r18+seed7__nucleus__quick-v2.json", "the file name says seed 7"),
                        ("deeplabv3plus-r18+pgd-at+seed1__nucleus__quick-v2.json", "defence 'pgd-at'"),
                        ("deeplabv3plus-r18+seed1__er__quick-v1.json", "protocol 'quick-v1', dataset 'er'"),
                        ("deeplabv3plus-r18__nucleus__quick-v2.json", "the file name says seed 0")):  # no +seedS
        (d / wrong).write_text(json.dumps(e))
        problems = validate_dir(d, _registry())[2]
        assert any(said in p and "rename the file" in p for p in problems), (wrong, problems)
        (d / wrong).unlink()
    (d / name).write_text(json.dumps(e))
    assert validate_dir(d, _registry())[2] == []
