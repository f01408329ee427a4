"""Fault injection and bad input found by a fault-finding pass: each one clear line, a non-zero
exit, nothing a user made replaced, nothing misread."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fmbench_plugins.unet import UNet
from torch import nn

import fmbench
from fmbench.errors import CheckpointError, ModelContractError, ProtocolError, ResultError
from fmbench.train import Recipe, train

ROOT = Path(__file__).resolve().parents[1]
RECIPE = Recipe(steps=6, batch_size=2, crop=32, n_train=6, n_val=2, val_every=3, checkpoint_every=2, warmup=2)


def _train(registry, out, seed=3, **kw):
    spec = registry.dataset("nucleus")
    model = UNet(width=4, depth=2)
    torch.manual_seed(0)
    return train(model, spec.factory(split="train", image_size=64), spec.factory(split="val", image_size=64),
                 model_name="unet-small", model_args={"width": 4, "depth": 2}, dataset_ref="nucleus",
                 protocol=registry.protocol("quick"), registry=registry, recipe=RECIPE, seed=seed, out=out, **kw)


def _interrupted(registry, out, seed=3):
    def stop(done, total, info):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(registry, out, seed=seed, on_progress=stop)
    return Path(f"{out}.state.pt")


def test_a_damaged_training_state_is_one_line_and_overwrite_starts_again(registry, tmp_path):
    state = _interrupted(registry, tmp_path / "a.pt")
    whole = state.read_bytes()
    for damaged in (b"hello\n", b"", whole[: len(whole) // 2]):
        state.write_bytes(damaged)
        with pytest.raises(CheckpointError, match="cannot be read"):
            _train(registry, tmp_path / "a.pt", resume=True)
    torch.save({"identity": None}, state)  # readable, but not a training state
    with pytest.raises(CheckpointError, match="cannot be read"):
        _train(registry, tmp_path / "a.pt", resume=True)
    # another run's state: refused, and --overwrite (what the refusal says) starts again from step 0
    other = _interrupted(registry, tmp_path / "b.pt", seed=4)
    shutil.copy(other, state)
    with pytest.raises(ResultError, match="belongs to a different run"):
        _train(registry, tmp_path / "a.pt", resume=True)
    fresh = _train(registry, tmp_path / "a.pt", resume=True, overwrite=True)
    assert fresh["state_sha256"] == _train(registry, tmp_path / "c.pt")["state_sha256"]
    assert fresh["images_used"] == {"train": 6, "val": 2}


def test_train_refuses_before_training_what_it_would_replace_or_could_not_write(tmp_path, cli):
    base = ("train", "--model", "unet-small", "--dataset", "nucleus", "--steps", "1", "--quiet")
    (tmp_path / "m.pt.json").write_text('{"mine": 1}')
    r = cli(*base, "--out", "m.pt", cwd=tmp_path)
    assert r.returncode == 1 and "m.pt.json already exists" in r.stderr, r.stderr
    assert json.loads((tmp_path / "m.pt.json").read_text()) == {"mine": 1}
    (tmp_path / "n.pt.state.pt").write_text("notes")
    r = cli(*base, "--out", "n.pt", cwd=tmp_path)
    assert r.returncode == 1 and "--resume continues it" in r.stderr and (tmp_path / "n.pt.state.pt").exists()
    r = cli(*base, "--out", "/proc/x.pt", cwd=tmp_path)
    assert r.returncode == 1 and "cannot write /proc/x.pt" in r.stderr and "val IoU" not in r.stdout, r.stdout
    r = cli(*base, "--label-noise", "", "--out", "e.pt", cwd=tmp_path)
    assert r.returncode == 1 and "expected KIND:RATE" in r.stderr and not (tmp_path / "e.pt").exists()


def test_label_noise_settings_that_mean_nothing_are_refused(registry):
    from fmbench.label_noise import apply_setting, parse_setting

    for text, message in (("boundary:0.2:inf", "at most 16"), ("boundary-smooth:0.2:1e300", "at most 16"),
                          ("missing:0.2:1.5", "at most 1"), ("spurious:0.2:1e9", "at most 5")):
        with pytest.raises(ProtocolError, match=message):
            parse_setting(text, registry)
    assert parse_setting("missing:0.2:1", registry).severity == 1.0
    masks = np.zeros((10, 16, 16), bool)
    masks[:, 4:10, 4:10] = True
    with pytest.raises(ProtocolError, match="makes no mask noisy"):
        apply_setting(masks, [f"k{i}" for i in range(10)], parse_setting("boundary:0.01", registry), 0, registry)
    out = apply_setting(masks, [f"k{i}" for i in range(10)], parse_setting("boundary:0.1", registry), 0, registry)
    assert out.shape == masks.shape  # one of ten: fine


class SwitchesChannels(nn.Module):
    """One logit on the probe's batches of 2, two (softmax) on the run's batches of 1."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y if x.shape[0] != 1 else torch.cat([-y, y], 1)


