"""A compact U-Net (Ronneberger, Fischer & Brox, MICCAI 2015), the model shipped with
trained weights so that fmbench runs offline on a fresh machine."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fmbench import ModelSpec, Weights, hookimpl


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net with ``depth`` poolings and ``width`` channels at full resolution.

    Inputs of any size are padded (reflect) to a multiple of ``2**depth`` and the logits
    cropped back, so the output is always at input size.
    """

    def __init__(self, in_channels: int = 1, classes: int = 1, width: int = 16, depth: int = 3):
        super().__init__()
        chans = [width * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.down = nn.ModuleList([_block(in_channels, chans[0])] +
                                  [_block(chans[i], chans[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth))])
        self.dec = nn.ModuleList([_block(2 * chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([up(x), skips.pop()], 1))
        return self.head(x)[..., :h, :w]


TRAIN_COMMAND = ("fmbench train --model unet-small --dataset {data} --seed 0 "
                 "--out plugins/weights/unet-small_{dataset}.pt --half --tier quick-v1")
# the data each shipped model is trained on: nucleus on version 2 (realistic edges and
# annotation, docs/datasets.md); the weights serve every version of the dataset
TRAINED_ON = {"nucleus": "nucleus@2", "mito": "mito", "er": "er"}
SHIPPED = {
    # dataset -> sha256 of plugins/weights/unet-small_<dataset>.pt
    "nucleus": "9df0cc109a745e78268fbcb67e23a97bfdc1b5402aaf726552b89ad8d91935e5",
    "mito": "530ed1d2c8e1199550ea5770c7ead2cbc11aeab687424febb240a0af280b0959",
    "er": "97eea2704b924e5a61f87cbb80be1c28459db6055e673d220451934062c12939",
}


@hookimpl
def fmbench_models():
    weights = {
        ds: Weights(path=f"weights/unet-small_{ds}.pt", sha256=sha, package="fmbench_plugins",
                    command=TRAIN_COMMAND.format(data=TRAINED_ON[ds], dataset=ds))
        for ds, sha in SHIPPED.items()
    }
    return [ModelSpec(name="unet-small", summary="compact U-Net, 3 poolings, 16 base channels",
                      factory=UNet, defaults={"width": 16, "depth": 3},
                      paper="Ronneberger et al., MICCAI 2015", weights=weights)]
