"""The label-noise study's statistics: accuracy and robustness against the rate of noisy training
masks, each rate tested against the model trained on exact masks, and judged against training luck.
For one model, dataset and protocol, the noisy-label entries of each kind (and severity) and the exact-label
entries (rate 0: each image's mean over their training seeds) are compared image by image: per rate, each
score with its 95 % bootstrap interval, the paired difference to rate 0 (mean, bootstrap interval), a two-sided
Wilcoxon signed-rank test Holm-corrected over the rates of the kind, and the matched-pairs rank-biserial
effect.  ``max_safe_rate`` is the largest rate up to which no rate shows a significant loss (:func:`study`);
``beyond_luck`` whether a difference exceeds the calibrated training-luck bars (:func:`ranktests.luck_bar`):
against the exact-label mean, and against the exact-label training of the noisy models' own seed.
The plot is :mod:`fmbench.noise_plot`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from . import scores
from .ranktests import holm, luck_bar, rank_biserial
from .errors import ResultError

SCORES = ("clean_iou", "clean_dice", "corrupted_iou", "robust_iou")
TESTED = ("clean_iou", "corrupted_iou", "robust_iou")  # the README's columns; Dice is a function of IoU
ALPHA = 0.05
LABELS = {"clean_iou": "clean IoU", "clean_dice": "clean Dice", "corrupted_iou": "corrupted IoU",
          "robust_iou": "robust IoU"}


def _per_image(entry: dict[str, Any], key: str) -> np.ndarray:
    """Per-image values of a study score.  Entries keep per-image IoU only; for one binary mask
    Dice = 2 IoU / (1 + IoU) exactly, so per-image clean Dice is computed from it."""
    v = scores.per_image(entry, "clean_iou" if key == "clean_dice" else key)
    assert v is not None
    return 2 * v / (1 + v) if key == "clean_dice" else v


def _score(entry: dict[str, Any], key: str) -> dict[str, Any]:
    return entry["scores"][key] if key in entry["scores"] else _mean_score(_per_image(entry, key))


def _mean_score(v: np.ndarray) -> dict[str, Any]:
    return {"value": float(v.mean()), "ci95": [round(c, 6) for c in scores.interval(v, scores.resamples(v.size))]}


def setting_of(entry: dict[str, Any]) -> tuple[str, float, float] | None:
    text = ((entry.get("model") or {}).get("training") or {}).get("label_noise")
    if not text:
        return None
    try:
        kind, rate, severity = str(text).split(":")
        return kind, float(rate), float(severity)
    except ValueError:
        raise ResultError(f"{entry['model'].get('ref')}: label-noise setting {text!r} is not KIND:RATE:SEVERITY "
                          "(`fmbench leaderboard validate` says more)") from None


def _test(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Paired comparison of per-image values ``a`` against ``b``: mean difference [95 % bootstrap],
    two-sided Wilcoxon signed-rank p (zero differences split) and the rank-biserial effect."""
    from scipy.stats import wilcoxon

    d = a - b
    paired = scores.paired_difference(a, b)
    p = float(wilcoxon(d, zero_method="zsplit").pvalue) if np.any(d != 0) else 1.0
    return {"diff": paired["diff"], "ci95": paired["ci95"], "p": p, "effect": rank_biserial(d)}


def _seed(e: dict[str, Any]) -> int:
    return int(e["model"]["training"].get("seed") or 0)


def _how_trained(entry: dict[str, Any]) -> str:
    """A training apart from its label noise and seed: model arguments, recipe (a field it predates
    at its default), data, protocol, precision."""
    from .recipe import Recipe

    t = entry["model"].get("training") or {}
    recipe = sorted((k, str(v)) for k, v in {**dataclasses.asdict(Recipe()), **(t.get("recipe") or {})}.items()
                    if k != "label_noise")
    return str((entry["model"].get("args"), recipe, t.get("dataset"), t.get("protocol"), bool(t.get("half"))))


