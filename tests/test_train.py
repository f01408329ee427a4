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
                               "--dataset nucleus --steps 2 --half --tier quick-v2")  # no --out, --quiet; the version it ran under
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


def test_early_stopping_keeps_the_best_weights_and_resumes_to_the_same_ones(registry, tmp_path):
    """Version 2's recipe: stop on a validation plateau (here: a gain of 1.0 is never reached,
    so training stops as soon as the patience has passed), keep the best validation's weights,
    and say so in the record; a run resumed from its state ends where an unbroken one does."""
    import dataclasses

    from fmbench.train import convergence

    recipe = dataclasses.replace(RECIPE, steps=12, val_every=2, patience=4, min_gain=1.0, min_steps=4, keep_best=True)
    spec = registry.dataset("nucleus")

    def run(out, resume=False, stop_at=None):
        def progress(done, total, info):
            if stop_at is not None and done == stop_at:
                raise KeyboardInterrupt

        torch.manual_seed(3)  # the initial weights, as `fmbench train` draws them: not whatever ran before
        return train(UNet(width=4, depth=2), spec.factory(split="train", image_size=64),
                     spec.factory(split="val", image_size=64), model_name="unet-small",
                     model_args={"width": 4, "depth": 2}, dataset_ref="nucleus", protocol=registry.protocol("quick-v2"),
                     registry=registry, recipe=recipe, seed=3, out=out, resume=resume, on_progress=progress)

    a = run(tmp_path / "a.pt")
    assert [h["step"] for h in a["history"]] == [2, 4, 6]  # stopped before step 7
    best = max(h["val_iou"] for h in a["history"])
    assert a["val_iou"] == best
    assert a["convergence"]["state"] == "plateaued" and a["convergence"]["stopped_at"] == 6
    assert a["convergence"]["reason"].startswith("early stop")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b.pt", stop_at=5)
    assert run(tmp_path / "b.pt", resume=True)["state_sha256"] == a["state_sha256"]
    # the checkpoint holds the best validation's weights: validating them again gives its IoU
    from fmbench.train import _load_split, validate

    state, _ = read_checkpoint(tmp_path / "a.pt")
    model = UNet(width=4, depth=2)
    model.load_state_dict(state)
    x, m = _load_split(spec.factory(split="val", image_size=64), recipe.n_val)
    assert validate(model, x, m, [f"nucleus/val/{i}" for i in range(x.shape[0])], registry.protocol("quick-v2"),
                    3) == pytest.approx(best, abs=1e-6)
    # the convergence rule on its own: still rising over the last quarter of a used-up budget
    full = dataclasses.replace(recipe, steps=8)
    hist = [{"step": s, "val_iou": v} for s, v in ((2, 0.5), (4, 0.6), (6, 0.7), (8, 0.75))]
    assert convergence(hist, full, 8)["state"] == "rising"
    assert convergence(hist[:3] + [{"step": 8, "val_iou": 0.705}], full, 8)["state"] == "plateaued"
    assert convergence([], full, 8)["state"] == "unknown"


def test_v2_recipe_and_weights_names(registry):
    from fmbench.model import weights_for
    from fmbench.specs import ModelSpec, Weights
    from fmbench.train import RECIPE_V2, recipe_for
    from fmbench.weights import name_from_meta, weights_name

    assert recipe_for(registry.protocol("quick-v1"), {"lr": 1e-3}) == Recipe()  # version 1's recipe is fixed
    r = recipe_for(registry.protocol("quick-v2"), {"lr": 1e-3}, steps=None, defense="pgd-at")
    assert (r.lr, r.defense, r.steps, r.keep_best) == (1e-3, "pgd-at", RECIPE_V2.steps, True)
    assert weights_name("nucleus@2", 2, 1, "pgd-at") == "nucleus@2/v2/seed1/pgd-at"
    assert weights_name("er", 1) == "er" and weights_name("er", 2) == "er/v2"
    assert name_from_meta({"dataset": "er", "protocol": "quick-v2", "seed": 2,
                           "recipe": {"defense": "none"}}) == "er/v2/seed2"
    assert name_from_meta({"dataset": "er", "protocol": "quick-v1", "seed": 0}) == "er"
    w = Weights(path="x.pt", sha256="", command="c")
    spec = ModelSpec(name="m", summary="", factory=lambda: None, weights={"nucleus": w, "er": w, "er/v2": w})
    assert weights_for(spec, "er", 2) == "er/v2" and weights_for(spec, "er", 1) == "er"
    assert weights_for(spec, "nucleus@2", 2) == "nucleus"  # weights by name serve every version
    assert weights_for(spec, "mito", 2) is None
