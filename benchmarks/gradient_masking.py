"""Is a defended model's robustness real, or is its gradient masked?

    python benchmarks/gradient_masking.py                      # the nucleus pgd-at zoo models
    python benchmarks/gradient_masking.py --target lraspp-mbv3:nucleus@2/v2/pgd-at \\
        --surrogates lraspp-mbv3:nucleus@2/v2/seed2,unet-small:nucleus --json out.json
    python benchmarks/gradient_masking.py --target mypkg:MyNet=mynet_at.pt --dataset nucleus \\
        --entry leaderboard/mynet+pgd-at__nucleus__quick-v2.json --surrogates lraspp-mbv3:nucleus@2/v2/seed2 \\
        --baseline mypkg:MyNet=mynet.pt --baseline-entry leaderboard/mynet__nucleus__quick-v2.json

A model is ``NAME:WEIGHTS`` (a registered model and the name of its registered weights) or
``REF=CHECKPOINT`` (any model reference and a checkpoint file: your own training).

Adversarial training can make a model robust, or only make its input gradient useless to the
attacker (Athalye, Carlini & Wagner, ICML 2018; Carlini et al. 2019, "On evaluating adversarial
robustness").  The protocol's self-checks (``fmbench.selfcheck``: iterative beats single-step,
larger budgets hurt more, attacks beat random noise) run on every entry; this script adds the
three checks that cost too much to run on every entry, on the protocol's test images at the
reference condition:

1. **a stronger white-box attack** -- APGD (cross-entropy and SEA's masked cross-entropy,
   ``--steps`` gradients each, ``--restarts`` random starts) at the headline budget, against the worst case the
   entry recorded: a large further drop means the protocol's attacks under-state the threat;
2. **transfer (black-box)** -- adversarial images crafted on other models (``--surrogates``:
   undefended and defended networks; SegPGD, CosPGD and APGD on each) and scored on the target.
   A masked gradient shows as transfer attacks that beat the white-box ones: the target's own
   gradient then leads the attacker astray;
3. **unbounded budget** -- APGD at budgets rising to 1 (L-inf), per image the lowest IoU of its
   losses (``--sweep-losses``: cross-entropy, masked cross-entropy and the targeted
   ``to-background``): any differentiable model's IoU must fall to about 0 as the budget grows; a
   plateau above 0 is a sign of masking.  Cross-entropy alone is not enough here: it can be met
   by calling every pixel foreground, which leaves IoU at the foreground share (0.23 on ER)
   however large the budget; the targeted loss asks for IoU 0 itself.

Each comparison prints the mean IoU difference with its paired 95 % bootstrap interval over
images; the verdict lists which checks flag masking.  Lower IoU = stronger attack.

``--record`` (default ``leaderboard/checks/gradient-masking.json``) keeps one record per checked
checkpoint (by state sha256, replacing an older record of the same weights): its per-image IoUs,
from which the leaderboard computes every comparison and the verdict beside the entries' own
per-image IoUs, to flag adversarially trained rows ``masking-unchecked`` or ``gradient-masking``
(``fmbench.leaderboard.masking``).  ``--record ''`` writes none.

    python benchmarks/gradient_masking.py --recheck [--n-images 2] [--target MODEL:WEIGHTS]

re-runs each record's clean IoUs, white-box APGD and budget sweep (the same random starts) on its
first images and compares them image by image with the record (``--tolerance``, 0.01): a
reviewer's check that a record someone sent was measured, not written.

    python benchmarks/gradient_masking.py --resweep [--target MODEL:WEIGHTS]

re-measures only the budget sweep of records whose sweep used fewer losses than
``--sweep-losses`` (records made before the targeted loss: cross-entropy alone), on all their
images, after checking that the weights and clean IoUs are the record's; the rest of the record
is kept as measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attack_strength import reference_batch  # noqa: E402

import fmbench  # noqa: E402
from fmbench.attack import frozen_params, track_gradients  # noqa: E402
from fmbench.files import read_json  # noqa: E402
from fmbench.leaderboard import masking  # noqa: E402
from fmbench.plugins import get_registry  # noqa: E402
from fmbench.protocol import AttackEntry  # noqa: E402
from fmbench.seeding import generators  # noqa: E402

# transfer surrogates: undefended models of other families (a CNN with a coarse output, a
# ConvNeXt, a ViT), the same architecture undefended, and any other adversarially trained model
SURROGATE_ARCHS = ("lraspp-mbv3", "upernet-convnext-atto", "dpt-vit-tiny")


def in_cache(ref: str) -> bool:
    """Whether ``MODEL:WEIGHTS``'s registered weights are in this machine's cache."""
    from fmbench.weights import weights_path

    name, weights = ref.split(":", 1)
    spec = get_registry().models.get(name)
    w = spec.weights.get(weights) if spec else None
    return w is not None and weights_path(w).is_file()


def board_plan(tier: str, board: Path = Path("leaderboard")) -> list[tuple[str, list[str], str | None]]:
    """The checks the board still lacks: each adversarially trained zoo entry of ``tier`` with no
    record of its weights, with surrogates and an undefended baseline (entries' exact weights in
    this cache, so the comparisons are with the board's own numbers): ``(target, surrogates,
    baseline)``."""
    records = masking.load(board)
    entries = [read_json(p) for p in sorted(board.glob(f"*__{tier}.json"))]

    def ref(e):
        return f"{e['model']['ref']}:{e['model'].get('weights')}" if e["model"].get("weights") else None

    plan = []
    for e in entries:
        target = ref(e)
        if target is None or masking.adversarial_defense(e) is None or masking.record_for(e, records) is not None:
            continue
        same_ds = [x for x in entries if x["dataset"]["ref"] == e["dataset"]["ref"] and ref(x) and ref(x) != target]
        plain = [x for x in same_ds if ((x["model"].get("training") or {}).get("defense") or "none") == "none"]
        base = next((ref(x) for x in plain if x["model"]["ref"] == e["model"]["ref"] and in_cache(ref(x))), None)
        sur = [next((ref(x) for x in plain if x["model"]["ref"] == a and in_cache(ref(x))), None) for a in SURROGATE_ARCHS]
        sur += [ref(x) for x in same_ds if masking.adversarial_defense(x) and in_cache(ref(x))]
        plan.append((target, list(dict.fromkeys(s for s in sur if s)), base))
    return plan
SWEEP = (8, 16, 32, 64, 128, 255)  # /255


def load(ref: str):
    if "=" in ref:  # REF=CHECKPOINT: a contributor's own training
        model, checkpoint = ref.rsplit("=", 1)
        return fmbench.load_model(model, checkpoint=checkpoint)
    name, weights = ref.split(":", 1)
    return fmbench.load_model(name, weights=weights)


def craft(attack, model, x, m, keys, eps, tag, batch):
    """Adversarial images against ``model`` and the gradient passes they took per image."""
    out, grads = [], 0
    for i in range(0, x.shape[0], batch):
        gens = generators(0, keys[i:i + batch], f"masking/{tag}")
        with track_gradients() as tr, frozen_params(model):
            out.append(attack(model, x[i:i + batch], m[i:i + batch], eps, gens).detach())
        grads += tr.report()["evaluations"]
    return torch.cat(out), grads / x.shape[0]


def score(model, x, m, batch):
    with torch.inference_mode():
        return torch.cat([fmbench.per_image_iou(fmbench.predict(model(x[i:i + batch])), m[i:i + batch])
                          for i in range(0, x.shape[0], batch)]).double().numpy()


def entry_path(ref: str, dataset_ref: str, tier: str, given: str | None = None) -> Path:
    """The checked-in entry of ``MODEL:WEIGHTS`` (``nucleus@2/v2/pgd-at`` -> ``MODEL+pgd-at__nucleus__TIER``);
    ``given`` (``--entry``) where the model is a checkpoint."""
    if given or "=" in ref:
        return Path(given or "")
    name, weights = ref.split(":", 1)
    parts = weights.split("/")
    suffix = f"+{parts[2]}" if len(parts) > 2 else ""
    return Path("leaderboard") / f"{name}{suffix}__{dataset_ref.split('@')[0]}__{tier}.json"


def bound_entry(entry_file: Path, sha, ids, clean, args, ref):
    """The entry the check compares with: of these weights, this protocol and these images, and
    its clean IoUs come back exactly -- else the comparison would mix two things."""
    if not entry_file.is_file():
        raise SystemExit(f"{entry_file}: no such entry (name it with --entry / --baseline-entry)")
    entry = read_json(entry_file)
    if (entry["model"].get("state_sha256"), entry["protocol"]["id"], entry["dataset"]["ref"]) != (sha, args.tier, ref):
        raise SystemExit(f"{entry_file}: not an entry of weights {str(sha)[:12]}... under {args.tier} on {ref}")
    why = masking.bound({"ids": ids, "clean": list(clean)}, entry, "this run")[1]  # as the leaderboard will bind it
    if why:
        raise SystemExit(f"{entry_file}: {why} (use all its images)")
    return entry


def white_box(reg, model, x, m, keys, eps, args):
    """APGD (cross-entropy and masked cross-entropy, ``--restarts`` random starts each) at ``eps``:
    per image the lowest IoU, and each loss's mean."""
    white = {}
    for loss in ("ce", "masked-ce"):
        best = None
        for r in range(args.restarts):
            atk = reg.build_attack(AttackEntry("apgd", (eps,), params=(("steps", args.steps), ("loss", loss))))
            adv, _ = craft(atk, model, x, m, keys, eps, f"white/{loss}/{r}", args.batch)
            s = score(model, adv, m, args.batch)
            best = s if best is None else np.minimum(best, s)
        white[f"apgd-{loss}"] = best
    return np.minimum(white["apgd-ce"], white["apgd-masked-ce"]), {k: float(v.mean()) for k, v in white.items()}


