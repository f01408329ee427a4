"""Label noise: registered kinds, exact rates, severities that do what they say, determinism,
training that records it, and a leaderboard track of its own."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage as ndi

import fmbench
from fmbench.errors import ProtocolError
from fmbench.label_noise import Setting, apply_setting, noisy_indices, parse_setting

from .test_integrity import _own_run

KINDS = ("boundary", "boundary-smooth", "missing", "spurious", "coarse")


@pytest.fixture(scope="module")
def masks():
    ds = fmbench.open_dataset("nucleus@2", "train", 128)
    return np.stack([np.asarray(ds[i].mask, bool) for i in range(12)]), [f"nucleus@2/train/{i}" for i in range(12)]


def test_fmbench_label_noises(pm):
    """A third-party label noise registers through the hook like the built-in ones."""
    from fmbench import LabelNoise, LabelNoiseSpec, hookimpl
    from fmbench.plugins import get_registry

    class Flip(LabelNoise):
        name = "flip"
        severities = (1.0,)
        summary = "the mask mirrored"

        def __call__(self, mask, severity, rng):
            return mask[:, ::-1].copy()

    class Plugin:
        @hookimpl
        def fmbench_label_noises(self):
            return [LabelNoiseSpec.of(Flip)]

    pm.register(Plugin(), name="flip-plugin")
    reg = get_registry(pm)
    assert reg.label_noise("flip").plugin == "flip-plugin" and reg.label_noise("boundary").plugin.endswith("label_noise")
    m = np.zeros((1, 8, 8), bool)
    m[0, :, :2] = True
    out = apply_setting(m, ["k"], parse_setting("flip:1:1", reg), 0, reg)
    assert out[0, :, -2:].all() and not out[0, :, :2].any()


def test_kinds_are_registered_and_listed(registry, cli):
    assert set(KINDS) <= set(registry.label_noises)
    r = cli("list", "label-noise")
    assert r.returncode == 0 and all(k in r.stdout for k in KINDS)
    with pytest.raises(fmbench.ProtocolError, match="KIND:RATE"):
        parse_setting("boundary", registry)
    with pytest.raises(fmbench.ProtocolError, match="RATE must lie in"):
        parse_setting("boundary:1.5", registry)
    with pytest.raises(fmbench.UnknownNameError, match="--label-noise 'bondary:0.2': unknown label noise 'bondary'; "
                                                       "did you mean 'boundary'"):
        parse_setting("bondary:0.2", registry)
    assert parse_setting("boundary:0.2", registry).text == "boundary:0.2:2"  # the kind's default severity
    # boundary moves outlines by whole pixels: 0.4 would have trained on exact masks filed as noisy ones,
    # and 1.5 and 2.5 would have been one setting under two names
    for bad in ("boundary:0.2:0.4", "boundary:0.2:1.5"):
        with pytest.raises(fmbench.ProtocolError, match="SEVERITY of boundary must be a whole number"):
            parse_setting(bad, registry)
    assert parse_setting("boundary-smooth:0.2:1.5", registry).severity == 1.5  # a standard deviation: any
    assert "whole numbers" in r.stdout


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 0.7, 1.0])
def test_rates_are_exact_and_rate_zero_changes_nothing(registry, masks, rate):
    m, keys = masks
    chosen = noisy_indices(len(m), rate, seed=3)
    assert chosen.sum() == round(rate * len(m))
    if rate == 0:  # no setting of its own: an exact-label training names no --label-noise
        for text in ("boundary:0:2", "boundary:-0", "boundary:1e-400"):
            with pytest.raises(ProtocolError, match="a rate of 0 is an exact-label training"):
                parse_setting(text, registry)
    setting = Setting("boundary", rate, 2.0) if rate == 0 else parse_setting(f"boundary:{rate}:2", registry)
    out = apply_setting(m, keys, setting, 3, registry)
    changed = np.array([not np.array_equal(a, b) for a, b in zip(m, out)])
    assert not (changed & ~chosen).any()  # only the chosen images change
    assert np.array_equal(changed, chosen & np.array([bool(a.any()) for a in m]))  # and every chosen one with objects
    if rate == 0:
        assert np.array_equal(out, m)


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_masks_other_seed_other_masks(registry, masks, kind):
    m, keys = masks
    s = parse_setting(f"{kind}:1", registry)
    a, b, c = (apply_setting(m, keys, s, seed, registry) for seed in (0, 0, 1))
    assert np.array_equal(a, b)
    # coarse annotation is a function of the outline alone; the others draw from the seed
    assert np.array_equal(a, c) if kind == "coarse" else not np.array_equal(a, c)


@pytest.mark.parametrize("kind,severity", [("boundary", 2), ("boundary", 4), ("coarse", 2), ("coarse", 5)])
def test_boundary_kinds_move_the_outline_no_farther_than_their_severity(registry, masks, kind, severity):
    m, keys = masks
    out = apply_setting(m, keys, parse_setting(f"{kind}:1:{severity}", registry), 0, registry)
    changed = 0
    for exact, noisy in zip(m, out):
        edge = exact ^ ndi.binary_erosion(exact)
        dist = ndi.distance_transform_edt(~edge)
        moved = exact ^ noisy
        changed += bool(moved.any())  # (boundary: an image whose objects all drew 0 px is unchanged)
        # every pixel that changed lies within SEVERITY (+1 for the pixel grid) of the exact outline
        if moved.any():
            assert dist[moved].max() <= severity + 1.5, (kind, severity, dist[moved].max())
    assert changed >= len(m) // 2


def test_smooth_boundary_shift_has_the_stated_spread(registry, masks):
    m, keys = masks
    spreads = []
    for sev in (1.0, 3.0):
        out = apply_setting(m, keys, parse_setting(f"boundary-smooth:1:{sev}", registry), 0, registry)
        moved = np.mean([(a ^ b).sum() / max((a ^ ndi.binary_erosion(a)).sum(), 1) for a, b in zip(m, out)])
        spreads.append(moved)  # changed pixels per outline pixel ~ the mean |shift| in pixels
    assert 0.4 < spreads[0] < 1.6 and spreads[1] > 2 * spreads[0]


def test_missing_and_spurious_hit_their_rates(registry):
    ds = fmbench.open_dataset("nucleus@2", "train", 128)
    m = np.stack([np.asarray(ds[i].mask, bool) for i in range(40)])
    keys = [f"k{i}" for i in range(40)]
    n_obj = sum(ndi.label(x, structure=np.ones((3, 3)))[1] for x in m)
    out = apply_setting(m, keys, parse_setting("missing:1:0.3", registry), 0, registry)
    kept = sum(ndi.label(x, structure=np.ones((3, 3)))[1] for x in out)
    assert (n_obj - kept) / n_obj == pytest.approx(0.3, abs=0.08)
    out = apply_setting(m, keys, parse_setting("spurious:1:0.3", registry), 0, registry)
    added = sum(ndi.label(x, structure=np.ones((3, 3)))[1] for x in out) - n_obj
    assert added / n_obj == pytest.approx(0.3, abs=0.1)  # a few land beside each other and merge
    # above 1, SEVERITY x the objects still (it was the objects plus SEVERITY - 1): counted as blobs drawn
    # on a large empty image with four small objects, where every blob finds room
    from fmbench_plugins.label_noise import Spurious

    four = np.zeros((600, 600), bool)
    for y, x in ((100, 100), (100, 500), (500, 100), (500, 500)):
        four[y:y + 6, x:x + 6] = True
    for sev in (0.5, 1.0, 2.5, 3.0):
        drawn = [ndi.label(Spurious()(four, sev, np.random.default_rng(s)))[1] - 4 for s in range(60)]
        assert np.mean(drawn) == pytest.approx(4 * sev, rel=0.1)  # blobs that touch merge: a little fewer


def _network(h=128, step=24, width=4):
    """A lattice of 4-px tubules: a thin network whose junction-to-junction segments are known."""
    m = np.zeros((h, h), bool)
    for c in range(step // 2, h, step):
        m[:, c - width // 2:c + width // 2] = True
        m[c - width // 2:c + width // 2, :] = True
    m[:2], m[-2:], m[:, :2], m[:, -2:] = False, False, False, False
    return m


def test_a_thin_network_is_cut_into_its_segments_and_compact_objects_stay_whole():
    """An annotator skips or misdraws a tubule segment, not the whole ER: a network component is
    cut at its skeleton's junctions; nuclei (touching ones too) stay one object each."""
    from fmbench_plugins.label_noise import _objects  # (the built-in plugins' module)

    net = _network()
    labels, n = _objects(net)
    assert (labels > 0).sum() == net.sum()  # every pixel belongs to one segment
    # 5 x 5 junctions inside; 4 x 5 edges between them along each axis (+ the ends at the border)
    assert 40 <= n <= 80, n
    sizes = np.bincount(labels.ravel())[1:]
    assert sizes.max() < 0.05 * net.sum()
    yy, xx = np.mgrid[:128, :128]
    blobs = ((yy - 40) ** 2 + (xx - 40) ** 2 < 15 ** 2) | ((yy - 40) ** 2 + (xx - 68) ** 2 < 15 ** 2)  # touching
    blobs |= (yy - 100) ** 2 / 8 ** 2 + (xx - 64) ** 2 / 40 ** 2 < 1  # an elongated nucleus: 5:1
    labels, n = _objects(blobs)
    assert n == 2 and np.array_equal(labels > 0, blobs)
    for angle in (0, 20, 45):  # two crossing tubules: four arms, at any angle; every segment one piece
        t = np.deg2rad(angle)
        cross = np.zeros((128, 128), bool)
        for a in (t, t + np.pi / 2):
            cross |= np.abs((yy - 64) * np.cos(a) - (xx - 64) * np.sin(a)) < 2
        cross &= (yy - 64) ** 2 + (xx - 64) ** 2 < 55 ** 2
        labels, n = _objects(cross)
        assert n == 4, (angle, n)
        assert all(ndi.label(labels == i, structure=np.ones((3, 3)))[1] == 1 for i in range(1, n + 1))