def study(entries: list[dict[str, Any]], model: str, dataset: str) -> dict[str, Any]:
    """The study's table for ``model`` on ``dataset`` (one protocol), per noise kind (module docstring).

    A per-image test compares two *trained models*; with one training per rate it cannot tell the
    label noise from training luck.  So the reference (rate 0) is each image's mean over every
    exact-label training (seeds); each of those against the mean of the others gives the
    *training-noise floor* (per score, the largest |Δ|).  A rate's loss is significant when its
    Holm-corrected p < 0.05, its interval lies below 0, it exceeds the floor, **and** its interval
    against the exact-label training of the same seed (same initialisation and batch order) lies
    below 0 too: a reference's luck cannot make it (likewise a gain).  With one exact-label
    training the reference is that one and ``floor`` is ``None`` (not measured)."""
    mine = [e for e in entries if e["model"]["ref"] == model and e["dataset"]["ref"] == dataset]
    if not mine:
        here = sorted({e["model"]["ref"] for e in entries if e["dataset"]["ref"] == dataset})
        raise ResultError(f"no entries of {model} on {dataset} here (models: {', '.join(here) or 'none'})")
    hashes = {e["protocol"]["hash"] for e in mine}
    if len(hashes) > 1:
        raise ResultError(f"{model} on {dataset}: entries under {len(hashes)} protocols; choose one with --tier")
    base = [e for e in mine if setting_of(e) is None and (e["model"]["training"].get("defense") or "none") == "none"]
    noisy = [e for e in mine if setting_of(e) is not None
             and (e["model"]["training"].get("defense") or "none") == "none"]
    # the grid's trainings share one seed (the most common); a setting trained again with another seed is a replicate
    seeds = sorted({_seed(e) for e in noisy}, key=lambda s: (-sum(_seed(e) == s for e in noisy), s)) or [0]
    replicates = [e for e in noisy if _seed(e) != seeds[0]]
    noisy = [e for e in noisy if _seed(e) == seeds[0]]
    for group in (noisy, replicates):
        keys = [(setting_of(e), _seed(e)) for e in group]
        if len(set(keys)) < len(keys):
            raise ResultError(f"{model} on {dataset}: several noisy-label entries with one setting and seed; keep one")
    for e in replicates:
        if setting_of(e) not in {setting_of(f) for f in noisy}:
            raise ResultError(f"{model} on {dataset}: {setting_of(e)} with seed {_seed(e)} replicates a setting "
                              f"with no seed-{seeds[0]} training here")
        if not any(_seed(f) == _seed(e) for f in base):
            raise ResultError(f"{model} on {dataset}: no exact-label training with seed {_seed(e)} to compare its "
                              f"replicate {setting_of(e)} with")
    if not any(_seed(e) == seeds[0] for e in base):
        raise ResultError(f"{model} on {dataset}: no entry trained on exact labels (rate 0) with seed {seeds[0]} "
                          "to compare with")
    exact = sorted(base, key=_seed)
    twice = sorted({_seed(e) for e in exact if sum(_seed(f) == _seed(e) for f in exact) > 1})
    if twice:
        raise ResultError(f"{model} on {dataset}: several exact-label entries with seed {twice[0]}; keep one")
    ref = next(e for e in exact if _seed(e) == seeds[0])
    for e in base + noisy + replicates:
        if e["per_image"]["ids"] != ref["per_image"]["ids"]:
            raise ResultError(f"{model} on {dataset}: entries scored on other images than the rate-0 one")
        if _how_trained(e) != _how_trained(ref):  # the labels must be the only difference
            raise ResultError(f"{model} on {dataset}: {e.get('_path', 'an entry')} was trained otherwise than the rate-0 "
                              f"entry beyond labels and seed (model arguments, recipe, data, protocol or precision)")
    # the reference: each image's mean over every exact-label training (one seed's luck is not the baseline)
    reference = {k: np.mean([_per_image(e, k) for e in exact], axis=0) for k in SCORES}
    floor_tests: list[dict[str, Any]] = []
    if len(exact) > 1:  # each exact-label training against the mean of the others: training luck alone
        for e in exact:
            others = [f for f in exact if f is not e]
            floor_tests.append({"seed": _seed(e), **{k: _test(_per_image(e, k), np.mean([_per_image(f, k) for f in others],
                                                                                         axis=0)) for k in SCORES}})
    floor = {k: max(abs(t[k]["diff"]) for t in floor_tests) for k in SCORES} if floor_tests else None
    means = {k: [float(_per_image(e, k).mean()) for e in exact] for k in SCORES}
    bar = {k: luck_bar(means[k], ALPHA) for k in SCORES} if floor else None  # against the mean; and the same seed:
    pair = {k: luck_bar(means[k], ALPHA, pair=True) for k in SCORES} if floor else None
    kinds: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for e in noisy:
        s = setting_of(e)
        assert s is not None
        kinds.setdefault((s[0], s[2]), []).append(e)
    out: dict[str, Any] = {"model": model, "dataset": dataset, "protocol_id": ref["protocol"]["id"],
                           "n_images": ref["dataset"]["n_images"], "alpha": ALPHA, "seed": seeds[0],
                           "reference_seeds": [_seed(e) for e in exact], "training_noise": floor_tests,
                           "floor": floor, "luck_bar": bar, "luck_bar_same_seed": pair, "kinds": []}
    for (kind, severity), es in sorted(kinds.items()):
        es = sorted(es, key=lambda e: setting_of(e)[1])  # type: ignore[index]
        rows: list[dict[str, Any]] = [{"rate": 0.0, **{k: _score(ref, k) if len(exact) == 1 else _mean_score(reference[k])
                                                       for k in SCORES}}]
        tests: dict[str, list[dict[str, Any]]] = {k: [] for k in SCORES}
        for e in es:
            rows.append({"rate": setting_of(e)[1], **{k: _score(e, k) for k in SCORES}})  # type: ignore[index]
            for k in SCORES:  # against the mean of the exact-label trainings, and against the same seed's
                same = _test(_per_image(e, k), _per_image(ref, k))
                tests[k].append({**_test(_per_image(e, k), reference[k]), "same_seed": {
                    x: same[x] for x in ("diff", "ci95", "p")}})
        for k in SCORES:
            for t, adj in zip(tests[k], holm([t["p"] for t in tests[k]])):
                t["p_holm"], lo, hi = adj, t["same_seed"]["ci95"][0], t["same_seed"]["ci95"][1]
                t["beyond_floor"] = None if floor is None else bool(abs(t["diff"]) > floor[k])
                t["beyond_luck"] = _beyond(t["diff"], t["same_seed"]["diff"], k, bar, pair)
                t["significant_loss"] = bool(adj < ALPHA and t["ci95"][1] < 0 and t["beyond_floor"] is not False and hi < 0)
                t["significant_gain"] = bool(adj < ALPHA and t["ci95"][0] > 0 and t["beyond_floor"] is not False and lo > 0)
            for row, t in zip(rows[1:], tests[k]):
                row[f"{k}_test"] = t
        safe = {}
        for k in SCORES:
            limit = 0.0
            for row in rows[1:]:
                if row[f"{k}_test"]["significant_loss"]:
                    break
                limit = row["rate"]
            safe[k] = limit
        # a loss at some rate but none at a higher one: with one training per rate, a lead, not a threshold
        erratic = [k for k in SCORES if any(r[f"{k}_test"]["significant_loss"] and not all(
            h[f"{k}_test"]["significant_loss"] for h in rows[i + 1:]) for i, r in enumerate(rows[1:], 1))]
        # the first significant loss that is also beyond the calibrated training-luck bar (None: none)
        past_luck = {k: next((r["rate"] for r in rows[1:] if r[f"{k}_test"]["significant_loss"]
                              and r[f"{k}_test"]["beyond_luck"]), None) for k in SCORES} if bar else None
        out["kinds"].append({"kind": kind, "severity": severity, "rows": rows, "max_safe_rate": safe,
                             "not_monotone": erratic, "first_loss_beyond_luck": past_luck})
    out["replicates"] = [_replicate(e, next(f for f in exact if _seed(f) == _seed(e)), reference, out, bar, pair)
                         for e in sorted(replicates, key=lambda e: (setting_of(e), _seed(e)))]
    return out


