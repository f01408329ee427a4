"""leaderboard/reproduce.py: the campaign keeps what it measured when the cache is gone."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "leaderboard" / "reproduce.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_record_keeps_training_columns_when_the_cache_lost_them(reproduce, tmp_path):
    previous = {"rows": [{"model": "m1", "dataset": "er", "train_command": "fmbench train --model m1",
                          "train_minutes": 7.5, "val_iou": 0.9, "weights_sha256": "ab"}]}
    table = reproduce.record(["m1", "m2"], ["er"], tmp_path, "quick-v1", previous)
    assert table["rows"][0] == {"model": "m1", "dataset": "er", "train_command": "fmbench train --model m1",
                                "train_minutes": 7.5, "val_iou": 0.9, "weights_sha256": "ab"}
    assert table["rows"][1] == {"model": "m2", "dataset": "er"}
    # a record in the cache is the measurement of the weights there: it wins
    (tmp_path / "m1__er.pt.json").write_text(json.dumps(
        {"command": "fmbench train --model m1", "train_seconds": 60.0, "val_iou": 0.8, "state_sha256": "cd"}))
    row = reproduce.record(["m1"], ["er"], tmp_path, "quick-v1", previous)["rows"][0]
    assert (row["train_minutes"], row["val_iou"], row["weights_sha256"]) == (1.0, 0.8, "cd")


def test_finished_pairs_are_not_retrained_on_a_machine_without_their_weights(reproduce, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FMBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(ROOT)
    entry = ROOT / "leaderboard" / "unet-r18__nucleus__quick-v1.json"
    assert entry.exists()
    assert reproduce.main(["--dry-run", "--models", "unet-r18", "--datasets", "nucleus",
                           "--work", str(tmp_path / "work")]) == 0
    out = capsys.readouterr().out
    assert "skip unet-r18 on nucleus: entry exists, weights not in this cache" in out
    assert "fmbench train" not in out and "fmbench eval" not in out