def test_noise_on_a_network_acts_per_segment():
    """missing drops about SEVERITY of the segments (never the network at once); boundary
    erosion thins a segment without cutting it off from its neighbours."""
    from fmbench_plugins.label_noise import Boundary, Missing, _objects

    net = _network()
    _labels, n = _objects(net)
    dropped = []
    for seed in range(8):
        out = Missing()(net, 0.3, np.random.default_rng(seed))
        dropped.append(1 - out.sum() / net.sum())
        assert out.any()
    assert np.mean(dropped) == pytest.approx(0.3, abs=0.08)
    for severity in (1.0, 3.0):
        out = Boundary()(net, severity, np.random.default_rng(0))
        assert (out & ~net).any() and (net & ~out).any()  # some segments dilated, some eroded
        # erosion comes from the background only and stops at the centre line: the network stays one piece
        assert ndi.label(out, structure=np.ones((3, 3)))[1] == 1, severity


def test_training_records_the_noise_and_entries_rank_in_their_own_track(registry, tmp_path, cli):
    r = cli("train", "--model", "unet-small", "--model-arg", "width=4", "--model-arg", "depth=2", "--dataset",
            "nucleus", "--steps", "2", "--label-noise", "missing:0.4", "--out", "m.pt", "--quiet", cwd=tmp_path,
            timeout=900)
    assert r.returncode == 0, r.stderr
    from fmbench.checkpoint import read_checkpoint

    _, meta = read_checkpoint(tmp_path / "m.pt")
    assert meta["recipe"]["label_noise"] == "missing:0.4:0.2"
    assert "--label-noise missing:0.4" in meta["command"]
    from fmbench.leaderboard.entry import build_entry, model_label
    from fmbench.leaderboard.rank import groups

    res = fmbench.evaluate("unet-small", "nucleus", fmbench.get_protocol("quick-v1", n_images=2, image_size=64,
                                                                          corruptions=["noise"], attacks=["fgsm"]),
                           model_args={"width": 4, "depth": 2}, checkpoint=tmp_path / "m.pt", cache=False)
    entry = build_entry(res.document if hasattr(res, "document") else dict(res), hardware="x", command="c")
    assert entry["model"]["training"]["label_noise"] == "missing:0.4:0.2"
    assert model_label(entry) == "unet-small [labels missing:0.4:0.2]"
    clean = build_entry(dict(fmbench.evaluate("unet-small", "nucleus", fmbench.get_protocol(
        "quick-v1", n_images=2, image_size=64, corruptions=["noise"], attacks=["fgsm"]), cache=False)),
        hardware="x", command="c")
    gs = groups([entry, clean])
    assert len(gs) == 2 and {g["label_noise"] for g in gs} == {"", "missing:0.4:0.2"}  # never ranked together
    from fmbench.errors import ResultError
    from fmbench.leaderboard.compare import compare

    with pytest.raises(ResultError, match=r"trained with label noise missing:0.4:0.2, and no entry here on nucleus "
                                          r"· quick-v1\S* has that setting: noisy-label trainings never rank"):
        compare(dict(res.document if hasattr(res, "document") else res), [clean])  # (it said: no entry on nucleus)
    # against its own entry only (the track's folder, no other model with the setting): said, not a silent 1/1
    from fmbench.leaderboard.compare import compare_table
    from rich.console import Console

    alone = compare(dict(res.document if hasattr(res, "document") else res), [clean, entry])
    assert alone["n_entries"] == 0 and alone["own_entry"]
    con = Console(width=400, record=True)
    con.print(compare_table(alone))
    assert "no other row to rank against: trainings with label noise missing:0.4:0.2 rank only with that setting" \
        in con.export_text()


def test_gallery(tmp_path, cli):
    r = cli("label-noise", "gallery", "--dataset", "nucleus", "--out", str(tmp_path / "g.png"))
    assert r.returncode == 0, r.stderr
    from PIL import Image

    img = np.asarray(Image.open(tmp_path / "g.png").convert("RGB"))
    assert ((img[..., 0] == 255) & (img[..., 1] == 0) & (img[..., 2] == 255)).sum() > 500  # noisy outlines drawn


def test_roughness_measures_how_far_each_severity_takes_the_masks(registry, masks, cli):
    """Rougher settings give lower mask IoU; missing removes and spurious adds foreground only;
    a bad --setting is one line and exit 1."""
    from fmbench.label_noise import roughness

    m, keys = masks
    rows = roughness(m, keys, registry, [("boundary", 1), ("boundary", 3), ("missing", 0.4), ("spurious", 0.4)])
    b1, b3, miss, spur = rows
    assert 0.5 < b3["mask_iou_median"] < b1["mask_iou_median"] < 1
    assert miss["added"] == 0 and 0.2 < miss["lost"] < 0.6 and spur["lost"] == 0 and spur["added"] > 0.1
    r = cli("label-noise", "roughness", "--dataset", "nucleus", "--images", "3", "--setting", "coarse:2")
    assert r.returncode == 0 and "coarse" in r.stdout, r.stderr
    for bad, why in (("coarse:99", "at most"), ("coarse:1:2", "expected KIND[:SEVERITY]"),
                     ("coarse:x", "SEVERITY must be a number"), ("coarse:", "expected KIND[:SEVERITY]")):
        r = cli("label-noise", "roughness", "--dataset", "nucleus", "--images", "3", "--setting", bad)
        assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and f"--setting {bad!r}: " in r.stderr, r.stderr
        assert why in r.stderr, r.stderr
    empty = np.zeros((2, 16, 16), bool)
    empty[1, 4:12, 4:12] = True  # an image with no object: noisy and exact agree (IoU 1, not 0)
    assert roughness(empty, ["a", "b"], registry, [("missing", 0.1)])[0]["mask_iou_p10"] > 0.5


