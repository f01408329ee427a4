"""Gradient-masking flags of adversarially trained rows (fmbench.leaderboard.masking): unchecked
weights are flagged, a check on record clears exactly the weights it names or flags masking,
and a malformed record file is refused by validate and by the tables."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from fmbench.errors import ResultError
from fmbench.files import read_json
from fmbench.leaderboard import load_entries, masking, validate_dir
from fmbench.leaderboard.rank import groups

ROOT = Path(__file__).resolve().parents[1] / "leaderboard"
DEFENDED = ROOT / "lraspp-mbv3+pgd-at__nucleus__quick-v2.json"
NOISE_AUG = ROOT / "lraspp-mbv3+noise-aug__nucleus__quick-v2.json"


def _record(sha: str, flags: list[str] | None = None, **more) -> dict:
    return {"target": "lraspp-mbv3:nucleus@2/v2/pgd-at", "state_sha256": sha, "dataset": "nucleus@2",
            "tier": "quick-v2", "masking_flags": flags or [], "transfer_worst": 0.70, "white_box_worst": 0.58,
            "entry_worst_case": 0.64, "transfer_vs_white": {"diff": 0.12, "ci95": [0.05, 0.19]},
            "sweep": {"8/255": 0.68, "255/255": 0.03}, **more}


def _write(folder: Path, records: list[dict]) -> None:
    (folder / "checks").mkdir(parents=True, exist_ok=True)
    (folder / masking.FILE).write_text(json.dumps({"kind": masking.KIND, "records": records}))


def _flags(folder: Path) -> list[str]:
    from fmbench.plugins import get_registry

    (g,) = groups(load_entries(folder, get_registry()))
    return [f["flag"] for fl in g["flags"].values() for f in fl]


@pytest.fixture
def board(tmp_path):
    shutil.copytree(ROOT / "baselines", tmp_path / "baselines")
    shutil.copy(DEFENDED, tmp_path / DEFENDED.name)
    shutil.copy(NOISE_AUG, tmp_path / NOISE_AUG.name)
    return tmp_path


def test_only_adversarially_trained_rows_are_flagged_and_a_check_clears_only_its_weights(board):
    e = read_json(DEFENDED)
    sha = e["model"]["state_sha256"]
    assert masking.flag(read_json(NOISE_AUG), {}) is None  # noise-aug is not attacked through its training
    unchecked = masking.flag(e, {})
    assert unchecked["flag"] == "masking-unchecked" and "upper bound" in unchecked["reason"]
    assert masking.flag(e, {sha: _record(sha)}) is None
    other = copy.deepcopy(e)
    other["model"]["state_sha256"] = "c" * 64  # another training of the same name: the record does not cover it
    assert masking.flag(other, {sha: _record(sha)})["flag"] == "masking-unchecked"
    # a check on another dataset or protocol says nothing about this row
    assert masking.flag(e, {sha: _record(sha, dataset="nucleus")})["flag"] == "masking-unchecked"
    assert masking.flag(e, {sha: _record(sha, tier="full-v2")})["flag"] == "masking-unchecked"
    # pooled seeds: a finding on one seed is not hidden by another seed's gap
    from fmbench.leaderboard.rank import flags

    found_flag = {"flag": "gradient-masking", "reason": "r"}
    pooled = {**e, "members": [{**e, "_masking": masking.flag(other, {})}, {**e, "_masking": found_flag}]}
    assert [f["flag"] for f in flags(pooled, None)] == ["gradient-masking"]
    found = masking.flag(e, {sha: _record(sha, ["transfer attacks beat the white-box ones by 0.100"])})
    assert found["flag"] == "gradient-masking" and "transfer attacks beat" in found["reason"]

    # in the tables: one flag on the defended row, none on the noise-aug row
    assert _flags(board) == ["masking-unchecked"]
    _write(board, [_record(sha)])
    assert _flags(board) == []
    _write(board, [_record(sha, ["IoU 0.400 at budget 1 (should reach ~0: masked gradient)"])])
    assert _flags(board) == ["gradient-masking"]


@pytest.mark.parametrize("bad, message", [
    ({"kind": "something-else", "records": []}, "not a gradient-masking check document"),
    ({"kind": masking.KIND, "records": [{"state_sha256": "abc"}]}, "state_sha256 (64 hex digits)"),
    ({"kind": masking.KIND, "records": [{**_record("d" * 64), "masking_flags": "none"}]}, "list of strings"),
    ({"kind": masking.KIND, "records": [{**_record("d" * 64), "transfer_worst": 7}]}, "transfer_worst must be an IoU"),
    ({"kind": masking.KIND, "records": [{**_record("d" * 64), "sweep": {}}]}, "sweep"),
    ({"kind": masking.KIND, "records": [_record("d" * 64, sweep={"16/255": "high"})]}, "sweep"),
    ({"kind": masking.KIND, "records": [_record("d" * 64, transfer_vs_white="x")]}, "paired differences"),
    ({"kind": masking.KIND, "records": [_record("d" * 64, stronger_vs_entry=[1])]}, "paired differences"),
    ({"kind": masking.KIND, "records": [_record("d" * 64, transfer=3)]}, "transfer must map"),
    ({"kind": masking.KIND, "records": [_record("d" * 64, baseline="yes")]}, "baseline needs"),
    ({"kind": masking.KIND, "records": [_record("d" * 64, transfer_worst=True)]}, "transfer_worst must be an IoU"),
    ({"kind": masking.KIND, "records": [_record("d" * 64, dataset=None)]}, "needs the dataset"),
    ({"kind": masking.KIND, "records": [_record("d" * 64), _record("d" * 64)]}, "a second record"),
])
def test_a_malformed_check_file_is_refused_by_validate_and_by_the_tables(board, bad, message):
    from fmbench.plugins import get_registry

    (board / "checks").mkdir()
    (board / masking.FILE).write_text(json.dumps(bad))
    problems = validate_dir(board, get_registry())[2]
    assert len(problems) == 1 and message in problems[0] and "gradient-masking.json" in problems[0]
    with pytest.raises(ResultError, match="gradient-masking.json"):
        load_entries(board, get_registry())


def test_the_checked_in_records_are_well_formed_and_name_checked_in_entries():
    checks = masking.load(ROOT)
    shas = {read_json(p)["model"].get("state_sha256") for p in ROOT.glob("*.json")}
    assert set(checks) <= shas, "a check record names weights no entry has"