def sweep_iou(reg, model, x, m, keys, args, budgets=SWEEP):
    """Per budget, per image the lowest IoU of APGD with each of ``args.sweep_losses`` (cross-entropy
    keeps the random starts it had before the other losses, so a record made with it alone
    rechecks as it was made)."""
    out = {}
    for k in budgets:
        for loss in args.sweep_losses:
            params = (("steps", args.sweep_steps),) + ((("loss", loss),) if loss != "ce" else ())
            atk = reg.build_attack(AttackEntry("apgd", (k / 255,), params=params))
            tag = f"sweep/{k}" if loss == "ce" else f"sweep/{loss}/{k}"
            s = score(model, craft(atk, model, x, m, keys, k / 255, tag, args.batch)[0], m, args.batch)
            out[f"{k}/255"] = np.minimum(out[f"{k}/255"], s) if f"{k}/255" in out else s
    return out


def transfer_attacks(eps, steps):
    fast = (("steps", 10), ("rel_step", 2.5))
    return {"segpgd": AttackEntry("segpgd", (eps,), params=fast),
            "cospgd": AttackEntry("cospgd", (eps,), params=fast),
            "apgd-ce": AttackEntry("apgd", (eps,), params=(("steps", steps),))}


def _list(a):
    return [float(v) for v in a]


