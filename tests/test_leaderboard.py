"""Leaderboard entries, validation, ranking, compare, README generation and the correlation
analysis.  One real (tiny) evaluation writes an entry; the others are synthesised from it with
their summaries recomputed, so they stay valid."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fmbench import AttackEntry, CorruptionEntry, Protocol, hookimpl, scores
from fmbench.cli import cli as fmbench_cli
from fmbench.files import read_json, write_json
from fmbench.leaderboard import (
    build_entry,
    load_entries,
    validate_dir,
    write_entry,
)
from fmbench.leaderboard.store import _builtin_errors, load_baselines, load_schema
from fmbench.readme import readme_is_current, update_readme
from fmbench.result import summarize

from .conftest import run_cli
from .helpers import make_dist, write_mymod

ROOT = Path(__file__).resolve().parents[1]

TINY = Protocol(name="tiny", version=1, description="test protocol", n_images=4, image_size=64, reference_snr=8.0,
                corruptions=(CorruptionEntry("noise", (5.0, 2.0)),),
                attacks=(AttackEntry("fgsm", (2 / 255, 8 / 255)),))
TINY2 = Protocol(name="tiny", version=2, description="test protocol v2", n_images=4, image_size=64, reference_snr=8.0,
                 corruptions=(CorruptionEntry("noise", (5.0,)),), attacks=(AttackEntry("fgsm", (8 / 255,)),))

PROTO_CODE = '''
    from fmbench import AttackEntry, CorruptionEntry, Protocol, hookimpl

    @hookimpl
    def fmbench_protocols():
        return [Protocol(name="tiny", version=1, description="test protocol", n_images=4, image_size=64,
                         reference_snr=8.0, corruptions=(CorruptionEntry("noise", (5.0, 2.0)),),
                         attacks=(AttackEntry("fgsm", (2 / 255, 8 / 255)),))]
'''


class TinyProtocols:
    @hookimpl
    def fmbench_protocols(self):
        return [TINY, TINY2]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A real `fmbench eval --leaderboard-entry` under the registered tiny-v1 protocol."""
    tmp = tmp_path_factory.mktemp("real")
    site = make_dist(tmp / "site", "fmbench-tinyproto", "fmbench_tinyproto", PROTO_CODE)
    mod = write_mymod(tmp / "m")
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(mod.parent)]), "FMBENCH_LOAD_PLUGINS": "fmbench_tinyproto"}
    entry = tmp / "lb" / "mynet__nucleus__tiny-v1.json"
    args = ["eval", "--model", "mymod:Thresh", "--dataset", "nucleus", "--tier", "tiny", "--device", "cpu",
            "--out", str(tmp / "r.json"), "--quiet", "--leaderboard-entry", str(entry)]
    r = run_cli(*args, cwd=tmp, env=env)
    assert r.returncode == 0, r.stderr
    again = run_cli(*args[:-3], "--out", str(tmp / "r2.json"), "--leaderboard-entry", str(entry), cwd=tmp, env=env)
    return {"tmp": tmp, "entry": entry, "result": tmp / "r.json", "env": env, "again": again}


@pytest.fixture
def proto(register_plugin):
    register_plugin(TinyProtocols(), name="test-tiny-protocols")


def registry_with_tiny():
    from fmbench.plugins import get_registry, make_plugin_manager

    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(TinyProtocols(), name="test-tiny-protocols")
    return get_registry(pm)


MODELS = {  # name: (clean IoU, corruption robustness, adversarial robustness)
    "net-a": (0.90, 0.80, 0.50),
    "net-b": (0.95, 0.60, 0.30),
    "net-c": (0.85, 0.90, 0.70),
    "net-d": (0.80, 0.70, 0.40),
}


def synth(base: dict, name: str, clean: float, corr: float, adv: float) -> dict:
    """A copy of ``base`` for model ``name`` with every condition's scores set consistently."""
    e = copy.deepcopy(base)
    e["model"]["ref"] = name
    e["model"]["weights_sha256"] = (name.encode().hex() * 16)[:64]
    n = len(e["per_image"]["ids"])
    for i, c in enumerate(e["conditions"]):
        rob = 1.0 if c["kind"] == "reference" else (corr if c["kind"] == "corruption" else adv) + 0.01 * (i % 2)
        c["robustness"] = rob
        c["iou"] = clean * rob
        c["dice"] = 2 * c["iou"] / (1 + c["iou"])  # one mask per image: Dice = 2J / (1 + J)
        e["per_image"]["iou"][c["id"]] = [c["iou"]] * n
    e["summary"] = summarize(e["conditions"])
    e["scores"] = scores.compute(e["conditions"], e["per_image"]["iou"])
    return e


