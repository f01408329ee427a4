"""Every zoo model builds offline, follows the model contract and takes any input size."""

from __future__ import annotations

import re

import pytest
import torch
from fmbench_plugins.zoo import ZOO

from fmbench.model import probe


@pytest.mark.parametrize("name", [z[0] for z in ZOO])
def test_zoo_model_builds_and_passes_probe(registry, name):
    spec = registry.model(name)
    assert spec.plugin == "fmbench_plugins.zoo" and spec.paper
    torch.manual_seed(0)
    model = spec.factory(**spec.defaults)
    assert probe(model, 64, torch.device("cpu")) == 1
    with torch.no_grad():
        out = model.eval()(torch.rand(1, 1, 50, 70))
    assert out.shape == (1, 1, 50, 70)


def test_zoo_has_ten_distinct_architectures():
    assert len({z[0] for z in ZOO}) == 10


def _spec_with(weights, needs=True):
    from fmbench_plugins.unet import UNet

    from fmbench import ModelSpec

    return ModelSpec(name="cached-net", summary="test", factory=UNet, defaults={"width": 4, "depth": 2},
                     weights=weights, needs_weights=needs)


@pytest.fixture
def cached_net(registry, monkeypatch, tmp_path):
    """A registered model whose weights live in the user cache (FMBENCH_CACHE = tmp)."""
    from fmbench_plugins.unet import UNet

    from fmbench import Weights
    from fmbench.checkpoint import save_checkpoint
    from fmbench.files import sha256_file

    monkeypatch.setenv("FMBENCH_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(1)
    src = tmp_path / "made.pt"
    save_checkpoint(src, UNet(width=4, depth=2), {"model": "cached-net"})
    w = Weights(path="zoo/cached-net__nucleus.pt", sha256=sha256_file(src),
                command="fmbench train --model cached-net --dataset nucleus --seed 0", url=src.as_uri())
    return {"weights": w, "src": src, "cache": tmp_path / "cache" / "weights" / "zoo" / "cached-net__nucleus.pt"}


def test_cache_weights_missing_offline_say_how_to_make_them(cached_net, registry, pm, monkeypatch):
    import dataclasses

    from fmbench.errors import CheckpointError
    from fmbench.model import load_model

    w = dataclasses.replace(cached_net["weights"], url=None)
    monkeypatch.setattr(registry, "model", lambda name: _spec_with({"nucleus": w}))
    with pytest.raises(CheckpointError) as err:
        load_model("cached-net", {}, registry, pm, dataset="nucleus")
    msg = str(err.value)
    assert f"missing at {cached_net['cache']}" in msg
    assert f"fmbench train --model cached-net --dataset nucleus --seed 0 --out {cached_net['cache']}" in msg
    with pytest.raises(CheckpointError, match=r"has no trained weights for dataset 'er' \(it has weights trained on: nucleus\)"):
        load_model("cached-net", {}, registry, pm, dataset="er")
    monkeypatch.setattr(registry, "model", lambda name: _spec_with({}))
    with pytest.raises(CheckpointError, match=r"has no trained weights for dataset 'er' \(it has weights trained on: none\)"):
        load_model("cached-net", {}, registry, pm, dataset="er")
    assert load_model("cached-net", {}, registry, pm, dataset="er", random_init=True).checkpoint is None


def test_cache_weights_download_checked_by_sha256(cached_net, registry, pm, monkeypatch):
    import dataclasses

    from fmbench.errors import CheckpointError
    from fmbench.model import load_model

    w = cached_net["weights"]
    bad = dataclasses.replace(w, sha256="0" * 64)
    monkeypatch.setattr(registry, "model", lambda name: _spec_with({"nucleus": bad}))
    with pytest.raises(CheckpointError, match="has sha256 .*expected 000000000000.*nothing was written"):
        load_model("cached-net", {}, registry, pm, dataset="nucleus")
    assert not cached_net["cache"].exists() and not list(cached_net["cache"].parent.glob(".*tmp"))
    gone = dataclasses.replace(w, url=(cached_net["src"].parent / "absent.pt").as_uri())
    monkeypatch.setattr(registry, "model", lambda name: _spec_with({"nucleus": gone}))
    with pytest.raises(CheckpointError, match="could not be downloaded from .*reproduce them with: fmbench train"):
        load_model("cached-net", {}, registry, pm, dataset="nucleus")
    monkeypatch.setattr(registry, "model", lambda name: _spec_with({"nucleus": w}))
    loaded = load_model("cached-net", {}, registry, pm, dataset="nucleus")
    assert cached_net["cache"].read_bytes() == cached_net["src"].read_bytes()
    assert loaded.checkpoint == str(cached_net["cache"]) and loaded.weights_sha256 == w.sha256


def test_zoo_models_need_weights_and_read_the_generated_table(registry):
    import json

    from fmbench_plugins.zoo import WEIGHTS_FILE, zoo_weights

    for name, *_ in ZOO:
        assert registry.model(name).needs_weights
    table = json.loads(WEIGHTS_FILE.read_text())["weights"] if WEIGHTS_FILE.exists() else {}
    got = zoo_weights()
    assert {m: set(d) for m, d in got.items()} == {m: set(d) for m, d in table.items()}
    for model, per_ds in got.items():
        for ds, w in per_ds.items():
            assert w.path == f"zoo/{model}__{ds.replace('/', '__')}.pt" and w.package is None and len(w.state_sha256) == 64
            # a weights name is the dataset (v1) or DATASET/vN[/seedS][/DEFENCE]: the command trains on it
            base = ds.split("/")[0].split("@")[0]
            assert w.command.startswith(f"fmbench train --model {model} --dataset {base} ") and "--out" not in w.command
            # the version, not the tier: `--tier quick` means quick-v2 once v2 is released
            assert re.search(r"--tier \S+-v\d+(\s|$)", w.command), w.command
            if "/v" in ds:
                from fmbench.weights import weights_name

                parts = ds.split("/")
                gen = int(parts[1][1:])
                seed = int(next((p[4:] for p in parts[2:] if p.startswith("seed")), 0))
                defense = next((p for p in parts[2:] if not p.startswith("seed")), "none")
                assert f"--tier quick-v{gen}" in w.command and f"--seed {seed}" in w.command
                assert weights_name(parts[0], gen, seed, defense) == ds


def test_state_sha256_pins_the_tensors_not_the_file_bytes(cached_net, registry, pm, monkeypatch):
    """A re-made checkpoint (same tensors, other file bytes) is accepted; other tensors are not."""
    import dataclasses

    from fmbench_plugins.unet import UNet

    from fmbench.checkpoint import read_checkpoint, save_checkpoint, state_sha256
    from fmbench.errors import CheckpointError
    from fmbench.model import load_model

    state, _ = read_checkpoint(cached_net["src"])
    w = dataclasses.replace(cached_net["weights"], sha256="", state_sha256=state_sha256(state), url=None)
    monkeypatch.setattr(registry, "model", lambda name: _spec_with({"nucleus": w}))
    net = UNet(width=4, depth=2)
    net.load_state_dict(state)
    save_checkpoint(cached_net["cache"], net, {"model": "cached-net", "note": "re-made elsewhere"})
    assert cached_net["cache"].read_bytes() != cached_net["src"].read_bytes()
    assert load_model("cached-net", {}, registry, pm, dataset="nucleus").meta["note"] == "re-made elsewhere"
    torch.manual_seed(2)
    save_checkpoint(cached_net["cache"], UNet(width=4, depth=2), {"model": "cached-net"})
    with pytest.raises(CheckpointError, match=r"are not the registered ones: state sha256 .*remake them with: "
                                              r"fmbench train --model cached-net --dataset nucleus --seed 0 --out "):
        load_model("cached-net", {}, registry, pm, dataset="nucleus")


# -- reference weights on another machine (issue: the zoo on every machine) --------------------

TINYZOO = '''
    import json
    from pathlib import Path

    from torch import nn

    from fmbench import ModelSpec, Weights, hookimpl


    class TinyZoo(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))

        def forward(self, x):
            return self.net(x)


    @hookimpl
    def fmbench_models():
        reg = json.loads(Path(__file__).with_name("registered.json").read_text())
        w = Weights(path="zoo/tinyzoo__nucleus.pt", sha256="", state_sha256=reg["state_sha256"],
                    val_iou=reg["val_iou"], command=reg["command"])
        return [ModelSpec(name="tinyzoo", summary="a zoo model", factory=TinyZoo, weights={"nucleus": w},
                          needs_weights=True)]
'''


def test_a_user_on_another_machine_gets_a_zoo_model_to_run(tmp_path):
    """The registered weights were trained elsewhere (their state hash is not what this machine
    makes); following every message the CLI prints gets the model evaluated, with a visible
    note; a reproduction that measures differently is refused with what to do; the exact file
    installs."""
    import json
    import os
    import shlex
    import subprocess
    import sys

    from fmbench.checkpoint import read_checkpoint, state_sha256

    from .helpers import make_dist

    site = make_dist(tmp_path / "site", "fmbench-tinyzoo", "fmbench_tinyzoo", TINYZOO)
    env = dict(os.environ, PYTHONPATH=str(site), FMBENCH_LOAD_PLUGINS="fmbench_tinyzoo", COLUMNS="250",
               FMBENCH_CACHE=str(tmp_path / "cache"))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "fmbench", *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=600)

    # weights registered as "nucleus" (the version-1 zoo's name) come from a version-1 training: the
    # command names its tier, as a registered command must once the tier name means a later version
    command = "fmbench train --model tinyzoo --dataset nucleus --seed 0 --steps 20 --tier quick-v1"
    registered = site / "registered.json"
    registered.write_text(json.dumps({"state_sha256": "0" * 64, "val_iou": 0.0, "command": command}))
    # the machine that made the zoo: its checkpoint (here: this machine's, under another hash)
    assert cli(*shlex.split(command)[1:], "--out", "reference.pt", "--quiet").returncode == 0
    state, meta = read_checkpoint(tmp_path / "reference.pt")
    registered.write_text(json.dumps({"state_sha256": "f" * 64, "val_iou": meta["val_iou"], "command": command}))

    evaluate = ("eval", "--model", "tinyzoo", "--dataset", "nucleus", "--n-images", "1", "--image-size", "64",
                "--attacks", "none", "--corruptions", "noise", "--quiet", "--tier", "quick-v1")
    r = cli(*evaluate)
    assert r.returncode == 1 and "reproduce them with: " in r.stderr, r.stderr
    told = r.stderr.split("reproduce them with: ")[1].split(" (or, holding the reference file")[0].strip()
    assert "`fmbench zoo install FILE`" in r.stderr  # the other way out, for whoever has the file
    assert told.startswith(command + " --out ")
    assert cli(*shlex.split(told)[1:], "--quiet").returncode == 0  # exactly what it said
    r = cli(*evaluate)
    assert r.returncode == 0, r.stderr
    assert "reproduced-weights" in r.stdout and "accepted by measurement" in " ".join(r.stdout.split())
    # the same claims (command, validation IoU) over other tensors: the IoU a file records about itself is
    # not believed but measured, and these are refused
    cached = tmp_path / "cache" / "weights" / "zoo" / "tinyzoo__nucleus.pt"
    made = cached.read_bytes()
    made_state, made_meta = read_checkpoint(cached)
    g = torch.Generator().manual_seed(0)
    torch.save({"format": "fmbench-checkpoint", "meta": made_meta,
                "state_dict": {k: v + torch.randn(v.shape, generator=g) if v.is_floating_point() else v
                               for k, v in made_state.items()}}, cached)
    r = cli(*evaluate, "--recompute")
    assert r.returncode == 1 and "measured now" in r.stderr and "not within 0.01" in r.stderr, r.stderr
    cached.write_bytes(made)
    # a reproduction whose validation IoU differs is refused, saying what to do
    registered.write_text(json.dumps({"state_sha256": "f" * 64, "val_iou": meta["val_iou"] - 0.05,
                                      "command": command}))
    r = cli(*evaluate, "--recompute")
    assert r.returncode == 1 and "not within 0.01 of the registered" in r.stderr and "fmbench zoo install" in r.stderr
    # the exact file, downloaded by the user, installs (checked) and evaluates without a note
    registered.write_text(json.dumps({"state_sha256": state_sha256(state), "val_iou": meta["val_iou"],
                                      "command": command}))
    r = cli("zoo", "install", "reference.pt")  # this machine reproduced them exactly: nothing to do
    assert r.returncode == 0 and "already installed" in r.stdout, r.stdout + r.stderr
    torch.save({"format": "fmbench-checkpoint", "state_dict": {k: v + 1 for k, v in state.items()}, "meta": meta},
               cached)  # weights of the user's own making at the same place
    r = cli("zoo", "install", "reference.pt")
    assert r.returncode == 1 and "holds other weights" in r.stdout  # kept, never replaced unasked
    kept = cached.read_bytes()
    cached.unlink()
    cached.symlink_to(tmp_path / "nowhere.pt")  # a dangling link of the user's: reported, not a crash
    r = cli("zoo", "install", "reference.pt")
    assert r.returncode == 1 and "holds other weights" in r.stdout, r.stdout + r.stderr
    cached.unlink()
    cached.write_bytes(kept)
    r = cli("zoo", "install", "reference.pt", "--overwrite")
    assert r.returncode == 0 and "installed tinyzoo on nucleus" in r.stdout, r.stdout + r.stderr
    r = cli(*evaluate, "--recompute")
    assert r.returncode == 0 and "reproduced-weights" not in r.stdout, r.stderr