def check_target(reg, protocol, target, surrogates, args, baseline=None):
    """The three checks on one target (``MODEL:WEIGHTS``): its record (per-image IoUs) and what
    ``fmbench.leaderboard.masking.measure`` makes of it beside the entries; with ``baseline``
    (the same architecture undefended) the stronger white-box attack is run on it too, so the
    defence's gain can be read at both attack strengths."""
    weights = "" if "=" in target else target.split(":", 1)[1]
    if "=" in target and not args.dataset:
        raise SystemExit(f"{target}: a checkpoint needs --dataset")
    ref = protocol.dataset_ref(args.dataset or weights.split("/")[0].split("@")[0])
    loaded = load(target)
    model = loaded.module
    x, m, keys = reference_batch(protocol, ref, args.n_images)
    ids = [k[len(ref) + 1:] for k in keys]
    eps = 8 / 255
    clean = score(model, x, m, args.batch)
    entry = bound_entry(entry_path(target, ref, args.tier, args.entry), loaded.state_sha256, ids, clean, args, ref)
    rec = {"target": target, "state_sha256": loaded.state_sha256, "tier": args.tier, "dataset": ref,
           "n_images": int(x.shape[0]), "clean_iou": float(clean.mean()),
           "settings": {"steps": args.steps, "restarts": args.restarts, "sweep_steps": args.sweep_steps,
                        "sweep_losses": list(args.sweep_losses)}}
    t0 = time.perf_counter()

    # 1. stronger white box (and on the undefended baseline)
    white, rec["white_box"] = white_box(reg, model, x, m, keys, eps, args)
    pi = rec["per_image"] = {"ids": ids, "clean": _list(clean), "white_box": _list(white)}
    bentry = None
    if baseline:
        bl = load(baseline)
        bclean = score(bl.module, x, m, args.batch)
        bentry = bound_entry(entry_path(baseline, ref, args.tier, args.baseline_entry), bl.state_sha256, ids, bclean,
                             args, ref)
        bwhite, bmeans = white_box(reg, bl.module, x, m, keys, eps, args)
        rec["baseline"] = {"model": baseline, "state_sha256": bl.state_sha256, "white_box": bmeans,
                           "per_image": {"ids": ids, "clean": _list(bclean), "white_box": _list(bwhite)}}
        del bl

    # 2. transfer
    crafted = transfer_attacks(eps, args.steps)
    transfer, per_surrogate = None, {}
    for sref in surrogates:
        sloaded = load(sref)  # a weights name can be re-registered later: the record keeps which weights
        smodel = sloaded.module
        for tag, e in crafted.items():
            adv, _ = craft(reg.build_attack(e), smodel, x, m, keys, eps, f"transfer/{tag}", args.batch)
            s = score(model, adv, m, args.batch)
            per_surrogate[f"{sref} {tag}"] = {"on_target": float(s.mean()), "per_image": _list(s),
                                              "on_surrogate": float(score(smodel, adv, m, args.batch).mean()),
                                              "surrogate_sha256": sloaded.state_sha256}
            transfer = s if transfer is None else np.minimum(transfer, s)
        del smodel
    rec["transfer"] = per_surrogate
    rec["transfer_worst"] = float(transfer.mean())
    pi["transfer"] = _list(transfer)

    # 3. unbounded budget
    sweep = sweep_iou(reg, model, x, m, keys, args)
    rec["sweep"] = {k: float(v.mean()) for k, v in sweep.items()}
    pi["sweep"] = {k: _list(v) for k, v in sweep.items()}
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    problem = masking.record_problem(rec)
    if problem:
        raise SystemExit(f"{target}: the record would be refused: {problem}")
    return rec, masking.measure(rec, entry, bentry)