@pytest.fixture
def board(real, tmp_path):
    base = read_json(real["entry"])
    d = tmp_path / "lb"
    for name, vals in MODELS.items():
        write_json(d / f"{name}.json", synth(base, name, *vals))
    write_json(d / "baselines" / "nucleus__tiny-v1.json", tiny_baselines())
    return d, base


_BASELINES: dict = {}


def tiny_baselines():
    """The baselines of nucleus under tiny-v1 (measured once per session: 4 images)."""
    if not _BASELINES:
        from fmbench.baselines import measure

        registry = registry_with_tiny()
        _BASELINES["doc"] = measure(registry.dataset("nucleus").factory(split="test", image_size=64), "nucleus",
                                    TINY, registry)
    return _BASELINES["doc"]


def invoke(*args):
    r = CliRunner().invoke(fmbench_cli, list(args), catch_exceptions=True)
    return r


def test_eval_writes_complete_leaderboard_entry(real):
    e = read_json(real["entry"])
    assert e["kind"] == "fmbench-leaderboard-entry" and e["schema_version"] == load_schema()["schema_version"] == 2
    assert e["protocol"]["id"] == "tiny-v1" and e["protocol"]["hash"] == TINY.hash
    assert [c["id"] for c in e["conditions"]] == ["reference", "noise@5", "noise@2", "fgsm@2/255", "fgsm@8/255"]
    assert all(isinstance(c["iou"], float) and isinstance(c["level"], float) for c in e["conditions"])
    assert e["dataset"]["n_images"] == 4 and len(e["per_image"]["ids"]) == 4
    prov = e["provenance"]
    assert "--leaderboard-entry" in prov["command"] and prov["device"] == "cpu" and prov["hardware"]
    assert prov["torch_version"] and prov["fmbench_version"]
    assert e["model"]["ref"] == "mymod:Thresh" and e["model"]["training"] == {
        "recipe": None, "seed": None, "defense": None, "dataset": None, "protocol": None, "val_iou": None,
        "command": None, "convergence": None, "label_noise": None, "machine": None}
    assert e["summary"] == summarize(e["conditions"])
    # an existing entry is refused before anything runs
    assert real["again"].returncode == 1
    assert "already exists; pass --overwrite" in real["again"].stderr
    assert not (real["tmp"] / "r2.json").exists()


def test_entry_carries_training_provenance_from_checkpoint_meta(real):
    result = read_json(real["result"])
    result["model"]["meta"] = {"seed": 3, "dataset": "nucleus", "recipe": {"steps": 800, "defense": "none"},
                               "model_args": {"width": 4}, "val_iou": 0.9,
                               "command": "fmbench train --model mymod:MyNet --dataset nucleus --seed 3"}
    e = build_entry(result, hardware="test", command="fmbench eval ...")
    assert e["model"]["training"]["command"] == "fmbench train --model mymod:MyNet --dataset nucleus --seed 3"
    assert e["model"]["training"]["seed"] == 3 and e["model"]["training"]["defense"] == "none"
    assert e["model"]["training"]["recipe"]["steps"] == 800 and e["model"]["args"] == {"width": 4}
    assert e["provenance"]["hardware"] == "test"
    # the tensors' hash is the one computed when the model was loaded, never the checkpoint's own claim
    result["model"]["meta"]["state_sha256"] = "f" * 64
    result["model"]["state_sha256"] = "a" * 64
    assert build_entry(result)["model"]["state_sha256"] == "a" * 64
    del result["model"]["state_sha256"]
    assert build_entry(result)["model"]["state_sha256"] is None
    result["model"]["meta"]["model_args"] = "width=4"  # not a mapping: left out, no crash
    assert build_entry(result)["model"]["args"] == (result["model"].get("args") or {})


