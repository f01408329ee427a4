"""leaderboard/reproduce.py: the campaign keeps what it measured when the cache is gone."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "leaderboard" / "reproduce.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # (its dataclass looks its module up)
    spec.loader.exec_module(mod)
    return mod


def test_record_keeps_training_columns_when_the_cache_lost_them(reproduce, tmp_path):
    def piece(m, seed=0):
        return reproduce.Piece(m, "er", seed, "none", "er", tmp_path / f"{m}__er{seed or ''}.pt", tmp_path / f"{m}.json",
                               tmp_path / "r.json")

    previous = {"rows": [{"model": "m1", "dataset": "er", "train_command": "fmbench train --model m1",
                          "train_minutes": 7.5, "val_iou": 0.9, "weights_sha256": "ab"}]}
    table = reproduce.record([piece("m1"), piece("m2")], "quick-v1", previous)
    # a row of the table before seeds were recorded is seed 0 without a defence
    assert table["rows"] == [{"model": "m1", "dataset": "er", "seed": 0, "defense": "none", "weights": "er",
                              "train_command": "fmbench train --model m1", "train_minutes": 7.5, "val_iou": 0.9,
                              "weights_sha256": "ab"}]  # m2: nothing measured, no row
    # a record in the cache is the measurement of the weights there: it wins
    (tmp_path / "m1__er.pt.json").write_text(json.dumps(
        {"command": "fmbench train --model m1", "train_seconds": 60.0, "val_iou": 0.8, "state_sha256": "cd",
         "convergence": {"state": "plateaued"}}))
    row = reproduce.record([piece("m1")], "quick-v1", previous)["rows"][0]
    assert (row["train_minutes"], row["val_iou"], row["weights_sha256"]) == (1.0, 0.8, "cd")
    assert row["convergence"] == {"state": "plateaued"}
    assert reproduce.record([piece("m1", seed=1)], "quick-v1", previous)["rows"] == []


def test_v2_pieces_are_named_per_seed_and_defense(reproduce, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FMBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(ROOT)
    (tmp_path / "board").mkdir()
    assert reproduce.main(["--dry-run", "--tier", "quick-v2", "--models", "unet-r18,unet-small", "--datasets",
                           "nucleus", "--seeds", "0,1", "--defenses", "none,pgd-at",
                           "--work", str(tmp_path / "work"), "--board", str(tmp_path / "board")]) == 0
    out = capsys.readouterr().out
    cache = tmp_path / "cache" / "weights" / "zoo"
    assert (f"fmbench train --model unet-r18 --dataset nucleus --seed 1 --tier quick-v2 --defense pgd-at "
            f"--out {cache}/unet-r18__nucleus@2__v2__seed1__pgd-at.pt --quiet") in out
    assert ("--tier quick-v2 --weights nucleus@2/v2/seed1/pgd-at --out "
            f"{tmp_path}/work/results/unet-r18+pgd-at+seed1__nucleus__quick-v2.json --leaderboard-entry "
            f"{tmp_path}/board/unet-r18+pgd-at+seed1__nucleus__quick-v2.json") in out
    # the table's baselines first: an entry validates only beside them
    assert f"fmbench leaderboard baselines --dataset nucleus@2 --tier quick-v2 --dir {tmp_path}/board" in out
    # seed 0 without a defence: the weights eval picks by itself, so the command names none
    assert ("fmbench eval --model unet-r18 --dataset nucleus --tier quick-v2 --out "
            f"{tmp_path}/work/results/unet-r18__nucleus__quick-v2.json") in out
    # the shipped model is evaluated once, never trained
    assert "train --model unet-small" not in out and out.count("eval --model unet-small") == 1
    assert reproduce.entry_stem("fpn-r18", "er", "quick-v2", 2, "noise-aug") == "fpn-r18+noise-aug+seed2__er__quick-v2"
    assert reproduce.main(["--dry-run", "--seeds", "1"]) == 1  # the version-1 zoo has seed 0 only


def test_finished_pairs_are_not_retrained_on_a_machine_without_their_weights(reproduce, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FMBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(ROOT)
    entry = ROOT / "leaderboard" / "unet-r18__nucleus__quick-v1.json"
    assert entry.exists()
    assert reproduce.main(["--dry-run", "--models", "unet-r18", "--datasets", "nucleus",
                           "--work", str(tmp_path / "work")]) == 0
    out = capsys.readouterr().out
    assert "skip unet-r18__nucleus__quick-v1.json: entry exists, weights not in this cache" in out
    assert "fmbench train" not in out and "fmbench eval" not in out
