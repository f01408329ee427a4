"""Gradient-masking flags of adversarially trained rows (fmbench.leaderboard.masking): unchecked
weights are flagged, a check on record clears exactly the weights and images it names, every
verdict is computed from the record's per-image IoUs and the entries' (a record's own words are
never read), and a malformed or forged record is refused by validate and by the tables."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fmbench.errors import ResultError
from fmbench.files import read_json
from fmbench.leaderboard import load_entries, masking, validate_dir
from fmbench.leaderboard.rank import groups
from fmbench.scores import per_image

ROOT = Path(__file__).resolve().parents[1] / "leaderboard"
DEFENDED = ROOT / "lraspp-mbv3+pgd-at__nucleus__quick-v2.json"
NOISE_AUG = ROOT / "lraspp-mbv3+noise-aug__nucleus__quick-v2.json"
UNDEFENDED = ROOT / "lraspp-mbv3+seed2__nucleus__quick-v2.json"
SWEEP = ("8/255", "16/255", "32/255", "64/255", "128/255", "255/255")


def _clip(a) -> list[float]:
    return [float(v) for v in np.clip(a, 0, 1)]


def _record(entry: dict, white_drop: float = 0.05, transfer_gap: float = 0.1,
            sweep: tuple[float, ...] = (0.6, 0.4, 0.2, 0.1, 0.05, 0.01), baseline: dict | None = None,
            baseline_drop: float = 0.1, **more) -> dict:
    """A well-formed record of ``entry``'s weights on its images: APGD ``white_drop`` below the
    entry's worst case on every image, transfer ``transfer_gap`` above it, the sweep's means
    ``sweep`` (per image the same value)."""
    worst = per_image(entry, "robust_iou")
    white = np.clip(worst - white_drop, 0, 1)
    pi = {"ids": list(entry["per_image"]["ids"]), "clean": _clip(per_image(entry, "clean_iou")),
          "white_box": _clip(white), "transfer": _clip(white + transfer_gap),
          "sweep": {k: [v] * len(worst) for k, v in zip(SWEEP, sweep)}}
    rec = {"target": "lraspp-mbv3:nucleus@2/v2/pgd-at", "state_sha256": entry["model"]["state_sha256"],
           "dataset": entry["dataset"]["ref"], "tier": entry["protocol"]["id"], "n_images": len(worst),
           "clean_iou": float(np.mean(pi["clean"])), "transfer_worst": float(np.mean(pi["transfer"])),
           "sweep": dict(zip(SWEEP, sweep)), "transfer": {}, "per_image": pi,
           "settings": {"steps": 30, "restarts": 2, "sweep_steps": 15}}
    if baseline is not None:
        bworst = per_image(baseline, "robust_iou")
        rec["baseline"] = {"model": "lraspp-mbv3:nucleus@2/v2/seed2", "state_sha256": baseline["model"]["state_sha256"],
                           "per_image": {"ids": pi["ids"], "clean": _clip(per_image(baseline, "clean_iou")),
                                         "white_box": _clip(bworst - baseline_drop)}}
    rec.update(more)
    return rec


def _write(folder: Path, records: list[dict]) -> None:
    (folder / "checks").mkdir(parents=True, exist_ok=True)
    (folder / masking.FILE).write_text(json.dumps({"kind": masking.KIND, "records": records}))


def _flags(folder: Path) -> list[str]:
    from fmbench.plugins import get_registry

    return sorted(f["flag"] for g in groups(load_entries(folder, get_registry()))
                  for fl in g["flags"].values() for f in fl if "masking" in f["flag"])


@pytest.fixture
def board(tmp_path):
    shutil.copytree(ROOT / "baselines", tmp_path / "baselines")
    for p in (DEFENDED, NOISE_AUG):
        shutil.copy(p, tmp_path / p.name)
    return tmp_path


def test_only_adversarially_trained_rows_are_flagged_and_a_check_clears_only_its_weights(board):
    e = read_json(DEFENDED)
    sha = e["model"]["state_sha256"]
    assert masking.flag(read_json(NOISE_AUG), {}) is None  # noise-aug is not attacked through its training
    unchecked = masking.flag(e, {})
    assert unchecked["flag"] == "masking-unchecked" and "upper bound" in unchecked["reason"]
    assert masking.flag(e, {sha: _record(e)}) is None
    other = copy.deepcopy(e)
    other["model"]["state_sha256"] = "c" * 64  # another training of the same name: the record does not cover it
    assert masking.flag(other, {sha: _record(e)})["flag"] == "masking-unchecked"
    # a check on another dataset or protocol says nothing about this row
    assert masking.flag(e, {sha: _record(e, dataset="nucleus")})["flag"] == "masking-unchecked"
    assert masking.flag(e, {sha: _record(e, tier="full-v2")})["flag"] == "masking-unchecked"
    # pooled seeds: a finding on one seed is not hidden by another seed's gap
    from fmbench.leaderboard.rank import flags

    found_flag = {"flag": "gradient-masking", "reason": "r"}
    pooled = {**e, "members": [{**e, "_masking": masking.flag(other, {})}, {**e, "_masking": found_flag}]}
    assert [f["flag"] for f in flags(pooled, None)] == ["gradient-masking"]

    # in the tables: one flag on the defended row, none on the noise-aug row
    assert _flags(board) == ["masking-unchecked"]
    _write(board, [_record(e)])
    assert _flags(board) == []
    _write(board, [_record(e, sweep=(0.6, 0.5, 0.45, 0.42, 0.41, 0.40))])
    assert _flags(board) == ["gradient-masking"]


@pytest.mark.parametrize("kwargs, finding", [
    ({"transfer_gap": -0.1}, "transfer attacks beat the white-box ones by 0.100"),
    ({"sweep": (0.6, 0.4, 0.2, 0.1, 0.08, 0.3)}, "IoU 0.300 at budget 1"),
    ({"sweep": (0.6, 0.4, 0.5, 0.1, 0.05, 0.01)}, "IoU rises with the budget (16/255 to 32/255)"),
])
def test_the_verdict_comes_from_the_numbers_not_from_the_records_words(kwargs, finding):
    """A record saying "no sign of masking" (``masking_flags: []``) over numbers that show it is
    flagged all the same: the verdict is computed from the per-image IoUs."""
    e = read_json(DEFENDED)
    rec = _record(e, masking_flags=[], **kwargs)
    assert masking.record_problem(rec) is None
    got = masking.flag(e, {rec["state_sha256"]: rec})
    assert got["flag"] == "gradient-masking" and finding in got["reason"]


def test_a_budget_one_plateau_under_cross_entropy_alone_is_read_as_an_upper_bound():
    """Cross-entropy can be met by calling every pixel foreground (IoU = the foreground share):
    a record whose sweep used it alone says its budget-1 IoU is an upper bound; one with the
    targeted loss does not."""
    e = read_json(DEFENDED)
    plateau = (0.6, 0.4, 0.3, 0.25, 0.23, 0.23)
    old = masking.measure(_record(e, sweep=plateau), e)["findings"]
    assert any("IoU 0.230 at budget 1" in f and "upper bound" in f and "--resweep" in f for f in old)
    rec = _record(e, sweep=plateau)
    rec["settings"]["sweep_losses"] = ["ce", "masked-ce", "to-background"]
    assert masking.record_problem(rec) is None
    new = masking.measure(rec, e)["findings"]
    assert any("IoU 0.230 at budget 1" in f for f in new) and not any("upper bound" in f for f in new)


def test_a_stronger_attack_that_hurts_the_defence_more_than_its_undefended_architecture_is_found():
    e, base = read_json(DEFENDED), read_json(UNDEFENDED)
    board = {x["model"]["state_sha256"]: x for x in (e, base)}
    # APGD takes 0.15 more IoU from the defended model, 0.02 from the undefended one
    rec = _record(e, white_drop=0.15, baseline=base, baseline_drop=0.02)
    got = masking.flag(e, {rec["state_sha256"]: rec}, board)
    assert got["flag"] == "gradient-masking" and "more than the same architecture undefended" in got["reason"]
    m = masking.measure(rec, e, base)
    assert m["baseline"]["gain_vs_baseline"]["diff"] == pytest.approx(
        m["white_box_worst"] - m["baseline"]["white_box_worst"])
    # the comparison needs the baseline's entry on the board, undefended and of the same architecture
    assert masking.flag(e, {rec["state_sha256"]: rec}) is None
    defended = {**base, "model": {**base["model"], "training": {**base["model"]["training"], "defense": "noise-aug"}}}
    assert masking.baseline_entry(rec, e, {base["model"]["state_sha256"]: defended}) is None
    other_arch = {**base, "model": {**base["model"], "ref": "unet-r18"}}
    assert masking.baseline_entry(rec, e, {base["model"]["state_sha256"]: other_arch}) is None
    # the other way round (the defence loses less) is no finding
    fine = _record(e, white_drop=0.02, baseline=base, baseline_drop=0.15)
    assert masking.flag(e, {fine["state_sha256"]: fine}, board) is None


def test_a_record_of_other_inputs_clears_nothing_and_validate_names_it(board):
    """The record must be of the entry's images (all of them) and inputs (its clean IoUs)."""
    from fmbench.plugins import get_registry

    e = read_json(DEFENDED)
    shifted = _record(e)
    shifted["per_image"]["clean"] = [min(1.0, v + 0.01) for v in shifted["per_image"]["clean"]]
    shifted["clean_iou"] = float(np.mean(shifted["per_image"]["clean"]))
    few = _record(e)
    for k in ("ids", "clean", "white_box", "transfer"):
        few["per_image"][k] = few["per_image"][k][:2]
    few["per_image"]["sweep"] = {k: v[:2] for k, v in few["per_image"]["sweep"].items()}
    few.update(n_images=2, clean_iou=float(np.mean(few["per_image"]["clean"])),
               transfer_worst=float(np.mean(few["per_image"]["transfer"])))
    for rec, why in ((shifted, "not the entry's inputs"), (few, "other images")):
        got = masking.flag(e, {rec["state_sha256"]: rec})
        assert got["flag"] == "masking-unchecked" and why in got["reason"]
        _write(board, [rec])
        problems = validate_dir(board, get_registry())[2]
        assert len(problems) == 1 and DEFENDED.name in problems[0] and why in problems[0]
        assert _flags(board) == ["masking-unchecked"]