def test_the_study_statistics_find_the_rate_where_loss_begins():
    """Synthetic entries: rate 0.2 costs nothing, 0.4 and up cost clean IoU on every image; the
    Holm-corrected Wilcoxon tests say so, and the largest safe rate is 0.2."""
    import copy
    from pathlib import Path

    from fmbench import scores
    from fmbench.files import read_json
    from fmbench.noise_study import holm, rank_biserial, study

    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert rank_biserial(np.array([1.0, 2.0, -0.5])) == pytest.approx((2 + 3 - 1) / 6)
    base = read_json(Path(__file__).resolve().parents[1] / "leaderboard" / "unet-small__er__quick-v1.json")
    rng = np.random.default_rng(0)

    def at(rate, loss):
        e = copy.deepcopy(base)
        e["model"]["training"]["label_noise"] = f"boundary:{rate}:2"
        for c in e["conditions"]:  # every condition of every image moved by `loss` (plus a little noise)
            e["per_image"]["iou"][c["id"]] = [float(np.clip(v - loss + rng.normal(0, 0.002), 0, 1))
                                              for v in e["per_image"]["iou"][c["id"]]]
        e["scores"] = scores.compute(e["conditions"], e["per_image"]["iou"])
        return e

    def at_seed(seed, loss):  # exact labels, another training seed
        e = at(0.0, loss)
        e["model"]["training"].update(label_noise=None, seed=seed)
        return e

    track = [base, at(0.2, 0.0), at(0.4, 0.05), at(0.7, 0.1), at(1.0, 0.2)]
    got = study(track, "unet-small", "er")
    (kind,) = got["kinds"]
    assert kind["kind"] == "boundary" and [r["rate"] for r in kind["rows"]] == [0.0, 0.2, 0.4, 0.7, 1.0]
    tests = [r["clean_iou_test"] for r in kind["rows"][1:]]
    assert [t["significant_loss"] for t in tests] == [False, True, True, True]
    assert tests[1]["diff"] == pytest.approx(-0.05, abs=0.005) and tests[1]["effect"] < -0.9
    assert kind["max_safe_rate"]["clean_iou"] == 0.2
    # clean Dice comes from per-image IoU (2J / (1 + J) for one mask) and matches the entry's own mean
    assert kind["rows"][0]["clean_dice"]["value"] == pytest.approx(base["summary"]["clean_dice"], abs=1e-9)
    assert kind["rows"][2]["clean_dice"]["value"] < kind["rows"][0]["clean_dice"]["value"]
    # the docs' table: every rate, the loss in bold, the safe rates stated
    from fmbench.noise_study import markdown
    from fmbench.noise_readme import label_noise_markdown

    md = markdown(got)
    assert "rates measured up to 100% — largest rate with no detected loss: clean IoU 20%" in md
    rows = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"| 0%", "| 20%", "| 40%", "| 70%", "| 100%"}
    assert "**" not in rows["| 20%"] and rows["| 70%"].count("**Δ -0.") == 4
    assert got["floor"] is None and "*Training noise not measured*" in md
    # a gain is shown as one, never hidden nor called a loss
    gain = at(0.2, -0.05)
    gain["model"]["training"]["label_noise"] = "missing:0.2:0.2"
    both = study(track + [gain], "unet-small", "er")
    g = next(k for k in both["kinds"] if k["kind"] == "missing")["rows"][1]["clean_iou_test"]
    assert g["significant_gain"] and not g["significant_loss"]
    assert "(gain)" in markdown(both) and "| clean IoU at 20%; corrupted IoU at 20%; robust IoU at 20% |" in label_noise_markdown(track + [gain])
    # exact-label trainings with other seeds (losses 0.06 and -0.01): rate 0 becomes each image's mean
    # over the three (0.0167 below seed 0), and each training against the mean of the others gives the
    # floor (seed 1: -0.06 - 0.005). The loss of 0.05 at 40 % (0.033 against the mean) is inside that
    # training noise and no longer counts; 0.1 at 70 % still does
    null = [at_seed(1, 0.06), at_seed(2, -0.01)]
    floored = study(track + null, "unet-small", "er")
    assert floored["reference_seeds"] == [0, 1, 2]
    assert floored["floor"]["clean_iou"] == pytest.approx(0.065, abs=0.005)
    ref_clean = np.mean([np.asarray(e["per_image"]["iou"]["reference"]) for e in [base] + null], axis=0)
    assert floored["kinds"][0]["rows"][0]["clean_iou"]["value"] == pytest.approx(ref_clean.mean())
    t40 = floored["kinds"][0]["rows"][2]["clean_iou_test"]
    assert t40["p_holm"] < 0.05 and t40["beyond_floor"] is False and not t40["significant_loss"]
    assert floored["kinds"][0]["rows"][3]["clean_iou_test"]["significant_loss"]
    assert floored["kinds"][0]["max_safe_rate"]["clean_iou"] == 0.4
    md = markdown(floored)
    assert "| seed 1 − the others | Δ -0.06" in md and "(within training noise)" in md
    # the calibrated training-luck bar: t(0.975, 2) s sqrt(1 + 1/3) over the three trainings' mean clean IoU
    means = [np.mean(e["per_image"]["iou"]["reference"]) for e in [base] + null]
    bar = 4.302653 * np.std(means, ddof=1) * np.sqrt(4 / 3)
    assert floored["luck_bar"]["clean_iou"] == pytest.approx(bar, rel=1e-5)
    t70 = floored["kinds"][0]["rows"][3]["clean_iou_test"]
    pair = 4.302653 * np.std(means, ddof=1) * np.sqrt(2)  # and the same-seed difference past t s sqrt 2
    assert floored["luck_bar_same_seed"]["clean_iou"] == pytest.approx(pair, rel=1e-5)
    assert t70["beyond_luck"] == (abs(t70["diff"]) > bar and t70["same_seed"]["diff"] < -pair)
    assert ("(beyond the luck bar)" if t70["beyond_luck"] else "(inside the luck bar: a lead)") in md
    assert "| 95 % training-luck bar | " in md
    tiers = label_noise_markdown(track + null + [gain])
    assert "| clean IoU at 20% (a lead); corrupted IoU at 20% (a lead)" in tiers
    # each safe rate twice: counting significant losses, and only those beyond the luck bars
    b = floored["kinds"][0]["rows"]
    beyond = next((r["rate"] for r in b[1:] if r["clean_iou_test"]["beyond_luck"]), None)
    safe_beyond = max(r["rate"] for r in b if beyond is None or r["rate"] < beyond)
    assert f"| boundary (2) | 0%, 20%, 40%, 70%, 100% | 40% · {safe_beyond:.0%} " \
           f"({floored['luck_bar']['clean_iou']:.3f}) |" in tiers  # the bar: no smaller loss is beyond luck
    assert "largest rate with no detected loss: clean IoU 40% (floor 0.06" in md
    with pytest.raises(Exception, match="replicates a setting with no seed-0 training"):
        study(track + [at(0.2, 0.0) | {"model": {**base["model"], "training": {**base["model"]["training"],
                                                  "label_noise": "missing:0.2:0.2", "seed": 1}}}], "unet-small", "er")
    # replicates: the 70 % setting trained again with seed 1 (loss 0.1 against seed 1's exact training: it
    # confirms the grid's loss) and the 40 % one with seed 2 (no loss: it does not confirm)
    def again(rate, seed, loss):
        e = at(rate, loss)
        e["model"]["training"]["seed"] = seed
        return e

    reps = study(track + null + [again(0.7, 1, 0.16), again(0.4, 2, -0.01)], "unet-small", "er")
    assert reps["seed"] == 0 and [(r["rate"], r["seed"]) for r in reps["replicates"]] == [(0.4, 2), (0.7, 1)]
    r40, r70 = reps["replicates"]
    assert r70["clean_iou"]["own_seed"]["diff"] == pytest.approx(-0.1, abs=0.005)
    assert r70["clean_iou"]["confirms"] is True and r70["clean_iou"]["grid"]["finding"] == -1
    assert r40["clean_iou"]["grid"]["finding"] == 0 and r40["clean_iou"]["confirms"] is None
    assert reps["kinds"] == floored["kinds"]  # the grid's statistics do not move
    md = markdown(reps)
    assert "*Replicates*" in md and "| boundary 70% (severity 2) | 1 | clean IoU |" in md and "confirms the loss" in md
    assert "does not confirm" not in md
    weak = study(track + null + [again(0.7, 2, -0.01)], "unet-small", "er")["replicates"][0]["clean_iou"]
    assert weak["confirms"] is False and "does not confirm the loss" in markdown(
        study(track + null + [again(0.7, 2, -0.01)], "unet-small", "er"))
    readme = label_noise_markdown(track + null + [again(0.7, 1, 0.16)])
    assert "*Replicated?* Each grid point is one training; 1 setting was trained again" in readme
    assert "Confirmed (both of the replicate's intervals on the finding's side): er boundary 70% clean IoU loss " \
           "(seed 1)" in readme and "Not confirmed: none. Reversed (both on the other side): none." in readme
    # a replicate that went the other way is said to reverse the finding, in the list and beside a gain
    back = label_noise_markdown(track + null + [again(0.7, 1, -0.2)])
    assert "Reversed (both on the other side): er boundary 70% clean IoU loss (seed 1)" in back
    with pytest.raises(Exception, match="no exact-label training with seed 3"):
        study(track + null + [again(0.7, 3, 0.1)], "unet-small", "er")
    with pytest.raises(Exception, match="several noisy-label entries with one setting and seed"):
        study(track + null + [again(0.7, 1, 0.1), again(0.7, 1, 0.12)], "unet-small", "er")
    # the README's generated summary reads the same numbers, and compares them with Yu et al.'s 20 %

    text = label_noise_markdown(track)
    assert "| unet-small | er | quick-v1 | boundary (2) | 0%, 20%, 40%, 70%, 100% | 20% |" in text
    assert "over 1 model × dataset × noise settings, counting significant losses: clean IoU shows no loss up to " \
           "at least 20 % and a loss at a higher rate, as they found, in 1; no loss at any rate measured in 0 " in text
    assert "a loss at 20 % or less in 0. No detected loss is consistent with Yu et al., not proof of no effect: " \
           "where 20 % shows no significant loss, the paired 95 % intervals still allow a loss of clean IoU of " \
           "up to 0.00" in text
    # no loss at any rate: consistent with their 20 %, but no threshold is observed, and that is said
    assert "and a loss at a higher rate, as they found, in 0; no loss at any rate measured in 1 " \
        "(consistent with their 20 %, but without the loss they saw beyond it" in label_noise_markdown(
            [base, at(0.2, 0.0), at(0.4, 0.0)])
    # with a measured floor, the README gives it with the bars: the smallest loss that could count
    assert "*Training luck, measured* (per study and score: the floor / the luck bar against the exact-label " \
           "mean / against the same seed's training): unet-small on er — clean IoU 0.06" in label_noise_markdown(track + null)
    # a loss already at 20 %: disagrees; only 40 % measured, with a loss there: cannot tell
    assert "or less in 1." in label_noise_markdown([base, at(0.2, 0.1), at(0.4, 0.1)])
    # that early loss trained again with another seed: the Yu comparison says whether it held
    held = label_noise_markdown([base, at(0.2, 0.1), at(0.4, 0.1), at_seed(1, 0.0), again(0.2, 1, 0.1)])
    assert "(trained again with another seed, the loss was confirmed in 1 of them)" in held
    lost = label_noise_markdown([base, at(0.2, 0.1), at(0.4, 0.1), at_seed(1, 0.0), again(0.2, 1, -0.1)])
    assert "the loss was confirmed in 0 of them and not in 1)" in lost
    assert "cannot tell in 1" in label_noise_markdown([base, at(0.4, 0.1)])
    # no loss at 20 % and nothing measured beyond it: not yet a verdict either way
    assert "cannot tell in 1" in label_noise_markdown([base, at(0.2, 0.0)])
    assert "No noisy-label point yet (1 exact-label trainings are in)" in label_noise_markdown([base])
    # robustness before accuracy: the synthetic losses above hit clean and corrupted IoU at the same rate;
    # a loss of corrupted IoU alone from 20 % (clean IoU only from 70 %) comes earlier, and is counted so

    def corrupted_first(rate, loss_corrupted, loss_clean):
        e = at(rate, loss_clean)
        for c in e["conditions"]:
            if c["kind"] == "corruption":
                e["per_image"]["iou"][c["id"]] = [max(v - loss_corrupted, 0.0) for v in e["per_image"]["iou"][c["id"]]]
        e["scores"] = scores.compute(e["conditions"], e["per_image"]["iou"])
        return e

    assert "comes at a lower rate than clean IoU's in 0, at the same rate in 1" in label_noise_markdown(track)
    early = [base, corrupted_first(0.2, 0.1, 0.0), corrupted_first(0.4, 0.1, 0.0), corrupted_first(0.7, 0.1, 0.1)]
    assert "comes at a lower rate than clean IoU's in 1 (at 20%; clean IoU shows none in 0 of them)" \
        in label_noise_markdown(early)
    assert "No label-noise entries yet" in label_noise_markdown([])


