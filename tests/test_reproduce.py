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
    assert reproduce.main(["--dry-run", "--tier", "quick-v1", "--seeds", "1"]) == 1  # the version-1 zoo has seed 0 only


def test_a_longer_budget_is_named_in_the_training_command(reproduce, tmp_path, monkeypatch, capsys):
    """A (model, dataset) given more steps (``LONGER``) trains with ``--steps N`` in its command,
    undefended and under version 2 only, so the registered command re-runs what was trained."""
    monkeypatch.setenv("FMBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(reproduce, "LONGER", {("unet-r18", "er"): 2000})
    (tmp_path / "board").mkdir()
    assert reproduce.main(["--dry-run", "--tier", "quick-v2", "--models", "unet-r18", "--datasets", "er,nucleus",
                           "--defenses", "none,pgd-at", "--train-only",
                           "--work", str(tmp_path / "work"), "--board", str(tmp_path / "board")]) == 0
    trains = [line for line in capsys.readouterr().out.splitlines() if " train " in line]
    assert [("--steps 2000" in t, "--dataset er" in t, "--defense" in t) for t in trains] == [
        (True, True, False), (False, True, True), (False, False, False), (False, False, True)]


def test_finished_pairs_are_not_retrained_on_a_machine_without_their_weights(reproduce, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FMBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(ROOT)
    entry = ROOT / "leaderboard" / "unet-r18__nucleus__quick-v2.json"  # the default tier's
    assert entry.exists()
    assert reproduce.main(["--dry-run", "--models", "unet-r18", "--datasets", "nucleus",
                           "--work", str(tmp_path / "work")]) == 0
    out = capsys.readouterr().out
    assert "skip unet-r18__nucleus__quick-v2.json: entry exists, weights not in this cache" in out
    assert "fmbench train" not in out and "fmbench eval" not in out


@pytest.fixture(scope="module")
def zoo_tables():
    sys.path.insert(0, str(ROOT / "leaderboard"))
    import zoo_tables as mod

    return mod


def _row(model, seed=0, defense="none", clean=0.9, rob=0.3):
    return {"model": model, "dataset": "nucleus", "seed": seed, "defense": defense, "train_minutes": 10.0,
            "clean_iou": clean, "corruption_robustness": 0.8, "adversarial_robustness": 0.5, "robust_iou": rob,
            "convergence": {"state": "plateaued", "best_val_iou": clean, "best_step": 1200, "gain_last_quarter": 0.001}}


def test_zoo_tables_compute_seed_spread_and_defence_cost(zoo_tables):
    rows = [_row("a", 0, clean=0.90, rob=0.30), _row("a", 1, clean=0.88, rob=0.20), _row("a", 2, clean=0.86, rob=0.40),
            _row("b"), _row("a", 0, "pgd-at", clean=0.85, rob=0.45)]
    seeds = zoo_tables.seed_table(rows)
    assert "| `a` | nucleus | 3 (0, 1, 2) | 0.880 ± 0.020 (0.860–0.900) |" in seeds
    assert "0.300 ± 0.100 (0.200–0.400)" in seeds and "`b`" not in seeds  # one seed: no spread
    defence = zoo_tables.defence_table(rows)
    # a's seeds range 0.86-0.90 in clean IoU and 0.20-0.40 in robust IoU: the cost -0.05 is beyond it, the
    # gain +0.15 inside it
    assert "| `a` | nucleus | pgd-at | 0 | 0.850 (-0.050) |" in defence and "0.450 (≈ +0.150)" in defence
    assert "Seed range not measured" not in defence
    assert "Seed range not measured for `a` on nucleus" in zoo_tables.defence_table(
        [_row("a"), _row("a", 0, "pgd-at", clean=0.85, rob=0.45)])
    training = zoo_tables.training_table(rows)
    assert training.count("\n| `") == 2  # seed 0, undefended only: a and b
    assert "plateaued, +0.001 over the last quarter" in training


def test_the_zoo_docs_tables_are_current(zoo_tables):
    """docs/zoo.md's generated section is what the checked-in campaign table gives."""
    assert zoo_tables.main(["--check"]) == 0


def test_a_run_of_some_seeds_keeps_the_table_rows_of_the_others(reproduce):
    """The er run (--seeds 0) rewrote the campaign table with seed 0's rows only, dropping the 13
    rows of nucleus seeds 1 and 2."""
    previous = {"rows": [{"model": "m", "dataset": "nucleus", "seed": 2, "defense": "pgd-at"}]}
    assert reproduce.table_runs(previous, [0], ["none"]) == ([0, 2], ["none", "pgd-at"])
    assert reproduce.table_runs(None, [1], ["noise-aug"]) == ([0, 1], ["noise-aug", "none"])


def test_the_masking_table_reads_every_record_the_loader_accepts(zoo_tables):
    """docs/zoo.md's gradient-masking table: a checked row shows the numbers and verdict computed
    from its record and entries, an unchecked one (or one whose record is of other inputs) says so,
    and any record `masking.load` accepts renders without a traceback."""
    from fmbench.files import read_json
    from fmbench.leaderboard import masking

    from .test_masking import DEFENDED, UNDEFENDED, _record

    e, base = read_json(DEFENDED), read_json(UNDEFENDED)
    sha = e["model"]["state_sha256"]
    assert "not checked: `masking-unchecked`" in zoo_tables.masking_table([e], {})
    rec = _record(e, white_drop=0.07, baseline=base, baseline_drop=0.13)
    assert masking.record_problem(rec) is None
    table = zoo_tables.masking_table([e, base], {sha: rec})
    m = masking.measure(rec, e, base)
    gain = m["baseline"]["gain_vs_baseline"]["diff"]
    assert f"no sign of masking; 120-gradient APGD lowers its worst case by {-m['stronger_vs_entry']['diff']:.3f}" in table
    assert f"{m['entry_worst_case'] - m['baseline']['entry_worst_case']:+.3f} → {gain:+.3f}" in table
    assert "not measured" in zoo_tables.masking_table([e], {sha: rec})  # the baseline's entry is not given
    flagged = _record(e, sweep=(0.6, 0.4, 0.35, 0.32, 0.31, 0.3))
    assert "IoU 0.300 at budget 1" in zoo_tables.masking_table([e], {sha: flagged})
    other = _record(e)
    other["per_image"]["clean"] = [min(1.0, v + 0.01) for v in other["per_image"]["clean"]]
    assert "is not of this entry" in zoo_tables.masking_table([e], {sha: other})
