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
3. **unbounded budget** -- APGD at budgets rising to 1 (L-inf): any differentiable model's IoU
   must fall to about 0 as the budget grows; a plateau above 0 is a sign of masking.

Each comparison prints the mean IoU difference with its paired 95 % bootstrap interval over
images; the verdict lists which checks flag masking.  Lower IoU = stronger attack.

``--record`` (default ``leaderboard/checks/gradient-masking.json``) keeps one record per checked
checkpoint (by state sha256, replacing an older record of the same weights): the leaderboard reads
it to flag adversarially trained rows ``masking-unchecked`` or ``gradient-masking``
(``fmbench.leaderboard.masking``).  ``--record ''`` writes none.
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
from attack_strength import ci, reference_batch  # noqa: E402

import fmbench  # noqa: E402
from fmbench.attack import frozen_params, track_gradients  # noqa: E402
from fmbench.plugins import get_registry  # noqa: E402
from fmbench.protocol import AttackEntry  # noqa: E402
from fmbench.seeding import generators  # noqa: E402

DEFAULT = {
    "lraspp-mbv3:nucleus@2/v2/pgd-at": "lraspp-mbv3:nucleus@2/v2/seed2,upernet-convnext-atto:nucleus@2/v2/seed2,"
                                       "dpt-vit-tiny:nucleus@2/v2/seed2,segformer-b0:nucleus@2/v2/pgd-at",
    "segformer-b0:nucleus@2/v2/pgd-at": "lraspp-mbv3:nucleus@2/v2/seed2,upernet-convnext-atto:nucleus@2/v2/seed2,"
                                        "dpt-vit-tiny:nucleus@2/v2/seed2,lraspp-mbv3:nucleus@2/v2/pgd-at",
}
BASELINE = {"lraspp-mbv3:nucleus@2/v2/pgd-at": "lraspp-mbv3:nucleus@2/v2/seed2"}  # undefended, in the cache
SWEEP = (8, 16, 32, 64, 128, 255)  # /255
UNBOUNDED_IOU = 0.05  # at budget 1 the IoU must fall below this


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


def compare(a, b):
    d = a - b
    lo, hi = ci(d)
    return {"diff": float(d.mean()), "ci95": [lo, hi]}


def entry_path(ref: str, dataset_ref: str, tier: str, given: str | None = None) -> Path:
    """The checked-in entry of ``MODEL:WEIGHTS`` (``nucleus@2/v2/pgd-at`` -> ``MODEL+pgd-at__nucleus__TIER``);
    ``given`` (``--entry``) where the model is a checkpoint."""
    if given or "=" in ref:
        return Path(given or "")
    name, weights = ref.split(":", 1)
    parts = weights.split("/")
    suffix = f"+{parts[2]}" if len(parts) > 2 else ""
    return Path("leaderboard") / f"{name}{suffix}__{dataset_ref.split('@')[0]}__{tier}.json"


