"""The chunk log of a run: one record per finished (batch, condition), so a killed run resumes
where it stopped and ends with the same result.

On disk it is an append-only JSON-lines file beside the result (``RESULT.partial.jsonl``)
whose first line is the run's identity; without a path it lives in memory (a notebook run
that writes nothing).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import ResultError
from .files import atomic_write


def partial_path(out: str | os.PathLike) -> Path:
    """Where the chunk log of a run writing ``out`` lives."""
    out = Path(out)
    return out.with_name(out.name + ".partial.jsonl")


class PartialLog:
    """An append-only log of finished (batch, condition) chunks.

    ``path=None`` keeps the chunks in memory only.  With a path, the first line is the run's
    identity; ``resume=True`` checks it against the current run and keeps the chunks already
    done.  A line cut short by a kill is ignored.
    """

    def __init__(self, path: str | os.PathLike | None, header: dict[str, Any], resume: bool = False):
        self.path = Path(path) if path is not None else None
        self.records: list[dict[str, Any]] = []
        if self.path is None:
            pass
        elif resume and self.path.exists():
            self._resume(header)
        else:
            line = json.dumps({"header": header}) + "\n"
            atomic_write(self.path, lambda f: f.write(line), mode="w")
        self.done = {(r["batch"], r["condition"]) for r in self.records}

    def _resume(self, header: dict[str, Any]) -> None:
        assert self.path is not None
        lines = self.path.read_text().splitlines()
        try:
            first = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            first = None
        if first != {"header": header}:
            diff = []
            if isinstance(first, dict) and isinstance(first.get("header"), dict):
                diff = [k for k in header if first["header"].get(k) != header[k]]
            what = f" ({', '.join(diff)} differ)" if diff else ""
            raise ResultError(f"partial run {self.path} was made with different settings{what}",
                              hints=("overwrite",))
        for line in lines[1:]:
            try:
                self.records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # the last line of a killed run
        good = "".join(json.dumps(x) + "\n" for x in [{"header": header}] + self.records)
        atomic_write(self.path, lambda f: f.write(good), mode="w")

    def append(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
        self.records.append(record)
        self.done.add((record["batch"], record["condition"]))

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
