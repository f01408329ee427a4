"""Rebuild the reference leaderboard: train every zoo model on each dataset, then evaluate it.

    python leaderboard/reproduce.py                       # everything, resumable
    python leaderboard/reproduce.py --datasets nucleus --models unet-r18,fpn-r18
    python leaderboard/reproduce.py --dry-run             # print the commands only

Each (model, dataset) pair is two plain CLI commands, run as subprocesses exactly as a user
would type them:

    fmbench train --model M --dataset D --seed 0 --tier quick --out CACHE/weights/zoo/M__D.pt
    fmbench eval  --model M --dataset D --tier quick --out WORK/results/M__D__quick-v1.json \
                  --leaderboard-entry leaderboard/M__D__quick-v1.json

Between the two, the checkpoint's sha256 and its training command (which does not name its
output path, so the bytes do not depend on it) go into ``plugins/zoo_weights.json``: the zoo
registers them, and ``eval`` finds, checks and loads the weights by model name from the user
cache (``$FMBENCH_CACHE``; this script uses ``.work/cache`` unless it is set).  The models whose
weights ship in the package (``unet-small``) are only evaluated.

Both commands are resumable (``--resume`` is added when a training state or a partial
evaluation log exists), so the campaign can be split across sessions: kill it at any point and
run it again; finished pairs are skipped.  After every step ``leaderboard/runs/zoo.json`` is
rewritten from the training records and entries on disk: training minutes, validation and clean
test IoU per pair, and both commands — nothing in it is typed by hand.
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
from pathlib import Path

from fmbench.runlog import partial_path
from fmbench.files import write_json

HERE = Path(__file__).resolve().parent
DATASETS = ("nucleus", "er", "mito")
TIER = "quick"


def zoo_models() -> list[str]:
    """The zoo, then the compact model whose weights ship with fmbench (evaluated, not trained)."""
    from fmbench_plugins.zoo import ZOO

    return [name for name, *_ in ZOO] + ["unet-small"]


def shipped(model: str, dataset: str) -> bool:
    """Whether ``model`` has weights for ``dataset`` in the package."""
    from fmbench.plugins import get_registry

    w = get_registry().model(model).weights.get(dataset)
    return w is not None and w.package is not None


def protocol_id(tier: str) -> str:
    from fmbench.plugins import get_registry

    return get_registry().protocol(tier).id


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


def register_weights(model: str, dataset: str, ckpt: Path) -> None:
    """Record the checkpoint's state sha256, training command and validation IoU in
    plugins/zoo_weights.json (the IoU is what a reproduced checkpoint is measured against)."""
    from fmbench.checkpoint import read_checkpoint, state_sha256
    from fmbench_plugins.zoo import WEIGHTS_FILE

    state, meta = read_checkpoint(ckpt)
    table = json.loads(WEIGHTS_FILE.read_text()) if WEIGHTS_FILE.exists() else {
        "kind": "fmbench-zoo-weights", "note": "written by leaderboard/reproduce.py", "weights": {}}
    table["weights"].setdefault(model, {})[dataset] = {"state_sha256": state_sha256(state), "command": meta["command"],
                                                       "val_iou": meta.get("val_iou")}
    table["weights"] = {m: dict(sorted(d.items())) for m, d in sorted(table["weights"].items())}
    write_json(WEIGHTS_FILE, table)


TRAIN_COLUMNS = ("train_command", "train_minutes", "val_iou", "weights_sha256")


def record(models: list[str], datasets: list[str], weights: Path, pid: str, previous: dict | None = None) -> dict:
    """The campaign table, rebuilt from what is on disk.

    A pair's training columns come from its checkpoint's record in the cache; when that is
    gone (another machine, a cleared cache), those of the checked-in table ``previous`` are
    kept rather than lost."""
    before = {(r["model"], r["dataset"]): r for r in (previous or {}).get("rows", [])}
    rows = []
    for ds in datasets:
        for m in models:
            row = {"model": m, "dataset": ds}
            rec = weights / f"{m}__{ds}.pt.json"
            if rec.exists():
                meta = json.loads(rec.read_text())
                row.update(train_command=meta.get("command"), train_minutes=round(meta["train_seconds"] / 60, 1),
                           val_iou=meta.get("val_iou"), weights_sha256=meta.get("state_sha256"))
            else:
                old = before.get((m, ds), {})
                row.update({k: old[k] for k in TRAIN_COLUMNS if k in old})
            entry = HERE / f"{m}__{ds}__{pid}.json"
            if entry.exists():
                e = json.loads(entry.read_text())
                row.update(eval_command=e["provenance"]["command"],
                           eval_minutes=round((e["provenance"].get("seconds") or 0) / 60, 1),
                           clean_iou=e["summary"]["clean_iou"],
                           corruption_robustness=e["summary"].get("corruption_robustness"),
                           adversarial_robustness=e["summary"].get("adversarial_robustness"),
                           hardware=e["provenance"]["hardware"])
            rows.append(row)
    return {"kind": "fmbench-zoo-runs", "protocol": pid, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", help="comma-separated zoo models (default: all)")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--work", type=Path, default=Path(".work/zoo"), help="raw result files")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    models = args.models.split(",") if args.models else zoo_models()
    datasets = args.datasets.split(",")
    unknown = sorted(set(models) - set(zoo_models()))
    if unknown:
        print(f"error: not zoo models: {', '.join(unknown)}", file=sys.stderr)
        return 1
    os.environ.setdefault("FMBENCH_CACHE", str(Path(".work/cache").resolve()))
    from fmbench.weights import cache_dir

    pid = protocol_id(TIER)
    fmbench = str(Path(sys.executable).with_name("fmbench"))
    weights = cache_dir() / "weights" / "zoo"
    weights.mkdir(parents=True, exist_ok=True)
    (args.work / "results").mkdir(parents=True, exist_ok=True)
    table = HERE / "runs" / "zoo.json"  # not an entry: kept out of the entries' directory
    table.parent.mkdir(exist_ok=True)
    previous = json.loads(table.read_text()) if table.exists() else None
    for ds in datasets:
        for m in models:
            ckpt = weights / f"{m}__{ds}.pt"
            entry = HERE / f"{m}__{ds}__{pid}.json"
            result = args.work / "results" / f"{m}__{ds}__{pid}.json"
            ship = shipped(m, ds)
            if entry.exists() and not ship and not ckpt.exists():
                # done here before; its weights are pinned in zoo_weights.json, and the training
                # command in the entry rebuilds them (deterministically) when someone needs them
                print(f"skip {m} on {ds}: entry exists, weights not in this cache", flush=True)
                continue
            if not ship and not ckpt.exists():
                cmd = ["fmbench", "train", "--model", m, "--dataset", ds, "--seed", str(args.seed),
                       "--tier", TIER, "--out", str(ckpt), "--quiet"]
                if Path(str(ckpt) + ".state.pt").exists():
                    cmd.append("--resume")
                run([fmbench, *cmd[1:]], args.dry_run)
            if not ship and not args.dry_run:
                register_weights(m, ds, ckpt)
            if not entry.exists():
                if result.exists():  # evaluated, entry lost: evaluate again from scratch
                    result.unlink()
                where = entry.relative_to(Path.cwd()) if entry.is_relative_to(Path.cwd()) else entry
                cmd = ["fmbench", "eval", "--model", m, "--dataset", ds, "--tier", TIER, "--out", str(result),
                       "--leaderboard-entry", str(where), "--quiet"]
                if partial_path(result).exists():
                    cmd.append("--resume")
                run([fmbench, *cmd[1:]], args.dry_run)
            if not args.dry_run:
                write_json(table, record(zoo_models(), list(DATASETS), weights, pid, previous))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the running child
    sys.exit(main())
