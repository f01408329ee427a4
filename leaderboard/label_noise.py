"""The label-noise study: train on rough annotations at several rates, evaluate, one entry each.

    python leaderboard/label_noise.py                                     # the whole grid, resumable
    python leaderboard/label_noise.py --datasets nucleus --kinds boundary --rates 0,0.2 --dry-run
    python leaderboard/label_noise.py --models lraspp-mbv3 --datasets nucleus --kinds boundary --commit

Each point is two plain CLI commands, as a user would type them:

    fmbench train --model M --dataset D --tier T [--label-noise KIND:RATE:SEV] --out CACHE/weights/label-noise/NAME.pt
    fmbench eval  --model M --dataset D --tier T --checkpoint CACHE/... --out WORK/NAME.json \\
                  --leaderboard-entry leaderboard/label-noise/NAME.json

Rate 0 is one training on exact masks per model and dataset, shared by every kind; more
exact-label trainings with other seeds (``--null-seeds``; ``STUDY``'s: four for unet-small and
lraspp-mbv3) measure how much trainings differ without any label noise (the training-noise floor
and the calibrated training-luck bar a loss is judged against).  Entries
go to ``leaderboard/label-noise/`` (the label-noise track: validated like the others, never ranked
with clean-label models), with the track's baselines; ``fmbench analyze --label-noise --dir
leaderboard/label-noise --model M --dataset D`` tests each rate against rate 0.  Finished points
are skipped and interrupted ones resumed, so the grid can be split across sessions; ``--commit``
commits each entry.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BOARD = HERE / "label-noise"
DOC = HERE.parent / "docs" / "label-noise.md"
ZOO_DOC = HERE.parent / "docs" / "zoo.md"
START, END = "<!-- label-noise-study:start (leaderboard/label_noise.py --docs) -->", "<!-- label-noise-study:end -->"
KINDS = ("boundary", "boundary-smooth", "missing", "spurious", "coarse")
RATES = (0.0, 0.2, 0.4, 0.7, 1.0)
# On the thin structures (ER tubules ~4 px wide, mitochondria ~6 px) a kind measured in pixels
# takes its smallest gallery severity: its noisy masks then differ from the exact ones about as
# much as the defaults do on nuclei (docs/label-noise.md, "How rough": median mask IoU 0.74-0.90
# against 0.83-0.91); the defaults there would be far rougher (boundary:2 on ER: 0.63).
THIN_SEVERITY = {"boundary": 1.0, "boundary-smooth": 0.5, "coarse": 1.0}
SEVERITY = {(ds, kind): sev for ds in ("er", "mito") for kind, sev in THIN_SEVERITY.items()}
# the grid docs/label-noise.md reports on (its generated progress line): (model, datasets, kinds, the
# exact-label trainings' other seeds). Five exact-label trainings narrow the calibrated training-luck
# bar by about a third against three (t(0.975, 4) = 2.78 against 4.30; docs/label-noise.md);
# lraspp-mbv3 had three until its bar from them came out at 0.098 of clean IoU (2026-12-01).
STUDY = (("unet-small", ("nucleus", "er", "mito"), KINDS, (1, 2, 3, 4)),
         ("lraspp-mbv3", ("nucleus",), ("boundary",), (1, 2, 3, 4)))


def null_seeds_of(model: str) -> tuple[int, ...]:
    return next((seeds for m, _, _, seeds in STUDY if m == model), (1, 2))


def plan(reg, models, datasets, kinds, rates, seed: int = 0, null_seeds=(1, 2), severity: float | None = None
         ) -> list[tuple[str, str, str | None, int]]:
    """The points of a grid, in the order they are run: per model and dataset the exact-label
    trainings (rate 0: ``seed``, then ``null_seeds``), then each kind at each rate above 0."""
    from fmbench.label_noise import parse_setting

    points: list[tuple[str, str, str | None, int]] = []
    for m in models:
        for ds in datasets:
            if 0.0 in rates:  # exact labels: the reference, then other seeds for the training-noise floor
                points += [(m, ds, None, seed)] + [(m, ds, None, s) for s in null_seeds if s != seed]
            for kind in kinds:
                for rate in (r for r in rates if r > 0):
                    sev = severity or SEVERITY.get((ds, kind))
                    text = f"{kind}:{rate:g}" + (f":{sev:g}" if sev else "")
                    points.append((m, ds, parse_setting(text, reg).text, seed))
    return points


def stem_of(m: str, ds: str, setting: str | None, seed: int, protocol_id: str) -> str:
    tag = "exact" if setting is None else setting.replace(":", "-")
    return f"{m}+labels-{tag}{'' if seed == 0 else f'+seed{seed}'}__{ds}__{protocol_id}"


def progress(board: Path, reg, tier: str = "quick-v2") -> str:
    """How much of the study's grid (``STUDY``) has an entry in ``board``, and what is still to run."""
    pid = reg.protocol(tier).id
    total, todo = 0, {}
    for m, datasets, kinds, seeds in STUDY:
        for p in plan(reg, [m], datasets, kinds, RATES, null_seeds=seeds):
            total += 1
            if not (board / f"{stem_of(*p, pid)}.json").exists():
                todo.setdefault((p[0], p[1]), []).append(p)
    parts = []
    for (m, ds), ps in todo.items():
        seeds = [str(p[3]) for p in ps if p[2] is None]
        noisy = [p[2] for p in ps if p[2] is not None]
        kinds = {k for mm, dss, ks, _ in STUDY if mm == m and ds in dss for k in ks}
        what = [f"exact labels (seed{'s' * (len(seeds) > 1)} {', '.join(seeds)})"] if seeds else []
        if len(noisy) == len(kinds) * (len(RATES) - 1) and len(kinds) > 1:
            what.append("every kind at every rate")
        else:
            by: dict[str, list[str]] = {}
            for text in noisy:
                kind, rate, _sev = text.split(":")
                by.setdefault(kind, []).append(f"{float(rate):.0%}")
            what += [f"{k} at {', '.join(r)}" for k, r in by.items()]
        parts.append(f"{m} on {ds} — {'; '.join(what)}")
    done = total - sum(len(v) for v in todo.values())
    return (f"**Progress** (generated): {done} of the grid's {total} trainings have their entry here"
            + (f". Still to run: {'. '.join(parts)}." if parts else ": the grid is complete."))


