"""Rebuild the reference leaderboard: train every zoo model on each dataset, then evaluate it.

    python leaderboard/reproduce.py                       # the quick tier's (version-2) zoo, resumable
    python leaderboard/reproduce.py --tier quick-v1       # the version-1 zoo (800 steps, seed 0)
    python leaderboard/reproduce.py --tier quick-v2 --datasets nucleus --seeds 1,2
    python leaderboard/reproduce.py --tier quick-v2 --models unet-r18 --defenses noise-aug,pgd-at
    python leaderboard/reproduce.py --dry-run             # print the commands only

Each (model, dataset, seed, defense) is two plain CLI commands, run as subprocesses exactly as a
user would type them:

    fmbench train --model M --dataset D --seed S --tier T [--defense X] --out CACHE/weights/zoo/M__NAME.pt
    fmbench eval  --model M --dataset D --tier T [--weights NAME] --out WORK/results/ENTRY.json \
                  --leaderboard-entry leaderboard/ENTRY.json

``NAME`` is the weights' registered name (:func:`fmbench.weights.weights_name`: ``nucleus`` in
the version-1 zoo; ``nucleus@2/v2``, ``nucleus@2/v2/seed1``, ``er/v2/pgd-at`` from version 2
on), and ``ENTRY`` is ``M__D__PROTOCOL`` (``M+seedS__...`` for another seed, ``M+X__...`` for a
defence).  Between the two, the checkpoint's tensors' sha256, its training command (which does
not name its output path, so the bytes do not depend on it) and its validation IoU go into
``plugins/zoo_weights.json``: the zoo registers them, and ``eval`` finds, checks and loads the
weights from the user cache (``$FMBENCH_CACHE``; this script uses ``.work/cache`` unless it is
set).  The models whose weights ship in the package (``unet-small``) are only evaluated.

Both commands are resumable (``--resume`` is added when a training state or a partial
evaluation log exists), so the campaign can be split across sessions: kill it at any point and
run it again; finished pieces are skipped.  After every step ``leaderboard/runs/zoo.json``
(``zoo-PROTOCOL.json`` for later protocols) is rewritten from the training records and entries
on disk: training minutes, convergence, validation and clean test IoU, and both commands --
nothing in it is typed by hand; docs/zoo.md's tables are generated from it
(``leaderboard/zoo_tables.py``).  ``--commit`` commits each finished entry with its table and
weights registry (git), so a session that ends mid-campaign loses at most the piece in flight.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fmbench.files import write_json
from fmbench.runlog import partial_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo_tables  # noqa: E402  (beside this script)

HERE = Path(__file__).resolve().parent
DATASETS = ("nucleus", "er", "mito")
TIER = "quick"
# (model, dataset) -> training steps, for undefended version-2 trainings whose validation IoU was
# still rising when RECIPE_V2's 1200 steps ran out (docs/zoo.md, "Longer budgets"); passed as
# ``--steps``, so the registered command says it and re-runs it
LONGER = {("upernet-convnext-atto", "mito"): 2400, ("dpt-vit-tiny", "mito"): 4000}


def zoo_models() -> list[str]:
    """The zoo, then the compact model whose weights ship with fmbench (evaluated, not trained)."""
    from fmbench_plugins.zoo import ZOO

    return [name for name, *_ in ZOO] + ["unet-small"]


def shipped(model: str, dataset: str) -> bool:
    """Whether ``model`` has weights for ``dataset`` in the package."""
    from fmbench.plugins import get_registry

    w = get_registry().model(model).weights.get(dataset)
    return w is not None and w.package is not None


def run(cmd: list[str], dry: bool) -> float:
    print("$ " + shlex.join(cmd), flush=True)
    if dry:
        return 0.0
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    try:
        if proc.wait() != 0:
            raise SystemExit(f"error: exit {proc.returncode}: {shlex.join(cmd)}")
    finally:
        if proc.poll() is None:  # interrupted: stop the child too (its state/partial log stays)
            proc.terminate()
            proc.wait()
    return time.perf_counter() - t0


def register_weights(model: str, name: str, ckpt: Path) -> None:
    """Record the checkpoint's state sha256, training command and validation IoU under its
    weights name in plugins/zoo_weights.json (the IoU is what a reproduced checkpoint is
    measured against)."""
    from fmbench_plugins.zoo import WEIGHTS_FILE

    from fmbench.checkpoint import read_checkpoint, state_sha256

    state, meta = read_checkpoint(ckpt)
    table = json.loads(WEIGHTS_FILE.read_text()) if WEIGHTS_FILE.exists() else {
        "kind": "fmbench-zoo-weights", "note": "written by leaderboard/reproduce.py", "weights": {}}
    conv = meta.get("convergence") or {}
    table["weights"].setdefault(model, {})[name] = {"state_sha256": state_sha256(state), "command": meta["command"],
                                                    "val_iou": meta.get("val_iou"), **({"convergence": {
                                                        k: conv[k] for k in ("state", "best_step", "stopped_at")}}
                                                        if conv.get("state") in ("plateaued", "rising") else {})}
    table["weights"] = {m: dict(sorted(d.items())) for m, d in sorted(table["weights"].items())}
    write_json(WEIGHTS_FILE, table)


def registered(model: str) -> dict:
    """The weights names plugins/zoo_weights.json pins for ``model``."""
    from fmbench_plugins.zoo import WEIGHTS_FILE

    return json.loads(WEIGHTS_FILE.read_text())["weights"].get(model, {}) if WEIGHTS_FILE.exists() else {}


TRAIN_COLUMNS = ("train_command", "train_minutes", "val_iou", "weights_sha256", "convergence")


def entry_stem(model: str, dataset: str, pid: str, seed: int = 0, defense: str = "none") -> str:
    """``M__D__PROTOCOL``, with ``+DEFENSE`` / ``+seedS`` after the model for other runs."""
    suffix = (f"+{defense}" if defense != "none" else "") + (f"+seed{seed}" if seed else "")
    return f"{model}{suffix}__{dataset}__{pid}"


def table_runs(previous: dict | None, seeds: list[int], defenses: list[str]) -> tuple[list[int], list[str]]:
    """The seeds and defences the campaign table keeps rows for: this run's and every one the
    table already holds (a run of other seeds must not drop the rows of earlier ones)."""
    done = (previous or {}).get("rows", [])
    return (sorted({0, *seeds, *(int(r.get("seed") or 0) for r in done)}),
            sorted({"none", *defenses, *(str(r.get("defense") or "none") for r in done)}))


def record(pieces: list[Piece], pid: str, previous: dict | None = None) -> dict:
    """The campaign table, rebuilt from what is on disk.

    A piece's training columns come from its checkpoint's record in the cache; when that is
    gone (another machine, a cleared cache), those of the checked-in table ``previous`` are
    kept rather than lost."""
    def key(r: dict) -> tuple:
        return r["model"], r["dataset"], r.get("seed", 0), r.get("defense", "none")

    before = {key(r): r for r in (previous or {}).get("rows", [])}
    rows = []
    for p in pieces:
        row = {"model": p.model, "dataset": p.dataset, "seed": p.seed, "defense": p.defense, "weights": p.name}
        rec = Path(str(p.ckpt) + ".json")
        meta = json.loads(rec.read_text()) if rec.exists() else None
        e = json.loads(p.entry.read_text()) if p.entry.exists() else None
        if meta is not None and e is not None and e["model"].get("state_sha256") not in (None, meta.get("state_sha256")):
            meta = None  # a re-made checkpoint that is not the entry's weights: the entry's training stays
        if meta is not None:
            row.update(train_command=meta.get("command"), train_minutes=round(meta["train_seconds"] / 60, 1),
                       val_iou=meta.get("val_iou"), weights_sha256=meta.get("state_sha256"),
                       convergence=meta.get("convergence"))
        else:
            old = before.get(key(row), {})
            row.update({k: old[k] for k in TRAIN_COLUMNS if k in old})
        if e is not None:
            row.update(weights=e["model"].get("weights") or row["weights"],  # a shipped model's own weights
                       eval_command=e["provenance"]["command"],
                       eval_minutes=round((e["provenance"].get("seconds") or 0) / 60, 1),
                       clean_iou=e["summary"]["clean_iou"],
                       corruption_robustness=e["summary"].get("corruption_robustness"),
                       adversarial_robustness=e["summary"].get("adversarial_robustness"),
                       robust_iou=(e.get("scores") or {}).get("robust_iou", {}).get("value"),
                       hardware=e["provenance"]["hardware"])
        if len(row) > 5:
            rows.append(row)
    return {"kind": "fmbench-zoo-runs", "protocol": pid, "rows": rows}


@dataclass(frozen=True)
class Piece:
    """One (model, dataset, seed, defense) of the campaign and where its files go."""

    model: str
    dataset: str
    seed: int
    defense: str
    name: str  # the weights' registered name
    ckpt: Path
    entry: Path
    result: Path


def ensure_baselines(fmbench: str, protocol, dataset: str, tier: str, dry: bool, board: Path = HERE) -> None:
    """The table's baselines (trivial and Otsu, on the same inputs): an entry validates only
    beside them, so they are measured before the table's first entry."""
    from fmbench.leaderboard.store import load_baselines

    ref = protocol.dataset_ref(dataset)
    if (protocol.hash, ref) not in load_baselines(board)[0]:
        run([fmbench, "leaderboard", "baselines", "--dataset", ref, "--tier", tier, "--dir", str(board)], dry)