def test_a_model_that_changes_its_channel_count_after_the_probe_is_stopped():
    with pytest.raises(ModelContractError, match="has 2 channels, but had 1 on the probe batch"):
        fmbench.evaluate(SwitchesChannels(), "nucleus", n_images=2, image_size=64, corruptions=["noise"],
                         attacks=["fgsm"], batch_size=1)


def test_recheck_readme_report_and_analyze_refuse_bad_input_in_one_line(tmp_path, cli):
    from fmbench.leaderboard.recheck import choose_images

    entry = ROOT / "leaderboard" / "unet-small__nucleus__quick-v1.json"
    r = cli("leaderboard", "recheck", str(entry), "--tolerance", "nan", cwd=tmp_path)
    assert r.returncode == 2 and "--tolerance" in r.stderr and "not a finite number" in r.stderr, r.stderr
    doc = json.loads(entry.read_text())
    first = doc["per_image"]["ids"][0]
    assert choose_images(doc, 2, [first, first]) == [0]  # an image named twice is one image
    r = cli("leaderboard", "--dir", str(ROOT / "leaderboard"), "--update-readme", "--readme", "nope.md", cwd=tmp_path)
    assert r.returncode == 1 and "nope.md: no such file to update" in r.stderr and "Traceback" not in r.stderr
    ref = next(c for c in doc["conditions"] if c["kind"] == "reference")
    ref["iou"] = 5
    (tmp_path / "e.json").write_text(json.dumps(doc))
    r = cli("report", "e.json", "--out", "r.html", "--no-images", cwd=tmp_path)
    assert r.returncode == 1 and not (tmp_path / "r.html").exists(), r.stdout + r.stderr
    # a study folder with the exact-label model only: nothing to compare, said so
    track = tmp_path / "lb" / "label-noise"
    src = ROOT / "leaderboard" / "label-noise"
    shutil.copytree(src / "baselines", track / "baselines")
    shutil.copytree(src / "weights", track / "weights")
    shutil.copy(src / "unet-small+labels-exact__nucleus__quick-v2.json", track)
    r = cli("analyze", "--label-noise", "--model", "unet-small", "--dataset", "nucleus@2", "--dir", str(tmp_path / "lb"),
            "--out", "ln.png", cwd=tmp_path)
    assert r.returncode == 1 and "nothing to compare" in r.stderr and not (tmp_path / "ln.png").exists(), r.stderr
    # an entry wrapped in a list: one short line, not the file echoed
    board = tmp_path / "wrapped"
    board.mkdir()
    (board / "e.json").write_text(json.dumps([json.loads(entry.read_text())]))
    r = cli("leaderboard", "validate", str(board), cwd=tmp_path)
    assert r.returncode == 1 and max(len(line) for line in r.stderr.splitlines()) < 400, r.stderr[:500]


def test_an_image_too_small_to_measure_its_noise_is_left_out_not_called_noise_free():
    from fmbench.measured import own_noise, undefined_reason

    rng = np.random.default_rng(0)
    mask = np.zeros((1, 96), bool)
    mask[:, 30:60] = True
    image = rng.poisson(np.where(mask, 40.0, 10.0)).astype(float)
    assert own_noise(image, mask) is None
    assert "too small to measure its own noise" in undefined_reason(image, mask)
    big = np.zeros((64, 64), bool)
    big[20:40, 20:40] = True
    assert own_noise(rng.poisson(np.where(big, 40.0, 10.0)).astype(float), big) is not None