def _reproduce():
    spec = importlib.util.spec_from_file_location("fmbench_reproduce", HERE / "reproduce.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = mod  # type: ignore[union-attr]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def register(board: Path, model: str, stem: str, dataset: str, ckpt: Path) -> None:
    """Record a training of the study in the track's weights registry (``BOARD/weights/
    registry.json``): file and tensor sha256, command, validation IoU and label-noise setting.
    Validation accepts the track's entries of a registered model only with weights listed here
    (``fmbench.integrity.weights_problems``), as the main board accepts only registered weights."""
    from fmbench.checkpoint import read_checkpoint, state_sha256
    from fmbench.files import sha256_file, write_json

    path = board / "weights" / "registry.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    table = json.loads(path.read_text()) if path.exists() else {
        "kind": "fmbench-track-weights", "note": "written by leaderboard/label_noise.py", "weights": {}}
    state, meta = read_checkpoint(ckpt)
    table["weights"].setdefault(model, {})[stem] = {
        "dataset": dataset, "sha256": sha256_file(ckpt), "state_sha256": state_sha256(state),
        "command": meta.get("command"), "val_iou": meta.get("val_iou"),
        "label_noise": (meta.get("recipe") or {}).get("label_noise") or None}
    table["weights"] = {m: dict(sorted(d.items())) for m, d in sorted(table["weights"].items())}
    write_json(path, table)