def test_the_training_luck_bar_is_calibrated_and_the_floor_is_not():
    """A noisy-label training that is only another draw of training luck (normal, independent, as spread
    as the seeds): the floor rule (beyond the largest leave-one-out |Δ| of 3 exact-label trainings, below 0,
    below seed 0) calls it a loss about 14 % of the time at one rate and 36 % at one of four; the
    training-luck bar (95 % prediction interval) 2.5 %, as docs/label-noise.md says."""
    from fmbench.ranktests import luck_bar

    rng = np.random.default_rng(0)
    x, new = rng.normal(size=(20_000, 3)), rng.normal(size=(20_000, 4))
    floor = np.abs(x - (x.sum(1, keepdims=True) - x) / 2).max(1)
    d = new - x.mean(1)[:, None]
    assert np.mean(np.abs(d[:, 0]) > floor) == pytest.approx(0.29, abs=0.01)
    floor_loss = (d < -floor[:, None]) & (new < x[:, [0]])
    assert floor_loss[:, 0].mean() == pytest.approx(0.14, abs=0.01)
    assert floor_loss.any(1).mean() == pytest.approx(0.36, abs=0.015)
    bars = 4.302653 * x.std(1, ddof=1) * np.sqrt(4 / 3)  # t(0.975, 2): luck_bar, vectorised
    assert [luck_bar(list(v)) for v in x[:50]] == pytest.approx(bars[:50].tolist(), rel=1e-6)
    assert np.mean(d[:, 0] < -bars) == pytest.approx(0.025, abs=0.004)
    # five exact-label trainings: the floor rule 18 % / 9 % / 27 %, the bar still 2.5 % and about a third narrower
    x5, new5 = rng.normal(size=(20_000, 5)), rng.normal(size=(20_000, 4))
    floor5 = np.abs(x5 - (x5.sum(1, keepdims=True) - x5) / 4).max(1)
    d5 = new5 - x5.mean(1)[:, None]
    assert np.mean(np.abs(d5[:, 0]) > floor5) == pytest.approx(0.18, abs=0.01)
    loss5 = (d5 < -floor5[:, None]) & (new5 < x5[:, [0]])
    assert loss5[:, 0].mean() == pytest.approx(0.09, abs=0.01) and loss5.any(1).mean() == pytest.approx(0.27, abs=0.015)
    bars5 = 2.776445 * x5.std(1, ddof=1) * np.sqrt(6 / 5)
    assert luck_bar(list(x5[0])) == pytest.approx(bars5[0], rel=1e-6)
    assert np.mean(d5[:, 0] < -bars5) == pytest.approx(0.025, abs=0.004)
    assert bars5.mean() == pytest.approx(2.86, abs=0.05) and bars.mean() == pytest.approx(4.41, abs=0.08)
    assert luck_bar([0.90, 0.91, 0.92]) == pytest.approx(4.303 * 0.01 * np.sqrt(4 / 3), rel=1e-3)
    with pytest.raises(ValueError, match="at least 2"):
        luck_bar([0.9])