def _bad(**changes):
    rec = _record(read_json(DEFENDED))
    for path, value in changes.items():
        *head, last = path.split(".")
        node = rec
        for k in head:
            node = node[k]
        node[last] = value
    return {"kind": masking.KIND, "records": [rec]}


@pytest.mark.parametrize("bad, message", [
    ({"kind": "something-else", "records": []}, "not a gradient-masking check document"),
    ({"kind": masking.KIND, "records": [{"state_sha256": "abc"}]}, "state_sha256 (64 hex digits)"),
    (_bad(n_images=True), "n_images must be a positive integer"),
    (_bad(transfer_worst=7), "transfer_worst is not the mean"),
    (_bad(transfer_worst=0.99), "transfer_worst is not the mean"),
    (_bad(clean_iou=0.99), "clean_iou is not the mean"),
    (_bad(sweep={}), "sweep must map budgets"),
    (_bad(**{"sweep.16/255": "high"}), "sweep must map budgets"),
    (_bad(**{"sweep.8/255": 0.9}), "sweep 8/255 is not the mean"),
    (_bad(sweep={"8/255": 0.6, "255/255": 0.01, "16/255": 0.4}), "must rise to 255/255"),
    (_bad(per_image=None), "per_image needs the ids"),
    (_bad(**{"per_image.white_box": [0.5]}), "per_image.white_box must hold one IoU"),
    (_bad(**{"per_image.transfer": [2.0] * 16}), "per_image.transfer must hold one IoU"),
    (_bad(**{"per_image.sweep": {}}), "per_image.sweep must hold"),
    (_bad(transfer=3), "transfer must map"),
    (_bad(baseline="yes"), "baseline needs"),
    (_bad(baseline={"model": "m", "state_sha256": "e" * 64, "per_image": {"ids": []}}), "baseline.per_image needs"),
    (_bad(dataset=None), "needs the dataset"),
    (_bad(sweep={"8/255": 0.6, "1/0": 0.01, "255/255": 0.01}), "written like 16/255"),  # (no division by zero)
    (_bad(sweep={"8/255": 0.6, "255/255": 0.01}), "sweep must hold the budgets"),
    (_bad(target=None), "needs the target"),
    (_bad(settings=["steps", 30]), "settings must give"),
    (_bad(**{"settings.steps": "30"}), "settings must give"),
    (_bad(**{"settings.sweep_losses": ["ce", "ce"]}), "settings.sweep_losses must list distinct"),
    (_bad(**{"settings.sweep_losses": ["dice"]}), "settings.sweep_losses must list distinct"),
    (_bad(**{"settings.sweep_losses": []}), "settings.sweep_losses must list distinct"),
    (_bad(**{"settings.sweep_losses": [{"ce": 1}]}), "settings.sweep_losses must list distinct"),
    (_bad(**{"settings.sweep_losses": "ce"}), "settings.sweep_losses must list distinct"),
    (_bad(transfer={"m:w segpgd": {"on_target": 0.9, "per_image": [0.9] * 16}}), "lowest of every transfer attack"),
    ({"kind": masking.KIND, "records": [_record(read_json(DEFENDED))] * 2}, "a second record"),
])
def test_a_malformed_check_file_is_refused_by_validate_and_by_the_tables(board, bad, message):
    from fmbench.plugins import get_registry

    (board / "checks").mkdir()
    (board / masking.FILE).write_text(json.dumps(bad))
    problems = validate_dir(board, get_registry())[2]
    assert len(problems) == 1 and message in problems[0] and "gradient-masking.json" in problems[0]
    with pytest.raises(ResultError, match="gradient-masking.json"):
        load_entries(board, get_registry())