def _beyond(against_mean: float, against_seed: float, k: str, bar: dict[str, float] | None,
            pair: dict[str, float] | None) -> bool | None:
    """Beyond both calibrated training-luck bars (:func:`ranktests.luck_bar`), on one side: the
    difference to the exact-label mean past ``bar``, and to the same-seed training past ``pair``."""
    if bar is None or pair is None:
        return None
    return bool(abs(against_mean) > bar[k] and abs(against_seed) > pair[k] and against_mean * against_seed > 0)


def _replicate(e: dict[str, Any], own: dict[str, Any], reference: dict[str, np.ndarray], out: dict[str, Any],
               bar: dict[str, float] | None, pair: dict[str, float] | None) -> dict[str, Any]:
    """A setting trained again with another seed (its own initialisation, batch order and noisy images),
    against the exact-label training of *its* seed and the exact-label mean, beside the grid's training
    of the setting.  It *confirms* the grid's significant loss or gain when both its intervals lie on
    the same side of 0; otherwise it does not (one more training's luck, or a smaller effect)."""
    kind, rate, severity = setting_of(e)  # type: ignore[misc]
    row = next(r for k in out["kinds"] if (k["kind"], k["severity"]) == (kind, severity)
               for r in k["rows"][1:] if r["rate"] == rate)
    rep: dict[str, Any] = {"kind": kind, "rate": rate, "severity": severity, "seed": _seed(e)}
    for k in SCORES:
        own_t, mean_t, grid = _test(_per_image(e, k), _per_image(own, k)), _test(_per_image(e, k), reference[k]), \
            row[f"{k}_test"]
        sign = -1 if grid["significant_loss"] else 1 if grid["significant_gain"] else 0
        rep[k] = {**_score(e, k), "own_seed": own_t, "mean": mean_t, "grid": {
            "diff": grid["diff"], "same_seed_diff": grid["same_seed"]["diff"], "finding": sign},
            "beyond_luck": _beyond(mean_t["diff"], own_t["diff"], k, bar, pair),
            "confirms": None if sign == 0 else bool(all(sign * c > 0 for t in (own_t, mean_t) for c in t["ci95"])),
            "reverses": bool(sign) and all(sign * c < 0 for t in (own_t, mean_t) for c in t["ci95"])}
    return rep


