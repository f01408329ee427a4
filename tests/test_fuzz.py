"""Property-based checks (hypothesis): whatever junk reaches a parser, the partial log, the
entry checks, compare or recheck, the answer is a list of problems or one FmbenchError --
never another exception.  Examples are bounded so the suite stays within CI's budget."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmbench.errors import FmbenchError
from fmbench.files import read_json

ROOT = Path(__file__).resolve().parents[1]
ENTRY = read_json(ROOT / "leaderboard" / "unet-small__nucleus__quick-v1.json")
SETTINGS = settings(max_examples=int(__import__("os").environ.get("FMBENCH_FUZZ_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            yield from _paths(v, prefix + (i,))


PATHS = [p for p in _paths(ENTRY) if p]


@st.composite
def mutated(draw, base=ENTRY):
    """The real entry with one to three values replaced by junk or removed."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        node = doc
        try:
            for key in path[:-1]:
                node = node[key]
            if draw(st.booleans()) and isinstance(node, dict):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue
    return doc


def _registry():
    from fmbench.plugins import get_registry, make_plugin_manager

    return get_registry(make_plugin_manager(load_entrypoints=False))


REGISTRY = _registry()


@SETTINGS
@given(mutated())
def test_entry_checks_return_problems_never_raise(doc):
    from fmbench.integrity import consistency
    from fmbench.leaderboard.store import check_entry, schema_validator

    problems = check_entry(doc, REGISTRY, schema_validator()[1])
    assert isinstance(problems, list) and all(isinstance(p, str) and "\n" not in p for p in problems)
    if not problems:
        assert consistency(doc, REGISTRY) == []


def _numbers(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _numbers(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _numbers(v, prefix + (i,))
    elif isinstance(node, float):
        yield prefix


def _kinds_of_number():
    """One numeric leaf of each kind (its path with list positions blanked) of the entry's
    conditions, summary, scores and per-image values, at a position drawn with a fixed seed."""
    import random

    by_kind: dict = {}
    for p in _numbers(ENTRY):
        if p[0] in ("conditions", "summary", "scores", "per_image"):
            by_kind.setdefault(tuple("#" if isinstance(k, int) else k for k in p), []).append(p)
    rng = random.Random(0)
    return [rng.choice(paths) for _, paths in sorted(by_kind.items(), key=lambda kv: str(kv[0]))]


def test_every_kind_of_number_an_entry_reports_is_checked():
    """Moving any one number of the results by 0.05 -- a condition's IoU, Dice, level or
    robustness, a summary or score value or bound, one image's IoU -- leaves a problem."""
    from fmbench.leaderboard.store import check_entry, schema_validator

    validator = schema_validator()[1]
    assert check_entry(ENTRY, REGISTRY, validator) == []
    kinds = _kinds_of_number()
    assert len(kinds) > 20
    missed = []
    for path in kinds:
        doc = copy.deepcopy(ENTRY)
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] += -0.05 if node[path[-1]] > 0.5 else 0.05
        if not check_entry(doc, REGISTRY, validator):
            missed.append(path)
    assert missed == []


@SETTINGS
@given(mutated())
def test_compare_is_one_error_or_an_answer(doc):
    from fmbench.leaderboard.compare import compare

    try:
        data = compare(doc, [ENTRY])
    except FmbenchError:
        return
    assert data["rows"]


@SETTINGS
@given(mutated(), st.lists(st.integers(0, 15), min_size=1, max_size=3, unique=True))
def test_recheck_comparison_is_one_error_or_an_answer(doc, picks):
    from fmbench.leaderboard import recheck_compare

    ids = ENTRY["per_image"]["ids"]
    result = {"per_image": {"ids": [ids[p] for p in picks],
                            "iou": {c: [v[p] for p in picks] for c, v in ENTRY["per_image"]["iou"].items()}}}
    try:
        recheck_compare(doc, result)
    except FmbenchError:
        pass


@SETTINGS
@given(st.lists(st.one_of(json_values.map(json.dumps), st.text(max_size=30)), max_size=5))
def test_a_partial_log_with_any_lines_resumes_or_says_why(tmp_path_factory, lines):
    from fmbench.runlog import PartialLog

    path = tmp_path_factory.mktemp("log") / "r.json.partial.jsonl"
    header = {"protocol_hash": "x"}
    path.write_text("\n".join([json.dumps({"header": header}), *lines]) + "\n")
    try:
        log = PartialLog(path, header, resume=True, conditions={"reference"})
    except FmbenchError:
        return
    assert all(r["condition"] == "reference" for r in log.records)


@SETTINGS
@given(st.lists(st.text(max_size=20), max_size=4))
def test_model_arguments_parse_or_say_why(items):
    from fmbench.model import parse_model_args

    try:
        assert isinstance(parse_model_args(items), dict)
    except FmbenchError:
        pass


@SETTINGS
@given(st.text(max_size=40))
def test_dataset_references_open_or_say_why(text):
    from fmbench.datasets import open_dataset

    try:
        open_dataset(f"folder:{text}", "test", 64, registry=REGISTRY)
    except FmbenchError:
        pass


@pytest.mark.parametrize("text", ["", "{", "[]", "null", '{"kind": "fmbench-result"}', '"x"'])
def test_result_files_of_any_shape_load_or_say_why(tmp_path, text):
    from fmbench.result import Result

    (tmp_path / "r.json").write_text(text)
    with pytest.raises(FmbenchError):
        Result.load(tmp_path / "r.json")
