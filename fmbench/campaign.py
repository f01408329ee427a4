"""A grid of evaluations -- models x datasets under one protocol -- run here or on a cluster.

    fmbench campaign --models unet-small,fpn-r18 --datasets nucleus,er,mito --tier quick --out runs/
    fmbench campaign ... --executor slurm --parallel 8 --slurm-partition gpu --slurm-gpus 1

Each cell is one ``fmbench.evaluate`` writing ``OUT/MODEL__DATASET__PROTOCOL.json``
atomically.  A cell whose result exists is skipped, one with a partial log resumes, so a
campaign is re-run until done, in any order, on any mix of machines sharing ``OUT``.
Executors: ``local`` (one cell after another in this process, the default), and through
``submitit`` (``pip install 'fmbench[cluster]'``) ``submitit-local`` (a subprocess per cell on
this machine), ``debug`` (submitit's in-process executor, for tests) and ``slurm`` (a SLURM job
array; ``--parallel`` bounds how many cells run at once).  ``--entries DIR`` then builds a
leaderboard entry from every finished result (the merge step).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ProtocolError, ResultError
from .runlog import partial_paths

EXECUTORS = ("local", "submitit-local", "debug", "slurm")


@dataclass(frozen=True)
class Cell:
    """One evaluation of the grid."""

    model: str
    dataset: str
    protocol: str
    out: str
    overrides: tuple[tuple[str, Any], ...] = ()
    batch_size: int = 8
    device: str = "auto"

    @property
    def label(self) -> str:
        return f"{self.model} on {self.dataset}"


def grid(models: Sequence[str], datasets: Sequence[str], protocol: str, out_dir: str | os.PathLike,
         overrides: Mapping[str, Any] | None = None, batch_size: int = 8, device: str = "auto") -> list[Cell]:
    """The cells of models x datasets under ``protocol`` (a tier or id, with ``overrides``)."""
    from .api import get_protocol

    proto = get_protocol(protocol, **{k: v for k, v in (overrides or {}).items() if v is not None})
    cells = []
    for d in datasets:
        for m in models:
            slug = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{m}__{d}__{proto.id}")
            frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in (overrides or {}).items()
                                  if v is not None))  # hashable: a cell is a key
            cells.append(Cell(m, d, protocol, str(Path(out_dir) / f"{slug}.json"), frozen, batch_size, device))
    return cells


def run_cell(cell: Cell) -> dict[str, Any]:
    """Evaluate one cell (skipped when its result exists; resumed from a partial log); its
    status: ``done``, ``skipped`` or ``failed`` with the error."""
    from .api import evaluate
    from .errors import FmbenchError

    out = Path(cell.out)
    if out.exists():
        return {"cell": cell.label, "out": cell.out, "status": "skipped"}
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        overrides: dict[str, Any] = {k: list(v) if isinstance(v, tuple) else v for k, v in cell.overrides}
        result = evaluate(cell.model, cell.dataset, cell.protocol, out=out, resume=bool(partial_paths(out)),
                          batch_size=cell.batch_size, device=cell.device, **overrides)
    except FmbenchError as exc:
        return {"cell": cell.label, "out": cell.out, "status": "failed", "error": str(exc)}
    clean = (result.get("scores") or {}).get("clean_iou", {}).get("value")
    return {"cell": cell.label, "out": cell.out, "status": "done", "clean_iou": clean,
            "seconds": result["run"]["seconds"]}


@dataclass
class Slurm:
    """SLURM settings for the ``slurm`` executor (submitit's ``slurm_*`` parameters)."""

    partition: str | None = None
    gpus: int = 0
    cpus: int = 2
    minutes: int = 60
    extra: dict[str, Any] = field(default_factory=dict)


def run(cells: Sequence[Cell], executor: str = "local", parallel: int = 4, logs: str | os.PathLike = ".fmbench-campaign",
        slurm: Slurm | None = None) -> list[dict[str, Any]]:
    """Run every cell with ``executor``; returns each cell's status, in grid order."""
    if executor not in EXECUTORS:
        raise ProtocolError(f"unknown executor {executor!r} (known: {', '.join(EXECUTORS)})")
    if executor == "local":
        return [run_cell(c) for c in cells]
    try:
        import submitit
    except ImportError:
        raise ProtocolError(f"executor {executor!r} needs submitit: pip install 'fmbench[cluster]'") from None
    todo = [c for c in cells if not Path(c.out).exists()]
    statuses = {c: {"cell": c.label, "out": c.out, "status": "skipped"} for c in cells if c not in todo}
    if todo:
        if executor == "debug":
            ex: Any = submitit.DebugExecutor(folder=str(logs))
        elif executor == "submitit-local":
            ex = submitit.LocalExecutor(folder=str(logs))
            ex.update_parameters(timeout_min=(slurm or Slurm()).minutes)
        else:
            s = slurm or Slurm()
            ex = submitit.AutoExecutor(folder=str(logs), cluster="slurm")
            params: dict[str, Any] = {"timeout_min": s.minutes, "cpus_per_task": s.cpus,
                                      "slurm_array_parallelism": parallel, **s.extra}
            if s.partition:
                params["slurm_partition"] = s.partition
            if s.gpus:
                params["gpus_per_node"] = s.gpus
            ex.update_parameters(**params)
        # a SLURM array bounds its own parallelism; on this machine, at most ``parallel`` at a time
        waves = [todo] if executor == "slurm" else [todo[i : i + parallel] for i in range(0, len(todo), parallel)]
        for wave in waves:
            jobs = ex.map_array(run_cell, wave) if executor != "debug" else [ex.submit(run_cell, c) for c in wave]
            for c, job in zip(wave, jobs):
                try:
                    statuses[c] = job.result()
                except Exception as exc:  # noqa: BLE001 -- a cell's job that died is reported, the others stand
                    statuses[c] = {"cell": c.label, "out": c.out, "status": "failed",
                                   "error": f"{type(exc).__name__}: {exc}"}
    return [statuses[c] for c in cells]


def merge(cells: Sequence[Cell], entries_dir: str | os.PathLike, overwrite: bool = False) -> list[Path]:
    """Build a leaderboard entry from every finished cell's result (the merge step)."""
    from .leaderboard import build_entry, write_entry
    from .result import Result

    written = []
    for c in cells:
        out = Path(c.out)
        if not out.exists():
            continue
        entry_path = Path(entries_dir) / out.name
        if entry_path.exists() and not overwrite:
            continue
        try:
            written.append(write_entry(entry_path, build_entry(Result.load(out).document), overwrite=overwrite))
        except ResultError as exc:
            raise ResultError(f"{out}: {exc}") from None
    return written
