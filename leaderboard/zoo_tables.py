"""docs/zoo.md's generated tables, from a campaign's run table (``leaderboard/runs/zoo-*.json``).

    python leaderboard/zoo_tables.py                   # rewrite the section in docs/zoo.md
    python leaderboard/zoo_tables.py --check           # exit 1 if it is not current

Three tables, all computed from the rows that ``leaderboard/reproduce.py`` writes (nothing typed
by hand): training and test scores per model x dataset (seed 0, no defence); the spread over
training seeds for every architecture with more than one; the clean-accuracy cost and the
robustness gain of each defence against the same architecture undefended.  A piece that has not
been run is not in the table; a piece trained but not evaluated shows its training only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from fmbench.errors import ResultError

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "zoo.md"
START, END = "<!-- zoo-v2-tables:start (leaderboard/zoo_tables.py) -->", "<!-- zoo-v2-tables:end -->"
SCORES = (("clean_iou", "clean IoU"), ("corruption_robustness", "corruption rob."),
          ("adversarial_robustness", "adversarial rob."), ("robust_iou", "robust IoU"))


def _f(v, digits: int = 3) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def _convergence(c: dict | None) -> str:
    if not c:
        return ""
    gain = c.get("gain_last_quarter")
    out = c.get("state", "")
    if gain is not None:
        out += f", {gain:+.3f} over the last quarter"
    if c.get("stopped_at") and c.get("reason") and c["reason"] != "budget used up":
        out += f"; stopped at {c['stopped_at']} ({c['reason']})"
    return out


def training_table(rows: list[dict]) -> str:
    lines = ["| model | dataset | training min | best val IoU (step) | convergence | clean IoU (test) | "
             "corruption rob. | adversarial rob. | robust IoU | evaluation min |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in sorted((r for r in rows if r.get("seed", 0) == 0 and r.get("defense", "none") == "none"),
                    key=lambda r: (r["dataset"], -(r.get("clean_iou") or 0), r["model"])):
        c = r.get("convergence") or {}
        val = f"{c['best_val_iou']:.3f} ({c.get('best_step')})" if c.get("best_val_iou") is not None else (
            _f(r.get("val_iou")) or "shipped weights")
        lines.append(f"| `{r['model']}` | {r['dataset']} | {_f(r.get('train_minutes'), 1)} | {val} | "
                     f"{_convergence(c)} | {_f(r.get('clean_iou'))} | {_f(r.get('corruption_robustness'))} | "
                     f"{_f(r.get('adversarial_robustness'))} | {_f(r.get('robust_iou'))} | "
                     f"{_f(r.get('eval_minutes'), 1)} |")
    return "\n".join(lines)


def seed_table(rows: list[dict]) -> str:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r.get("defense", "none") == "none" and r.get("clean_iou") is not None:
            groups.setdefault((r["model"], r["dataset"], r.get("note", "")), []).append(r)
    lines = ["| model | dataset | seeds | " + " | ".join(f"{t} mean ± SD (range)" for _, t in SCORES) + " |",
             "|---|---|---:|" + "---:|" * len(SCORES)]
    for (model, ds, _), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])):
        if len(rs) < 2:
            continue
        cells = []
        for key, _ in SCORES:
            vals = [r[key] for r in rs if r.get(key) is not None]
            cells.append(f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f} "
                         f"({min(vals):.3f}–{max(vals):.3f})" if len(vals) > 1 else "")
        note = f" ({rs[0]['note']})" if rs[0].get("note") else ""
        lines.append(f"| `{model}`{note} | {ds} | {len(rs)} ({', '.join(str(r.get('seed', 0)) for r in rs)}) | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else "No architecture has two evaluated seeds yet."


def exact_label_rows(protocol_id: str, board: Path | None = None) -> list[dict]:
    """Seed rows of models the label-noise study trained on exact labels with the zoo's command
    (``leaderboard/label-noise/*labels-exact*``: ``unet-small``, whose own entry is the shipped
    weights, one training), for the seed table; their model is marked ``(exact-label study)``.
    Models the campaign trains itself are left out (their rows are already there)."""
    from fmbench_plugins.zoo import ZOO

    zoo = {name for name, *_ in ZOO}
    rows = []
    for path in sorted((board or ROOT / "leaderboard" / "label-noise").glob("*+labels-exact*.json")):
        e = json.loads(path.read_text())
        t = e["model"].get("training") or {}
        model = e["model"]["ref"]
        if model in zoo or e["protocol"]["id"] != protocol_id or t.get("label_noise") or t.get("defense") not in (
                None, "none"):
            continue
        rows.append({"model": model, "note": "exact-label study",
                     "dataset": e["dataset"]["ref"].split("@")[0], "seed": t.get("seed", 0), "defense": "none",
                     "clean_iou": e["summary"]["clean_iou"],
                     "corruption_robustness": e["summary"].get("corruption_robustness"),
                     "adversarial_robustness": e["summary"].get("adversarial_robustness"),
                     "robust_iou": (e.get("scores") or {}).get("robust_iou", {}).get("value")})
    return sorted(rows, key=lambda r: (r["dataset"], r["seed"]))


def defence_table(rows: list[dict]) -> str:
    """Each defended row against the same architecture undefended (seed 0): the clean-accuracy cost
    and the robustness gains.  A defended model is one training, so a difference is read against the
    undefended architecture's seed-to-seed range where it has several seeds: a difference inside
    that range is marked ``≈`` (training luck could make it), and without seeds the table says the
    range is not measured."""
    base = {(r["model"], r["dataset"]): r for r in rows
            if r.get("seed", 0) == 0 and r.get("defense", "none") == "none" and r.get("clean_iou") is not None}
    seeds: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r.get("defense", "none") == "none" and r.get("clean_iou") is not None:
            seeds.setdefault((r["model"], r["dataset"]), []).append(r)
    lines = ["| model | dataset | defence | seed | clean IoU (cost) | corruption rob. (gain) | "
             "adversarial rob. (gain) | robust IoU (gain) | training min |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    unmeasured = set()
    for r in sorted(rows, key=lambda r: (r["dataset"], r["model"], r.get("defense", "none"), r.get("seed", 0))):
        d = r.get("defense", "none")
        b = base.get((r["model"], r["dataset"]))
        if d == "none" or r.get("clean_iou") is None or b is None:
            continue
        runs = seeds.get((r["model"], r["dataset"]), [])
        cells = []
        for key, _ in SCORES:
            v, v0 = r.get(key), b.get(key)
            vals = [x[key] for x in runs if x.get(key) is not None]
            spread = max(vals) - min(vals) if len(vals) >= 2 else None
            if spread is None:
                unmeasured.add(f"`{r['model']}` on {r['dataset']}")
            inside = spread is not None and v is not None and v0 is not None and abs(v - v0) <= spread
            cells.append("" if v is None or v0 is None else f"{v:.3f} ({'≈ ' if inside else ''}{v - v0:+.3f})")
        lines.append(f"| `{r['model']}` | {r['dataset']} | {d} | {r.get('seed', 0)} | " + " | ".join(cells)
                     + f" | {_f(r.get('train_minutes'), 1)} |")
    if len(lines) == 2:
        return "No defended model is evaluated yet."
    note = ("≈: the difference is inside the undefended architecture's seed-to-seed range, so one training's "
            "luck could make it.")
    if unmeasured:
        note += (" Seed range not measured for " + ", ".join(sorted(unmeasured))
                 + ": there a difference is one training against one training.")
    return "\n".join(lines) + "\n\n" + note


def masking_table(entries: list[dict], checks: dict | None = None) -> str:
    """The gradient-masking check of each adversarially trained entry (``fmbench.leaderboard.masking``,
    records made by ``benchmarks/gradient_masking.py``): white-box worst case (the entry's, and with
    APGD added), the best transfer attack, and IoU as the budget grows; unchecked rows say so."""
    from fmbench.leaderboard import masking

    checks = masking.load(ROOT / "leaderboard") if checks is None else checks
    by_sha = {str(e["model"].get("state_sha256")): e for e in entries}
    lines = ["| model | dataset | entry's worst case @8/255 | + APGD (2 losses, restarts) | best transfer attack | "
             "IoU at budget 16, 32, 64, 255 /255 (APGD, lowest of its losses) | gain over undefended: entry's attacks → + APGD | verdict |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    surrogates: set[str] = set()
    for e in sorted(entries, key=lambda e: (e["dataset"]["ref"], e["model"]["ref"])):
        defense = masking.adversarial_defense(e)
        if defense is None:
            continue
        label = f"`{e['model']['ref']}` {defense}"
        rec = masking.record_for(e, checks)
        mm = masking.measure(rec, e, masking.baseline_entry(rec, e, by_sha)) if rec is not None else None
        if mm is None or mm["mismatch"]:
            why = f"the check on record is not of this entry ({mm['mismatch']})" if mm else "not checked"
            lines.append(f"| {label} | {e['dataset']['ref']} | | | | | | {why}: `masking-unchecked` |")
            continue
        surrogates.update(k.rsplit(" ", 1)[0] for k in rec.get("transfer", {}))
        sv, tv = mm["stronger_vs_entry"], mm["transfer_vs_white"]
        sweep = ", ".join(_f(mm["sweep"].get(f"{k}/255")) for k in (16, 32, 64, 255))
        b = mm.get("baseline") or {}
        verdict = "; ".join(mm["findings"]) or "no sign of masking"
        gain = "not measured" if not b else (
            f"{mm['entry_worst_case'] - b['entry_worst_case']:+.3f} → {b['gain_vs_baseline']['diff']:+.3f} "
            f"[{b['gain_vs_baseline']['ci95'][0]:+.3f}, {b['gain_vs_baseline']['ci95'][1]:+.3f}] (vs `{b['model']}`)")
        if mm["under_stated"]:  # a stronger attack goes further: read beside the undefended model's drop
            st = rec.get("settings") or {}
            grads = f"{2 * st['restarts'] * st['steps']}-gradient " if all(
                type(st.get(k)) is int for k in ("restarts", "steps")) else ""
            verdict += f"; {grads}APGD lowers its worst case by {-sv['diff']:.3f}" + (
                f", the undefended model's by {-b['stronger_vs_entry']['diff']:.3f}: the protocol's cheap attacks "
                f"understate the threat to both" if b else "")
        lines.append(f"| {label} | {e['dataset']['ref']} | {_f(mm['entry_worst_case'])} | "
                     f"{_f(mm['white_box_worst'])} ({sv['diff']:+.3f} [{sv['ci95'][0]:+.3f}, {sv['ci95'][1]:+.3f}]) | "
                     f"{_f(mm['transfer_worst'])} ({tv['diff']:+.3f} [{tv['ci95'][0]:+.3f}, {tv['ci95'][1]:+.3f}]) | "
                     f"{sweep} | {gain} | {verdict} |")
    if len(lines) == 2:
        return ""
    if not surrogates:
        return "\n".join(lines)
    return "\n".join(lines) + (
        "\n\nDifferences are paired over the test images with 95 % bootstrap intervals: white box with APGD added "
        "against the entry's worst case, best transfer attack against that white-box worst case (masking shows as a "
        "transfer attack that beats the white box). The budget sweep takes per image the lowest IoU of APGD with "
        "cross-entropy, masked cross-entropy and a loss targeted at background on the true foreground (cross-entropy "
        "alone can be met by calling every pixel foreground, which leaves IoU at the foreground share however large "
        "the budget; a record made with it alone says so in its verdict). Transfer attacks are SegPGD, CosPGD and "
        "APGD crafted on "
        + ", ".join(f"`{s}`" for s in sorted(surrogates)) + "; conditions and per-attack numbers are in "
        "`leaderboard/checks/gradient-masking.json`.")


def agreement_table(entries: list[dict]) -> str:
    """How much of each dataset's ranking is architecture (``fmbench.agreement.seed_agreement``
    over the undefended entries with seeds), one row per dataset x score."""
    from fmbench.agreement import cell, seed_agreement
    from fmbench.leaderboard.entry import model_label
    from fmbench.errors import ResultError

    lines = ["| dataset | score | architectures × seeds | ICC (share between architectures) | "
             "seed-to-seed rank ρ | pairs in the same order under every seed | median seed SD |",
             "|---|---|---|---:|---:|---:|---:|"]
    notes: list[str] = []
    readings: list[str] = []
    for ds in sorted({e["dataset"]["ref"] for e in entries}):
        mine = [e for e in entries if e["dataset"]["ref"] == ds
                and (e["model"]["training"].get("defense") or "none") == "none"]
        try:
            got = seed_agreement(mine)
        except ResultError as err:
            notes.append(f"{ds}: {err}.")
            continue
        readings.append(f"*{ds}:* " + reading(got))
        n_seeds = sorted(sum(1 for e in mine if model_label(e, seed=False) == a) for a in got["architectures"])
        shape = f"{len(n_seeds)} × {n_seeds[0]}" + (f"–{n_seeds[-1]}" if n_seeds[-1] != n_seeds[0] else "")
        for key, label in SCORES:
            g = got["scores"].get(key)
            if not g:
                continue
            stable = "" if g["pairs_stable"] is None else f"{cell(g['pairs_stable'], g['pairs_stable_ci95'], True)} " \
                                                          f"of {g['n_pairs']}"
            lines.append(f"| {ds} | {label} | {shape} | "
                         f"{cell(g['icc'], g['icc_ci95'])} | {cell(g['seed_rank_correlation'], g['seed_rank_correlation_ci95'])} "
                         f"({g['n_seed_pairs']} seed pairs) | {stable} | {_f(g['sd'])} |")
    body = "\n".join(lines) if len(lines) > 2 else ""
    return "\n\n".join(x for x in (body, " ".join(notes), *readings) if x)


def reading(got: dict) -> str:
    """What the agreement readings say, score by score, in words decided by their intervals: the
    architecture *decides* a score whose ICC interval lies above 0.5, *does not measurably* where
    it reaches 0 or below, and *partly* otherwise; with the share of pairs every seed orders alike."""
    from fmbench.agreement import cell

    parts = []
    for key, label in SCORES:
        g = got["scores"].get(key)
        if not g or g["icc"] is None:
            continue
        lo = (g["icc_ci95"] or [None])[0]
        verdict = ("mostly the architecture" if lo is not None and lo > 0.5 else
                   "not measurably the architecture" if lo is None or lo <= 0 else "partly the architecture")
        stable = "" if g["pairs_stable"] is None else f"; {g['pairs_stable']:.0%} of {g['n_pairs']} pairs ordered alike by every seed"
        parts.append(f"{label} is {verdict} (ICC {cell(g['icc'], g['icc_ci95'])}{stable})")
    return ("what survives a re-training: " + "; ".join(parts) + ". A ranking by a score that is not mostly the "
            "architecture ranks training runs as much as architectures: read it with the leaderboard's seed "
            "spread (`inside-seed-spread`).") if parts else ""


def section(table: dict, entries: list[dict] | None = None) -> str:
    rows = table.get("rows", [])
    return "\n\n".join([
        START,
        f"Generated from `leaderboard/runs/zoo-{table.get('protocol', 'quick-v2')}.json` "
        "(`python leaderboard/zoo_tables.py`). Scores are the entries' means over the protocol's test "
        "images; minutes are wall time on the machine named in each row (`hardware`).",
        "**Training and test, seed 0** (sorted by clean IoU within each dataset):",
        training_table(rows),
        "**Over training seeds** (the standard deviation is over seeds, not images; `unet-small`'s seeds are "
        "the label-noise study's exact-label trainings, `leaderboard/label-noise/`, made with the same `fmbench "
        "train --tier quick-v2` command; they are not in the agreement table below, whose architectures are the "
        "campaign's):",
        seed_table(rows + exact_label_rows(table.get("protocol", "quick-v2"))),
        "**How much of the ranking is architecture** (`fmbench analyze --seeds`, from the entries of the "
        "architectures with two or more seeds; ICC: the share of a score's variance between architectures, "
        "1 = seeds agree exactly, 0 = the architecture explains nothing, below 0 = seeds differ more than the "
        "architectures do). Each reading has its 95 % interval from 2000 resamples of the architectures: "
        "with few architectures and seeds they are wide, and a reading is no more than its interval says:",
        agreement_table(entries or []) or "No dataset has three architectures with two or more seeds yet.",
        "**Defences** (against the same architecture undefended, seed 0, whatever the defended row's seed):",
        defence_table(rows),
        *(["**Checked for gradient masking** (adversarially trained rows; `benchmarks/gradient_masking.py`):",
           m] if (m := masking_table(entries or [])) else []),
        END,
    ])


def board_entries(protocol_id: str) -> list[dict]:
    """The checked-in entries of one protocol (not validated here: CI validates them)."""
    from fmbench.leaderboard import load_entries

    return [e for e in load_entries(str(ROOT / "leaderboard")) if e["protocol"]["id"] == protocol_id]


def render(doc: str, table: dict) -> str:
    new = section(table, board_entries(table.get("protocol", "quick-v2")))
    if START in doc and END in doc:
        a, b = doc.index(START), doc.index(END) + len(END)
        return doc[:a] + new + doc[b:]
    return doc.rstrip("\n") + "\n\n" + new + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, default=ROOT / "leaderboard" / "runs" / "zoo-quick-v2.json")
    ap.add_argument("--doc", type=Path, default=DOC)
    ap.add_argument("--check", action="store_true", help="exit 1 if the section is not current")
    args = ap.parse_args(argv)
    table = json.loads(args.runs.read_text())
    doc = args.doc.read_text()
    try:
        new = render(doc, table)
    except ResultError as err:  # a malformed check record: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.check:
        if new != doc:
            print(f"{args.doc}: the generated zoo tables are not current; run python leaderboard/zoo_tables.py",
                  file=sys.stderr)
            return 1
        return 0
    if new != doc:
        tmp = args.doc.with_suffix(".md.tmp")
        tmp.write_text(new)
        tmp.replace(args.doc)
        print(f"{args.doc} updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
