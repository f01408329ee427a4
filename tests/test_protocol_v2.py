"""Protocol version 2: v1 untouched, the realistic nuclei pinned, the fields nothing reads gone,
and the worst-case ensemble scored from its members' results instead of re-running them."""

from __future__ import annotations

import dataclasses

import pytest

import fmbench
from fmbench.conditions import WorstOf, plan

SMALL = {"n_images": 2, "image_size": 96, "corruptions": ["none"], "batch_size": 2, "cache": False}
MEMBERS = ["fgsm", "pgd", "segpgd", "cospgd", "worst-case"]


def test_version_1_is_unchanged_and_the_tier_names_the_released_version(registry):
    assert registry.protocol("quick-v1").hash == "93c8a1db79edd95e"
    assert registry.protocol("full-v1").hash == "2c073c9752d9c942"
    # quick-v2 is released (its reference leaderboard exists); full-v2 is a draft until its own
    # does: run by id, not yet by the tier name, which still means full-v1
    assert registry.protocol("quick").id == "quick-v2" and not registry.protocol("quick-v2").draft
    assert registry.protocol("full").id == "full-v1" and registry.protocol("full-v2").draft
    v2 = registry.protocol("quick-v2").content()
    assert "metrics" not in v2 and "datasets" not in v2 and v2["data_versions"] == [["nucleus", 2]]


def test_a_bare_dataset_name_is_the_version_the_protocol_pins(registry):
    v2 = registry.protocol("quick-v2")
    assert v2.dataset_ref("nucleus") == "nucleus@2" and v2.dataset_ref("er") == "er"
    assert v2.dataset_ref("nucleus@1") == "nucleus@1" and v2.dataset_ref("folder:x") == "folder:x"
    assert registry.protocol("quick-v1").dataset_ref("nucleus") == "nucleus"


def test_the_ensemble_is_the_per_image_worst_of_its_members_continued_once():
    r = fmbench.evaluate("unet-small", "nucleus", "quick-v2", attacks=MEMBERS, **SMALL)
    assert r["dataset"]["ref"] == "nucleus@2"
    wc = r.condition("worst-case@8/255")
    assert wc["passes"]["backward_images"] == 2 * 5  # only the CosPGD-5 refinement: the members are reused
    members = [f"{m}@8/255" for m in MEMBERS[:-1]]
    for i in range(2):
        assert r.per_image["iou"]["worst-case@8/255"][i] <= min(r.per_image["iou"][m][i] for m in members)
    # without the refinement it is exactly the per-image worst of the members, at no cost
    bare = fmbench.get_protocol("quick-v2", attacks=MEMBERS, n_images=2, image_size=96, corruptions=["none"])
    bare = dataclasses.replace(bare, attacks=tuple(
        dataclasses.replace(e, params=tuple(p for p in e.params if p[0] != "refine")) for e in bare.attacks))
    b = fmbench.evaluate("unet-small", "nucleus", bare, batch_size=2, cache=False)
    assert b.condition("worst-case@8/255")["passes"]["backward_images"] == 0
    for i in range(2):
        assert b.per_image["iou"]["worst-case@8/255"][i] == min(b.per_image["iou"][m][i] for m in members)
        assert r.per_image["iou"]["worst-case@8/255"][i] <= b.per_image["iou"]["worst-case@8/255"][i]
    # v1 runs the members again inside the ensemble (16 gradient passes per image here)
    v1 = fmbench.evaluate("unet-small", "nucleus", "quick-v1", attacks=MEMBERS, **SMALL)
    assert v1.condition("worst-case@8/255")["passes"]["backward_images"] == 2 * 16


def test_an_ensemble_whose_members_are_not_all_in_the_protocol_runs_them(registry):
    proto = registry.protocol("quick-v2").customized(attacks=["pgd", "worst-case"])
    assert not any(isinstance(c, WorstOf) for c in plan(proto, registry))
    full = plan(registry.protocol("full-v2"), registry)
    worst = [c for c in full if isinstance(c, WorstOf)]
    assert len(worst) == 6 and worst[-1].members == ("fgsm@32/255", "pgd@32/255", "segpgd@32/255", "cospgd@32/255")
    assert full[-6:] == worst  # scored after every attack it draws on


def test_a_killed_run_resumes_its_ensemble_from_the_logged_members(tmp_path):
    def stop_after(n):
        calls = []

        def progress(done, total, label):
            if label != "starting":
                calls.append(label)
                if len(calls) >= n:
                    raise KeyboardInterrupt
        return progress

    full = fmbench.evaluate("unet-small", "nucleus", "quick-v2", attacks=MEMBERS, out=tmp_path / "a.json", **SMALL)
    with pytest.raises(KeyboardInterrupt):  # killed after the members, before the ensemble
        fmbench.evaluate("unet-small", "nucleus", "quick-v2", attacks=MEMBERS, out=tmp_path / "b.json",
                         progress=stop_after(len(full.conditions) - 1), **SMALL)
    resumed = fmbench.evaluate("unet-small", "nucleus", "quick-v2", attacks=MEMBERS, out=tmp_path / "b.json",
                               resume=True, **SMALL)
    assert resumed.per_image == full.per_image
    # the same file: the members' inputs remade for the refinement are not counted as its passes
    assert resumed.conditions == full.conditions and resumed["passes"] == full["passes"]


