"""One evaluation over several processes under torchrun (fmbench.distributed), on CPU with gloo:
the merged result is the single-process one apart from ``run``; a run killed in one rank
resumes under another number of ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

ARGS = ["eval", "--model", "killable:Net", "--dataset", "nucleus", "--n-images", "4", "--image-size", "64",
        "--batch-size", "1", "--corruptions", "noise", "--attacks", "fgsm,pgd", "--quiet", "--no-cache"]

KILLABLE = textwrap.dedent('''
    import os

    from torch import nn


    class Net(nn.Module):
        """A tiny segmenter; with KILL_RANK and KILL_AFTER set, that rank dies (os._exit, as a
        killed process would) after so many forward calls."""

        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if (os.environ.get("RANK") == os.environ.get("KILL_RANK")
                    and self.calls > int(os.environ.get("KILL_AFTER", "1000000"))):
                os._exit(9)
            return self.net(x)
''')


def run(tmp_path, *args, ranks=1, env=None):
    full_env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200", PYTHONPATH=str(tmp_path), **(env or {}))
    full_env.pop("OMP_WAIT_POLICY", None)
    if ranks == 1:
        cmd = [sys.executable, "-m", "fmbench", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
               "-m", "fmbench", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=600)


def strip_run(path):
    doc = json.loads(path.read_text())
    return doc.pop("run"), doc


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "killable.py").write_text(KILLABLE)
    return tmp_path


def test_two_ranks_give_the_single_process_result(workdir):
    one = run(workdir, *ARGS, "--out", "one.json")
    assert one.returncode == 0, one.stderr
    two = run(workdir, *ARGS, "--out", "two.json", ranks=2)
    assert two.returncode == 0, two.stderr
    run_one, doc_one = strip_run(workdir / "one.json")
    run_two, doc_two = strip_run(workdir / "two.json")
    assert doc_two == doc_one  # no image padded in or evaluated twice, same numbers, same order
    assert (run_one["world_size"], run_two["world_size"]) == (1, 2)
    assert two.stdout.count("result written to two.json") == 1  # rank 0 alone prints
    assert not list(workdir.glob("two.json.partial*"))  # the ranks' logs are gone


def test_a_run_killed_in_one_rank_resumes_with_one_process(workdir):
    killed = run(workdir, *ARGS, "--out", "k.json", ranks=2, env={"KILL_RANK": "1", "KILL_AFTER": "5"})
    assert killed.returncode != 0 and not (workdir / "k.json").exists()  # nothing half-written
    logs = sorted(p.name for p in workdir.glob("k.json.partial*"))
    assert logs == ["k.json.partial.rank0.jsonl", "k.json.partial.rank1.jsonl"]
    resumed = run(workdir, *ARGS, "--out", "k.json", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    one = run(workdir, *ARGS, "--out", "one.json")
    assert one.returncode == 0
    assert strip_run(workdir / "k.json")[1] == strip_run(workdir / "one.json")[1]
    assert not list(workdir.glob("k.json.partial*"))


def test_a_failing_rank_is_named_in_one_line(workdir):
    r = run(workdir, "eval", "--model", "killable:Nope", "--dataset", "nucleus", "--out", "x.json", "--quiet", ranks=2)
    assert r.returncode != 0
    assert any(line.startswith("error: rank ") and "Nope" in line for line in r.stderr.splitlines()), r.stderr
    assert not (workdir / "x.json").exists()
