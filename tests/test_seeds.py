"""Seeds of one architecture: pooled into one leaderboard row with their spread, a lead inside
that spread flagged, and the share of a ranking that is architecture rather than luck."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from fmbench import scores
from fmbench.agreement import seed_agreement
from fmbench.analysis import across_entries
from fmbench.files import read_json
from fmbench.leaderboard.rank import groups, pool_seeds, rows

from .test_integrity import _own_run

BOARD = Path(__file__).resolve().parents[1] / "leaderboard"
ARCHS = ("unet-r18", "fpn-r18", "segformer-b0", "lraspp-mbv3")


def entry(model: str, dataset: str = "er") -> dict:
    return read_json(BOARD / f"{model}__{dataset}__quick-v1.json")


def reseeded(e: dict, seed: int, shift: float) -> dict:
    """``e`` as if trained with another seed: every image's IoU under attack moved by ``shift``."""
    out = copy.deepcopy(e)
    out["model"]["training"]["seed"] = seed
    for c in out["conditions"]:
        if c["kind"] == "attack":
            out["per_image"]["iou"][c["id"]] = [float(np.clip(v + shift, 0, 1)) for v in out["per_image"]["iou"][c["id"]]]
    out["scores"] = scores.compute(out["conditions"], out["per_image"]["iou"])
    return out


def test_seeds_pool_into_one_row_with_their_spread():
    e0 = entry("unet-r18")
    runs = [e0, reseeded(e0, 1, -0.05), reseeded(e0, 2, -0.10)]
    robust = [r["scores"]["robust_iou"]["value"] for r in runs]
    pooled = pool_seeds(runs)
    assert pooled["seeds"] == [0, 1, 2]
    assert pooled["scores"]["robust_iou"]["value"] == pytest.approx(np.mean(robust))
    assert pooled["seed_spread"]["robust_iou"]["sd"] == pytest.approx(np.std(robust, ddof=1))
    assert pooled["seed_spread"]["clean_iou"]["sd"] == pytest.approx(0.0)  # attacks moved, clean did not
    lo, hi = pooled["scores"]["robust_iou"]["ci95"]
    assert lo < pooled["scores"]["robust_iou"]["value"] < hi
    # a relative score: the seeds' mean, with an interval from resampling the images of every seed alike
    adv = pooled["scores"]["adversarial_robustness"]
    assert adv["value"] == pytest.approx(np.mean([r["scores"]["adversarial_robustness"]["value"] for r in runs]))
    lo, hi = adv["ci95"]
    assert lo < adv["value"] < hi and hi - lo < 2 * (runs[0]["scores"]["adversarial_robustness"]["ci95"][1] -
                                                     runs[0]["scores"]["adversarial_robustness"]["ci95"][0])
    # a family's scores are pooled too (compare ranks by them), not seed 0's copied
    for fam, block in pooled["scores"]["families"].items():
        for sub in ("iou", "headline_iou"):
            if sub in block:
                want = np.mean([r["scores"]["families"][fam][sub]["value"] for r in runs])
                assert block[sub]["value"] == pytest.approx(want, abs=1e-9), (fam, sub)
    one = scores.pooled_relative(runs[:1], "adversarial_robustness")
    assert one == runs[0]["scores"]["adversarial_robustness"]  # one seed: the entry's own score and interval
    (g,) = groups(runs + [entry("fpn-r18")])
    labels = [r["model"] for r in rows(g)]
    assert "unet-r18 (3 seeds)" in labels and len(labels) == 2  # one row per architecture
    row = next(r for r in rows(g) if r["model"] == "unet-r18 (3 seeds)")
    assert row["seeds"] == [0, 1, 2] and row["seed_spread"]["robust_iou"]["n"] == 3


def test_a_lead_inside_the_seed_spread_is_flagged():
    a0, b0 = entry("segformer-b0", "nucleus"), entry("upernet-convnext-atto", "nucleus")
    gap = a0["scores"]["robust_iou"]["value"] - b0["scores"]["robust_iou"]["value"]
    assert abs(gap) < 0.02  # two architectures within 0.02 of each other on v1 nucleus
    top, low = (a0, b0) if gap > 0 else (b0, a0)
    # seeds that move the top one by +-0.05: its lead is noise
    noisy = [top, reseeded(top, 1, 0.05), reseeded(top, 2, -0.05)]
    (g,) = groups(noisy + [low])
    first = rows(g)[0]
    assert "inside-seed-spread" in first["flags"]
    reason = next(f["reason"] for f in g["flags"][first["model"]] if f["flag"] == "inside-seed-spread")
    assert "typical spread" in reason  # the other row has one seed: the measured typical spread stands in
    # a lead far larger than the spread is not flagged
    (g,) = groups([reseeded(top, s, 0.001 * s) for s in range(3)] + [reseeded(low, 0, -0.3)])
    assert "inside-seed-spread" not in rows(g)[0]["flags"]