def white_box(reg, model, sha, x, m, keys, ref, clean, eps, args, entry_file):
    """APGD (both losses, restarts) at ``eps``, per image combined with the entry's recorded worst
    case where the entry exists: ``(per-image worst, record fields, per-image drop below the
    entry's worst case or None)``.  The entry must be of these weights, this protocol and these
    images, and its clean IoUs must come back exactly: else the comparison would mix two things."""
    white = {}
    for loss in ("ce", "masked-ce"):
        best = None
        for r in range(args.restarts):
            atk = reg.build_attack(AttackEntry("apgd", (eps,), params=(("steps", args.steps), ("loss", loss))))
            adv, _ = craft(atk, model, x, m, keys, eps, f"white/{loss}/{r}", args.batch)
            s = score(model, adv, m, args.batch)
            best = s if best is None else np.minimum(best, s)
        white[f"apgd-{loss}"] = best
    worst = np.minimum(white["apgd-ce"], white["apgd-masked-ce"])
    out = {"white_box": {k: float(v.mean()) for k, v in white.items()}, "entry": None}
    out["white_box"]["worst"] = float(worst.mean())
    entry = json.loads(entry_file.read_text()) if entry_file.is_file() else None
    drop = None
    if entry:
        n = int(x.shape[0])
        ids = [k[len(ref) + 1:] for k in keys]
        if (entry["model"].get("state_sha256"), entry["protocol"]["id"], entry["dataset"]["ref"]) != (sha, args.tier, ref):
            raise SystemExit(f"{entry_file}: not an entry of weights {str(sha)[:12]}... under {args.tier} on {ref}")
        if entry["per_image"]["ids"][:n] != ids:
            raise SystemExit(f"{entry_file}: its per-image ids are not the images attacked here")
        recorded = np.array(entry["per_image"]["iou"]["worst-case@8/255"][:n], dtype=float)
        # the same images, the same reference condition: the entry's clean IoUs come back
        out["clean_vs_entry_max_abs"] = float(np.abs(clean - np.array(entry["per_image"]["iou"]["reference"][:n])).max())
        if out["clean_vs_entry_max_abs"] > 1e-6:
            raise SystemExit(f"{entry_file}: clean IoUs re-measured {out['clean_vs_entry_max_abs']:.2g} away from the "
                             f"entry's: not the entry's inputs")
        out["entry"], out["entry_worst_case"] = str(entry_file), float(recorded.mean())
        both = np.minimum(recorded, worst)
        out["stronger_vs_entry"] = compare(both, recorded)
        worst, drop = both, both - recorded
    out["white_box_worst"] = float(worst.mean())
    return worst, out, drop