def test_validate_passes_on_real_entry_cli(real):
    lb = real["entry"].parent
    r = run_cli("leaderboard", "validate", str(lb), env=real["env"])
    # without its table's baselines an entry cannot be checked for being degenerate
    assert r.returncode == 1 and "no baselines for nucleus under tiny-v1" in r.stderr
    assert "fmbench leaderboard baselines --dataset nucleus --tier tiny-v1" in r.stderr
    r = run_cli("leaderboard", "baselines", "--dataset", "nucleus", "--tier", "tiny-v1", "--dir", str(lb), env=real["env"])
    assert r.returncode == 0 and "otsu" in r.stdout, r.stderr
    r = run_cli("leaderboard", "baselines", "--dataset", "nucleus", "--tier", "tiny-v1", "--dir", str(lb), "--check", "2",
                env=real["env"])
    assert r.returncode == 0 and "first 2 images reproduced" in r.stdout, r.stderr
    r = run_cli("leaderboard", "validate", str(lb), env=real["env"])
    assert r.returncode == 0, r.stderr
    assert "1 entries" in r.stdout and "jsonschema" in r.stdout


def test_validate_reports_each_broken_entry(board):
    d, base = board
    (d / "malformed.json").write_text('{"schema_version": 1, "kind": ')
    missing = copy.deepcopy(base)
    del missing["provenance"]["command"]
    write_json(d / "missing.json", missing)
    stringy = copy.deepcopy(base)
    stringy["conditions"][1]["iou"] = str(stringy["conditions"][1]["iou"])
    write_json(d / "stringy.json", stringy)
    disagree = copy.deepcopy(base)
    disagree["summary"]["corruption_robustness"] = (disagree["summary"]["corruption_robustness"] or 0) + 0.01
    write_json(d / "disagree.json", disagree)
    unknown = copy.deepcopy(base)
    unknown["protocol"]["hash"] = "0123456789abcdef"
    write_json(d / "unknown.json", unknown)

    name, n, problems = validate_dir(d, registry_with_tiny())
    assert n == 9 and "jsonschema" in name
    by_file = {}
    for p in problems:
        by_file.setdefault(Path(p.split(":")[0]).name, []).append(p)
    assert set(by_file) == {"malformed.json", "missing.json", "stringy.json", "disagree.json", "unknown.json"}
    assert "not valid JSON: Expecting value at line 1" in by_file["malformed.json"][0]
    assert "provenance" in by_file["missing.json"][0] and "'command' is a required property" in by_file["missing.json"][0]
    assert "conditions[1].iou" in by_file["stringy.json"][0] and "is not of type 'number'" in by_file["stringy.json"][0]
    assert by_file["disagree.json"] == [f"{d / 'disagree.json'}: summary.corruption_robustness is "
                                        f"{disagree['summary']['corruption_robustness']!r} but the conditions give "
                                        f"{base['summary']['corruption_robustness']!r}"]
    assert "protocol hash 0123456789abcdef (tiny-v1) is not a registered protocol version" in by_file["unknown.json"][0]
    assert all("\n" not in p for p in problems)


def test_validate_cli_exit_code_and_lines(board, proto):
    d, base = board
    bad = copy.deepcopy(base)
    bad["protocol"]["hash"] = "fedcba9876543210"
    write_json(d / "zz.json", bad)
    r = invoke("leaderboard", "validate", str(d))
    assert r.exit_code == 1
    assert f"{d / 'zz.json'}: protocol hash fedcba9876543210" in r.output
    assert "problem(s) in 5 entries" in r.output
    (d / "zz.json").unlink()
    r = invoke("leaderboard", "validate", str(d))
    assert r.exit_code == 0 and "4 entries" in r.output


def test_builtin_validator_catches_missing_field_and_string_number(real):
    schema = load_schema()
    e = read_json(real["entry"])
    assert _builtin_errors(e, schema, schema) == []
    e["summary"]["clean_iou"] = "0.9"
    del e["dataset"]["n_images"]
    errs = _builtin_errors(e, schema, schema)
    assert "dataset: required field 'n_images' is missing" in errs
    assert "summary.clean_iou: '0.9' is not of type number" in errs