def test_cache_commands_touch_only_the_caches_own_result_files(tmp_path, cli):
    user = tmp_path / "user"
    user.mkdir()
    (user / "mydata.json").write_text('{"mine": 1}')
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "results").symlink_to(user)  # a link out of the cache, holding a user's JSON
    env = {"FMBENCH_CACHE": str(cache)}
    r = cli("cache", "clear", env=env, cwd=tmp_path)
    assert r.returncode == 0 and (user / "mydata.json").exists(), r.stdout + r.stderr
    (cache / "results").unlink()
    (cache / "results").mkdir()
    (cache / "results" / "dir.json").mkdir()
    r = cli("cache", "clear", env=env, cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr and (cache / "results" / "dir.json").is_dir()
    r = cli("cache", "clear", "", env=env, cwd=tmp_path)
    assert r.returncode == 2 and "empty key" in r.stderr
    r = cli("cache", "clear", "nosuchkey", env=env, cwd=tmp_path)
    assert r.returncode == 1 and "no cached result's key starts with nosuchkey" in r.stderr
    (tmp_path / "afile").write_text("x")
    r = cli("cache", "ls", env={"FMBENCH_CACHE": str(tmp_path / "afile")}, cwd=tmp_path)
    assert r.returncode == 1 and "is not a folder" in r.stderr


def test_export_overwrite_replaces_an_export_never_a_folder_of_the_users(tmp_path):
    from fmbench.datasets import open_dataset
    from fmbench.errors import DataError
    from fmbench.export import export

    own = tmp_path / "own"
    own.mkdir()
    (own / "notes.txt").write_text("mine")
    data = open_dataset("nucleus", "test", 64)
    with pytest.raises(DataError, match="not an earlier fmbench export"):
        export(data, own, n=1, overwrite=True)
    assert (own / "notes.txt").read_text() == "mine"
    export(data, tmp_path / "exp", n=1)
    assert export(data, tmp_path / "exp", n=2, overwrite=True)["n"] == 2  # an earlier export is replaced


def test_rescore_refuses_a_forged_entry_and_keeps_every_honest_one(tmp_path, cli):
    board = tmp_path / "lb"
    board.mkdir()
    names = sorted(p.name for p in (ROOT / "leaderboard").glob("*.json"))
    for name in names:
        shutil.copy(ROOT / "leaderboard" / name, board / name)
    r = cli("leaderboard", "rescore", *[str(board / n) for n in names], cwd=tmp_path)
    assert r.returncode == 0 and f"{len(names)} entries rescored" in r.stdout, r.stderr
    forged = json.loads((board / names[0]).read_text())
    forged["per_image"]["iou"]["reference"] = [1.0] * len(forged["per_image"]["iou"]["reference"])
    (board / "forged.json").write_text(json.dumps(forged))
    before = (board / "forged.json").read_bytes()
    r = cli("leaderboard", "rescore", str(board / "forged.json"), cwd=tmp_path)
    assert r.returncode == 1 and "not rescored" in r.stderr and (board / "forged.json").read_bytes() == before


def test_options_out_of_range_are_one_line_before_anything_runs(tmp_path, cli):
    base = ("eval", "--model", "unet-small", "--dataset", "nucleus", "--n-images", "1", "--quiet")
    for extra in (("--batch-size", "5000"), ("--seed", str(2**64))):
        r = cli(*base, *extra, cwd=tmp_path)
        assert r.returncode == 2 and "Traceback" not in r.stderr and "range" in r.stderr, r.stderr
    for snr in ("nan", "inf", "100"):
        with pytest.raises(ProtocolError, match="must be a number above 0 and at most"):
            fmbench.get_protocol("quick", reference_snr=float(snr))
    r = cli("campaign", "--models", ",", "--datasets", "nucleus", "--out", "c", cwd=tmp_path)
    assert r.returncode == 2 and "names no model" in r.stderr
    r = cli("leaderboard", "--dir", str(ROOT / "leaderboard"), "--dataset", "er", "--tier", "quick-v1", "--format",
            "csv", "--out", "site", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "site" / "leaderboard.csv").read_text().startswith("protocol,")
    r = cli("leaderboard", "--dir", str(ROOT / "leaderboard"), "--dataset", "er", "--tier", "quick-v1", "--format",
            "csv", "--out", "site", cwd=tmp_path)
    assert r.returncode == 1 and "already exists" in r.stderr
    r = cli("plugins", env={"FMBENCH_LOAD_PLUGINS": "typo"}, cwd=tmp_path)
    assert r.returncode == 0 and "FMBENCH_LOAD_PLUGINS names typo" in r.stderr


def test_a_folder_option_given_twice_is_refused(tmp_path):
    from fmbench.datasets import open_dataset
    from fmbench.errors import DataError

    with pytest.raises(DataError, match="given twice"):
        open_dataset(f"folder:{tmp_path}?channel=1&channel=2", "test", 64)


def test_compare_pairs_the_same_images_in_any_order_and_says_when_they_differ():
    from fmbench.leaderboard.compare import _neighbour, _versus

    entry = json.loads((ROOT / "leaderboard" / "unet-small__nucleus__quick-v1.json").read_text())
    other = json.loads((ROOT / "leaderboard" / "unet-r18__nucleus__quick-v1.json").read_text())
    straight = _versus(entry, other, "clean_iou", entry["scores"]["clean_iou"]["value"])
    flipped = json.loads(json.dumps(other))
    flipped["per_image"]["ids"] = other["per_image"]["ids"][::-1]
    flipped["per_image"]["iou"] = {k: v[::-1] for k, v in other["per_image"]["iou"].items()}
    reordered = _versus(entry, flipped, "clean_iou", entry["scores"]["clean_iou"]["value"])
    assert straight["ci95"] is not None and reordered["ci95"] == straight["ci95"]
    renamed = json.loads(json.dumps(other))
    renamed["per_image"]["ids"] = [f"x{i}" for i in range(len(other["per_image"]["ids"]))]
    unpaired = _versus(entry, renamed, "clean_iou", entry["scores"]["clean_iou"]["value"])
    assert unpaired["ci95"] is None and "not paired" in _neighbour(unpaired)


def test_overwrite_drops_a_damaged_state_and_pinned_commands_read_one_way(registry, tmp_path):
    from fmbench.weights import pinned_tier

    state = _interrupted(registry, tmp_path / "a.pt")
    state.write_bytes(b"")
    fresh = _train(registry, tmp_path / "a.pt", resume=True, overwrite=True)
    assert fresh["state_sha256"] == _train(registry, tmp_path / "b.pt")["state_sha256"]
    assert pinned_tier("fmbench train --model m --tier=quick --seed 0", "quick-v1") == \
        "fmbench train --model m --tier quick-v1 --seed 0"


def test_a_training_command_resolves_where_it_trains_one_way(registry):
    """`trained_under` is the one reading of a training command's tier and dataset (the registry
    check and the entry check share it): a bare dataset under a versioned tier, a tier name
    pinned to the version it ran under, a tier the registry does not know, a misspelt dataset."""
    from fmbench.weights import trained_under

    tier, proto, on = trained_under("fmbench train --model m --dataset nucleus --tier quick-v2", registry)
    assert (tier, proto.id, on) == ("quick-v2", "quick-v2", "nucleus@2")
    assert trained_under("fmbench train --dataset er --tier quick", registry, "quick-v1")[:1] == ("quick-v1",)
    assert trained_under("fmbench train --dataset er", registry, default_tier="quick-v2")[2] == "er"
    assert trained_under("fmbench train --dataset er --tier nope-v9", registry)[1:] == (None, None)
    tier, proto, on = trained_under("fmbench train --dataset nuclues --tier quick-v2", registry)
    assert proto is not None and on == "nuclues"  # as written: then it names no entry's dataset
    assert trained_under("fmbench train --model m", registry) == (None, None, None)


def test_rescore_keeps_the_label_noise_tracks_entries(tmp_path, cli):
    track = tmp_path / "label-noise"
    shutil.copytree(ROOT / "leaderboard" / "label-noise", track)
    files = sorted(str(p) for p in track.glob("*.json"))
    r = cli("leaderboard", "rescore", *files, cwd=tmp_path)
    assert r.returncode == 0 and f"{len(files)} entries rescored" in r.stdout, r.stderr


def test_an_unknown_dataset_lists_its_versions_too():
    from fmbench.errors import UnknownNameError
    from fmbench.plugins import get_registry

    with pytest.raises(UnknownNameError, match=r"did you mean 'nucleus@2'\?.*nucleus@2"):
        get_registry().dataset("nuclues@2")


def test_weights_pinned_by_both_hashes_are_accepted_and_either_mismatch_is_named(tmp_path):
    """`Weights` may give the file's sha256 and the state's: both are checked, neither clobbers the other."""
    from fmbench.checkpoint import read_checkpoint, save_checkpoint, state_sha256
    from fmbench.files import sha256_file
    from fmbench.specs import Weights
    from fmbench.weights import check_weights

    path = tmp_path / "w.pt"
    save_checkpoint(path, UNet(width=4, depth=2), {"model": "unet-small"})
    state, _ = read_checkpoint(path)
    good = Weights(path="w.pt", sha256=sha256_file(path), state_sha256=state_sha256(state), command="")
    assert check_weights(good, path=path) is None
    assert check_weights(good, data=path.read_bytes()) is None
    assert check_weights(good, path=path, digest=state_sha256(state)) is None
    assert "expected" in check_weights(Weights(path="w.pt", sha256="0" * 64, state_sha256=good.state_sha256,
                                               command=""), path=path)
    assert "state sha256" in check_weights(Weights(path="w.pt", sha256=good.sha256, state_sha256="0" * 64,
                                                   command=""), path=path)


def test_a_bare_dataset_name_selects_its_versions_and_nothing_to_measure_says_so():
    from fmbench.agreement import seed_agreement
    from fmbench.errors import ResultError
    from fmbench.leaderboard.rank import select

    entries = [{"dataset": {"ref": r}, "protocol": {"name": "quick", "id": i}}
               for r, i in (("nucleus", "quick-v1"), ("nucleus@2", "quick-v2"), ("er", "quick-v2"))]
    assert [e["dataset"]["ref"] for e in select(entries, dataset="nucleus", tier="quick-v2")] == ["nucleus@2"]
    assert [e["dataset"]["ref"] for e in select(entries, dataset="nucleus")] == ["nucleus", "nucleus@2"]
    assert [e["dataset"]["ref"] for e in select(entries, dataset="nucleus@2")] == ["nucleus@2"]
    with pytest.raises(ResultError, match="no entries to measure seed agreement on"):
        seed_agreement([])


def test_a_model_failing_mid_run_names_no_cli_flag_in_the_library(tmp_path):
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 2, 1)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if self.calls > 3:  # after the probes
                raise RuntimeError("boom inside model")
            return self.c(x)

    with pytest.raises(fmbench.ModelContractError) as err:
        fmbench.evaluate(Boom(), "nucleus", n_images=1, image_size=64, corruptions=["noise"], attacks=["none"],
                         cache=False)
    assert "boom inside model" in str(err.value) and "--" not in str(err.value)
    assert "__cause__" in str(err.value) and isinstance(err.value.__cause__, RuntimeError)