def test_the_same_seed_bar_keeps_a_lucky_reference_seed_from_making_gains():
    """A noisy-label training is its seed's training plus the luck of its label draw (sd tau; the
    same-seed exact-label training is one of the reference's).  Given that training lucky (+1.5 sd, as
    ER's seed 0 was on robust IoU), a pure-luck noisy training passes the bar against the exact-label
    mean as a *gain* 4.5 % (tau = sd) to 10 % (tau = sqrt 2 sd) of the time, not 2.5 %; requiring the
    difference to the same-seed training to pass the pair bar (t s sqrt 2) too keeps each side under
    2.5 % for tau up to sd wherever that training lies, and under 4 % at tau = sqrt 2 sd
    (docs/label-noise.md, *How often can luck pass?*)."""
    from fmbench.ranktests import luck_bar

    rng = np.random.default_rng(1)
    n, draws, t4 = 5, 40_000, 2.776445
    for x0, tau in [(x0, tau) for x0 in (0.0, 1.5, -1.5) for tau in (0.5, 1.0, np.sqrt(2))]:
        x = np.concatenate([np.full((draws, 1), x0), rng.normal(size=(draws, n - 1))], axis=1)
        s = x.std(1, ddof=1)
        bar, pair = t4 * s * np.sqrt(1 + 1 / n), t4 * s * np.sqrt(2)
        assert luck_bar(list(x[0]), pair=True) == pytest.approx(pair[0], rel=1e-6)
        noisy = x0 + tau * rng.normal(size=draws)
        d_mean, d_same = noisy - x.mean(1), noisy - x0
        if x0 > 0 and tau >= 1:
            assert (d_mean > bar).mean() > 0.04  # the bar against the mean alone: a lucky seed makes "gains"
        both = max(((d_mean > bar) & (d_same > pair)).mean(), ((d_mean < -bar) & (d_same < -pair)).mean())
        assert both <= (0.025 if tau <= 1 else 0.04), (x0, tau, both)


def test_holm_over_a_kinds_rates_and_the_first_loss_decide_the_safe_rate(monkeypatch):
    """The decision rule on controlled p-values and intervals: Holm over the rates of one kind
    (raw p 0.02, 0.03, 0.04 all pass uncorrected and all fail Holm at 0.06; 0.01, 0.001, 0.04
    all pass Holm where Bonferroni would drop one), a loss whose
    interval reaches 0 does not count, and the safe rate stops at the first loss even when a
    higher rate shows none."""
    import copy
    from pathlib import Path

    from fmbench import noise_study
    from fmbench.files import read_json

    base = read_json(Path(__file__).resolve().parents[1] / "leaderboard" / "unet-small__er__quick-v1.json")

    def noisy(rate):
        e = copy.deepcopy(base)
        e["model"]["training"]["label_noise"] = f"boundary:{rate}:2"
        return e

    def run(results, same=None):  # per rate the test against the mean and, if given, against the same seed
        mean = results * len(noise_study.SCORES)
        same = mean if same is None else same * len(noise_study.SCORES)
        feed = iter([x for pair in zip(same, mean) for x in pair])  # the study asks for the same seed's first

        def fake(a, b):
            d, lo, hi, p = next(feed)
            return {"diff": d, "ci95": [lo, hi], "p": p, "effect": -0.5}

        monkeypatch.setattr(noise_study, "_test", fake)
        (kind,) = noise_study.study([base, noisy(0.2), noisy(0.4), noisy(0.7)], "unet-small", "er")["kinds"]
        return kind

    # three losses with raw p 0.02, 0.03, 0.04: uncorrected all significant, Holm none (0.06 each)
    kind = run([(-0.05, -0.08, -0.02, 0.02), (-0.05, -0.08, -0.02, 0.03), (-0.05, -0.08, -0.02, 0.04)])
    tests = [r["clean_iou_test"] for r in kind["rows"][1:]]
    assert [t["p_holm"] for t in tests] == pytest.approx([0.06, 0.06, 0.06])
    assert not any(t["significant_loss"] for t in tests) and kind["max_safe_rate"]["clean_iou"] == 0.7
    # Holm steps down: 0.001 * 3, 0.01 * 2 and 0.04 * 1 are all below 0.05 (Bonferroni would drop 0.04 * 3)
    kind = run([(-0.05, -0.08, -0.02, 0.01), (-0.05, -0.08, -0.02, 0.001), (-0.05, -0.08, -0.02, 0.04)])
    assert [r["clean_iou_test"]["p_holm"] for r in kind["rows"][1:]] == pytest.approx([0.02, 0.003, 0.04])
    assert [r["clean_iou_test"]["significant_loss"] for r in kind["rows"][1:]] == [True, True, True]
    assert kind["max_safe_rate"]["clean_iou"] == 0.0
    # a loss only at 40 %: the safe rate is 20 %, not 70 %; at 70 % the p passes but the interval reaches 0
    kind = run([(-0.001, -0.01, 0.01, 0.6), (-0.05, -0.08, -0.02, 0.001), (-0.03, -0.06, 0.001, 0.001)])
    assert [r["clean_iou_test"]["significant_loss"] for r in kind["rows"][1:]] == [False, True, False]
    assert kind["max_safe_rate"]["clean_iou"] == 0.2
    # ... and the loss not seen at the higher rate is said: one training per rate makes it a lead
    assert "clean_iou" in kind["not_monotone"]
    assert "not seen at every higher rate" in noise_study.markdown({
        "model": "m", "dataset": "er", "protocol_id": "p", "n_images": 16, "alpha": 0.05, "seed": 0,
        "reference_seeds": [0], "training_noise": [], "floor": None, "kinds": [kind]})
    kind = run([(-0.05, -0.08, -0.02, 0.01), (-0.05, -0.08, -0.02, 0.001), (-0.05, -0.08, -0.02, 0.04)])
    assert kind["not_monotone"] == []  # a loss at every rate from the first on
    # a loss against the mean of the exact-label trainings that the same seed's exact-label training
    # does not show (its interval reaches 0) is the reference's luck, not the labels': it does not count
    loss = (-0.05, -0.08, -0.02, 0.001)
    kind = run([loss, loss, loss], same=[loss, (0.01, -0.02, 0.04, 0.5), loss])
    assert [r["clean_iou_test"]["significant_loss"] for r in kind["rows"][1:]] == [True, False, True]
    assert kind["rows"][2]["clean_iou_test"]["same_seed"]["diff"] == 0.01
    md = noise_study.markdown({"model": "m", "dataset": "er", "protocol_id": "p", "n_images": 16, "alpha": 0.05,
                               "seed": 0, "reference_seeds": [0, 1, 2], "training_noise": [], "floor": None,
                               "kinds": [kind]})
    row40 = next(line for line in md.splitlines() if line.startswith("| 40% |"))
    assert row40.split(" | ")[1].endswith("(not against seed 0 alone: Δ +0.010 [-0.020, +0.040])")  # clean IoU


def test_analyze_label_noise_on_a_track_folder(tmp_path, cli):
    """The study's command on a folder of track entries (copies of one entry, as the statistics
    were tested above): a table per kind and the plot."""
    import json
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "leaderboard"
    (tmp_path / "label-noise").mkdir()
    shutil.copytree(root / "baselines", tmp_path / "label-noise" / "baselines")
    e = json.loads((root / "unet-small__er__quick-v1.json").read_text())
    e["model"]["ref"] = "mynets:UNet"  # a user's model: registered weights cannot be relabelled (test_integrity)
    e["model"]["weights_sha256"], e["model"]["state_sha256"] = "e" * 64, "f" * 64  # its own checkpoint
    (tmp_path / "label-noise" / "exact.json").write_text(json.dumps(e))
    for k, rate in enumerate((0.2, 0.4)):
        n = json.loads(json.dumps(e))
        n["model"]["training"]["label_noise"] = f"missing:{rate}:0.2"  # (and so say its recipe and command)
        n["model"]["training"]["recipe"]["label_noise"] = f"missing:{rate}:0.2"
        n["model"]["weights_sha256"], n["model"]["state_sha256"] = f"{k}" * 64, f"{k + 5}" * 64  # one training each
        (tmp_path / "label-noise" / f"m{rate}.json").write_text(json.dumps(_own_run(n, k)))  # and its own values
    r = cli("analyze", "--label-noise", "--dir", str(tmp_path), "--dataset", "er", "--out", str(tmp_path / "ln.png"))
    assert r.returncode == 1 and "no entries of unet-small on er here (models: mynets:UNet)" in r.stderr, r.stderr
    r = cli("analyze", "--label-noise", "--model", "mynets:UNet", "--dir", str(tmp_path), "--dataset", "er",
            "--out", str(tmp_path / "ln.png"))
    assert r.returncode == 0, r.stderr
    assert "missing noise, severity 0.2" in r.stdout and "largest rate with no significant loss: clean iou 40%" in r.stdout
    assert (tmp_path / "ln.png").stat().st_size > 10_000