def recheck(reg, path: Path, args) -> int:
    """Re-run each record's clean IoUs, white-box APGD and budget sweep on its first
    ``--n-images`` images (the same random starts) and compare per image: 0 when all agree
    within ``--tolerance``."""
    bad = 0
    for sha, rec in masking.load(path.parent.parent).items():
        if args.target and rec["target"] not in args.target:
            continue
        loaded = load(rec["target"])
        if loaded.state_sha256 != sha:
            print(f"{rec['target']}: weights {loaded.state_sha256[:12]}... are not the checked {sha[:12]}...")
            bad += 1
            continue
        protocol = reg.protocol(rec["tier"])
        x, m, keys = reference_batch(protocol, rec["dataset"], args.n_images)
        n, pi = x.shape[0], rec["per_image"]
        if [k[len(rec["dataset"]) + 1:] for k in keys] != pi["ids"][:n]:
            print(f"{rec['target']}: the record's images are not the protocol's")
            bad += 1
            continue
        args.steps, args.restarts, args.sweep_steps = (rec["settings"][k] for k in ("steps", "restarts", "sweep_steps"))
        args.sweep_losses = masking.sweep_losses(rec)
        got = {"clean": score(loaded.module, x, m, args.batch),
               "white_box": white_box(reg, loaded.module, x, m, keys, 8 / 255, args)[0],
               **{f"sweep {k}": v for k, v in sweep_iou(reg, loaded.module, x, m, keys, args).items()}}
        want = {"clean": pi["clean"], "white_box": pi["white_box"], **{f"sweep {k}": v for k, v in pi["sweep"].items()}}
        kept = [k for k, v in rec["transfer"].items() if "per_image" in v]
        if not kept:
            print(f"{rec['target']}: the record keeps no transfer attack's per-image IoUs; transfer not rechecked")
        else:  # one transfer attack re-crafted on its surrogate (the first the record keeps per image)
            sref, tag = kept[0].rsplit(" ", 1)
            sloaded = load(sref)
            was = rec["transfer"][kept[0]].get("surrogate_sha256")
            if was is not None and was != sloaded.state_sha256:
                print(f"{rec['target']}: surrogate {sref} is now weights {sloaded.state_sha256[:12]}..., the record's "
                      f"were {str(was)[:12]}...; transfer not rechecked")
            else:
                adv, _ = craft(reg.build_attack(transfer_attacks(8 / 255, args.steps)[tag]), sloaded.module, x, m, keys,
                               8 / 255, f"transfer/{tag}", args.batch)
                got[f"transfer {kept[0]}"] = score(loaded.module, adv, m, args.batch)
                want[f"transfer {kept[0]}"] = rec["transfer"][kept[0]]["per_image"]
        gaps = {k: float(np.abs(got[k] - np.asarray(want[k][:n])).max()) for k in got}
        worst = max(gaps, key=gaps.get)
        ok = gaps[worst] <= args.tolerance
        bad += not ok
        print(f"{rec['target']} on {rec['dataset']} ({n} images): {'ok' if ok else 'MISMATCH'}, largest per-image "
              f"difference {gaps[worst]:.2g} ({worst}; tolerance {args.tolerance})")
    return 1 if bad else 0