def test_seed_agreement_separates_architecture_from_luck():
    base = {a: entry(a) for a in ARCHS}
    # seeds that keep each architecture's place: the ranking is the architectures'
    steady = [reseeded(e, s, 0.002 * s) for e in base.values() for s in range(3)]
    got = seed_agreement(steady)
    assert got["architectures"] == sorted(ARCHS) and got["seeds"] == [0, 1, 2]
    r = got["scores"]["robust_iou"]
    assert r["icc"] > 0.9 and r["seed_rank_correlation"] == pytest.approx(1.0) and r["pairs_stable"] == 1.0
    # seeds that shuffle them: luck
    rng = np.random.default_rng(0)
    shuffled = [reseeded(e, s, float(rng.normal(0, 0.2))) for e in base.values() for s in range(3)]
    r = seed_agreement(shuffled)["scores"]["robust_iou"]
    assert r["icc"] < 0.5 and r["pairs_stable"] < 1.0
    with pytest.raises(Exception, match="at least 3 architectures"):
        seed_agreement([base["unet-r18"], reseeded(base["unet-r18"], 1, 0.0)])
    # every reading has a 95 % interval over resampled architectures that holds it
    for key in ("icc", "seed_rank_correlation", "pairs_stable"):
        lo, hi = r[f"{key}_ci95"]
        assert lo <= r[key] + 1e-9 and r[key] - 1e-9 <= hi
    assert r["icc_ci95"][1] - r["icc_ci95"][0] > got["scores"]["robust_iou"]["icc_ci95"][1] - \
        got["scores"]["robust_iou"]["icc_ci95"][0]  # luck: a wider interval than steady seeds give
    # the same readings as the textbook formulas
    from scipy import stats

    from fmbench.agreement import icc1

    table = np.array([[e["scores"]["robust_iou"]["value"] for e in shuffled[i * 3:(i + 1) * 3]] for i in range(4)])
    msb = 3 * ((table.mean(1) - table.mean()) ** 2).sum() / 3
    msw = ((table - table.mean(1, keepdims=True)) ** 2).sum() / 8
    assert r["icc"] == pytest.approx((msb - msw) / (msb + 2 * msw)) == pytest.approx(icc1(list(table)))
    rhos = [stats.spearmanr(table[:, a], table[:, b])[0] for a, b in ((0, 1), (0, 2), (1, 2))]
    assert r["seed_rank_correlation"] == pytest.approx(np.mean(rhos))
    # analyze across entries: one point per architecture, its seeds averaged
    data = across_entries(steady)
    assert len(data["labels"]) == 4 and all(lab.endswith("(3 seeds)") for lab in data["labels"])


