"""Integrity: no forged entry passes, no resumed run mixes data, no traceback on a bad day."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import fmbench
from fmbench import scores
from fmbench.errors import ModelContractError, ResultError
from fmbench.files import read_json, write_json
from fmbench.leaderboard import load_entries, validate_dir
from fmbench.result import summarize
from fmbench.runlog import RunLock, partial_path

from .helpers import write_mymod

ROOT = Path(__file__).resolve().parents[1]
ENTRY = ROOT / "leaderboard" / "unet-small__nucleus__quick-v1.json"
TINY = dict(n_images=4, image_size=64, corruptions=["noise"], attacks=["fgsm"], batch_size=2)
FOLDER = {k: v for k, v in TINY.items() if k != "image_size"}  # a folder's images keep their own size


def _registry():
    from fmbench.plugins import get_registry, make_plugin_manager

    return get_registry(make_plugin_manager(load_entrypoints=False))


def _board(tmp_path: Path, entry: dict) -> Path:
    d = tmp_path / "lb"
    d.mkdir(parents=True)
    (d / "forged.json").write_text(json.dumps(entry))  # as a forger writes it: NaN allowed
    shutil.copytree(ROOT / "leaderboard" / "baselines", d / "baselines")
    return d


def _own_run(e: dict, k: int = 0) -> dict:
    """``e``'s per-image IoUs as another training's run of it would give them (every value under a
    corruption or attack moved, by a factor of its own per ``k``; the clean ones kept), re-scored:
    one checkpoint is one row, so a copy with a value or two changed is refused (guard.same_weights)."""
    clean = {c["id"] for c in e["conditions"] if c["kind"] == "reference"}
    for cond, values in e["per_image"]["iou"].items():
        e["per_image"]["iou"][cond] = values if cond in clean else [
            v if v in (0, 1) else round(v * (0.995 - 0.004 * k), 6) for v in values]
    e["per_image"].pop("dice", None)
    return _recompute(e)


def _recompute(e: dict) -> dict:
    from fmbench.metrics import relative

    ref = e["per_image"]["iou"]["reference"]
    for c in e["conditions"]:
        values = e["per_image"]["iou"][c["id"]]
        c["iou"] = math.fsum(values) / len(values)
        c["dice"] = math.fsum(2 * v / (1 + v) for v in values) / len(values)
        c["robustness"] = relative(values, ref)[1]
    e["summary"] = summarize(e["conditions"])
    e["scores"] = scores.compute(e["conditions"], e["per_image"]["iou"])
    return e


def test_a_consistently_forged_entry_is_caught(tmp_path):
    """The issue's forgery: attack IoUs and robustness raised in the conditions, the summary and
    scores recomputed so they agree; the per-image values, what they come from, betray it."""
    e = read_json(ENTRY)
    for c in e["conditions"]:
        if c["kind"] == "attack":
            c["iou"] = min(1.0, c["iou"] + 0.3)
            c["robustness"] = min(1.0, (c["robustness"] or 0) + 0.3)
    e["summary"] = summarize(e["conditions"])
    _, _, problems = validate_dir(_board(tmp_path, e), _registry())
    assert problems and all("forged.json" in p for p in problems)
    assert any("fgsm@1/255].iou is" in p and "its per-image values give" in p for p in problems)


@pytest.mark.parametrize("field, forge", [
    ("robustness", lambda c: c["robustness"] + 0.1),
    ("n_images", lambda c: c["n_images"] + 16),
])
def test_each_condition_field_is_checked_against_its_per_image_values(tmp_path, field, forge):
    """Not only the IoU: a condition's relative robustness or image count raised alone (and the
    summary recomputed to agree) is caught, by name."""
    e = read_json(ENTRY)
    c = next(c for c in e["conditions"] if c["id"] == "pgd@8/255")
    c[field] = forge(c)
    e["summary"] = summarize(e["conditions"])
    _, _, problems = validate_dir(_board(tmp_path, e), _registry())
    assert any(f"[pgd@8/255].{field} is" in p and "its per-image values give" in p for p in problems), problems


def test_a_protocol_id_that_does_not_match_its_hash_is_refused(tmp_path):
    e = read_json(ENTRY)
    e["protocol"]["id"] = "quick-v2"  # quick-v1's hash kept
    _, _, problems = validate_dir(_board(tmp_path, e), _registry())
    assert any("protocol id 'quick-v2' does not match its hash 93c8a1db79edd95e" in p for p in problems), problems


@pytest.mark.parametrize("entry, key, value", [
    ("unet-r18__nucleus__quick-v2.json", "seed", 2),
    ("unet-r18__nucleus__quick-v2.json", "defense", "pgd-at"),
    ("unet-r18+seed1__nucleus__quick-v2.json", "seed", 0),
    ("unet-small__nucleus__quick-v2.json", "label_noise", "boundary:0.4:2"),
    ("unet-small__er__quick-v1.json", "defense", "noise-aug"),  # a v1 entry without a recorded command
])
def test_registered_weights_cannot_be_relabelled_as_another_training(tmp_path, entry, key, value):
    """An entry evaluated with registered weights re-checks exactly whatever it says about their
    training, so what it says is checked against the registered training command: one training
    cannot pass for another seed, a defended model or a label-noise setting -- on the main board
    or in the label-noise track."""
    e = read_json(ROOT / "leaderboard" / entry)
    assert validate_dir(_board(tmp_path / "ok", e), _registry())[2] == []
    e["model"]["training"][key] = value
    for where in ("main", "track"):
        d = _board(tmp_path / where, e)
        if where == "track":
            d = d.rename(d.parent / "label-noise")
        _, _, problems = validate_dir(d, _registry())
        assert any(f"training.{key} is {value!r}, but the registered weights" in p for p in problems), problems
    e = read_json(ROOT / "leaderboard" / entry)
    if e["model"]["training"].get("command"):
        e["model"]["training"]["command"] += " --defense pgd-at"
        _, _, problems = validate_dir(_board(tmp_path / "cmd", e), _registry())
        assert any("is not the registered weights'" in p for p in problems), problems


def test_dropping_the_hardest_attack_is_caught(tmp_path):
    e = read_json(ENTRY)
    e["conditions"] = [c for c in e["conditions"] if c["id"] != "worst-case@8/255"]
    del e["per_image"]["iou"]["worst-case@8/255"]
    _, _, problems = validate_dir(_board(tmp_path, _recompute(e)), _registry())
    assert any("conditions are not those protocol quick-v1 evaluates (missing ['worst-case@8/255']" in p
               for p in problems), problems


@pytest.mark.parametrize("edit,message", [
    (lambda e: e["per_image"]["iou"]["reference"].__setitem__(3, float("nan")), "NaN is not a JSON number"),
    (lambda e: e["per_image"]["iou"]["reference"].__setitem__(3, 1.5), "not a finite number in [0, 1]"),
    (lambda e: e["per_image"]["iou"]["noise@2"].pop(), "15 values for 16 images"),
    (lambda e: e["dataset"].__setitem__("n_images", 24), "dataset.n_images is 24 but per_image has 16 images"),
    (lambda e: e["model"].__setitem__("weights_sha256", "0" * 64), "not the registered"),
    (lambda e: e["per_image"]["ids"].__setitem__(1, e["per_image"]["ids"][0]), "image ids must be unique"),
])
def test_edited_truncated_or_relabelled_entries_are_caught(tmp_path, edit, message):
    e = read_json(ENTRY)
    edit(e)
    _, _, problems = validate_dir(_board(tmp_path, e), _registry())
    assert any(message in p for p in problems), problems


def test_a_duplicated_entry_is_not_ranked_twice(tmp_path):
    d = _board(tmp_path, read_json(ENTRY))
    shutil.copy(d / "forged.json", d / "copy.json")
    _, _, problems = validate_dir(d, _registry())
    assert problems[0] == f"{d / 'forged.json'}: the same model, defense, dataset and protocol as {d / 'copy.json'}"
    assert len(problems) == 2 and "the same weights" in problems[1]
    with pytest.raises(ResultError, match="the same model, defense, dataset and protocol"):
        load_entries(d, _registry())


def test_recheck_never_runs_code_named_in_an_entry(tmp_path, cli):
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\nimport torch\nNet = torch.nn.Identity\n")
    e = read_json(ENTRY)
    e["model"]["ref"] = "evil.py:Net"
    e["provenance"]["command"] = f"fmbench eval --model {tmp_path / 'evil.py'}:Net --dataset nucleus"
    write_json(tmp_path / "e.json", e)
    r = cli("leaderboard", "recheck", str(tmp_path / "e.json"), cwd=tmp_path)
    assert r.returncode == 1 and not marker.exists()
    assert r.stderr.strip().splitlines()[-1] == (
        "error: model reference 'evil.py:Net' imports or loads code named by the entry; recheck runs it only when "
        "you trust it by name; pass --trust REF if you have read that code")


def test_recheck_draws_images_at_random_and_catches_edited_ones(tmp_path, cli):
    """An entry forged in every number, per-image values included: recheck re-evaluates images
    drawn at random from the entry's structured fields (no stored command) and finds them."""
    write_mymod(tmp_path)
    r = cli("eval", "--model", "mymod:Thresh", "--dataset", "nucleus", "--n-images", "4", "--image-size", "64",
            "--corruptions", "noise", "--attacks", "fgsm", "--quiet", "--out", "r.json", "--leaderboard-entry", "e.json",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    e = read_json(tmp_path / "e.json")
    assert e["protocol"]["id"].startswith("quick-v2+")  # a variant: recheck needs a registered protocol
    # re-register it as an entry of a registered protocol is what a forger cannot do; recheck the
    # variant's per-image values through the API path instead
    from fmbench.leaderboard import recheck_compare
    from fmbench.leaderboard.recheck import choose_images

    assert choose_images(e, 2, seed=1) == choose_images(e, 2, seed=1)
    assert len({tuple(choose_images(e, 2)) for _ in range(30)}) > 1  # fresh draws differ
    forged = copy.deepcopy(e)
    for cid, values in forged["per_image"]["iou"].items():
        if cid.startswith("fgsm"):
            forged["per_image"]["iou"][cid] = [min(1.0, v + 0.2) for v in values]
    result = read_json(tmp_path / "r.json")
    rows, problems = recheck_compare(_recompute(forged), result)
    assert any(p.startswith("fgsm@8/255: mean IoU") for p in problems)
    rows, problems = recheck_compare(e, result)
    assert problems == [] and max(abs(r[3]) for r in rows) == 0


def test_recheck_refuses_an_entry_whose_training_is_not_its_weights(tmp_path):
    """Weights relabelled as another training re-evaluate to the same numbers; recheck compares
    what the entry says about the training with what the weights it loaded record."""
    from fmbench.leaderboard import recheck_compare

    e = read_json(ROOT / "leaderboard" / "unet-r18+seed1__nucleus__quick-v2.json")
    ids = e["per_image"]["ids"]
    t = e["model"]["training"]
    meta = {k: t[k] for k in ("recipe", "seed", "dataset", "protocol", "val_iou", "convergence", "command")}
    # what a re-evaluation records: the loaded checkpoint's own metadata
    result = {"kind": "fmbench-result", "model": {"ref": e["model"]["ref"], "meta": meta},
              "per_image": {"ids": ids[:2], "iou": {c: v[:2] for c, v in e["per_image"]["iou"].items()}}}
    assert recheck_compare(e, result)[1] == []
    for key, value in (("seed", 2), ("defense", "pgd-at"), ("label_noise", "missing:0.4:1")):
        forged = copy.deepcopy(e)
        forged["model"]["training"][key] = value
        problems = recheck_compare(forged, result)[1]
        assert problems == [f"model.training.{key}: the entry says {value!r}, its weights "
                            f"{e['model']['training'][key]!r}"], problems


def test_resume_refuses_duplicated_junk_and_foreign_chunks(tmp_path):
    net = nn.Conv2d(1, 2, 3, padding=1)
    out = tmp_path / "r.json"
    calls = []

    def stop_after_three(done, total, label):
        if label != "starting":
            calls.append(done)
            if len(calls) == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fmbench.evaluate(net, "nucleus", out=out, progress=stop_after_three, **TINY)
    log = partial_path(out)
    lines = log.read_text().splitlines()
    assert len(lines) == 4
    for junk, message in ((lines[1], "is recorded twice"), ('{"hello": "world"}', "not a chunk record"),
                          (lines[1].replace('"reference"', '"nosuch@1"'), "condition 'nosuch@1' is not one this run")):
        log.write_text("\n".join(lines + [junk, lines[2]]) + "\n")
        with pytest.raises(ResultError, match=message):
            fmbench.evaluate(net, "nucleus", out=out, resume=True, **TINY)
        assert log.read_text() == "\n".join(lines + [junk, lines[2]]) + "\n"  # never written back
    # another model's weights: the header's tensor hash differs
    log.write_text("\n".join(lines) + "\n")
    other = nn.Conv2d(1, 2, 3, padding=1)
    with pytest.raises(ResultError, match="model_state_sha256"):
        fmbench.evaluate(other, "nucleus", out=out, resume=True, **TINY)
    done = fmbench.evaluate(net, "nucleus", out=out, resume=True, **TINY)
    assert done.dataset["n_images"] == 4 and not log.exists()


def test_editing_the_models_code_between_kill_and_resume_is_refused(tmp_path, cli):
    import subprocess
    import sys

    write_mymod(tmp_path)
    # a run killed after its first chunk
    code = ("import sys; sys.path.insert(0, '.')\nimport fmbench\n"
            "def stop(done, total, label):\n    if label != 'starting':\n        raise KeyboardInterrupt\n"
            "try:\n    fmbench.evaluate('mymod:MyNet', 'nucleus', n_images=2, image_size=64, corruptions=['noise'],"
            " attacks=['none'], out='s.json', progress=stop)\nexcept KeyboardInterrupt:\n    pass\n")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)
    assert len((tmp_path / "s.json.partial.jsonl").read_text().splitlines()) == 2
    (tmp_path / "mymod.py").write_text((tmp_path / "mymod.py").read_text() + "\n# edited\n")
    r = cli("eval", "--model", "mymod:MyNet", "--dataset", "nucleus", "--n-images", "2", "--image-size", "64",
            "--corruptions", "noise", "--attacks", "none", "--quiet", "--out", "s.json", "--resume", cwd=tmp_path)
    assert r.returncode == 1 and "(model_source_sha256 differ)" in r.stderr, r.stderr


