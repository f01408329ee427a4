"""Each corruption group against each attack across the models of a table (the study's
corruption-adversarial connection, per family), and the README's generated reading of it."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from fmbench.families import family_matrix
from fmbench.errors import ResultError
from fmbench.files import read_json
from fmbench.readme import family_markdown

BOARD = Path(__file__).resolve().parents[1] / "leaderboard"
ARCHS = ("unet-r18", "fpn-r18", "segformer-b0", "lraspp-mbv3", "pspnet-r18", "fcn8s-r18", "dpt-vit-tiny",
         "unetpp-mbv2", "deeplabv3plus-r18")


def entries(link: float) -> list[dict]:
    """The v1 ER entries with blur robustness set to ``link`` * PGD robustness + noise-free
    offsets (a perfect monotone link when ``link`` > 0), noise robustness independent of it."""
    out = []
    rng = np.random.default_rng(1)
    for i, a in enumerate(ARCHS):
        e = copy.deepcopy(read_json(BOARD / f"{a}__er__quick-v1.json"))
        fam = e["summary"]["families"]
        pgd = fam["pgd"]["robustness"]
        fam["sib"]["robustness"] = 0.2 + link * pgd
        fam["svb"]["robustness"] = 0.3 + link * pgd
        fam["noise"]["robustness"] = float(rng.uniform(0.5, 0.9))
        out.append(e)
    return out


def test_a_linked_family_shows_up_in_its_cell_and_an_unlinked_one_does_not():
    m = family_matrix(entries(1.0), n_boot=500)
    assert m["rows"] == ["noise", "blur", "artefacts", "corruption (overall)"]
    assert m["cols"][-1] == "adversarial (overall)" and "pgd" in m["cols"] and "worst-case" in m["cols"]
    assert m["n_models"] == len(ARCHS) and m["n_cells"] == 4 * len(m["cols"])
    blur = m["cells"]["blur"]["pgd"]["spearman"]
    assert blur["r"] == pytest.approx(1.0) and blur["ci95"][0] > 0 and blur["p"] < 0.01
    assert abs(m["cells"]["noise"]["pgd"]["spearman"]["r"]) < 0.9
    # the link reversed reverses the coefficient
    assert family_matrix(entries(-1.0), n_boot=500)["cells"]["blur"]["pgd"]["spearman"]["r"] == pytest.approx(-1.0)


def test_the_matrix_needs_one_dataset_and_four_models():
    es = entries(1.0)
    with pytest.raises(ResultError, match="at least 4 models"):
        family_matrix(es[:3])
    other = copy.deepcopy(es[0])
    other["dataset"]["ref"] = "mito"
    with pytest.raises(ResultError, match="per dataset"):
        family_matrix(es + [other])


def test_the_readme_reads_the_matrix_for_version_2_tables_only():
    es = entries(1.0)
    text = family_markdown([{"protocol_id": "quick-v2", "dataset": "er", "entries": es}])
    assert "**er · quick-v2: each corruption group against each attack** (9 models" in text
    assert "| blur |" in text and "*What it shows (er):*" in text
    assert "a guide, not a test" in text and "by chance if they were" in text
    row = next(line for line in text.splitlines() if line.startswith("| blur |"))
    assert "1.00*" in row  # the linked cell, its CI excluding zero
    assert family_markdown([{"protocol_id": "quick-v1", "dataset": "er", "entries": es}]) == ""
    # too few models for intervals that mean something: it says so instead of marking cells
    few = family_markdown([{"protocol_id": "quick-v2", "dataset": "er", "entries": es[:5]}])
    assert "waits for 8 models (5 so far)" in few and "|" not in few  # no matrix, no marked cells
    assert not family_matrix(es[:5], n_boot=200)["reliable"]