def test_bf16_is_a_variant_that_moves_results_within_its_tolerance(registry):
    """``--amp bf16``: the model runs under autocast; the protocol is a variant (its own id and
    hash, never ranked with float32), the float32 protocols' hashes do not move, and the result
    stays close to float32's (the measured tolerance: docs/scale.md)."""
    v2 = registry.protocol("quick-v2")
    assert "precision" not in v2.content()  # float32 leaves the content (and every hash) as it was
    amp = fmbench.get_protocol("quick-v2", precision="bf16")
    assert amp.id == "quick-v2+precision=bf16" and amp.hash != v2.hash and amp.content()["precision"] == "bf16"
    with pytest.raises(fmbench.ProtocolError, match="precision must be one of fp32, bf16"):
        fmbench.get_protocol("quick-v2", precision="fp8")
    small = dict(SMALL, corruptions=["noise"], attacks=["fgsm"])
    a = fmbench.evaluate("unet-small", "nucleus", fmbench.get_protocol("quick-v2"), **small)
    b = fmbench.evaluate("unet-small", "nucleus", amp, **small)
    assert b["protocol"]["id"].startswith("quick-v2+precision=bf16,")
    assert a.per_image["iou"] != b.per_image["iou"]  # bf16 really ran
    for c in a.conditions:
        for x, y in zip(a.per_image["iou"][c["id"]], b.per_image["iou"][c["id"]]):
            assert abs(x - y) < 0.05, c["id"]


def test_a_refine_attack_must_be_able_to_continue_from_a_start(registry):
    from fmbench import ProtocolError

    proto = fmbench.get_protocol("quick-v2", attacks=["worst-case"])
    entry = dataclasses.replace(proto.attacks[0], params=(("refine", ("fgsm", ())),))
    with pytest.raises(ProtocolError, match="cannot continue from a given start"):
        registry.build_attack(entry)


def test_an_ensemble_run_on_its_own_refines_too():
    """Where the protocol lacks the members (a custom attack list), the ensemble runs them and
    then continues from each image's worst, as the engine's WorstOf does."""
    r = fmbench.evaluate("unet-small", "nucleus", "quick-v2", attacks=["worst-case"], **SMALL)
    wc = r.condition("worst-case@8/255")
    assert wc["passes"]["backward_images"] == 2 * (1 + 5 + 5 + 5 + 5)  # FGSM, PGD/SegPGD/CosPGD-5, refine


def test_the_terminal_leaderboard_captions_the_v2_tables(cli):
    r = cli("leaderboard", "--tier", "quick-v2")
    assert r.returncode == 0, r.stderr
    flat = " ".join(r.stdout.split())
    assert "quick-v2 (protocol" in flat and "draft protocol" not in flat  # released
    assert "± the standard deviation over an architecture's training seeds" in flat
    # each tier's newest version first; an earlier version's tables say what the tier means now
    r = cli("leaderboard", "--dataset", "er")
    flat = " ".join(r.stdout.split())
    v1 = "er · quick-v1 [earlier version: the tier now means quick-v2] (protocol"
    assert r.returncode == 0 and v1 in flat and flat.index("er · quick-v2 (protocol") < flat.index(v1)


def test_a_draft_protocol_s_caption_is_text_not_markup(registry, monkeypatch):
    """A table under a draft protocol says so; its '[draft protocol: ...]' must survive rich."""
    from rich.console import Console

    from fmbench.leaderboard import groups, load_entries, render
    from fmbench.leaderboard.store import default_dir, load_baselines

    gs = groups(load_entries(str(default_dir()), registry), "robust", load_baselines(str(default_dir()))[0])
    monkeypatch.setattr(render, "_standing", lambda protocol_id: (True, None))
    console = Console(record=True, width=400)
    for table in render.render_tables(gs[:1]):
        console.print(table)
    flat = " ".join(console.export_text().split())
    assert "[draft protocol: its reference leaderboard is still being built" in flat


def test_eval_prints_the_flags_its_table_would_give_and_says_when_images_are_few(cli, tmp_path):
    """The shipped unet-small learned from nucleus@2; on version 1 its clean IoU is not that of a
    model trained there (other-data), which eval now says as the report does; 2 images: a smoke test."""
    r = cli("eval", "--model", "unet-small", "--dataset", "nucleus", "--tier", "quick-v1", "--n-images", "2",
            "--image-size", "64", "--corruptions", "noise", "--attacks", "none", "--no-cache", "--out",
            str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    flat = " ".join(r.stdout.split())
    assert "other-data: trained on nucleus@2, evaluated on nucleus" in flat
    assert "few images: 2 test images" in flat