def test_leaderboard_ranks_within_protocol_and_dataset(board, proto):
    d, base = board
    v2 = copy.deepcopy(base)  # an entry of tiny-v2: its own, smaller set of conditions
    keep = ["reference", "noise@5", "fgsm@8/255"]
    v2["conditions"] = [c for c in v2["conditions"] if c["id"] in keep]
    v2["per_image"]["iou"] = {k: v for k, v in v2["per_image"]["iou"].items() if k in keep}
    other = synth(v2, "net-e", 0.99, 0.99, 0.99)
    other["protocol"].update(id=TINY2.id, version=2, hash=TINY2.hash)
    write_json(d / "net-e-v2.json", other)
    r = invoke("leaderboard", "--dir", str(d), "--format", "json")
    assert r.exit_code == 0, r.output
    gs = json.loads(r.output)
    assert [(g["protocol_id"], len(g["rows"])) for g in gs] == [("tiny-v2", 1), ("tiny-v1", 4)]  # newest first
    assert [row["model"] for row in gs[1]["rows"]] == ["net-c", "net-a", "net-d", "net-b"]
    assert [row["rank"] for row in gs[1]["rows"]] == [1, 2, 3, 4]
    r = invoke("leaderboard", "--dir", str(d), "--tier", "tiny-v1", "--sort", "clean", "--format", "csv")
    lines = r.output.splitlines()
    assert lines[0].startswith("protocol,protocol_hash,dataset,rank,model")
    models = [line.split(",")[4] for line in lines[1:]]
    assert models.index("net-b") < models.index("net-a") < models.index("net-c") < models.index("net-d")
    r = invoke("leaderboard", "--dir", str(d), "--tier", "tiny-v1", "--sort", "corruption")
    assert r.exit_code == 0
    assert r.output.index("net-c") < r.output.index("net-a") < r.output.index("net-d") < r.output.index("net-b")
    assert "net-e" not in r.output


def test_markdown_and_readme_generation(board, proto, tmp_path):
    d, _ = board
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Leaderboard\n\n<!-- leaderboard:start -->\n<!-- leaderboard:end -->\n\ntail\n")
    assert update_readme(readme, []) is True
    assert "No entries yet." in readme.read_text() and "|" not in readme.read_text()
    entries = load_entries(d, registry_with_tiny())
    base = load_baselines(d)[0]
    assert not readme_is_current(readme, entries, base)
    r = invoke("leaderboard", "--dir", str(d), "--update-readme", "--readme", str(readme))
    assert r.exit_code == 0, r.output
    text = readme.read_text()
    assert readme_is_current(readme, entries, base) and text.endswith("<!-- leaderboard:end -->\n\ntail\n")
    # ranked by robust IoU (each image's worst attack at 8/255), every score with its interval
    assert "| 1 | net-c | 0.595 [0.595, 0.595] | 0.769 [0.769, 0.769] | 0.850 [0.850, 0.850] | 0.705 [0.705, " in text
    assert "| *baseline: otsu* | *—* |" in text
    assert "No entries yet." not in text
    # the correlation summary under the tables: the numbers `fmbench analyze` gives
    from fmbench.analysis import across_entries

    nucleus = [e for e in entries if e["dataset"]["ref"] == "nucleus"]
    c = across_entries(nucleus)["correlations"]["corruption (overall)"]
    lo, hi = c["spearman"]["ci95"]
    row = (f"| tiny-v1 | nucleus | {len(nucleus)} | {c['spearman']['r']:.2f} [{lo:.2f}, {hi:.2f}] | "
           f"{c['spearman']['p']:.2g} |")
    assert row in text
    few = [e for e in entries if e["dataset"]["ref"] == "nucleus"][:2]
    update_readme(readme, few)
    assert "| tiny-v1 | nucleus | 2 | needs ≥ 3 models | | | | | |\n" in readme.read_text()


def test_readme_leaderboard_section_is_current():
    from fmbench.plugins import get_registry, make_plugin_manager

    registry = get_registry(make_plugin_manager(load_entrypoints=False))
    entries = load_entries(ROOT / "leaderboard", registry)
    track = ROOT / "leaderboard" / "label-noise"
    noise = load_entries(track, registry) if track.is_dir() else []
    assert readme_is_current(ROOT / "README.md", entries, load_baselines(ROOT / "leaderboard")[0], noise), \
        "README.md's leaderboard section is stale: run `fmbench leaderboard --update-readme`"