def test_analyze_seeds_and_the_leaderboard_on_seeded_entries(tmp_path, cli):
    """Seeded entries as files (each seed a copy: an entry's every field is checked against its
    per-image values, so only the seed changes; the copies are of a user's model -- a registered
    model's entry must describe its registered training, test_integrity): they validate, the table
    pools them into one row per architecture, `analyze --seeds` measures (the statistics: the
    tests above)."""
    import json
    import shutil

    shutil.copytree(BOARD / "baselines", tmp_path / "baselines")
    for a in ARCHS[:3]:
        for s in range(3):
            e = entry(a)
            e["model"]["training"]["seed"] = s
            e["model"]["training"]["command"] = e["model"]["training"]["command"].replace("--seed 0", f"--seed {s}")
            e["model"]["ref"] = f"mynets:{a.replace('-', '_')}"
            e["model"]["weights_sha256"] = e["model"]["state_sha256"] = f"{a}{s}".encode().hex().ljust(64, "0")
            # each seed its own run: its IoUs under corruptions and attacks moved (identical runs are one row)
            (tmp_path / f"{a}{'+seed%d' % s if s else ''}__er__quick-v1.json").write_text(json.dumps(_own_run(e, s)))
    r = cli("leaderboard", "validate", str(tmp_path))
    assert r.returncode == 0, r.stderr + r.stdout
    r = cli("leaderboard", "--dir", str(tmp_path), "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("(3 seeds)") == 3 and ",3," in r.stdout
    r = cli("analyze", "--dir", str(tmp_path), "--seeds", "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["seeds"] == [0, 1, 2] and got["scores"]["clean_iou"]["sd"] == pytest.approx(0.0)


def test_the_zoo_docs_agreement_table_reads_seed_agreement():
    """docs/zoo.md's 'how much of the ranking is architecture' table: one row per score with the
    measured ICC, rank correlation and stable pairs; a dataset short of seeds says why."""
    import sys

    sys.path.insert(0, str(BOARD))
    import zoo_tables

    base = {a: entry(a) for a in ARCHS}
    steady = [reseeded(e, s, 0.002 * s) for e in base.values() for s in range(3)]
    text = zoo_tables.agreement_table(steady + [entry("unet-r18", "nucleus")])
    got = seed_agreement(steady)["scores"]["robust_iou"]
    icc = f"{got['icc']:.2f} [{got['icc_ci95'][0]:.2f}, {got['icc_ci95'][1]:.2f}]"
    assert f"| er | robust IoU | 4 × 3 | {icc} | 1.00 [1.00, 1.00] (3 seed pairs) | 100% [100%, 100%] of 6 |" in text
    assert "nucleus: seed agreement needs at least 3 architectures with 2 or more seeds; found 0." in text
    assert "*er:* what survives a re-training: clean IoU is mostly the architecture" in text
    assert f"robust IoU is mostly the architecture (ICC {icc}; 100% of 6 pairs ordered alike by every seed)" in text
    # seeds that scatter as much as the architectures do: the words follow the intervals
    g = {"scores": {"robust_iou": {**got, "icc": 0.1, "icc_ci95": [-0.3, 0.6]}}}
    assert "robust IoU is not measurably the architecture" in zoo_tables.reading(g)
    g["scores"]["robust_iou"]["icc_ci95"] = [0.2, 0.9]
    assert "robust IoU is partly the architecture" in zoo_tables.reading(g)


def test_the_seed_table_adds_the_exact_label_trainings_of_models_the_campaign_does_not_train(tmp_path):
    """unet-small's seeds come from the label-noise study's exact-label entries (same train
    command); noisy-label entries, zoo models and other protocols stay out, and they never pool
    with the shipped model's own row."""
    import json
    import sys

    sys.path.insert(0, str(BOARD))
    import zoo_tables

    src = BOARD / "label-noise"
    for f in src.glob("unet-small+labels-exact*__nucleus__quick-v2.json"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    noisy = json.loads(next(src.glob("unet-small+labels-boundary-0.2-*__nucleus__quick-v2.json")).read_text())
    (tmp_path / "unet-small+labels-exact+seed9__nucleus__quick-v2.json").write_text(json.dumps(noisy))  # misnamed
    got = zoo_tables.exact_label_rows("quick-v2", tmp_path)
    seeds = sorted(json.loads(f.read_text())["model"]["training"].get("seed", 0)
                   for f in src.glob("unet-small+labels-exact*__nucleus__quick-v2.json"))
    assert len(seeds) >= 3 and seeds == list(range(len(seeds)))  # the study's exact-label trainings: 0, 1, 2, ...
    assert sorted(r["seed"] for r in got) == seeds and {r["note"] for r in got} == {"exact-label study"}
    assert zoo_tables.exact_label_rows("quick-v1", tmp_path) == []
    shipped = {"model": "unet-small", "dataset": "nucleus", "seed": 0, "defense": "none", "clean_iou": 0.5,
               "corruption_robustness": 0.5, "adversarial_robustness": 0.5, "robust_iou": 0.5}
    text = zoo_tables.seed_table([shipped] + got)
    assert f"| `unet-small` (exact-label study) | nucleus | {len(seeds)} ({', '.join(map(str, seeds))}) |" in text
    assert "| `unet-small` | " not in text


def test_compare_ranks_against_rows_of_pooled_seeds_as_the_leaderboard_does():
    from fmbench.leaderboard.compare import compare

    e0 = entry("unet-r18")
    # one lucky seed well above the others: ranked seed by seed, it would be "the best"
    runs = [e0, reseeded(e0, 1, 0.30), reseeded(e0, 2, 0.0)]
    others = [entry(m) for m in ARCHS[1:]]
    mine = reseeded(entry("fpn-r18"), 5, 0.0)  # a user's re-run of fpn-r18 with another seed
    data = compare(mine, runs + others)
    # unet-r18's three seeds are one row; fpn-r18's seed 0 is the result's own row, not a competitor
    assert data["n_entries"] == len(ARCHS) - 1 and data["own_entry"]
    robust = next(r for r in data["rows"] if r["metric"] == "robust_iou")
    pooled = pool_seeds(runs)["scores"]["robust_iou"]["value"]
    board = [pooled] + [o["scores"]["robust_iou"]["value"] for o in others if o["model"]["ref"] != "fpn-r18"]
    assert robust["rank"] == 1 + sum(1 for v in board if v > robust["yours"])
    named = [x for x in (robust["best"], robust["above"], robust["below"]) if x]
    seeded = [x for x in named if x["model"] == "unet-r18 (3 seeds)"]
    assert all(x["score"]["value"] == pytest.approx(pooled) for x in seeded)
    assert not any("seed 1" in x["model"] for x in named)
    # a difference to a pooled row is paired on the per-image seed mean, and said to be inside
    # the seed spread where it is
    r = next(r for r in compare(runs[2], runs[:2] + others)["rows"] if r["metric"] == "robust_iou")
    x = r["own"]  # its own architecture's other seeds: its own row, never a competitor
    assert x["model"] == "unet-r18 (2 seeds)"
    assert all(v is None or "unet-r18" not in v["model"] for v in (r["best"], r["above"], r["below"]))
    two = pool_seeds(runs[:2])
    assert x["score"]["value"] == pytest.approx(two["scores"]["robust_iou"]["value"])
    sd = two["seed_spread"]["robust_iou"]["sd"]
    assert sd > 0.1 and abs(x["diff"]) < sd and x["within_seeds"] is True
    d = scores.paired_difference(scores.per_image(runs[2], "robust_iou"), scores.per_image(two, "robust_iou"))
    assert x["ci95"] == d["ci95"]  # paired on the per-image seed mean


def test_the_csv_of_a_pooled_row_names_every_seeds_weights():
    from fmbench.leaderboard.render import render_csv

    e0 = entry("unet-r18")
    runs = [e0, reseeded(e0, 1, -0.05), reseeded(e0, 2, -0.10)]
    for k, r in enumerate(runs):
        r["model"]["weights_sha256"] = f"{k}" * 64
    text = render_csv(groups(runs + [entry("fpn-r18")]))
    line = next(x for x in text.splitlines() if "unet-r18 (3 seeds)" in x)
    assert " ".join(f"{k}" * 64 for k in range(3)) in line


def test_analyze_resamples_training_seeds_inside_architectures():
    from fmbench.analysis import correlate, seed_boot

    # one seed each: exactly the plain bootstrap over architectures
    x, y = [0.1, 0.5, 0.3, 0.9, 0.7], [0.2, 0.4, 0.1, 0.8, 0.9]
    b = seed_boot({"x": [[v] for v in x], "y": [[v] for v in y]}, 500, 3)
    assert correlate(x, y, n_boot=500, seed=3, boot=(b["x"], b["y"])) == correlate(x, y, n_boot=500, seed=3)
    # several seeds: each resampled value is a mean of that architecture's own seeds, and the
    # variables share the seeds drawn (a variable that is twice another stays twice it)
    seeds_x = [[0.1, 0.3], [0.5, 0.55, 0.6], [0.3], [0.9, 0.7], [0.7, 0.8]]
    b = seed_boot({"x": seeds_x, "y": [[2 * v for v in g] for g in seeds_x]}, 400, 0)
    assert b["x"].shape == (400, 5) and np.allclose(b["y"], 2 * b["x"])
    idx = np.random.default_rng(0).integers(0, 5, size=(400, 5))
    lo = np.array([min(g) for g in seeds_x])[idx]
    hi = np.array([max(g) for g in seeds_x])[idx]
    assert ((b["x"] >= lo - 1e-12) & (b["x"] <= hi + 1e-12)).all() and (b["x"] != lo).any()
    # seed noise widens the interval of the correlation of the seed means
    means = [float(np.mean(g)) for g in seeds_x]
    ys = [[m + d for d in (-0.3, 0.3)] for m in means]
    wide = seed_boot({"x": seeds_x, "y": ys}, 1000, 0)
    plain = correlate(means, [float(np.mean(g)) for g in ys], n_boot=1000, seed=0)["pearson"]["ci95"]
    noisy = correlate(means, [float(np.mean(g)) for g in ys], n_boot=1000, seed=0,
                      boot=(wide["x"], wide["y"]))["pearson"]["ci95"]
    assert noisy[1] - noisy[0] > plain[1] - plain[0]