def test_a_v2_entry_must_record_the_tensors_it_was_evaluated_with(registry):
    """Version-2 zoo entries are pinned by the hash of their tensors: an entry that drops it (or
    claims other tensors) is not accepted; version-1 entries, made before entries recorded it,
    still are."""
    import copy
    from pathlib import Path

    from fmbench.files import read_json
    from fmbench.integrity import weights_problems

    board = Path(__file__).resolve().parents[1] / "leaderboard"
    v2 = read_json(board / "lraspp-mbv3__nucleus__quick-v2.json")
    assert weights_problems(v2, registry) == []
    dropped = copy.deepcopy(v2)
    dropped["model"]["state_sha256"] = None
    assert any("tensors hash to None" in p for p in weights_problems(dropped, registry))
    other = copy.deepcopy(v2)
    other["model"]["state_sha256"] = "0" * 64
    assert any("not the registered" in p for p in weights_problems(other, registry))
    v1 = read_json(board / "lraspp-mbv3__nucleus__quick-v1.json")
    v1["model"]["state_sha256"] = None
    assert weights_problems(v1, registry) == []


def test_a_tier_name_in_a_recorded_command_means_the_version_it_ran_under(tmp_path):
    """`--tier quick` meant quick-v1 when the v1 zoo was trained and will mean quick-v2 once v2 is
    released: a recorded command is read with the version its checkpoint ran under, and a
    reproduction of v1 weights made with `--tier quick` is still the registered command's."""
    from fmbench.specs import Weights
    from fmbench.weights import accept_reproduced, pinned_tier

    v1 = "fmbench train --model unet-r18 --dataset nucleus --seed 0 --tier quick-v1"
    assert pinned_tier("fmbench train --model unet-r18 --dataset nucleus --seed 0 --tier quick", "quick-v1") == v1
    assert pinned_tier("fmbench train --model unet-r18 --dataset nucleus --seed 0", "quick-v1") == v1
    assert pinned_tier(v1, "quick-v2") == v1  # an explicit version stays what it says
    assert pinned_tier("fmbench train --model m --tier full", "quick-v1") == "fmbench train --model m --tier full"
    assert pinned_tier("fmbench train --model m", "full-v1") == "fmbench train --model m"  # no tier: quick, not full
    w = Weights(path="zoo/x.pt", sha256="", state_sha256="f" * 64, val_iou=0.5, command=v1)
    old = {"command": "fmbench train --model unet-r18 --dataset nucleus --seed 0 --tier quick", "protocol": "quick-v1"}
    got = accept_reproduced(w, "0" * 64, old, tmp_path / "x.pt", lambda: 0.5)
    assert isinstance(got, dict) and "accepted by measurement" in got["note"]
    # the same words made under quick-v2 are another training
    got = accept_reproduced(w, "0" * 64, {**old, "protocol": "quick-v2"}, tmp_path / "x.pt", lambda: 0.5)
    assert isinstance(got, str) and "not by the registered" in got