def studies(entries: list[dict[str, Any]]) -> list[tuple[str, str, str, dict[str, Any] | ResultError]]:
    """Every study in track entries, per model, dataset and protocol: ``(..., the study or why not)``."""
    keys = sorted({(e["model"]["ref"], e["dataset"]["ref"], e["protocol"]["id"]) for e in entries
                   if (e["model"].get("training") or {}).get("label_noise")})  # a malformed one: an error row
    out: list[tuple[str, str, str, dict[str, Any] | ResultError]] = []
    for model, dataset, pid in keys:
        mine = [e for e in entries if e["model"]["ref"] == model and e["dataset"]["ref"] == dataset
                and e["protocol"]["id"] == pid]
        try:
            out.append((model, dataset, pid, study(mine, model, dataset)))
        except ResultError as err:
            out.append((model, dataset, pid, err))
    return out


def safe_text(kind: dict[str, Any], key: str) -> str:
    """A kind's largest rate with no detected loss of ``key``; 0 % when the lowest rate measured lost."""
    v = kind["max_safe_rate"][key]
    return f"{v:.0%}" if v > 0 else f"0% (a loss at {kind['rows'][1]['rate']:.0%})"


def _test_text(t: dict[str, Any], p_key: str = "p_holm") -> str:
    return f"Δ {t['diff']:+.3f} [{t['ci95'][0]:+.3f}, {t['ci95'][1]:+.3f}], p {t[p_key]:.2g}, r {t['effect']:+.2f}"