def resweep(reg, path: Path, args, conditions: str) -> int:
    """Re-measure the budget sweep of each record made with fewer losses than ``--sweep-losses``,
    on all its images, once its weights and clean IoUs are the record's; keep the rest."""
    changed = []
    for sha, rec in masking.load(path.parent.parent).items():
        have = masking.sweep_losses(rec)
        if (args.target and rec["target"] not in args.target) or set(args.sweep_losses) <= set(have):
            continue
        loaded = load(rec["target"])
        if loaded.state_sha256 != sha:
            raise SystemExit(f"{rec['target']}: weights {loaded.state_sha256[:12]}... are not the checked {sha[:12]}...")
        x, m, keys = reference_batch(reg.protocol(rec["tier"]), rec["dataset"], rec["n_images"])
        pi = rec["per_image"]
        clean = score(loaded.module, x, m, args.batch)
        if [k[len(rec["dataset"]) + 1:] for k in keys] != pi["ids"] \
                or float(np.abs(clean - np.asarray(pi["clean"])).max()) > masking.SAME:
            raise SystemExit(f"{rec['target']}: its images or clean IoUs here are not the record's; run the whole check")
        args.sweep_steps = rec["settings"]["sweep_steps"]
        t0 = time.perf_counter()
        sweep = sweep_iou(reg, loaded.module, x, m, keys, args)
        old = rec["sweep"]
        rec["sweep"] = {k: float(v.mean()) for k, v in sweep.items()}
        pi["sweep"] = {k: _list(v) for k, v in sweep.items()}
        rec["settings"]["sweep_losses"] = list(args.sweep_losses)
        rec["sweep_remeasured"] = {"losses_before": have, "seconds": round(time.perf_counter() - t0, 1),
                                   "conditions": conditions, "date": time.strftime("%Y-%m-%d")}
        print(f"{rec['target']} on {rec['dataset']}: sweep with {', '.join(args.sweep_losses)} (was {', '.join(have)}): "
              + ", ".join(f"{k} {old[k]:.3f} -> {v:.3f}" for k, v in rec["sweep"].items()))
        problem = masking.record_problem(rec)
        if problem:
            raise SystemExit(f"{rec['target']}: the record would be refused: {problem}")
        changed.append(rec)
        update_record(path, [rec])  # one at a time: a long run keeps what it finished
    if not changed:
        print(f"every record's sweep already uses {', '.join(args.sweep_losses)}")
    return 0