def test_two_runs_on_one_output_and_a_file_that_appears_meanwhile(tmp_path, cli):
    write_mymod(tmp_path)
    with RunLock(tmp_path / "r.json"):
        r = cli("eval", "--model", "mymod:MyNet", "--dataset", "nucleus", "--n-images", "2", "--image-size", "64",
                "--quiet", "--out", "r.json", cwd=tmp_path)
    assert r.returncode == 1 and "another run (pid" in r.stderr and "is writing r.json" in r.stderr
    out = tmp_path / "s.json"

    def appear(done, total, label):
        if label != "starting" and not out.exists():
            out.write_text("{}")  # somebody else's file, written while the run goes on

    with pytest.raises(ResultError, match="appeared while this was written; it was not replaced"):
        fmbench.evaluate(nn.Conv2d(1, 2, 3, padding=1), "nucleus", out=out, progress=appear, **TINY)
    assert out.read_text() == "{}" and partial_path(out).exists()  # the run can be finished elsewhere


def test_a_run_that_fails_before_its_first_chunk_leaves_nothing(tmp_path):
    class Broken:
        name, synthetic = "broken", True
        inner = fmbench.open_dataset("nucleus", "test", 64)

        def __len__(self):
            return 4

        def __getitem__(self, i):
            if i == 0:
                return self.inner[0]  # the probe reads image 0
            raise fmbench.DataError("image 1 is broken")

    out = tmp_path / "r.json"
    with pytest.raises(fmbench.DataError, match="image 1 is broken"):
        fmbench.evaluate(nn.Conv2d(1, 2, 3, padding=1), Broken(), out=out, **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


class ZeroChannels(nn.Module):
    def forward(self, x):
        return x[:, :0]


class OnlySquare(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        if x.shape[-1] != x.shape[-2]:
            raise ValueError("this network only takes square images")
        return self.conv(x)


class NaNOnBright(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return torch.where(x.amax((1, 2, 3), keepdim=True) > 1.5, y * float("nan"), y)


def _folder(tmp_path: Path, shape=(80, 120), n=2, scale=1.0) -> str:
    import tifffile

    d = tmp_path / "data"
    (d / "images").mkdir(parents=True)
    (d / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        m = np.zeros(shape, np.uint8)
        m[10:30, 10:40] = 1
        # own SNR about 35: the noise-aware mode brings it to every SNR the protocol asks for
        tifffile.imwrite(d / "images" / f"im{i}.tif", (0.2 * rng.random(shape) + 2 * m).astype(np.float32) * scale)
        tifffile.imwrite(d / "masks" / f"im{i}.tif", m)
    return f"folder:{d}"


def test_models_that_break_on_real_images_fail_in_one_line(tmp_path):
    with pytest.raises(ModelContractError, match="output has 0 channels"):
        fmbench.evaluate(ZeroChannels(), "nucleus", **TINY)
    ref = _folder(tmp_path)
    with pytest.raises(ModelContractError, match=r"probe batch of shape \(1, 1, 80, 120\).*only takes square"):
        fmbench.evaluate(OnlySquare(), ref, **FOLDER)


def test_nan_logits_on_one_batch_name_the_image():
    class NaNLater(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            y = self.conv(x)
            return y * float("nan") if self.calls > 4 and not torch.is_grad_enabled() else y

    with pytest.raises(ModelContractError, match=r"NaN or infinite values on image test/0000\d.* of 'nucleus(@2)?'"):
        fmbench.evaluate(NaNLater(), "nucleus", **TINY)


@pytest.mark.parametrize("device", ["tpu", "meta", "cuda:7", "nonsense:3"])
def test_unknown_devices_are_one_line(device, cli, tmp_path):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("a CUDA machine has cuda devices")
    write_mymod(tmp_path)
    r = cli("eval", "--model", "mymod:MyNet", "--dataset", "nucleus", "--device", device, "--quiet", cwd=tmp_path)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "device" in r.stderr, r.stderr
    assert not (tmp_path / "fmbench-results").exists()


def test_unwritable_outputs_and_one_file_for_two_are_one_line(tmp_path, cli):
    write_mymod(tmp_path)
    (tmp_path / "afile").write_text("x")
    base = ["eval", "--model", "mymod:MyNet", "--dataset", "nucleus", "--n-images", "1", "--image-size", "64",
            "--corruptions", "none", "--attacks", "none", "--quiet"]
    r = cli(*base, "--out", "afile/r.json", cwd=tmp_path)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "afile" in r.stderr, r.stderr
    r = cli(*base, "--out", "x.json", "--leaderboard-entry", "x.json", cwd=tmp_path)
    assert r.returncode == 1 and "would both be written to x.json" in r.stderr
    assert not (tmp_path / "x.json").exists()


def test_a_far_larger_image_is_announced_before_the_run(tmp_path):
    ref = _folder(tmp_path, shape=(600, 600), n=1)
    r = fmbench.evaluate(nn.Conv2d(1, 2, 3, padding=1), ref, **FOLDER)
    assert any("5 times the protocol's 256x256 pixels" in w and "600x600" in w for w in r.warnings)


LATE = '''import torch


class Late(torch.nn.Module):
    """Fine until its n-th forward pass with gradients (the probe makes one), then it fails -- as
    a model that runs out of memory in an attack's backward pass does."""

    def __init__(self, n=2):
        super().__init__()
        self.n, self.calls = n, 0
        self.s = torch.nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        if torch.is_grad_enabled() and x.requires_grad:
            self.calls += 1
            if self.calls >= self.n:
                raise RuntimeError("out of memory (simulated)")
        return self.s * (x - 0.5)
'''


def test_a_model_failing_inside_an_attack_is_one_line_and_a_different_run_takes_the_next_name(tmp_path, cli):
    (tmp_path / "late.py").write_text(LATE)
    args = ("eval", "--model", "late:Late", "--random-init", "--dataset", "nucleus", "--n-images", "1",
            "--image-size", "64", "--corruptions", "noise", "--attacks", "fgsm", "--quiet")
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: fgsm ε=1/255 failed on image test/00000") and \
        "RuntimeError: out of memory (simulated)" in line, line
    kept = list((tmp_path / "fmbench-results").glob("*.partial.jsonl"))
    assert len(kept) == 1  # the chunks done so far, for --resume
    # the same run again: told to resume; another run (the model fixed): the next free name
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 1 and "an unfinished run of this same run exists" in r.stderr, r.stderr
    r = cli(*args, "--model-arg", "n=1000", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "fmbench-results").glob("*-2.json"))) == 1


def test_an_entry_whose_weights_no_registry_pins_is_flagged_in_its_table(tmp_path):
    """A contributor's checkpoint is pinned by nothing but the entry's word: its row says so;
    the registered model's entry beside it does not."""
    import shutil
    from pathlib import Path

    from fmbench.files import read_json, write_json
    from fmbench.leaderboard import load_entries
    from fmbench.leaderboard.rank import groups
    from fmbench.plugins import get_registry

    root = Path(__file__).resolve().parents[1] / "leaderboard"
    shutil.copytree(root / "baselines", tmp_path / "baselines")
    shutil.copy(root / "unet-small__nucleus__quick-v1.json", tmp_path / "shipped.json")
    e = read_json(root / "unet-small__nucleus__quick-v1.json")
    e["model"]["ref"] = "mynets:UNet"
    e["model"]["weights_sha256"], e["model"]["state_sha256"] = "a" * 64, "b" * 64  # the contributor's own checkpoint
    write_json(tmp_path / "mine.json", _own_run(e))  # its own run: not the same values
    entries = load_entries(tmp_path, get_registry())
    assert {Path(x["_path"]).name: x["_pinned"] for x in entries} == {"shipped.json": True, "mine.json": False}
    (g,) = groups(entries)
    assert "unpinned-weights" in [f["flag"] for f in g["flags"]["mynets:UNet"]]
    assert "unpinned-weights" not in [f["flag"] for f in g["flags"]["unet-small"]]
    assert "rechecked only with the contributor's checkpoint" in next(
        f["reason"] for f in g["flags"]["mynets:UNet"] if f["flag"] == "unpinned-weights")


def test_terminal_escapes_in_a_contributed_file_are_refused():
    """An entry whose strings carry control characters (an ANSI escape that clears the screen or
    recolours a row) is not shown: it is refused, naming where."""
    import copy
    from pathlib import Path

    from fmbench.files import read_json
    from fmbench.integrity import consistency

    e = read_json(Path(__file__).resolve().parents[1] / "leaderboard" / "unet-small__nucleus__quick-v1.json")
    assert consistency(e) == []
    bad = copy.deepcopy(e)
    bad["model"]["ref"] = "unet-small\x1b[2J\x1b[32m best"
    (p,) = consistency(bad)
    assert p.startswith("model.ref holds control or invisible characters ('\\x1b')")
    bad = copy.deepcopy(e)
    bad["provenance"]["command"] += "\nrm -rf ~"
    assert consistency(bad) == ["provenance.command holds control or invisible characters ('\\n')"]
    ok = copy.deepcopy(e)  # a checkpoint's own metadata is its author's free text
    ok["model"]["meta"] = {"notes": "trained by lab X\nsee README"}
    assert consistency(ok) == []


def test_registered_bytes_without_a_recorded_command_stand_for_the_registrys_under_v2():
    """The shipped ER weights predate checkpoints recording their command: a quick-v2 entry made
    with exactly those bytes records none and is valid (the registry's command stands for them);
    relabelling its training is still refused, and so is a missing command on bytes not pinned."""
    from fmbench import integrity

    e = read_json(ROOT / "leaderboard" / "unet-small__er__quick-v2.json")
    assert e["model"]["training"].get("command") is None and e["protocol"]["version"] == 2
    assert integrity.weights_problems(e, _registry()) == []
    relabelled = copy.deepcopy(e)
    relabelled["model"]["training"]["seed"] = 3
    assert any("seed" in p for p in integrity.weights_problems(relabelled, _registry()))
    other_bytes = copy.deepcopy(e)
    other_bytes["model"]["weights_sha256"] = "0" * 64
    assert any("training command None" in p for p in integrity.weights_problems(other_bytes, _registry()))