def markdown(data: dict[str, Any]) -> str:
    """The study's table for one model and dataset (from :func:`study`): the training-noise
    floor, then per noise kind each score with its 95 % interval per rate, and against exact
    labels the paired difference [95 % interval], the Holm-corrected Wilcoxon p and the
    rank-biserial effect; a significant loss in bold."""
    ref_seeds = data.get("reference_seeds") or [data["seed"]]
    out = [f"**{data['model']} on {data['dataset']}** ({data['protocol_id']}, {data['n_images']} test images, "
           f"noisy-label trainings with seed {data['seed']}; rate 0 is "
           + (f"each image's mean over the exact-label trainings with seeds {', '.join(map(str, ref_seeds))})"
              if len(ref_seeds) > 1 else f"the exact-label training with seed {ref_seeds[0]})"), ""]
    if data["floor"] is None:
        out += ["*Training noise not measured* (no exact-label training with another seed): a difference below "
                "may be training luck rather than label noise; read it as a lead.", ""]
    else:
        n = len(data["training_noise"])
        out += [f"*Training noise*: each exact-label training against the mean of the other{'s' * (n > 2)} "
                "(uncorrected p). A difference must exceed the largest of these |Δ| (the floor) to count: a smaller "
                f"loss cannot count whatever its p-value, and a larger one counts only with its test. It is a heuristic "
                f"from {n} trainings, not a calibrated test: the noisy-label models share their seed (initialisation, "
                f"batch order) with the seed-{data['seed']} reference training, so a difference must also hold "
                f"against that training alone.", "",
                "| exact labels | " + " | ".join(LABELS[k] for k in SCORES) + " |", "|---|" + "---|" * len(SCORES)]
        for t in data["training_noise"]:
            out.append(f"| seed {t['seed']} − the others | " + " | ".join(_test_text(t[k], "p") for k in SCORES) + " |")
        out.append("| floor | " + " | ".join(f"{data['floor'][k]:.4f}" for k in SCORES) + " |")
        if data.get("luck_bar"):
            out.append("| 95 % training-luck bar | " + " | ".join(f"{data['luck_bar'][k]:.4f}" for k in SCORES) + " |")
            if data.get("luck_bar_same_seed"):
                out.append(f"| … against seed {data['seed']} alone | " + " | ".join(
                    f"{data['luck_bar_same_seed'][k]:.4f}" for k in SCORES) + " |")
            out += ["", f"*Training-luck bar*: the half-width of the 95 % prediction interval for one more exact-label "
                    f"training's mean score (Student t, {n - 1} degrees of freedom, from these {n}), and for the "
                    f"difference of two trainings (×√2/√(1+1/n)), which the difference to the seed-{data['seed']} training "
                    "must pass too (it shares the noisy models' seed): calibrated for exact-label training luck (normal), where "
                    "the floor is a heuristic (docs/label-noise.md, *How often can luck pass?*); a noisy-label training's "
                    "own luck is not in it (*Replicates*). A significant cell says whether it is beyond both; one "
                    "inside either is a lead."]
        out.append("")
    for kind in data["kinds"]:
        top = kind["rows"][-1]["rate"]
        safe = ", ".join(f"{LABELS[k]} {safe_text(kind, k)}" + (f" (floor {data['floor'][k]:.4f})" if data["floor"]
                                                                 else "") for k in kind["max_safe_rate"])
        erratic = kind.get("not_monotone") or []
        note = (f". A loss of {', '.join(LABELS[k] for k in erratic)} at one rate is not seen at every higher rate: "
                f"with one training per rate, no clean threshold (training luck beyond the floor?)"
                if erratic else "")
        lucky = kind.get("first_loss_beyond_luck")
        beyond = ("; first loss beyond the training-luck bar: " + ", ".join(
            f"{LABELS[k]} {'none' if lucky[k] is None else format(lucky[k], '.0%')}" for k in lucky)) if lucky else ""
        out += [f"*{kind['kind']}*, severity {kind['severity']:g}, rates measured up to {top:.0%} — largest rate with "
                f"no detected loss: {safe}{beyond}{note}", "",
                "| rate | " + " | ".join(LABELS[k] for k in SCORES) + " |", "|---:|" + "---|" * len(SCORES)]
        for row in kind["rows"]:
            cells = []
            for k in SCORES:
                sc = row[k]
                ci = sc.get("ci95")
                cell = f"{sc['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
                t = row.get(f"{k}_test")
                if t:
                    test = _test_text(t)
                    cell += "<br>" + (f"**{test}**" if t["significant_loss"] else
                                      f"*{test}* (gain)" if t["significant_gain"] else test)
                    if (t["significant_loss"] or t["significant_gain"]) and t.get("beyond_luck") is not None:
                        cell += " (beyond the luck bar)" if t["beyond_luck"] else " (inside the luck bar: a lead)"
                    if t.get("beyond_floor") is False and t["p_holm"] < ALPHA and not t["ci95"][0] <= 0 <= t["ci95"][1]:
                        cell += " (within training noise)"
                    elif t.get("same_seed") and t["p_holm"] < ALPHA and not t["ci95"][0] <= 0 <= t["ci95"][1] \
                            and not (t["significant_loss"] or t["significant_gain"]) and len(ref_seeds) > 1:
                        ss = t["same_seed"]
                        cell += (f" (not against seed {data['seed']} alone: Δ {ss['diff']:+.3f} "
                                 f"[{ss['ci95'][0]:+.3f}, {ss['ci95'][1]:+.3f}])")
                cells.append(cell)
            out.append(f"| {row['rate']:.0%} | " + " | ".join(cells) + " |")
        out.append("")
    if data.get("replicates"):
        out += [f"*Replicates*: a setting trained again with another seed (its own initialisation, batch order and "
                f"choice of noisy images), against the exact-label training of its seed and the exact-label mean; "
                f"beside it the seed-{data['seed']} training's differences (against seed {data['seed']}; against the "
                "mean). A significant seed-{0} finding is *confirmed* when both of the replicate's intervals lie on "
                "its side of 0.".replace("{0}", str(data["seed"])), "",
                "| setting | seed | score | value | against its seed | against the mean | grid | verdict |",
                "|---|---:|---|---:|---|---|---|---|"]
        for r in data["replicates"]:
            for k in TESTED:
                g, v = r[k]["grid"], r[k]["confirms"]
                verdict = ("confirms the " + ("loss" if g["finding"] < 0 else "gain")) if v else (
                    "does not confirm the " + ("loss" if g["finding"] < 0 else "gain")) if v is False else "—"
                other = g["finding"] * r[k]["own_seed"]["diff"] < 0  # the replicate went the other way
                verdict += (" (itself beyond the luck bars" + (", the other way)" if other else ")")) \
                    if r[k]["beyond_luck"] else ""
                out.append(f"| {r['kind']} {r['rate']:.0%} (severity {r['severity']:g}) | {r['seed']} | {LABELS[k]} | "
                           f"{r[k]['value']:.3f} | {_test_text(r[k]['own_seed'], 'p')} | {_test_text(r[k]['mean'], 'p')} | "
                           f"Δ {g['same_seed_diff']:+.3f}; {g['diff']:+.3f} | {verdict} |")
        out.append("")
    return "\n".join(out)