def git_commit(paths: list[Path], message: str) -> None:
    """Commit ``paths`` (an entry, the campaign table, the weights registry) if they changed."""
    files = [str(p) for p in paths if p.exists()]
    for attempt in range(5):  # another git command (a person working in the tree) may hold the lock
        try:
            subprocess.run(["git", "add", "--", *files], check=True)
            if subprocess.run(["git", "diff", "--cached", "--quiet", "--", *files]).returncode != 0:
                subprocess.run(["git", "commit", "-q", "-m", message, "--", *files], check=True)
            return
        except subprocess.CalledProcessError:
            time.sleep(5 * (attempt + 1))
    print(f"warning: could not commit {', '.join(files)}; commit them by hand", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tier", default=TIER, help="protocol tier or id (quick: its released version, quick-v2; quick-v1: the version-1 zoo)")
    ap.add_argument("--models", help="comma-separated zoo models (default: all)")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--seeds", default="0", help="comma-separated training seeds (version 2 on)")
    ap.add_argument("--defenses", default="none", help="comma-separated: none, noise-aug, pgd-at (version 2 on)")
    ap.add_argument("--work", type=Path, default=Path(".work/zoo"), help="raw result files")
    ap.add_argument("--board", type=Path, default=HERE, help="the entries' folder (default: this one)")
    ap.add_argument("--commit", action="store_true", help="git-commit each finished entry")
    ap.add_argument("--train-only", action="store_true",
                    help="train and register the weights; evaluate later (training does not depend on the "
                         "protocol's corruptions and attacks)")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    models = args.models.split(",") if args.models else zoo_models()
    datasets = args.datasets.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    defenses = args.defenses.split(",")
    unknown = sorted(set(models) - set(zoo_models()))
    if unknown:
        print(f"error: not zoo models: {', '.join(unknown)}", file=sys.stderr)
        return 1
    os.environ.setdefault("FMBENCH_CACHE", str(Path(".work/cache").resolve()))
    from fmbench_plugins.zoo import WEIGHTS_FILE, weights_file

    from fmbench.plugins import get_registry
    from fmbench.weights import cache_dir, weights_name

    protocol = get_registry().protocol(args.tier)
    pid, gen = protocol.id, protocol.version
    if gen < 2 and (seeds != [0] or defenses != ["none"]):
        print("error: the version-1 zoo has seed 0 without defences only; use --tier quick-v2", file=sys.stderr)
        return 1
    fmbench = str(Path(sys.executable).with_name("fmbench"))
    (args.work / "results").mkdir(parents=True, exist_ok=True)
    board = args.board
    table = board / "runs" / ("zoo.json" if pid == "quick-v1" else f"zoo-{pid}.json")  # kept out of the entries
    table.parent.mkdir(exist_ok=True)
    previous = json.loads(table.read_text()) if table.exists() else None

    def piece(m: str, ds: str, seed: int, defense: str) -> Piece:
        name = weights_name(protocol.dataset_ref(ds), gen, seed, defense)
        stem = entry_stem(m, ds, pid, seed, defense)
        return Piece(m, ds, seed, defense, name, cache_dir() / "weights" / weights_file(m, name),
                     board / f"{stem}.json", args.work / "results" / f"{stem}.json")

    wanted = [piece(m, ds, seed, d) for ds in datasets for seed in seeds for d in defenses for m in models
              if not (shipped(m, ds) and (seed or d != "none"))]  # shipped weights: one run, evaluated only
    all_seeds, all_defenses = table_runs(previous, seeds, defenses)
    every = [piece(m, ds, seed, d) for ds in DATASETS for seed in all_seeds for d in all_defenses for m in zoo_models()]
    for p in wanted:
        ship = shipped(p.model, p.dataset)
        p.ckpt.parent.mkdir(parents=True, exist_ok=True)
        if p.entry.exists() and (ship or (p.ckpt.exists() and p.name in registered(p.model))):
            continue  # done before: nothing to train, evaluate or regenerate
        if p.entry.exists() and not ship and not p.ckpt.exists():
            # done here before; its weights are pinned in zoo_weights.json, and the training
            # command in the entry rebuilds them when someone needs them
            print(f"skip {p.entry.name}: entry exists, weights not in this cache", flush=True)
            continue
        if not ship and not p.ckpt.exists():
            cmd = ["fmbench", "train", "--model", p.model, "--dataset", p.dataset, "--seed", str(p.seed),
                   "--tier", args.tier, *(["--defense", p.defense] if p.defense != "none" else []),
                   *(["--steps", str(LONGER[p.model, p.dataset])]
                     if p.defense == "none" and gen == 2 and (p.model, p.dataset) in LONGER else []),
                   "--out", str(p.ckpt), "--quiet"]
            if Path(str(p.ckpt) + ".state.pt").exists():
                cmd.append("--resume")
            if Path(str(p.ckpt) + ".json").exists():  # a record left from a checkpoint since removed: ours
                cmd.append("--overwrite")
            run([fmbench, *cmd[1:]], args.dry_run)
        if not ship and not args.dry_run:
            register_weights(p.model, p.name, p.ckpt)
        if not p.entry.exists() and not args.train_only:
            ensure_baselines(fmbench, protocol, p.dataset, args.tier, args.dry_run, board)
            if p.result.exists():  # evaluated, entry lost: evaluate again from scratch
                p.result.unlink()
            where = p.entry.relative_to(Path.cwd()) if p.entry.is_relative_to(Path.cwd()) else p.entry
            default = ship or (p.seed == 0 and p.defense == "none")  # the weights eval picks by itself
            cmd = ["fmbench", "eval", "--model", p.model, "--dataset", p.dataset, "--tier", args.tier,
                   *([] if default else ["--weights", p.name]), "--out", str(p.result),
                   "--leaderboard-entry", str(where), "--quiet"]
            if partial_path(p.result).exists():
                cmd.append("--resume")
            run([fmbench, *cmd[1:]], args.dry_run)
        if not args.dry_run:
            write_json(table, record(every, pid, previous))
            if board == HERE and pid == "quick-v2":  # docs/zoo.md's generated tables stay current (in a process
                # of their own: the code may have changed since this campaign started, the data with it)
                run([sys.executable, str(Path(zoo_tables.__file__)), "--runs", str(table)], False)
            readme = Path("README.md")
            if p.entry.exists() and board == HERE and readme.exists():  # its generated tables stay current
                run([fmbench, "leaderboard", "--update-readme", "--readme", str(readme), "--dir", str(board)], False)
            if args.commit:
                what = p.entry.stem if p.entry.exists() else f"weights {p.model} {p.name}"
                git_commit([p.entry, table, WEIGHTS_FILE, board / "baselines", readme, zoo_tables.DOC],
                           f"zoo {pid}: {what} (leaderboard/reproduce.py)")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the running child
    sys.exit(main())