def test_the_checked_in_records_are_well_formed_and_of_checked_in_entries():
    checks = masking.load(ROOT)
    entries = {e["model"].get("state_sha256"): e for e in map(read_json, ROOT.glob("*.json"))}
    assert set(checks) <= set(entries), "a check record names weights no entry has"
    for sha, rec in checks.items():
        assert masking.measure(rec, entries[sha])["mismatch"] is None


def test_a_sweep_listed_out_of_order_cannot_hide_a_rise():
    """Per-image sweeps must be listed in the summary's (rising) budget order, and the rise is
    read in budget order whatever the listing."""
    e = read_json(DEFENDED)
    rec = _record(e, sweep=(0.6, 0.4, 0.2, 0.3, 0.05, 0.01))  # rises from 32/255 to 64/255
    assert "IoU rises with the budget (32/255 to 64/255)" in masking.measure(rec, e)["findings"][0]
    shuffled = copy.deepcopy(rec)
    order = ["8/255", "16/255", "64/255", "32/255", "128/255", "255/255"]
    shuffled["per_image"]["sweep"] = {k: rec["per_image"]["sweep"][k] for k in order}
    assert "in its order" in masking.record_problem(shuffled)
    assert masking.measure(shuffled, e)["findings"] == masking.measure(rec, e)["findings"]