def docs_section(board: Path, img: Path | None = None, check_img: Path | None = None) -> str:
    """docs/label-noise.md's measured tables, one per model x dataset x protocol of the track's
    entries (:func:`fmbench.noise_study.markdown`); with ``img``, also draws each study's plot
    there (``label-noise-study-MODEL-DATASET.png``, linked from the section); with ``check_img``,
    marks a plot there that was drawn from other numbers (so a check fails)."""
    from fmbench.errors import ResultError
    from fmbench.leaderboard import load_entries
    from fmbench.noise_plot import plot, plot_is_current
    from fmbench.noise_study import markdown, studies
    from fmbench.noise_readme import unpinned
    from fmbench.plugins import get_registry

    entries = load_entries(str(board), get_registry())
    parts = [START, "Generated from the entries in `leaderboard/label-noise/` by `python leaderboard/label_noise.py "
             "--docs` (the runner regenerates it after each point). Each cell: the score's mean over the test "
             "images [95 % bootstrap interval]; below it, against exact labels (rate 0: each image's mean over the "
             "same model's exact-label trainings), the "
             "paired mean difference Δ [95 % bootstrap interval], the two-sided Wilcoxon signed-rank p "
             "Holm-corrected over the rates of the kind, and the rank-biserial effect r (−1: every image "
             "worse). **Bold**: a significant loss, *italic (gain)*: a significant gain — p < 0.05, the paired "
             "interval excluding 0, larger than the training-noise floor where it is measured, and the same against "
             "the exact-label training of the noisy models' seed alone; after it, whether it is also beyond the "
             "calibrated training-luck bars — against the mean, and against that seed's training for two "
             "trainings (\"the luck bar\" in the cells: both; a significant difference inside either is a lead). "
             "Replicates (the same setting trained with another seed) follow each study. Clean Dice is "
             "computed per image from clean IoU (Dice = 2 IoU / (1 + IoU) for one mask), so it is not tested separately in the README."]
    parts.append(progress(board, get_registry()))
    found = studies(entries)
    if not found:
        parts.append(f"No noisy-label point yet ({len(entries)} exact-label trainings are in)." if entries else
                     "No point of the study has been run yet.")
    for model, dataset, pid, data in found:
        if isinstance(data, ResultError):
            parts.append(f"**{model} on {dataset}** ({pid}): {data}")
            continue
        name = f"label-noise-study-{model}-{dataset.replace('@', '')}-{pid}.png"
        if img is not None:
            img.mkdir(parents=True, exist_ok=True)
            plot(data, str(img / name))
        if (model, dataset, pid) in unpinned(entries):
            parts.append(f"*{model} on {dataset} ({pid}) rests on weights no registry pins (`unpinned-weights`): "
                         f"its numbers are its contributor's word until rechecked, and the README's findings leave "
                         f"it out.*")
        parts.append(markdown(data).rstrip("\n"))
        parts.append(f"![{model} on {dataset}: scores against the rate of noisy training masks](img/{name})")
        if check_img is not None and not plot_is_current(data, str(check_img / name)):
            parts.append(f"(img/{name} is missing or was drawn from other entries: run --docs)")
    parts.append(END)
    return "\n\n".join(parts)


def update_docs(board: Path, doc: Path = DOC, check: bool = False) -> bool:
    """Rewrite (or with ``check``, compare) docs/label-noise.md's generated section; True when current."""
    text = doc.read_text()
    new_section = docs_section(board, None if check else doc.parent / "img", doc.parent / "img" if check else None)
    if START in text and END in text:
        new = text[:text.index(START)] + new_section + text[text.index(END) + len(END):]
    else:
        new = text.rstrip("\n") + "\n\n" + new_section + "\n"
    if check or new == text:
        return new == text
    tmp = doc.with_suffix(".md.tmp")
    tmp.write_text(new)
    tmp.replace(doc)
    return False