def test_analyze_label_noise_says_what_the_docs_tables_say(tmp_path, cli):
    """On the track's nucleus@2 study, the terminal gives the luck bars, whether each significant cell
    is beyond them or a lead, and the replicates with their verdicts, as docs/label-noise.md does (it
    printed a plain 'loss' or 'gain' where the docs said 'a lead', and no replicate)."""
    from pathlib import Path

    track = Path(__file__).resolve().parents[1] / "leaderboard" / "label-noise"
    r = cli("analyze", "--label-noise", "--model", "unet-small", "--dataset", "nucleus@2", "--dir", str(track),
            "--out", str(tmp_path / "s.png"))
    assert r.returncode == 0, r.stderr
    assert "training-luck bars (95 %, calibrated for exact-label training luck" in r.stdout
    assert "corrupted iou loss at 70% beyond luck" in r.stdout  # boundary
    assert "clean iou loss at 40% (a lead: inside the luck bars)" in r.stdout  # boundary-smooth
    assert "first loss beyond the luck bars: clean iou 70%" in r.stdout  # coarse
    assert "missing 70% (0.2)" in r.stdout and "reverses the gain" in r.stdout  # the seed-1 replicate


def test_a_track_accepts_a_registered_model_only_with_weights_its_registry_lists(tmp_path, registry, cli):
    """The study trains registered architectures itself: its entries' weights are not the
    registered ones, so the main board would reject them; the track's own registry
    (``weights/registry.json``, written by the runner) lists them by both hashes."""
    import json
    import shutil
    from pathlib import Path

    from fmbench.leaderboard.store import validate_dir

    root = Path(__file__).resolve().parents[1] / "leaderboard"
    track = tmp_path / "label-noise"
    shutil.copytree(root / "baselines", track / "baselines")
    e = json.loads((root / "unet-small__nucleus__quick-v2.json").read_text())
    e["model"].pop("weights")
    e["model"]["weights_sha256"], e["model"]["state_sha256"] = "a" * 64, "b" * 64  # trained by the study
    (track / "exact.json").write_text(json.dumps(e))
    _, n, problems = validate_dir(track, registry)
    assert n == 1 and any("not the registered" in p for p in problems)
    reg = {"kind": "fmbench-track-weights", "weights": {"unet-small": {"exact": {
        "dataset": e["dataset"]["ref"], "sha256": "a" * 64, "state_sha256": "b" * 64, "label_noise": None,
        "command": e["model"]["training"]["command"]}}}}
    (track / "weights").mkdir()
    (track / "weights" / "registry.json").write_text(json.dumps(reg))
    assert validate_dir(track, registry)[2] == []

    def problems_after(edit):
        r = json.loads(json.dumps(reg))
        edit(r["weights"]["unet-small"])
        (track / "weights" / "registry.json").write_text(json.dumps(r))
        return validate_dir(track, registry)[2]

    listed = "not the ones this track's weights registry (weights/registry.json) lists under this file's name"
    assert any(listed in p for p in problems_after(lambda d: d["exact"].update(state_sha256="c" * 64)))
    # listed under another entry's name, or as another label-noise setting: not this entry's weights
    assert any(listed in p for p in problems_after(lambda d: d.update(other=d.pop("exact"))))
    assert any(listed in p for p in problems_after(lambda d: d["exact"].update(label_noise="boundary:0.7:2")))
    # the main zoo's registered weights are no rate-0 reference of a track: its own trainings only
    shipped = json.loads((root / "unet-small__nucleus__quick-v2.json").read_text())
    (track / "shipped.json").write_text(json.dumps(shipped))
    assert any("shipped.json" in p and listed in p for p in problems_after(lambda d: None))
    (track / "shipped.json").unlink()
    # the same training under a second name (a noisy model passed off as another exact-label seed)
    dup = json.loads(json.dumps(reg))
    dup["weights"]["unet-small"]["exact+seed2"] = dict(dup["weights"]["unet-small"]["exact"])
    (track / "weights" / "registry.json").write_text(json.dumps(dup))
    with pytest.raises(Exception, match="one training cannot be two entries"):
        validate_dir(track, registry)
    # an entry relabelled as another seed than its registered command trained
    (track / "weights" / "registry.json").write_text(json.dumps(reg))
    e2 = json.loads(json.dumps(e))
    e2["model"]["training"]["seed"] = 2
    (track / "exact.json").write_text(json.dumps(e2))
    assert any(listed in p for p in validate_dir(track, registry)[2])
    (track / "exact.json").write_text(json.dumps(e))
    assert any(listed in p for p in problems_after(lambda d: d["exact"].update(command="fmbench train")))
    # the main board never honours such a file: a registry beside its entries changes nothing
    board = tmp_path / "board"
    shutil.copytree(track, board)
    (board / "weights" / "registry.json").write_text(json.dumps(reg))
    assert any("not the registered" in p for p in validate_dir(board, registry)[2])
    # and `leaderboard validate` says why, rather than leave a copied track's problems unexplained
    r = cli("leaderboard", "validate", str(board))
    assert r.returncode == 1 and "holds a track's weights registry (weights/registry.json) but is not named as a " \
        "track (label-noise)" in r.stderr, r.stderr
    assert "holds a track" not in cli("leaderboard", "validate", str(tmp_path / "nothing-here")).stderr