def report(target, rec, mm):
    print(f"\n{target} on {rec['dataset']}: clean IoU {rec['clean_iou']:.3f} ({rec['seconds']:.0f} s)")
    sv = mm["stronger_vs_entry"]
    print(f"  entry's worst case @8/255       {mm['entry_worst_case']:.3f}")
    print(f"  + APGD (ce, masked-ce) white box {mm['white_box_worst']:.3f}  "
          f"{sv['diff']:+.3f} [{sv['ci95'][0]:+.3f}, {sv['ci95'][1]:+.3f}]")
    if "baseline" in mm:
        b = mm["baseline"]
        g = b["gain_vs_baseline"]
        print(f"  undefended {b['model']}: entry's worst case {b['entry_worst_case']:.3f}, with APGD "
              f"{b['white_box_worst']:.3f}; the defence's gain at that strength {g['diff']:+.3f} "
              f"[{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}]")
    for k, v in rec["transfer"].items():
        print(f"  transfer {k:<52} on target {v['on_target']:.3f} (on surrogate {v['on_surrogate']:.3f})")
    tv = mm["transfer_vs_white"]
    print(f"  transfer worst {mm['transfer_worst']:.3f} vs white-box worst: {tv['diff']:+.3f} "
          f"[{tv['ci95'][0]:+.3f}, {tv['ci95'][1]:+.3f}]")
    print(f"  budget sweep (APGD, lowest of {', '.join(rec['settings']['sweep_losses'])}): " + ", ".join(f"{k} {v:.3f}" for k, v in rec["sweep"].items()))
    print("  verdict: " + ("; ".join(mm["findings"]) or "no sign of gradient masking")
          + ("; the protocol's attacks under-state the threat" if mm["under_stated"] else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", action="append", help="MODEL:WEIGHTS (repeatable); default: every adversarially "
                    "trained entry of --tier with no check on record (board_plan)")
    ap.add_argument("--surrogates", help="MODEL:WEIGHTS,... (default: per target, see board_plan)")
    ap.add_argument("--baseline", help="MODEL:WEIGHTS: the same architecture undefended, attacked as strongly "
                    "(default: see board_plan)")
    ap.add_argument("--tier", default="quick-v2")  # (its own name: entries are found by it)
    ap.add_argument("--dataset", help="the dataset (default: read from the weights' name)")
    ap.add_argument("--entry", help="the target's leaderboard entry (default: found by its weights' name)")
    ap.add_argument("--baseline-entry", help="the baseline's leaderboard entry (default: found by its weights' name)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--restarts", type=int, default=2)
    ap.add_argument("--sweep-steps", type=int, default=15)
    ap.add_argument("--sweep-losses", default=",".join(masking.SWEEP_LOSSES),
                    help=f"APGD losses of the budget sweep, per image the lowest IoU (default {','.join(masking.SWEEP_LOSSES)})")
    ap.add_argument("--n-images", type=int, help="images (default: all of the protocol's; --recheck: 2)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json", help="write the measurements here")
    ap.add_argument("--record", default="leaderboard/checks/gradient-masking.json",
                    help="the leaderboard's check records to update ('' for none)")
    ap.add_argument("--dry-run", action="store_true", help="print the checks it would run, and stop")
    ap.add_argument("--recheck", action="store_true", help="re-run part of the records on --n-images images")
    ap.add_argument("--resweep", action="store_true", help="re-measure the sweep of records made with fewer "
                    "--sweep-losses (e.g. cross-entropy alone)")
    ap.add_argument("--tolerance", type=float, default=0.01, help="--recheck: largest per-image IoU difference")
    args = ap.parse_args()
    args.sweep_losses = tuple(v for v in args.sweep_losses.split(",") if v)
    if not args.sweep_losses or not set(args.sweep_losses) <= set(masking.SWEEP_LOSSES):
        raise SystemExit(f"--sweep-losses: choose from {', '.join(masking.SWEEP_LOSSES)}")
    reg = get_registry()
    if args.recheck:
        args.n_images = args.n_images or 2
        raise SystemExit(recheck(reg, Path(args.record), args))
    conditions = (f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} "
                  f"threads; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    if args.resweep:
        raise SystemExit(resweep(reg, Path(args.record), args, conditions))
    protocol = reg.protocol(args.tier)
    args.n_images = args.n_images or protocol.n_images
    print(f"# {conditions}; {args.tier}, {args.n_images} images; APGD {args.steps} steps x {args.restarts} restarts")
    records = []
    plan = [(t, (args.surrogates or "").split(","), args.baseline) for t in args.target] if args.target \
        else board_plan(args.tier)
    if not plan:
        print(f"every adversarially trained {args.tier} entry has its check on record")
    for target, surrogates, baseline in plan:
        if not any(surrogates):
            raise SystemExit(f"{target}: name its transfer surrogates with --surrogates MODEL:WEIGHTS,...")
        if ":" in target and "=" not in target and not in_cache(target):
            print(f"{target}: its weights are not in this cache; skipped")
            continue
        print(f"{target}: surrogates {', '.join(s for s in surrogates if s)}; undefended baseline {baseline or 'none'}")
        if args.dry_run:
            continue
        rec, mm = check_target(reg, protocol, target, [s for s in surrogates if s], args, baseline)
        report(target, rec, mm)
        rec.update(conditions=conditions, date=time.strftime("%Y-%m-%d"))
        records.append(rec)
        if args.json:  # after each target: a long run keeps what it finished
            write(Path(args.json), {"tier": args.tier, "conditions": conditions, "records": records})
        if args.record:
            update_record(Path(args.record), [rec])


def write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def update_record(path: Path, records: list[dict]) -> None:
    """Merge ``records`` into the leaderboard's check file (one per checkpoint), checked by the
    same reader the leaderboard uses before it replaces the file."""
    doc = json.loads(path.read_text()) if path.is_file() else {"kind": masking.KIND, "records": []}
    doc["method"] = ("benchmarks/gradient_masking.py on the protocol's test images at the reference condition: "
                     "APGD (ce, masked-ce) with restarts at 8/255 against the entry's recorded worst case; transfer "
                     "attacks (SegPGD, CosPGD, APGD crafted on other models) against the white-box worst case; APGD at "
                     "budgets up to 1, per image the lowest IoU of the losses in settings.sweep_losses (absent: "
                     "cross-entropy alone). Flags: transfer beats white box (paired 95 % bootstrap interval below 0), IoU "
                     f"at budget 1 at or above {masking.UNBOUNDED_IOU}, IoU rising with the budget, a stronger attack lowering it more than the same architecture undefended; "
                     "the record holds per-image IoUs "
                     "and the leaderboard computes every comparison and verdict from them and the entries "
                     "(fmbench.leaderboard.masking.measure)")
    new = {r["state_sha256"] for r in records}
    doc["records"] = [r for r in doc["records"] if r["state_sha256"] not in new] + records
    with tempfile.TemporaryDirectory() as tmp:  # read back by the leaderboard's reader before it replaces the file
        write(Path(tmp) / masking.FILE, doc)
        masking.load(tmp)
    write(path, doc)
    print(f"check records: {path} ({len(doc['records'])})")


if __name__ == "__main__":
    main()
