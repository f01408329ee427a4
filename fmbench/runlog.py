"""The chunk log of a run: one record per finished (batch, condition), so a killed run resumes
where it stopped and ends with the same result.

On disk it is an append-only JSON-lines file beside the result (``RESULT.partial.jsonl``)
whose first line is the run's identity (protocol, model reference, arguments, weights, the
hash of the model's tensors and of its source file, dataset, device, batch size, version).
A run owns its files: :class:`RunLock` keeps a second run off the same output, a resumed log
must match the run's identity line for line, every chunk appears once and belongs to the
plan, and a run that fails before its first chunk leaves no log behind.  Without a path the
log lives in memory (a notebook run that writes nothing).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Collection
from pathlib import Path
from types import TracebackType
from typing import Any

from . import cache as result_cache
from .errors import ResultError
from .files import atomic_write

RECORD_KEYS = ("batch", "condition", "ids", "inter", "union", "pred", "true", "passes")


def partial_path(out: str | os.PathLike, rank: int | None = None) -> Path:
    """Where the chunk log of a run writing ``out`` lives (``rank``: one rank's log in a
    distributed run, :mod:`fmbench.distributed`)."""
    out = Path(out)
    return out.with_name(out.name + (".partial.jsonl" if rank is None else f".partial.rank{rank}.jsonl"))


def partial_paths(out: str | os.PathLike) -> list[Path]:
    """Every chunk log of ``out`` on disk: a single process's and each rank's."""
    out = Path(out)
    found = [partial_path(out)] if partial_path(out).exists() else []
    return found + sorted(out.parent.glob(out.name + ".partial.rank*.jsonl"))


def lock_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(f".{out.name}.lock")


class RunLock:
    """An exclusive lock on one output (``flock`` on a lock file beside it): a second run on
    the same output stops with one line instead of interleaving its chunks.  The operating
    system drops the lock when the process dies, so a killed run never blocks the next."""

    def __init__(self, out: str | os.PathLike):
        self.path = lock_path(out)
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ResultError(f"cannot write beside {self.path.parent}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(self.fd, 200).decode(errors="replace").strip() or "another process"
            os.close(self.fd)
            self.fd = None
            raise ResultError(f"another run ({holder}) is writing {self.path.name[1:-5]} in {self.path.parent}; "
                              f"wait for it or choose another output file") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None


class PartialLog:
    """An append-only log of finished (batch, condition) chunks.

    ``path=None`` keeps the chunks in memory only.  With a path, the first line is the run's
    identity; ``resume=True`` checks it against the current run and keeps the chunks already
    done, after checking each: a record of the right shape, for a planned condition, once.
    Only the last line may be cut short (by a kill); it is dropped.
    """

    def __init__(self, path: str | os.PathLike | None, header: dict[str, Any], resume: bool = False,
                 conditions: Collection[str] | None = None):
        self.path = Path(path) if path is not None else None
        self.records: list[dict[str, Any]] = []
        self.resumed = False
        if self.path is None:
            pass
        elif resume and self.path.exists():
            self._resume(header, conditions)
            self.resumed = True
        else:
            line = json.dumps({"header": header}) + "\n"
            atomic_write(self.path, lambda f: f.write(line), mode="w")
        self.done = {(r["batch"], r["condition"]) for r in self.records}

    @staticmethod
    def header_of(path: str | os.PathLike) -> dict[str, Any] | None:
        """The identity line of a chunk log, or ``None`` when it has none (empty, damaged)."""
        try:
            with open(path) as f:
                first = json.loads(f.readline() or "null")
        except (OSError, ValueError):
            return None
        header = first.get("header") if isinstance(first, dict) else None
        return header if isinstance(header, dict) else None

    def _resume(self, header: dict[str, Any], conditions: Collection[str] | None) -> None:
        assert self.path is not None
        self.records = self.read(self.path, header, conditions)
        good = "".join(json.dumps(x) + "\n" for x in [{"header": header}] + self.records)
        atomic_write(self.path, lambda f: f.write(good), mode="w")

    def adopt(self, records: list[dict[str, Any]]) -> None:
        """Take chunks another process logged (a distributed run's other ranks) as done, without
        writing them to this log; a chunk already here is kept once."""
        for r in records:
            key = (r["batch"], r["condition"])
            if key not in self.done:
                self.records.append(r)
                self.done.add(key)

    @staticmethod
    def read(path: Path, header: dict[str, Any], conditions: Collection[str] | None) -> list[dict[str, Any]]:
        """The checked chunk records of the log at ``path``, which must carry ``header``."""
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ResultError(f"partial run {path} cannot be read: {exc}") from None
        try:
            first = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            first = None
        # one rule with the result cache: the same identity, compared by its key
        if not (isinstance(first, dict) and isinstance(first.get("header"), dict)
                and result_cache.key(first["header"]) == result_cache.key(header)):
            diff = []
            if isinstance(first, dict) and isinstance(first.get("header"), dict):
                diff = [k for k in header if first["header"].get(k) != header[k]]
            what = f" ({', '.join(diff)} differ)" if diff else ""
            if first is None:  # empty, or its first line is not a run's header (cut off, overwritten)
                raise ResultError(f"partial run {path} has no readable header (empty or damaged at its first line): "
                                  f"nothing in it can be resumed", hints=("overwrite",))
            raise ResultError(f"partial run {path} was made with different settings{what}",
                              hints=("overwrite",))
        seen: set[tuple[int, str]] = set()
        records: list[dict[str, Any]] = []
        for n, line in enumerate(lines[1:], start=2):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if n == len(lines):
                    break  # the last line of a killed run
                raise ResultError(f"partial run {path}, line {n}: not a JSON line") from None
            problem = _record_problem(record, conditions)
            if problem:
                raise ResultError(f"partial run {path}, line {n}: {problem}", hints=("overwrite",))
            key = (record["batch"], record["condition"])
            if key in seen:
                raise ResultError(f"partial run {path}, line {n}: chunk (batch {key[0]}, {key[1]}) is recorded "
                                  f"twice", hints=("overwrite",))
            seen.add(key)
            records.append(record)
        return records

    def append(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            try:
                with open(self.path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:
                raise ResultError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self.records.append(record)
        self.done.add((record["batch"], record["condition"]))

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _record_problem(record: Any, conditions: Collection[str] | None) -> str | None:
    """Why a log line is not a chunk record of this run, or ``None``."""
    if not isinstance(record, dict) or any(k not in record for k in RECORD_KEYS):
        return "not a chunk record"
    if not isinstance(record["batch"], int) or isinstance(record["batch"], bool) or record["batch"] < 0:
        return f"batch {record['batch']!r} is not a batch index"
    if conditions is not None and record["condition"] not in conditions:
        return f"condition {record['condition']!r} is not one this run evaluates"
    ids = record["ids"]
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        return "ids is not a list of image ids"
    for k in ("inter", "union", "pred", "true"):
        v = record[k]
        if not isinstance(v, list) or len(v) != len(ids) or not all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v):
            return f"{k} is not one pixel count per image"
    if any(i > u for i, u in zip(record["inter"], record["union"])):
        return "an intersection is larger than its union"
    passes = record["passes"]
    if not isinstance(passes, dict) or not all(isinstance(v, int) and v >= 0 for v in passes.values()):
        return "passes is not a table of counts"
    return None