def _runner():
    """leaderboard/label_noise.py (the study's runner; a script, not a package module), imported."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("label_noise_runner", Path(__file__).resolve().parents[1]
                                                  / "leaderboard" / "label_noise.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_forged_or_inconsistent_track_files_are_refused_with_one_line_each(tmp_path, registry, capsys):
    """What a fault-finding pass forged on a copy of the track: every case is a problem line naming its
    file (never a traceback, never a pass) -- an entry trained otherwise than its study's reference, a file
    name that says another label-noise setting, an unknown kind, a rate that noises no mask, a malformed
    baselines file; and the docs generator says so in one line."""
    import json
    import shutil
    from pathlib import Path

    from fmbench.leaderboard.store import validate_dir

    root = Path(__file__).resolve().parents[1] / "leaderboard" / "label-noise"
    track = tmp_path / "label-noise"
    shutil.copytree(root / "baselines", track / "baselines")
    shutil.copytree(root / "weights", track / "weights")
    stems = ["unet-small+labels-exact__nucleus__quick-v2", "unet-small+labels-exact+seed1__nucleus__quick-v2",
             "unet-small+labels-boundary-0.2-2__nucleus__quick-v2"]
    for stem in stems:
        shutil.copy(root / f"{stem}.json", track / f"{stem}.json")
    assert validate_dir(track, registry)[2] == []
    noisy = track / f"{stems[2]}.json"
    original = json.loads(noisy.read_text())

    def problems_with(edit, name=None):
        e = json.loads(json.dumps(original))
        edit(e)
        target = track / name if name else noisy
        noisy.unlink()
        target.write_text(json.dumps(e))
        found = validate_dir(track, registry)[2]
        target.unlink()
        noisy.write_text(json.dumps(original))
        return found

    # trained with another learning rate than the exact-label reference: the study cannot compare them
    found = problems_with(lambda e: e["model"]["training"]["recipe"].update(lr=0.01))
    assert any("was trained otherwise than the rate-0 entry" in p for p in found), found
    # a file named after another setting than the entry holds
    found = problems_with(lambda e: None, name="unet-small+labels-boundary-1-2__nucleus__quick-v2.json")
    assert any("label noise 'boundary-1-2'" in p and "boundary-1-2__nucleus" in p for p in found), found

    def relabel(text):
        def edit(e):
            t = e["model"]["training"]
            t["label_noise"] = t["recipe"]["label_noise"] = text
            t["command"] = t["command"].replace("boundary:0.2:2", str(text))
        return edit

    # a training command that trains elsewhere than the entry says (dataset, protocol version)
    found = problems_with(lambda e: e["model"]["training"].update(
        command=e["model"]["training"]["command"].replace("--dataset nucleus", "--dataset er")))
    assert any("model.training.dataset is 'nucleus@2', but its command" in p and "trains on 'er'" in p for p in found)
    found = problems_with(lambda e: e["model"]["training"].update(
        command=e["model"]["training"]["command"].replace("--tier quick-v2", "--tier quick-v1")))
    assert any("trains under --tier quick-v1" in p for p in found), found
    found = problems_with(relabel("foo:0.2:2"))
    assert any(p.startswith(str(noisy)) and "unknown label noise 'foo'" in p for p in found), found
    found = problems_with(relabel("boundary:1e-05:2"))
    assert any("a rate of 1e-05 of 256 training images makes no mask noisy" in p for p in found), found
    # one checkpoint under a hash written in capitals is still one checkpoint
    from fmbench.leaderboard.guard import same_weights

    twin = json.loads(json.dumps(original))
    twin["model"]["state_sha256"] = twin["model"]["state_sha256"].upper()
    twin["per_image"]["iou"] = {c: [min(1.0, v + 0.01) for v in vs] for c, vs in twin["per_image"]["iou"].items()}
    assert any("one checkpoint is one row" in p for p in same_weights([("a.json", original), ("b.json", twin)]))
    listed = json.loads((track / "weights" / "registry.json").read_text())
    records = listed["weights"]["unet-small"]
    records["copy"] = {**records[stems[0]], "sha256": records[stems[0]]["sha256"].upper()}
    (track / "weights" / "registry.json").write_text(json.dumps(listed))
    with pytest.raises(Exception, match="lists the same weights .* one training cannot be two entries"):
        validate_dir(track, registry)
    shutil.copy(root / "weights" / "registry.json", track / "weights" / "registry.json")
    # a malformed baselines file: a problem naming it, not a KeyError
    bad = track / "baselines" / "broken.json"
    doc = json.loads(next((root / "baselines").glob("*.json")).read_text())
    for edit in (lambda d: d.pop("protocol"), lambda d: d["protocol"].update(hash=["x"]),
                 lambda d: d["per_image"].update(iou=[]), lambda d: d.update(summary=[])):
        d = json.loads(json.dumps(doc))
        edit(d)
        bad.write_text(json.dumps(d))
        found = validate_dir(track, registry)[2]
        assert any(p.startswith(f"{bad}: not a baselines document") for p in found), found
    bad.unlink()
    # the docs generator on a board with an invalid entry: one line, exit 1
    noisy.write_text(json.dumps({**original, "scores": {**original["scores"], "robust_iou": {"value": 0.9}}}))
    mod = _runner()
    assert mod.main(["--docs", "--check", "--board", str(track)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(noisy) in err[0]


def test_the_shipped_study_checkpoints_are_the_registered_trainings():
    """The checkpoints .ci/run rechecks the track's entries with are the ones its weights registry lists
    under the same names (file sha256), and their entries exist."""
    import json
    from pathlib import Path

    from fmbench.files import sha256_file

    track = Path(__file__).resolve().parents[1] / "leaderboard" / "label-noise"
    shipped = sorted((track / "checkpoints").glob("*.pt"))
    assert len(shipped) == 2
    listed = json.loads((track / "weights" / "registry.json").read_text())["weights"]
    for path in shipped:
        assert (track / f"{path.stem}.json").is_file()
        model = path.stem.split("+")[0]
        assert listed[model][path.stem]["sha256"] == sha256_file(path)
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()  # and CI rechecks each
    assert '--checkpoint "leaderboard/label-noise/checkpoints/$stem.pt"' in ci
    assert all(f'"{path.stem}"' in ci for path in shipped)


def test_the_docs_study_tables_are_current():
    """docs/label-noise.md's generated tables are the ones the track's entries give."""

    mod = _runner()
    assert mod.main(["--docs", "--check"]) == 0


def test_the_docs_say_how_much_of_the_grid_is_measured_and_what_is_left(tmp_path):
    """The generated progress line counts the grid's points with an entry and names the rest, so a
    hand-written count cannot go stale."""

    from fmbench.plugins import get_registry

    mod = _runner()
    reg = get_registry()
    n = sum(len(mod.plan(reg, [m], ds, kinds, mod.RATES, null_seeds=seeds)) for m, ds, kinds, seeds in mod.STUDY)
    assert n == 84  # 3 datasets x (5 exact + 5 kinds x 4 rates) + (5 exact + 4 boundary rates)
    text = mod.progress(tmp_path, reg)
    assert text.startswith("**Progress** (generated): 0 of the grid's 84 trainings have their entry here.")
    assert "unet-small on er — exact labels (seeds 0, 1, 2, 3, 4); every kind at every rate." in text
    assert "lraspp-mbv3 on nucleus — exact labels (seeds 0, 1, 2, 3, 4); boundary at 20%, 40%, 70%, 100%." in text
    for m, ds, kinds, seeds in mod.STUDY:
        for point in mod.plan(reg, [m], ds, kinds, mod.RATES, null_seeds=seeds):
            if not (point[1] == "er" and point[2] and point[2].startswith("coarse:0.4")):
                (tmp_path / f"{mod.stem_of(*point, 'quick-v2')}.json").write_text("{}")
    assert mod.progress(tmp_path, reg) == ("**Progress** (generated): 83 of the grid's 84 trainings have their entry "
                                           "here. Still to run: unet-small on er — coarse at 40%.")
    (tmp_path / "unet-small+labels-coarse-0.4-1__er__quick-v2.json").write_text("{}")
    assert mod.progress(tmp_path, reg).endswith("84 of the grid's 84 trainings have their entry here: the grid is complete.")


def test_a_track_entry_must_name_its_label_noise_as_training_writes_it(tmp_path):
    """A relabelled setting that is not the trainer's own text (``boundary:0.5``, an unknown kind,
    a rate outside [0, 1]) is a validation problem, and the study's generators say so in one line
    instead of crashing."""
    import copy
    from pathlib import Path

    from fmbench.files import read_json
    from fmbench.integrity import consistency
    from fmbench.noise_study import studies
    from fmbench.plugins import get_registry

    reg = get_registry()
    base = read_json(Path(__file__).resolve().parents[1] / "leaderboard" / "unet-small__er__quick-v1.json")
    for text, said in (("boundary:0.5", "not written as training writes it ('boundary:0.5:2')"),
                       ("boundary:0.50:2", "not written as training writes it ('boundary:0.5:2')"),
                       ("sloppy:0.2:1", "sloppy"), ("boundary:1.5:2", "RATE must lie in [0, 1]"),
                       ("boundary", "expected KIND:RATE[:SEVERITY]")):
        e = copy.deepcopy(base)
        e["model"]["training"]["label_noise"] = text
        problems = consistency(e, reg)
        assert any(said in p for p in problems), (text, problems)
        (got,) = studies([base, e])  # no crash: a study, or one line on why there is none
        assert isinstance(got[3], dict) or ("KIND:RATE:SEVERITY" in str(got[3]) and text.count(":") != 2)
    e = copy.deepcopy(base)
    e["model"]["training"]["label_noise"] = "boundary:0.5:2"
    assert not [p for p in consistency(e, reg) if "label_noise:" in p or "not written" in p]


def test_analyze_across_entries_leaves_label_noise_trainings_out():
    import copy
    from pathlib import Path

    from fmbench.analysis import across_entries
    from fmbench.files import read_json

    board = Path(__file__).resolve().parents[1] / "leaderboard"
    es = [read_json(board / f"{m}__er__quick-v1.json") for m in ("unet-small", "unet-r18", "fpn-r18", "segformer-b0")]
    noisy = copy.deepcopy(es[0])
    noisy["model"]["training"]["label_noise"] = "boundary:0.4:2"
    data = across_entries(es + [noisy], n_boot=200)
    assert len(data["labels"]) == 4 and not any("labels" in lab for lab in data["labels"])
    with pytest.raises(Exception, match="label-noise track entries"):
        across_entries([noisy])


def test_a_plot_drawn_from_other_numbers_is_caught(tmp_path):
    import copy
    from pathlib import Path

    from fmbench import scores
    from fmbench.files import read_json
    from fmbench.noise_plot import plot, plot_is_current
    from fmbench.noise_study import study

    base = read_json(Path(__file__).resolve().parents[1] / "leaderboard" / "unet-small__er__quick-v1.json")
    noisy = copy.deepcopy(base)
    noisy["model"]["training"]["label_noise"] = "boundary:0.4:2"
    noisy["per_image"]["iou"] = {c: [max(0.0, v - 0.05) for v in vals] for c, vals in noisy["per_image"]["iou"].items()}
    noisy["scores"] = scores.compute(noisy["conditions"], noisy["per_image"]["iou"])
    data = study([base, noisy], "unet-small", "er")
    path = str(tmp_path / "p.png")
    plot(data, path)
    assert plot_is_current(data, path)
    other = copy.deepcopy(data)
    other["kinds"][0]["rows"][1]["clean_iou"]["value"] += 0.01
    assert not plot_is_current(other, path)
    assert not plot_is_current(data, str(tmp_path / "missing.png"))
    # a replicate (the setting trained again with seed 1, beside seed 1's exact-label training) is drawn too
    again, exact1 = copy.deepcopy(noisy), copy.deepcopy(base)
    again["model"]["training"]["seed"] = exact1["model"]["training"]["seed"] = 1
    with_rep = study([base, exact1, noisy, again], "unet-small", "er")
    assert len(with_rep["replicates"]) == 1
    plot(with_rep, path)
    assert plot_is_current(with_rep, path) and not plot_is_current(data, path)


def test_rough_labels_never_change_the_training_images(registry, masks, tmp_path, cli):
    """An annotator's rough outline cannot change how the image was exposed: training images are
    exposed (their photon scale solved for the reference SNR) on the exact masks, the rough ones
    are only the targets.  Exposing on the rough masks changed ER's photon scale by a median 24 %
    under smooth boundary noise and made an image with every object missed impossible to train on."""
    import torch

    from fmbench.train import RECIPE_V2, _step_batch

    exact, keys = masks
    x = torch.from_numpy(np.stack([np.asarray(fmbench.open_dataset("nucleus@2", "train", 128)[i].image, np.float32)
                                   for i in range(len(keys))]))[:, None]
    rough = apply_setting(exact, keys, parse_setting("missing:1:1", registry), 0, registry)
    assert not rough.any()  # every object missed
    m, r = torch.from_numpy(exact), torch.from_numpy(rough)
    protocol = fmbench.get_protocol("quick-v2")
    xe, me = _step_batch(x, m, keys, RECIPE_V2, protocol, 0, 3)
    xr, mr = _step_batch(x, r, keys, RECIPE_V2, protocol, 0, 3, exact=m)
    assert torch.equal(xe, xr) and me.any() and not mr.any()
    run = cli("train", "--model", "unet-small", "--model-arg", "width=4", "--model-arg", "depth=2", "--dataset",
              "nucleus", "--steps", "2", "--label-noise", "missing:1:1", "--out", "m.pt", "--quiet", cwd=tmp_path,
              timeout=900)
    assert run.returncode == 0, run.stderr


def _nucleus_study_entries():
    from pathlib import Path

    from fmbench.files import read_json

    track = Path(__file__).resolve().parents[1] / "leaderboard" / "label-noise"
    return [read_json(p) for p in sorted(track.glob("unet-small+labels-*__nucleus__quick-v2.json"))]


def test_the_study_compares_only_trainings_that_differ_in_their_labels():
    """A rate-0 reference trained with another recipe (or data, precision) would show its
    difference as the label noise's effect: the study refuses to compare them."""
    from fmbench.errors import ResultError
    from fmbench.noise_study import study

    entries = _nucleus_study_entries()
    assert study(entries, "unet-small", "nucleus@2")["kinds"]
    other = json.loads(json.dumps(entries))
    exact = next(e for e in other if not e["model"]["training"].get("label_noise"))
    exact["model"]["training"]["recipe"]["steps"] = 800
    with pytest.raises(ResultError, match="was trained otherwise than the rate-0 entry beyond labels and seed"):
        study(other, "unet-small", "nucleus@2")
    wider = json.loads(json.dumps(entries))  # another width is another model
    next(e for e in wider if e["model"]["training"].get("label_noise"))["model"]["args"] = {"width": 64}
    with pytest.raises(ResultError, match="beyond labels and seed"):
        study(wider, "unet-small", "nucleus@2")
    # a defended training of the same model is left out of the study, as it always was, not an error
    defended = json.loads(json.dumps(entries[0]))
    defended["model"]["training"]["defense"] = "pgd-at"
    defended["model"]["training"]["recipe"]["defense"] = "pgd-at"
    assert study(entries + [defended], "unet-small", "nucleus@2")["kinds"]