def test_recheck_re_measures_a_record_and_catches_an_edited_value(tmp_path, capsys):
    """``benchmarks/gradient_masking.py --recheck``: a record measured here (the shipped
    unet-small on two nucleus@2 images, few steps) rechecks to difference 0; the same record with
    one image's white-box IoU moved by 0.05 does not."""
    import argparse
    import importlib.util

    path = ROOT.parent / "benchmarks" / "gradient_masking.py"
    spec = importlib.util.spec_from_file_location("gradient_masking", path)
    gm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gm)
    from fmbench.plugins import get_registry

    reg = get_registry()
    args = argparse.Namespace(steps=2, restarts=1, sweep_steps=2, batch=2, n_images=2, tolerance=0.01, target=None,
                              sweep_losses=("ce",))  # a record from before the sweep's other losses
    target, tier = "unet-small:nucleus", "quick-v2"
    loaded = gm.load(target)
    x, m, keys = gm.reference_batch(reg.protocol(tier), "nucleus@2", 2)
    ids = [k[len("nucleus@2") + 1:] for k in keys]
    clean = gm.score(loaded.module, x, m, 2)
    white = gm.white_box(reg, loaded.module, x, m, keys, 8 / 255, args)[0]
    sweep = gm.sweep_iou(reg, loaded.module, x, m, keys, args)
    rec = {"target": target, "state_sha256": loaded.state_sha256, "tier": tier, "dataset": "nucleus@2", "n_images": 2,
           "clean_iou": float(clean.mean()), "transfer": {}, "transfer_worst": float(white.mean()),
           "sweep": {k: float(v.mean()) for k, v in sweep.items()},
           "settings": {"steps": 2, "restarts": 1, "sweep_steps": 2},
           "per_image": {"ids": ids, "clean": gm._list(clean), "white_box": gm._list(white),
                         "transfer": gm._list(white), "sweep": {k: gm._list(v) for k, v in sweep.items()}}}
    record = tmp_path / "checks" / "gradient-masking.json"
    gm.update_record(record, [rec])
    assert gm.recheck(reg, record, args) == 0
    assert args.sweep_losses == ["ce"]  # read from the record (none recorded: cross-entropy alone)

    # --resweep: the sweep again with the targeted loss, per image never above cross-entropy's
    # (its random starts are the record's), recorded as such; it then rechecks as made
    args.sweep_losses = ("ce", "to-background")
    assert gm.resweep(reg, record, args, "here") == 0
    new = masking.load(record.parent.parent)[loaded.state_sha256]
    assert new["settings"]["sweep_losses"] == ["ce", "to-background"]
    assert new["sweep_remeasured"]["losses_before"] == ["ce"]
    for k, v in sweep.items():
        assert (np.asarray(new["per_image"]["sweep"][k]) <= v + 1e-12).all()
    assert new["per_image"]["white_box"] == rec["per_image"]["white_box"]  # the rest is kept
    assert gm.recheck(reg, record, args) == 0
    gm.update_record(record, [rec])
    rec2 = copy.deepcopy(rec)
    rec2["per_image"]["clean"][0] = min(1.0, rec2["per_image"]["clean"][0] + 0.01)
    rec2["clean_iou"] = float(np.mean(rec2["per_image"]["clean"]))
    record.unlink()
    gm.update_record(record, [rec2])
    with pytest.raises(SystemExit, match="clean IoUs here are not the record's"):
        gm.resweep(reg, record, args, "here")

    # a transfer surrogate whose weights name now means other weights is not re-crafted
    moved = copy.deepcopy(rec)
    moved["transfer"] = {f"{target} segpgd": {"on_target": float(white.mean()), "per_image": gm._list(white),
                                              "on_surrogate": 0.5, "surrogate_sha256": "0" * 64}}
    record.unlink()
    gm.update_record(record, [moved])
    capsys.readouterr()
    assert gm.recheck(reg, record, args) == 0
    assert f"surrogate {target} is now weights" in capsys.readouterr().out

    args.sweep_losses = ("ce",)
    v = rec["per_image"]["white_box"][1]
    rec["per_image"]["white_box"][1] = v - 0.05 if v >= 0.05 else v + 0.05
    record.unlink()
    gm.update_record(record, [rec])
    assert gm.recheck(reg, record, args) == 1