def test_compare_ranks_a_result_among_entries(board, real, proto):
    d, _ = board
    result = read_json(real["result"])
    mine = build_entry(result)["summary"]
    r = invoke("compare", str(real["result"]), "--dir", str(d), "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["n_entries"] == 4 and data["protocol_id"] == "tiny-v1"
    adv = next(row for row in data["rows"] if row["metric"] == "adversarial_robustness")
    others = sorted((vals[2] + 0.005 for vals in MODELS.values()), reverse=True)  # fgsm conditions alternate +0.01
    assert adv["rank"] == 1 + sum(1 for v in others if v > mine["adversarial_robustness"])
    assert adv["best"]["model"] == "net-c"
    assert adv["best"]["diff"] == pytest.approx(mine["adversarial_robustness"] - others[0])
    assert {row["metric"] for row in data["rows"]} >= {"clean_iou", "corruption_robustness", "noise", "fgsm"}
    r = invoke("compare", str(real["result"]), "--dir", str(d))
    assert r.exit_code == 0 and "net-c" in r.output and "robust IoU" in r.output and "≈ noise" in r.output


def test_compare_leaves_the_models_own_entry_out_of_the_ranking(board, real, proto, tmp_path):
    """A re-run of a listed model is ranked against the other entries, and its own entry is
    reported beside them, not counted as a neighbour."""
    d, _ = board
    result = read_json(real["result"])
    result["model"]["ref"] = "net-c"
    write_json(tmp_path / "rerun.json", result)
    mine = build_entry(result)["summary"]["adversarial_robustness"]
    r = invoke("compare", str(tmp_path / "rerun.json"), "--dir", str(d), "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["n_entries"] == 3 and data["own_entry"] is True
    adv = next(row for row in data["rows"] if row["metric"] == "adversarial_robustness")
    others = sorted((vals[2] + 0.005 for name, vals in MODELS.items() if name != "net-c"), reverse=True)
    assert adv["of"] == 4 and adv["rank"] == 1 + sum(1 for v in others if v > mine)
    assert "net-c" not in {(adv[k] or {}).get("model") for k in ("best", "above", "below")}
    assert adv["own"]["model"] == "net-c"
    assert adv["own"]["diff"] == pytest.approx(mine - (MODELS["net-c"][2] + 0.005))
    r = invoke("compare", str(tmp_path / "rerun.json"), "--dir", str(d))
    assert r.exit_code == 0 and "its entry" in r.output and "3 other leaderboard rows" in r.output


def test_compare_refuses_other_protocol(board, real, proto, tmp_path):
    d, _ = board
    result = read_json(real["result"])
    result["protocol"]["hash"] = TINY2.hash
    write_json(tmp_path / "other.json", result)
    r = invoke("compare", str(tmp_path / "other.json"), "--dir", str(d))
    assert r.exit_code != 0 and "no leaderboard entry has protocol" in str(r.exception)


def test_analyze_correlations_and_png(board, proto, tmp_path):
    d, _ = board
    out = tmp_path / "a.png"
    r = invoke("analyze", "--dir", str(d), "--out", str(out), "--n-boot", "200", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert out.exists() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(data["labels"]) == sorted(MODELS)
    overall = data["correlations"]["corruption (overall)"]
    # adversarial robustness rises with corruption robustness for every synthetic model
    assert overall["spearman"]["r"] == pytest.approx(1.0) and overall["pearson"]["r"] > 0.9
    lo, hi = overall["pearson"]["ci95"]
    assert lo <= overall["pearson"]["r"] <= hi and 0 <= overall["pearson"]["p"] <= 1
    assert "corruption: noise" in data["correlations"]
    # the PNG is the user's now: a second run refuses to replace it without --overwrite
    r = invoke("analyze", "--dir", str(d), "--out", str(out), "--n-boot", "200")
    assert r.exit_code == 1 and "already exists" in str(r.exception) and "overwrite" in r.exception.hints
    again = json.loads(invoke("analyze", "--dir", str(d), "--out", str(out), "--n-boot", "200", "--json",
                              "--overwrite").output)
    assert again["correlations"] == data["correlations"]  # seeded bootstrap
    r = invoke("analyze", "--dir", str(d), "--out", str(out), "--n-boot", "200", "--overwrite")
    assert "Spearman" in r.output and "scatter plot written" in r.output


def test_analyze_needs_three_entries(board, proto, tmp_path):
    d, _ = board
    for name in ("net-a", "net-b"):
        (d / f"{name}.json").unlink()
    r = invoke("analyze", "--dir", str(d), "--out", str(tmp_path / "a.png"))
    assert r.exit_code != 0
    assert str(r.exception) == "correlation needs at least 3 entries with corruption and adversarial scores; found 2"


def test_analyze_within_one_entry(board, proto, tmp_path):
    d, base = board
    e = synth(base, "net-w", 0.9, 0.8, 0.5)
    ids = list(base["per_image"]["ids"])
    iou = {c["id"]: [] for c in e["conditions"]}
    for k in range(4):
        corr, adv = 0.5 + 0.1 * k, 0.2 + 0.15 * k
        for c in e["conditions"]:
            iou[c["id"]].append(0.8 * (1.0 if c["kind"] == "reference" else corr if c["kind"] == "corruption" else adv))
    e["per_image"] = {"ids": ids, "iou": iou}
    from fmbench.metrics import relative

    for c in e["conditions"]:
        c["iou"] = sum(iou[c["id"]]) / len(ids)
        c["dice"] = sum(2 * v / (1 + v) for v in iou[c["id"]]) / len(ids)
        c["robustness"] = relative(iou[c["id"]], iou["reference"])[1]
    e["summary"] = summarize(e["conditions"])
    e["scores"] = scores.compute(e["conditions"], iou)
    write_json(d / "net-w.json", e)
    r = invoke("analyze", "--dir", str(d), "--within", "net-w", "--out", str(tmp_path / "w.png"), "--n-boot", "200",
               "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["labels"] == ids and data["correlations"]["corruption (overall)"]["pearson"]["r"] == pytest.approx(1.0)
    assert (tmp_path / "w.png").exists()


def test_write_entry_refuses_overwrite(real, tmp_path):
    e = read_json(real["entry"])
    write_entry(tmp_path / "e.json", e)
    from fmbench.errors import ResultError

    with pytest.raises(ResultError, match="already exists; pass overwrite=True"):
        write_entry(tmp_path / "e.json", e)
    changed = copy.deepcopy(e)
    changed["model"]["parameters"] = 12345
    write_entry(tmp_path / "e.json", changed, overwrite=True)
    assert read_json(tmp_path / "e.json")["model"]["parameters"] == 12345


def test_validate_without_jsonschema_uses_builtin_validator(board, monkeypatch):
    import sys

    d, base = board
    bad = copy.deepcopy(base)
    bad["dataset"]["n_images"] = "4"
    write_json(d / "bad.json", bad)
    monkeypatch.setitem(sys.modules, "jsonschema", None)  # import jsonschema now raises ImportError
    name, n, problems = validate_dir(d, registry_with_tiny())
    assert name == "built-in validator (jsonschema not installed)" and n == 5
    assert problems == [f"{d / 'bad.json'}: dataset.n_images: '4' is not of type integer"]


def test_recheck_reproduces_an_entry_and_catches_a_changed_score(real):
    tmp, env = real["tmp"], real["env"]
    entry = read_json(real["entry"])
    ids = entry["per_image"]["ids"]
    r = run_cli("leaderboard", "recheck", str(real["entry"]), "--n-images", "2", cwd=tmp, env=env)
    assert r.returncode == 1 and "pass --trust REF" in r.stderr  # mymod:Thresh imports code
    trust = ["--trust", "mymod:Thresh"]
    r = run_cli("leaderboard", "recheck", str(real["entry"]), "--n-images", "2", *trust, cwd=tmp, env=env)
    assert r.returncode == 0, r.stderr
    assert "5 conditions reproduced within 0.01 on 2 images (largest difference 0)" in r.stdout
    # an edited image is caught when it is drawn; --images names the images to re-evaluate
    entry["per_image"]["iou"]["noise@2"][1] += 0.05
    from fmbench.metrics import relative

    for c in entry["conditions"]:  # the forger keeps every number consistent with the edit
        values = entry["per_image"]["iou"][c["id"]]
        c["iou"] = sum(values) / len(values)
        c["dice"] = sum(2 * v / (1 + v) for v in values) / len(values)
        c["robustness"] = relative(values, entry["per_image"]["iou"]["reference"])[1]
    entry["summary"] = summarize(entry["conditions"])
    entry["scores"] = scores.compute(entry["conditions"], entry["per_image"]["iou"])
    write_json(tmp / "tampered.json", entry)
    picked = ["--images", f"{ids[0]},{ids[1]}"]
    r = run_cli("leaderboard", "recheck", str(tmp / "tampered.json"), *picked, *trust, cwd=tmp, env=env)
    assert r.returncode == 1
    assert "noise@2: mean IoU" in r.stderr and "difference -0.0250 > tolerance 0.01" in r.stderr
    r = run_cli("leaderboard", "recheck", str(tmp / "tampered.json"), *picked, *trust, "--tolerance", "0.03",
                cwd=tmp, env=env)
    assert r.returncode == 0, r.stderr
    r = run_cli("leaderboard", "recheck", str(tmp / "tampered.json"), "--images", f"{ids[2]},{ids[3]}", *trust,
                cwd=tmp, env=env)
    assert r.returncode == 0, r.stderr  # images that were not edited reproduce


def test_spearman_p_value_is_a_permutation_test():
    """A perfect ranking of 3 models is p = 2/3! two-sided (scipy's t approximation says 0);
    with 4: 2/24."""
    from fmbench.analysis import correlate

    c3 = correlate([0.1, 0.2, 0.3], [0.5, 0.6, 0.9], n_boot=100)
    assert c3["spearman"]["r"] == pytest.approx(1.0) and c3["spearman"]["p"] == pytest.approx(1 / 3)
    c4 = correlate([0.1, 0.2, 0.3, 0.4], [0.9, 0.6, 0.5, 0.1], n_boot=100)
    assert c4["spearman"]["r"] == pytest.approx(-1.0) and c4["spearman"]["p"] == pytest.approx(2 / 24)
    assert correlate([0.1, 0.2, 0.3], [0.5, 0.6, 0.9], n_boot=100) == c3  # seeded


def test_partial_correlation_holds_clean_iou_fixed():
    """Against the textbook formula on random data, on ranks for Spearman; a shared dependence on
    z alone gives a plain correlation near 1 and a partial one of 0; fewer than 4 points give None."""
    from scipy import stats

    from fmbench.analysis import partial_correlate

    rng = np.random.default_rng(1)
    x, y, z = rng.normal(size=(3, 12))
    y = y + 0.7 * x

    def textbook(x, y, z):
        rxy, rxz, ryz = (stats.pearsonr(a, b)[0] for a, b in ((x, y), (x, z), (y, z)))
        return (rxy - rxz * ryz) / np.sqrt((1 - rxz ** 2) * (1 - ryz ** 2))

    c = partial_correlate(x, y, z, n_boot=300)
    r = textbook(x, y, z)
    assert c["pearson"]["r"] == pytest.approx(r)
    t = r * np.sqrt(9 / (1 - r * r))
    assert c["pearson"]["p"] == pytest.approx(2 * stats.t.sf(abs(t), 9))
    assert c["spearman"]["r"] == pytest.approx(textbook(*(stats.rankdata(v) for v in (x, y, z))))
    lo, hi = c["pearson"]["ci95"]
    assert lo < c["pearson"]["r"] < hi and c["pearson"]["n_boot"] > 250
    assert partial_correlate(x, y, z, n_boot=300) == c  # seeded

    # x and y both follow z; what is left of each is orthogonal to the other
    z = np.arange(8.0)
    a = np.array([1, -1, -1, 1, 0, 0, 0, 0.0])
    b = np.array([0, 0, 0, 0, 1, -1, -1, 1.0])
    xs, ys = z + 0.3 * a, z + 0.3 * b
    assert stats.pearsonr(xs, ys)[0] > 0.98
    c = partial_correlate(xs, ys, z, n_boot=100)
    assert c["pearson"]["r"] == pytest.approx(0.0, abs=1e-12) and c["pearson"]["p"] == pytest.approx(1.0)
    assert partial_correlate(z + a, z + 2 * a, z, n_boot=100)["pearson"]["r"] == pytest.approx(1.0)
    assert partial_correlate([0.1, 0.2, 0.3], [0.3, 0.1, 0.2], [1, 2, 3], n_boot=10)["pearson"]["r"] is None


def test_a_model_trained_on_another_dataset_version_is_flagged_other_data_not_undertrained():
    """The shipped unet-small learns from nucleus@2 and is ranked on nucleus (v1), whose masks
    follow another annotation convention: its lower clean IoU says that, not undertraining."""
    from fmbench.leaderboard.rank import flags

    entry = read_json(Path(__file__).resolve().parents[1] / "leaderboard" / "unet-small__nucleus__quick-v1.json")
    assert entry["model"]["training"]["dataset"] == "nucleus@2" and entry["dataset"]["ref"] == "nucleus"
    got = flags(entry, (0.99, "best"))
    assert [f["flag"] for f in got] == ["other-data"] and "trained on nucleus@2, evaluated on nucleus" in got[0]["reason"]
    entry["model"]["training"]["dataset"] = "nucleus"
    assert [f["flag"] for f in flags(entry, (0.99, "best"))] == ["undertrained"]


def test_a_model_far_below_the_best_is_undertrained_or_architecture_limited_by_its_own_curve():
    """More than 0.05 below the best: the model's training record says which (still rising at
    the end of the budget, or plateaued); without a record it is undertrained."""
    from fmbench.leaderboard.rank import flags

    entry = read_json(Path(__file__).resolve().parents[1] / "leaderboard" / "fcn8s-r18__er__quick-v1.json")
    clean = entry["summary"]["clean_iou"]
    assert flags(entry, (clean + 0.049, "best")) == []  # within 0.05: no flag
    assert [f["flag"] for f in flags(entry, (clean + 0.06, "best"))] == ["undertrained"]  # v1: no curve
    entry["model"]["training"]["convergence"] = {"state": "plateaued", "best_val_iou": 0.55, "best_step": 700,
                                                 "gain_last_quarter": 0.0, "stopped_at": 1100,
                                                 "reason": "early stop: no gain of 0.002 in 400 steps"}
    (got,) = flags(entry, (clean + 0.3, "unet-r18"))
    assert got["flag"] == "architecture-limited"
    assert "plateaued at validation IoU 0.550 (best at step 700, early stop" in got["reason"]
    entry["model"]["training"]["convergence"].update(state="rising", gain_last_quarter=0.03, stopped_at=1200,
                                                     reason="budget used up")
    (got,) = flags(entry, (clean + 0.3, "unet-r18"))
    assert got["flag"] == "undertrained" and "still rising when the budget ended (+0.030" in got["reason"]


def test_the_leaderboard_travels_with_the_package(tmp_path, cli):
    """From a folder with no leaderboard/ of its own, the installed reference entries are used."""
    import fmbench

    r = cli("leaderboard", "--dataset", "nucleus", "--tier", "quick", "--format", "csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "unet-r18" in r.stdout and "unet-small" in r.stdout
    assert cli("leaderboard", "validate", cwd=tmp_path).returncode == 0
    result = fmbench.evaluate("unet-small", "nucleus", out=tmp_path / "r.json", n_images=2, image_size=64,
                              corruptions=["noise"], attacks=["fgsm"])
    r = cli("compare", str(result.path), cwd=tmp_path)
    # the installed entries are found (a 2-image variant has no table of its own to rank in)
    assert "leaderboard directory" not in r.stderr and "entries exist for: er · quick-v1" in r.stderr, r.stderr


def test_the_wheel_carries_the_reference_entries(tmp_path):
    """A plain (non-editable) install gets them too: they are package data of the wheel."""
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path), str(root)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("fmbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    entries = [n for n in names if n.startswith("fmbench_leaderboard/") and n.endswith("__quick-v1.json")
               and "/baselines/" not in n]
    assert len(entries) == len(list((root / "leaderboard").glob("*__quick-v1.json"))) >= 33
    assert "fmbench_leaderboard/baselines/nucleus__quick-v1.json" in names


def test_an_entry_records_where_its_weights_were_trained():
    """The same training command gives other weights on another CPU type or thread count
    (docs/zoo.md): an entry keeps what its checkpoint says of the machine."""
    from fmbench.leaderboard.entry import training_record

    meta = {"threads": 2, "cpu_capability": "AVX512", "torch_version": "2.15.0", "seed": 0}
    assert training_record(meta)["machine"] == {"threads": 2, "cpu_capability": "AVX512", "torch": "2.15.0"}
    assert training_record({"seed": 0})["machine"] is None
