"""A grid of evaluations (fmbench.campaign): locally and through submitit's debug executor;
finished cells skipped, results written once, entries built by the merge step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fmbench.campaign import grid, merge, run

TINY = {"n_images": 1, "image_size": 64, "corruptions": ["noise"], "attacks": ["fgsm"]}


def test_a_local_campaign_runs_each_cell_once_and_merges_entries(tmp_path):
    cells = grid(["unet-small"], ["nucleus", "er"], "quick", tmp_path / "runs", TINY, batch_size=1)
    assert [c.label for c in cells] == ["unet-small on nucleus", "unet-small on er"]
    first = run(cells)
    assert [s["status"] for s in first] == ["done", "done"] and all(0 <= s["clean_iou"] <= 1 for s in first)
    before = {c.out: Path(c.out).read_bytes() for c in cells}
    assert [s["status"] for s in run(cells)] == ["skipped", "skipped"]  # a finished cell is never redone
    assert {c.out: Path(c.out).read_bytes() for c in cells} == before
    written = merge(cells, tmp_path / "entries")
    assert len(written) == 2
    entry = json.loads(written[0].read_text())
    assert entry["kind"] == "fmbench-leaderboard-entry" and entry["model"]["ref"] == "unet-small"


@pytest.mark.parametrize("executor", ["debug", "submitit-local"])
def test_the_submitit_path_with_its_debug_and_local_executors(tmp_path, executor):
    pytest.importorskip("submitit")
    cells = grid(["unet-small"], ["mito", "er"], "quick", tmp_path / "runs", TINY, batch_size=1)
    statuses = run(cells, executor=executor, parallel=2, logs=tmp_path / "logs")
    assert [s["status"] for s in statuses] == ["done", "done"] and all(Path(c.out).exists() for c in cells)
    assert [s["status"] for s in run(cells, executor=executor, logs=tmp_path / "logs")] == ["skipped", "skipped"]


def test_the_cli_reports_each_cell_and_a_failing_one(tmp_path, cli):
    r = cli("campaign", "--models", "unet-small,not-a-model", "--datasets", "nucleus", "--out", str(tmp_path / "r"),
            "--n-images", "1", "--image-size", "64", "--corruptions", "noise", "--attacks", "none", "--batch-size", "1")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "done     unet-small on nucleus" in r.stdout and "failed   not-a-model on nucleus" in r.stdout
    assert "1 of 2 cells failed" in r.stderr
