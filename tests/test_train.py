"""The training recipe: determinism, resume, checkpoint metadata, CLI."""

from __future__ import annotations

import json

import pytest
import torch
from fmbench_plugins.unet import UNet

from fmbench.checkpoint import read_checkpoint, state_sha256
from fmbench.train import Recipe, train

RECIPE = Recipe(steps=6, batch_size=2, crop=32, n_train=6, n_val=2, val_every=3, checkpoint_every=2, warmup=2)


def _train(registry, out, resume=False, stop_at=None):
    spec = registry.dataset("nucleus")
    torch.manual_seed(1234)  # the recipe must not depend on the global RNG
    model = UNet(width=4, depth=2)

    def progress(done, total, info):
        if stop_at is not None and done == stop_at:
            raise KeyboardInterrupt

    return train(model, spec.factory(split="train", image_size=64), spec.factory(split="val", image_size=64),
                 model_name="unet-small", model_args={"width": 4, "depth": 2}, dataset_ref="nucleus",
                 protocol=registry.protocol("quick"), registry=registry, recipe=RECIPE, seed=3, out=out, resume=resume,
                 on_progress=progress)


def test_same_seed_same_checkpoint_and_resume(registry, tmp_path):
    a = _train(registry, tmp_path / "a.pt")
    b = _train(registry, tmp_path / "b.pt")
    assert a["state_sha256"] == b["state_sha256"]
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    with pytest.raises(KeyboardInterrupt):
        _train(registry, tmp_path / "c.pt", stop_at=5)
    assert (tmp_path / "c.pt.state.pt").exists() and not (tmp_path / "c.pt").exists()
    c = _train(registry, tmp_path / "c.pt", resume=True)
    assert c["state_sha256"] == a["state_sha256"]
    assert not (tmp_path / "c.pt.state.pt").exists()
    state, meta = read_checkpoint(tmp_path / "a.pt")
    assert state_sha256(state) == meta["state_sha256"] == a["state_sha256"]
    assert meta["model"] == "unet-small" and meta["dataset"] == "nucleus" and meta["seed"] == 3
    assert meta["recipe"]["steps"] == 6 and [h["step"] for h in meta["history"]] == [3, 6]
    assert 0.0 <= meta["val_iou"] <= 1.0


def test_train_cli_writes_checkpoint_that_eval_loads(tmp_path, cli):
    r = cli("train", "--model", "unet-small", "--model-arg", "width=4", "--model-arg", "depth=2", "--dataset",
            "nucleus", "--steps", "2", "--out", "m.pt", "--half", "--quiet", cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "checkpoint written to m.pt" in r.stdout
    state, meta = read_checkpoint(tmp_path / "m.pt")
    assert all(v.dtype == torch.float16 for k, v in state.items() if v.is_floating_point())
    assert meta["command"] == ("fmbench train --model unet-small --model-arg width=4 --model-arg depth=2 "
                               "--dataset nucleus --steps 2 --half")  # no --out, --quiet
    record = json.loads((tmp_path / "m.pt.json").read_text())
    assert record["train_seconds"] > 0 and record["state_sha256"] == meta["state_sha256"]
    # the same command in another process, writing elsewhere, writes the same weights and
    # metadata (the file bytes differ only by the random id torch writes into every file)
    (tmp_path / "elsewhere").mkdir()
    r = cli("train", "--model", "unet-small", "--model-arg", "width=4", "--model-arg", "depth=2", "--dataset",
            "nucleus", "--steps", "2", "--out=elsewhere/other.pt", "--half", "--quiet", cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr
    state2, meta2 = read_checkpoint(tmp_path / "elsewhere" / "other.pt")
    assert meta2 == meta and state_sha256(state2) == state_sha256(state) == meta["state_sha256"]
    r = cli("train", "--model", "unet-small", "--dataset", "nucleus", "--steps", "2", "--out", "m.pt", cwd=tmp_path)
    assert r.returncode == 1 and "m.pt already exists" in r.stderr
    r = cli("eval", "--model", "unet-small", "--model-arg", "width=4", "--model-arg", "depth=2", "--checkpoint",
            "m.pt", "--dataset", "nucleus", "--n-images", "2", "--image-size", "64", "--corruptions", "none",
            "--attacks", "none", "--out", "r.json", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
