"""Defence recipes of `fmbench train`: noise-aug and pgd-at are deterministic for a seed,
differ from the standard recipe, and are recorded in the checkpoint."""

from __future__ import annotations

import pytest
import torch
from fmbench_plugins.unet import UNet

from fmbench.checkpoint import read_checkpoint
from fmbench.errors import ProtocolError
from fmbench.train import Recipe, noise_levels, train


def _train(registry, out, defense):
    spec = registry.dataset("nucleus")
    torch.manual_seed(1234)
    recipe = Recipe(steps=3, batch_size=2, crop=32, n_train=4, n_val=2, val_every=3, checkpoint_every=10,
                    warmup=1, defense=defense)
    return train(UNet(width=4, depth=2), spec.factory(split="train", image_size=64),
                 spec.factory(split="val", image_size=64), model_name="unet-small",
                 model_args={"width": 4, "depth": 2}, dataset_ref="nucleus", protocol=registry.protocol("quick"),
                 registry=registry, recipe=recipe, seed=3, out=out)


def test_defended_training_is_deterministic_and_marked(registry, tmp_path):
    plain = _train(registry, tmp_path / "plain.pt", "none")
    assert "defense_params" not in plain
    for defense in ("noise-aug", "pgd-at"):
        a = _train(registry, tmp_path / f"{defense}-a.pt", defense)
        b = _train(registry, tmp_path / f"{defense}-b.pt", defense)
        assert a["state_sha256"] == b["state_sha256"], defense
        assert a["state_sha256"] != plain["state_sha256"], defense
        _, meta = read_checkpoint(tmp_path / f"{defense}-a.pt")
        assert meta["recipe"]["defense"] == defense
    _, meta = read_checkpoint(tmp_path / "pgd-at-a.pt")
    assert meta["defense_params"] == {"attack": "pgd", "eps": 4 / 255, "steps": 3, "rel_step": 2.5, "norm": "linf",
                                      "fraction": 0.5}
    _, meta = read_checkpoint(tmp_path / "noise-aug-a.pt")
    assert meta["defense_params"]["snrs"] == list(noise_levels(registry.protocol("quick"), registry))


def test_noise_levels_and_unknown_defense(registry, tmp_path):
    quick = registry.protocol("quick")
    levels = noise_levels(quick, registry)
    assert levels == (8.0, 5.0, 4.0, 3.0, 2.0, 1.0)  # the reference SNR, then the noise family's levels
    # the SNRs come from the exposure corruptions the protocol evaluates, whatever they are named
    blur_only = quick.customized(corruptions=["sib"])
    with pytest.raises(ProtocolError, match="has no exposure \\(noise\\) corruption"):
        noise_levels(blur_only, registry)
    with pytest.raises(ProtocolError, match="unknown defense 'mixup'"):
        _train(registry, tmp_path / "x.pt", "mixup")


def test_train_cli_defense_option(tmp_path, cli):
    r = cli("train", "--model", "unet-small", "--model-arg", "width=4", "--model-arg", "depth=1", "--dataset",
            "nucleus", "--steps", "1", "--defense", "pgd-at", "--out", "m.pt", "--quiet", cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr
    _, meta = read_checkpoint(tmp_path / "m.pt")
    assert meta["recipe"]["defense"] == "pgd-at" and meta["defense_params"]["steps"] == 3
    bad = cli("train", "--model", "unet-small", "--dataset", "nucleus", "--defense", "mixup", "--out", "x.pt",
              cwd=tmp_path)
    assert bad.returncode == 2 and "'mixup' is not one of" in bad.stderr


def test_defended_model_is_marked_in_eval_table_and_leaderboard_label():
    from rich.console import Console

    from fmbench.leaderboard import model_label
    from fmbench.result import result_table

    result = {"model": {"ref": "unet-r18", "meta": {"recipe": {"defense": "pgd-at"}}},
              "protocol": {"id": "quick-v1"}, "dataset": {"ref": "er", "n_images": 1}, "conditions": [],
              "summary": {"clean_iou": 0.9, "clean_dice": 0.95, "families": {}, "corruption_robustness": None,
                          "adversarial_robustness": None}}
    console = Console(width=200, record=True)
    console.print(result_table(result))
    assert "unet-r18 [pgd-at] on er" in console.export_text()
    result["model"]["meta"]["recipe"]["defense"] = "none"
    console = Console(width=200, record=True)
    console.print(result_table(result))
    assert "unet-r18 on er" in console.export_text()
    assert model_label({"model": {"ref": "m", "training": {"defense": "noise-aug"}}}) == "m [noise-aug]"
    assert model_label({"model": {"ref": "m", "training": {"defense": "none"}}}) == "m"


def test_defended_label_survives_rich_tables():
    from rich.console import Console

    from fmbench.leaderboard import compare_table
    from fmbench.leaderboard.render import _cell

    console = Console(width=200, record=True)
    data = {"model": "m [pgd-at]", "n_entries": 2, "dataset": "er", "protocol_id": "quick-v1", "protocol_hash": "h",
            "rows": [{"label": "clean", "score": {"value": 0.9, "ci95": [0.85, 0.95]}, "rank": 1, "of": 2, "above": None,
                      "below": None, "best": {"model": "n [noise-aug]", "score": {"value": 0.8, "ci95": None},
                                              "diff": 0.1, "ci95": [0.05, 0.15], "within_noise": False}}]}
    console.print(compare_table(data))
    text = console.export_text()
    assert "m [pgd-at] against" in text and "n [noise-aug] 0.800" in text
    assert _cell({"model": "m [pgd-at]"}, "model") == "m \\[pgd-at]"