def test_a_study_on_unpinned_weights_is_marked_and_not_counted_in_the_findings():
    from fmbench.noise_readme import label_noise_markdown

    entries = _nucleus_study_entries()
    counted = label_noise_markdown(entries)
    assert "Against Yu et al.'s 20 %" in counted and "unpinned" not in counted
    loose = label_noise_markdown([{**e, "_pinned": False} for e in entries])
    assert "unet-small *(unpinned weights: not counted below)*" in loose and "Against Yu" not in loose


def test_a_training_command_records_its_label_noise_as_the_recipe_writes_it():
    """``--label-noise boundary:0.2`` trains ``boundary:0.2:2``; the command recorded beside it says
    so too, since the track registry and validation compare the two as text."""
    from fmbench.cli.run import _canonical_noise

    assert _canonical_noise("fmbench train --model unet-small --label-noise boundary:0.2 --seed 1",
                            "boundary:0.2:2") == "fmbench train --model unet-small --label-noise boundary:0.2:2 --seed 1"
    assert _canonical_noise("fmbench train --label-noise=boundary:0.2", "boundary:0.2:2") == \
        "fmbench train --label-noise boundary:0.2:2"
    assert _canonical_noise("fmbench train --seed 1", None) == "fmbench train --seed 1"


def test_the_readme_summary_says_what_its_counts_cover(monkeypatch):
    """The README's counts in brackets (losses beyond the luck bars) cover only the studies that have
    bars, and say so; several replicates of one setting are all reported, each against its own kind
    and severity; a bound on the loss at 20 % is never negative (a review's findings)."""
    import copy

    import fmbench.noise_study as ns
    from fmbench.noise_readme import label_noise_markdown

    real = ns.study(_nucleus_study_entries(), "unet-small", "nucleus@2")
    bare = copy.deepcopy(real)  # the same study as if it had one exact-label training: no floor, no bars
    bare.update(floor=None, luck_bar=None, luck_bar_same_seed=None, training_noise=[], replicates=[])
    for kind in bare["kinds"]:
        kind["first_loss_beyond_luck"] = None
        for row in kind["rows"][1:]:
            for k in ns.SCORES:
                row[f"{k}_test"]["beyond_luck"] = None
    n = len(real["kinds"])
    monkeypatch.setattr(ns, "studies", lambda entries: [("unet-small", "nucleus@2", "quick-v2", real),
                                                        ("unet-small", "other", "quick-v2", bare)])
    text = label_noise_markdown([{}])
    assert f"(in brackets, over the {n} settings with luck bars, only losses beyond them)" in text
    assert "Of the significant losses behind the table in the 1 study with bars —" in text
    assert "Training noise not measured yet for unet-small on other" in text
    # one setting replicated twice: both verdicts beside the finding, one setting counted
    twice = copy.deepcopy(real)
    rep = next(r for r in twice["replicates"] if r["corrupted_iou"]["grid"]["finding"] > 0)  # a gain: in the table
    other = copy.deepcopy(rep)
    other["seed"] = 2
    other["corrupted_iou"]["confirms"] = True
    other["corrupted_iou"]["own_seed"]["ci95"] = other["corrupted_iou"]["mean"]["ci95"] = \
        [abs(c) * rep["corrupted_iou"]["grid"]["finding"] + 0.001 * rep["corrupted_iou"]["grid"]["finding"]
         for c in (0.01, 0.02)]
    twice["replicates"].append(other)
    monkeypatch.setattr(ns, "studies", lambda entries: [("unet-small", "nucleus@2", "quick-v2", twice)])
    text = label_noise_markdown([{}])
    assert f"{len(real['replicates'])} setting" in text and f"({len(real['replicates']) + 1} trainings)" in text
    assert f"by seed {rep['seed']}; confirmed by seed 2)" in text
    # a 20 % interval wholly above 0 allows no loss, and is not said to allow a negative one
    above = copy.deepcopy(real)
    for kind in above["kinds"]:
        t = kind["rows"][1]["clean_iou_test"]
        t.update(significant_loss=False, ci95=[0.001, 0.004])
    monkeypatch.setattr(ns, "studies", lambda entries: [("unet-small", "nucleus@2", "quick-v2", above)])
    assert "its paired 95 % intervals exclude any loss of clean IoU" in label_noise_markdown([{}])
