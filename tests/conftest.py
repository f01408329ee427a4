"""Shared fixtures.  The suite never picks up third-party plugins that happen to be installed:
FMBENCH_LOAD_PLUGINS is set to empty here (and inherited by CLI subprocesses) unless a test
asks for a plugin by name."""

from __future__ import annotations

import os
import subprocess
import sys

os.environ["FMBENCH_LOAD_PLUGINS"] = ""

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    """Every test gets an empty user cache of its own (inherited by CLI subprocesses): no
    result one test computed is reused by another, and the user's own cache is never touched."""
    monkeypatch.setenv("FMBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def pm():
    """A fresh plugin manager with the built-in plugins only."""
    from fmbench.plugins import make_plugin_manager

    return make_plugin_manager(load_entrypoints=False)


@pytest.fixture
def registry(pm):
    from fmbench.plugins import get_registry

    return get_registry(pm)


@pytest.fixture
def register_plugin():
    """Register a plugin object on the process-wide manager for one test; unregistered after."""
    from fmbench.plugins import get_plugin_manager

    manager = get_plugin_manager()
    added = []

    def _register(plugin, name=None):
        manager.register(plugin, name=name)
        added.append(plugin)
        return manager

    yield _register
    for plugin in added:
        manager.unregister(plugin)


def run_cli(*args, cwd=None, env=None, timeout=600):
    """Run the real ``fmbench`` entry point in a subprocess; returns CompletedProcess."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "fmbench", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli
