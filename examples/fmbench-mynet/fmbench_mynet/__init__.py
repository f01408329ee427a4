"""MyNet: a two-level encoder-decoder registered with fmbench through an entry point."""

import torch
from torch import nn

from fmbench import ModelSpec, hookimpl


def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class MyNet(nn.Module):
    """Input (B, 1, H, W) in [0, 1] with H and W even; output one logit per pixel (sigmoid)."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.enc = block(1, width)
        self.mid = block(width, 2 * width)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.dec = block(2 * width, width)
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.enc(x)
        m = self.mid(nn.functional.max_pool2d(e, 2))
        return self.head(self.dec(torch.cat([e, self.up(m)], 1)))


@hookimpl
def fmbench_models():
    return [ModelSpec(name="mynet", summary="MyNet, a two-level encoder-decoder (example plugin)", factory=MyNet,
                      defaults={"width": 16}, paper="fmbench CONTRIBUTING.md worked example")]
