"""Every zoo model builds offline, follows the model contract and takes any input size."""

from __future__ import annotations

import pytest
import torch

from fmbench.model import probe
from fmbench_plugins.zoo import ZOO


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