def test_zoo_install_refuses_the_registered_tensors_under_rewritten_metadata(tmp_path, monkeypatch):
    """Every result made from an installed file records its metadata as the training's: the
    registered tensors with another validation IoU, defence or command are not the registered weights."""
    from fmbench.checkpoint import read_checkpoint
    from fmbench.plugins import get_registry
    from fmbench.weights import install

    monkeypatch.setenv("FMBENCH_CACHE", str(tmp_path / "cache"))
    src = next((ROOT / "leaderboard" / "zoo-weights").glob("*.pt"))
    state, meta = read_checkpoint(src)
    for k, change in enumerate(({"val_iou": 0.99}, {"defense": "pgd-at"},
                                {"command": meta["command"].replace("--seed 0", "--seed 5")})):
        forged = tmp_path / f"f{k}" / src.name
        forged.parent.mkdir()
        torch.save({"format": "fmbench-checkpoint", "meta": {**meta, **change}, "state_dict": state}, forged)
        [(_, ok, said)] = install([forged], get_registry())
        assert not ok and "its metadata" in said, said
    [(_, ok, said)] = install([src], get_registry())
    assert ok and "installed" in said, said


def test_a_file_that_is_not_a_torch_file_says_so(tmp_path):
    from fmbench.checkpoint import read_checkpoint
    from fmbench.errors import CheckpointError

    (tmp_path / "pw.pt").write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(CheckpointError, match=r"it is not a torch file \(torch.save writes a zip archive; this one "
                                              r"begins b'root:x:0'\)"):
        read_checkpoint(tmp_path / "pw.pt")