def test_releasing_the_next_version_keeps_the_v1_zoo_entries_valid(tmp_path):
    """When quick-v2 stops being a draft (`--tier quick` then means v2), the v1 entries, whose
    training commands say `--tier quick`, still validate against their registered weights, and
    a v1 entry claiming its command ran under v2 does not."""
    import dataclasses
    import json
    import shutil
    from pathlib import Path

    from fmbench.files import read_json
    from fmbench.leaderboard import validate_dir
    from fmbench.plugins import get_registry, make_plugin_manager

    reg = get_registry(make_plugin_manager(load_entrypoints=False))
    reg.protocols["quick-v2"] = dataclasses.replace(reg.protocols["quick-v2"], draft=False)
    assert reg.protocol("quick").id == "quick-v2"
    root = Path(__file__).resolve().parents[1] / "leaderboard"
    board = tmp_path / "lb"
    shutil.copytree(root / "baselines", board / "baselines")
    for name in ("unet-r18__nucleus__quick-v1.json", "unet-r18__nucleus__quick-v2.json"):
        shutil.copy(root / name, board / name)
    assert validate_dir(board, reg)[2] == []
    e = read_json(board / "unet-r18__nucleus__quick-v1.json")
    assert e["model"]["training"]["command"].endswith("--tier quick")
    e["model"]["training"]["protocol"] = "quick-v2"
    (board / "unet-r18__nucleus__quick-v1.json").write_text(json.dumps(e))
    problems = validate_dir(board, reg)[2]
    assert any("is not the registered weights'" in p for p in problems), problems


def test_a_hint_to_remake_weights_says_when_its_command_names_no_protocol(tmp_path):
    """A third-party registered command without --tier trains under the default tier's newest
    version; the hint that prints it says so instead of implying it remakes the weights as made."""
    from fmbench import Weights
    from fmbench.weights import reproduce_hint

    bare = Weights(path="w.pt", sha256="0" * 64, command="fmbench train --model m --dataset nucleus --seed 0")
    pinned = Weights(path="w.pt", sha256="0" * 64, command="fmbench train --model m --dataset nucleus --tier quick-v1")
    assert "names no --tier" in reproduce_hint(bare, tmp_path / "w.pt")
    hint = reproduce_hint(pinned, tmp_path / "w.pt")
    assert "names no --tier" not in hint and hint.endswith(f"--out {tmp_path / 'w.pt'}")
