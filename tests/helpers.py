"""Small models and fake installed distributions for the tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

MYMOD = textwrap.dedent('''
    import torch
    from torch import nn


    class MyNet(nn.Module):
        """A tiny fully convolutional segmenter (2 output classes)."""

        def __init__(self, width=4, classes=2):
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(width, classes, 3, padding=1))

        def forward(self, x):
            return self.net(x)


    class Thresh(nn.Module):
        """A segmenter that works without training: a smoothed threshold of the input."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)
            with torch.no_grad():
                self.conv.weight.fill_(1 / 9)
                self.conv.bias.fill_(-0.3)

        def forward(self, x):
            return 20 * self.conv(x)


    class WrongShape(MyNet):
        def forward(self, x):
            return self.net(x)[:, :, ::2, ::2]


    class NaNNet(MyNet):
        def forward(self, x):
            return self.net(x) * float("nan")


    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            raise RuntimeError("weights server unreachable")


    def not_a_module():
        return 42
''')


def write_mymod(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "mymod.py"
    path.write_text(MYMOD)
    return path


def make_dist(site: Path, dist: str, module: str, code: str, ep_name: str | None = None) -> Path:
    """A minimal installed distribution (module + dist-info with an fmbench entry point)."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(code))
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[fmbench]\n{ep_name or module} = {module}\n")
    return site


PLUGIN_CODE = '''
    from torch import nn
    from fmbench import ModelSpec, hookimpl


    class TinyNet(nn.Module):
        def __init__(self, width=4):
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 1, 1))

        def forward(self, x):
            return self.net(x)


    @hookimpl
    def fmbench_models():
        return [ModelSpec(name="{name}", summary="a third-party tiny net", factory=TinyNet)]
'''
