"""The label-noise study: train on rough annotations at several rates, evaluate, one entry each.

    python leaderboard/label_noise.py                                     # the whole grid, resumable
    python leaderboard/label_noise.py --datasets nucleus --kinds boundary --rates 0,0.2 --dry-run
    python leaderboard/label_noise.py --models lraspp-mbv3 --datasets nucleus --kinds boundary --commit

Each point is two plain CLI commands, as a user would type them:

    fmbench train --model M --dataset D --tier T [--label-noise KIND:RATE:SEV] --out CACHE/weights/label-noise/NAME.pt
    fmbench eval  --model M --dataset D --tier T --checkpoint CACHE/... --out WORK/NAME.json \\
                  --leaderboard-entry leaderboard/label-noise/NAME.json

Rate 0 is one training on exact masks per model and dataset, shared by every kind.  Entries
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
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BOARD = HERE / "label-noise"
KINDS = ("boundary", "boundary-smooth", "missing", "spurious", "coarse")
RATES = (0.0, 0.2, 0.4, 0.7, 1.0)


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="unet-small")
    ap.add_argument("--datasets", default="nucleus,er,mito")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--rates", default=",".join(f"{r:g}" for r in RATES))
    ap.add_argument("--severity", type=float, help="one severity for every kind (default: each kind's default)")
    ap.add_argument("--tier", default="quick-v2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path(".work/label-noise"))
    ap.add_argument("--board", type=Path, default=BOARD)
    ap.add_argument("--commit", action="store_true")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("FMBENCH_CACHE", str(Path(".work/cache").resolve()))
    rep = _reproduce()
    from fmbench.label_noise import parse_setting
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
    points: list[tuple[str, str, str | None]] = []
    for m in args.models.split(","):
        for ds in args.datasets.split(","):
            rates = [float(r) for r in args.rates.split(",")]
            if 0.0 in rates:
                points.append((m, ds, None))
            for kind in args.kinds.split(","):
                for rate in (r for r in rates if r > 0):
                    text = f"{kind}:{rate:g}" + (f":{args.severity:g}" if args.severity else "")
                    points.append((m, ds, parse_setting(text, reg).text))
    for m, ds, setting in points:
        tag = "exact" if setting is None else setting.replace(":", "-")
        stem = f"{m}+labels-{tag}__{ds}__{protocol.id}"
        ckpt, entry, result = weights / f"{stem}.pt", args.board / f"{stem}.json", args.work / f"{stem}.json"
        if entry.exists():
            continue
        if not ckpt.exists():
            cmd = [fmbench, "train", "--model", m, "--dataset", ds, "--seed", str(args.seed), "--tier", args.tier,
                   *(["--label-noise", setting] if setting else []), "--out", str(ckpt), "--quiet"]
            if Path(str(ckpt) + ".state.pt").exists():
                cmd.append("--resume")
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
        if not args.dry_run and args.board == BOARD and readme.exists():  # its generated findings stay current
            rep.run([fmbench, "leaderboard", "--update-readme", "--readme", str(readme), "--dir", str(HERE)], False)
        if args.commit and not args.dry_run:
            rep.git_commit([entry, args.board / "baselines", args.board / "weights", readme],
                           f"label-noise study: {stem} (leaderboard/label_noise.py)")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