def exposed_on_exact_masks(ckpt: Path) -> bool:
    """Whether a noisy-label checkpoint was trained with its images exposed on the exact masks
    (its record says so since 29a30fd; before, the rough masks also changed the images' noise)."""
    try:
        meta = json.loads(Path(str(ckpt) + ".json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("label_noise_exposure") == "exact masks"

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="unet-small")
    ap.add_argument("--datasets", default="nucleus,er,mito")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--rates", default=",".join(f"{r:g}" for r in RATES))
    ap.add_argument("--severity", type=float,
                    help="one severity for every kind (default: SEVERITY's for the dataset, else the kind's default)")
    ap.add_argument("--tier", default="quick-v2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--null-seeds", default=None,
                    help="exact-label trainings with these other seeds measure training noise: the floor and the "
                         "training-luck bar ('' for none; default: STUDY's for the model, unet-small 1,2,3,4)")
    ap.add_argument("--work", type=Path, default=Path(".work/label-noise"))
    ap.add_argument("--board", type=Path, default=BOARD)
    ap.add_argument("--commit", action="store_true")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--docs", action="store_true", help="only regenerate docs/label-noise.md's tables and plots")
    ap.add_argument("--check", action="store_true", help="with --docs: exit 1 if they are not current")
    args = ap.parse_args(argv)
    if args.docs:
        from fmbench.errors import FmbenchError

        try:
            current = update_docs(args.board, check=args.check)
        except FmbenchError as exc:  # an entry that does not validate: one line, nothing written
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if current or not args.check:
            return 0
        print(f"{DOC}: the label-noise tables are not current; run python leaderboard/label_noise.py --docs",
              file=sys.stderr)
        return 1
    os.environ.setdefault("FMBENCH_CACHE", str(Path(".work/cache").resolve()))
    rep = _reproduce()
    from fmbench.plugins import get_registry
    from fmbench.runlog import partial_path
    from fmbench.weights import cache_dir

    reg = get_registry()
    protocol = reg.protocol(args.tier)
    fmbench = str(Path(sys.executable).with_name("fmbench"))
    (args.work).mkdir(parents=True, exist_ok=True)
    args.board.mkdir(parents=True, exist_ok=True)
    weights = cache_dir() / "weights" / "label-noise"
    weights.mkdir(parents=True, exist_ok=True)
    points = [p for m in args.models.split(",") for p in plan(
        reg, [m], args.datasets.split(","), args.kinds.split(","), [float(r) for r in args.rates.split(",")], args.seed,
        null_seeds_of(m) if args.null_seeds is None else [int(x) for x in args.null_seeds.split(",") if x.strip()],
        args.severity)]
    for m, ds, setting, seed in points:
        stem = stem_of(m, ds, setting, seed, protocol.id)
        ckpt, entry, result = weights / f"{stem}.pt", args.board / f"{stem}.json", args.work / f"{stem}.json"
        if entry.exists():
            continue
        stale = setting is not None and ckpt.exists() and not exposed_on_exact_masks(ckpt)
        if stale:
            print(f"{ckpt}: trained before rough labels stopped changing the training images (29a30fd): training "
                  f"it again")
        if not ckpt.exists() or stale:
            cmd = [fmbench, "train", "--model", m, "--dataset", ds, "--seed", str(seed), "--tier", args.tier,
                   *(["--label-noise", setting] if setting else []), "--out", str(ckpt), "--quiet"]
            if Path(str(ckpt) + ".state.pt").exists() and not stale:
                cmd.append("--resume")  # (a state of the old code is refused by its identity)
            if stale or Path(str(ckpt) + ".json").exists():  # a record left from a checkpoint since removed: ours
                cmd.append("--overwrite")
            rep.run(cmd, args.dry_run)
        if not args.dry_run:
            register(args.board, m, stem, protocol.dataset_ref(ds), ckpt)
        rep.ensure_baselines(fmbench, protocol, ds, args.tier, args.dry_run, args.board)
        if result.exists():
            result.unlink()
        where = entry.relative_to(Path.cwd()) if entry.is_relative_to(Path.cwd()) else entry
        cmd = [fmbench, "eval", "--model", m, "--dataset", ds, "--tier", args.tier, "--checkpoint", str(ckpt),
               "--out", str(result), "--leaderboard-entry", str(where), "--quiet"]
        if partial_path(result).exists():
            cmd.append("--resume")
        rep.run(cmd, args.dry_run)
        readme = Path("README.md")
        # a person's uncommitted edits in the README or the doc are theirs to commit, not this point's
        edited = [] if not args.commit else [p for p in (readme, DOC, ZOO_DOC) if p.exists() and subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--", str(p)]).returncode != 0]
        if edited:
            print(f"not committing {', '.join(map(str, edited))} with this point: uncommitted edits there "
                  f"(regenerated in place; commit them yourself)", file=sys.stderr, flush=True)
        if not args.dry_run and args.board == BOARD and readme.exists():  # its generated findings stay current
            rep.run([fmbench, "leaderboard", "--update-readme", "--readme", str(readme), "--dir", str(HERE)], False)
            rep.run([sys.executable, str(Path(__file__).resolve()), "--docs"], False)  # today's code, as the README
            if setting is None:  # docs/zoo.md's between-seed table shows the study's exact-label trainings too
                rep.run([sys.executable, str(HERE / "zoo_tables.py")], False)
        if args.commit and not args.dry_run:
            rep.git_commit([entry, args.board / "baselines", args.board / "weights",
                            *(p for p in (readme, DOC, ZOO_DOC) if p not in edited),
                            *sorted((DOC.parent / "img").glob("label-noise-study-*.png"))],
                           f"label-noise study: {stem} (leaderboard/label_noise.py)")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