def check_target(reg, protocol, target, surrogates, args, baseline=None):
    """The three checks on one target (``MODEL:WEIGHTS``) and their verdict; with ``baseline``
    (the same architecture undefended) the stronger white-box attack is run on it too, so the
    defence's gain can be read at both attack strengths."""
    weights = "" if "=" in target else target.split(":", 1)[1]
    if "=" in target and not args.dataset:
        raise SystemExit(f"{target}: a checkpoint needs --dataset")
    ref = protocol.dataset_ref(args.dataset or weights.split("/")[0].split("@")[0])
    loaded = load(target)
    model = loaded.module
    x, m, keys = reference_batch(protocol, ref, args.n_images)
    eps = 8 / 255
    rec = {"target": target, "state_sha256": loaded.state_sha256, "tier": args.tier, "dataset": ref,
           "n_images": int(x.shape[0])}
    clean = score(model, x, m, args.batch)
    rec["clean_iou"] = float(clean.mean())
    t0 = time.perf_counter()

    # 1. stronger white box (and on the undefended baseline)
    white_min, fields, drop = white_box(reg, model, loaded.state_sha256, x, m, keys, ref, clean, eps, args,
                                        entry_path(target, ref, args.tier, args.entry))
    rec.update(fields)
    extra_drop = None
    if baseline:
        bl = load(baseline)
        bclean = score(bl.module, x, m, args.batch)
        bworst, bfields, bdrop = white_box(reg, bl.module, bl.state_sha256, x, m, keys, ref, bclean, eps, args,
                                           entry_path(baseline, ref, args.tier, args.baseline_entry))
        rec["baseline"] = {"model": baseline, "clean_iou": float(bclean.mean()), **bfields,
                           "gain_vs_baseline": compare(white_min, bworst)}
        if drop is not None and bdrop is not None:  # does the stronger attack hurt the defence more?
            extra_drop = rec["baseline"]["extra_drop_vs_baseline"] = compare(drop, bdrop)
        del bl

    # 2. transfer
    fast = (("steps", 10), ("rel_step", 2.5))
    crafted = {"segpgd": AttackEntry("segpgd", (eps,), params=fast),
               "cospgd": AttackEntry("cospgd", (eps,), params=fast),
               "apgd-ce": AttackEntry("apgd", (eps,), params=(("steps", args.steps),))}
    transfer, per_surrogate = None, {}
    for sref in surrogates:
        smodel = load(sref).module
        for tag, e in crafted.items():
            adv, _ = craft(reg.build_attack(e), smodel, x, m, keys, eps, f"transfer/{tag}", args.batch)
            s = score(model, adv, m, args.batch)
            per_surrogate[f"{sref} {tag}"] = {"on_target": float(s.mean()),
                                              "on_surrogate": float(score(smodel, adv, m, args.batch).mean())}
            transfer = s if transfer is None else np.minimum(transfer, s)
        del smodel
    rec["transfer"] = per_surrogate
    rec["transfer_worst"] = float(transfer.mean())
    rec["transfer_vs_white"] = compare(transfer, white_min)
    # per image: where a transfer attack wins even when it loses on average
    rec["transfer_adds"] = compare(np.minimum(transfer, white_min), white_min)

    # 3. unbounded budget
    sweep, per_budget = {}, []
    for k in SWEEP:
        atk = reg.build_attack(AttackEntry("apgd", (k / 255,), params=(("steps", args.sweep_steps),)))
        adv, _ = craft(atk, model, x, m, keys, k / 255, f"sweep/{k}", args.batch)
        per_budget.append(score(model, adv, m, args.batch))
        sweep[f"{k}/255"] = float(per_budget[-1].mean())
    rec["sweep"] = sweep
    rec["seconds"] = round(time.perf_counter() - t0, 1)

    flags = []
    tv = rec["transfer_vs_white"]
    if tv["ci95"][1] < 0:
        flags.append(f"transfer attacks beat the white-box ones by {-tv['diff']:.3f} (masked gradient)")
    if sweep["255/255"] >= UNBOUNDED_IOU:
        flags.append(f"IoU {sweep['255/255']:.3f} at budget 1 (should reach ~0: masked gradient)")
    rises = [f"{a}/255 to {b}/255" for (a, pa), (b, pb) in zip(zip(SWEEP, per_budget), zip(SWEEP[1:], per_budget[1:]))
             if compare(pb, pa)["ci95"][0] > 0]  # paired over images: a rise beyond the random starts' noise
    if rises:
        flags.append(f"IoU rises with the budget ({', '.join(rises)})")
    if extra_drop is not None and extra_drop["ci95"][1] < 0:
        flags.append(f"a stronger white-box attack lowers it {-extra_drop['diff']:.3f} more than the same architecture "
                     f"undefended: the protocol's attacks favour the defence")
    rec["masking_flags"] = flags
    sv = rec.get("stronger_vs_entry")
    rec["under_stated"] = bool(sv and sv["ci95"][0] < -0.01 and sv["diff"] < -0.02)
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", action="append", help="MODEL:WEIGHTS (repeatable); default: the nucleus pgd-at models")
    ap.add_argument("--surrogates", help="MODEL:WEIGHTS,... (default: per target, see DEFAULT)")
    ap.add_argument("--baseline", help="MODEL:WEIGHTS: the same architecture undefended, attacked as strongly "
                    "(default: see BASELINE)")
    ap.add_argument("--tier", default="quick-v2")  # (its own name: entries are found by it)
    ap.add_argument("--dataset", help="the dataset (default: read from the weights' name)")
    ap.add_argument("--entry", help="the target's leaderboard entry (default: found by its weights' name)")
    ap.add_argument("--baseline-entry", help="the baseline's leaderboard entry (default: found by its weights' name)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--restarts", type=int, default=2)
    ap.add_argument("--sweep-steps", type=int, default=15)
    ap.add_argument("--n-images", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json", help="write the measurements here")
    ap.add_argument("--record", default="leaderboard/checks/gradient-masking.json",
                    help="the leaderboard's check records to update ('' for none)")
    args = ap.parse_args()
    reg = get_registry()
    protocol = reg.protocol(args.tier)
    conditions = (f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} "
                  f"threads; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    print(f"# {conditions}; {args.tier}, {args.n_images} images; APGD {args.steps} steps x {args.restarts} restarts")
    records = []
    for target in args.target or list(DEFAULT):
        surrogates = (args.surrogates or DEFAULT.get(target, "")).split(",")
        if not any(surrogates):
            raise SystemExit(f"{target}: name its transfer surrogates with --surrogates MODEL:WEIGHTS,...")
        rec = check_target(reg, protocol, target, [s for s in surrogates if s], args,
                           args.baseline if args.target else BASELINE.get(target))
        records.append(rec)
        print(f"\n{target} on {rec['dataset']}: clean IoU {rec['clean_iou']:.3f} ({rec['seconds']:.0f} s)")
        if "entry_worst_case" in rec:
            sv = rec["stronger_vs_entry"]
            print(f"  entry's worst case @8/255       {rec['entry_worst_case']:.3f} (clean IoUs re-measured within "
                  f"{rec['clean_vs_entry_max_abs']:.1e} of the entry's)")
            print(f"  + APGD (ce, masked-ce) white box {rec['entry_worst_case'] + sv['diff']:.3f}  "
                  f"{sv['diff']:+.3f} [{sv['ci95'][0]:+.3f}, {sv['ci95'][1]:+.3f}]")
        if "baseline" in rec:
            b = rec["baseline"]
            g = b["gain_vs_baseline"]
            print(f"  undefended {b['model']}: entry's worst case {b.get('entry_worst_case', float('nan')):.3f}, "
                  f"with APGD {b['white_box_worst']:.3f}; the defence's gain at that strength {g['diff']:+.3f} "
                  f"[{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}]")
        for k, v in rec["transfer"].items():
            print(f"  transfer {k:<52} on target {v['on_target']:.3f} (on surrogate {v['on_surrogate']:.3f})")
        tv = rec["transfer_vs_white"]
        print(f"  transfer worst {rec['transfer_worst']:.3f} vs white-box worst: {tv['diff']:+.3f} "
              f"[{tv['ci95'][0]:+.3f}, {tv['ci95'][1]:+.3f}]")
        print("  budget sweep (APGD-CE): " + ", ".join(f"{k} {v:.3f}" for k, v in rec["sweep"].items()))
        print("  verdict: " + ("; ".join(rec["masking_flags"]) or "no sign of gradient masking")
              + ("; the protocol's attacks under-state the threat" if rec["under_stated"] else ""))
        rec.update(conditions=conditions, date=time.strftime("%Y-%m-%d"),
                   settings={"steps": args.steps, "restarts": args.restarts, "sweep_steps": args.sweep_steps})
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
    from fmbench.leaderboard import masking

    doc = json.loads(path.read_text()) if path.is_file() else {"kind": masking.KIND, "records": []}
    doc["method"] = ("benchmarks/gradient_masking.py on the protocol's test images at the reference condition: "
                     "APGD (ce, masked-ce) with restarts at 8/255 against the entry's recorded worst case; transfer "
                     "attacks (SegPGD, CosPGD, APGD crafted on other models) against the white-box worst case; APGD at "
                     "budgets up to 1. Flags: transfer beats white box (paired 95 % bootstrap interval below 0), IoU "
                     f"at budget 1 at or above {UNBOUNDED_IOU}, IoU rising with the budget")
    new = {r["state_sha256"] for r in records}
    doc["records"] = [r for r in doc["records"] if r["state_sha256"] not in new] + records
    with tempfile.TemporaryDirectory() as tmp:  # read back by the leaderboard's reader before it replaces the file
        write(Path(tmp) / masking.FILE, doc)
        masking.load(tmp)
    write(path, doc)
    print(f"check records: {path} ({len(doc['records'])})")


if __name__ == "__main__":
    main()
