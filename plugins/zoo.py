"""The reference model zoo: ten architectures as registered models.

Built from segmentation-models-pytorch, timm and torchvision parts with random initialisation
(``encoder_weights=None`` / ``weights=None``: nothing is downloaded), single-channel input and
one output logit (sigmoid).  Sizes fit the CPU budget: ResNet-18 encoders, MiT-B0, ViT-Tiny,
ConvNeXt-Atto, MobileNetV2/V3.  Every model is wrapped so any input size works: the input is
padded (reflect) to the multiple its encoder needs and the logits are cropped back.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fmbench import ModelSpec, Weights, hookimpl

# written by leaderboard/reproduce.py after each training: per model and dataset, the state
# sha256 of the checkpoint (its tensors: what the command reproduces exactly) and the command
# that makes it.  The files are too large to ship (6-32 MB); they live in the user cache
# (fmbench.model.cache_dir()/weights/zoo/MODEL__DATASET.pt).
WEIGHTS_FILE = Path(__file__).with_name("zoo_weights.json")


class PadCrop(nn.Module):
    """Pad the input to a multiple of ``multiple``, run ``net``, crop the logits back.

    Also unwraps torchvision's ``{"out": logits}`` outputs.
    """

    def __init__(self, net: nn.Module, multiple: int):
        super().__init__()
        self.net = net
        self.multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        out = self.net(x)
        if isinstance(out, dict):
            out = out["out"]
        return out[..., :h, :w]


class FCN(nn.Module):
    """FCN-8s (Long, Shelhamer & Darrell, CVPR 2015) on a ResNet encoder: 1x1 score layers on
    the stride-8, -16 and -32 features, summed coarse to fine with bilinear upsampling."""

    def __init__(self, encoder: str = "resnet18", classes: int = 1):
        super().__init__()
        from segmentation_models_pytorch.encoders import get_encoder

        self.encoder = get_encoder(encoder, in_channels=1, depth=5, weights=None)
        chans = self.encoder.out_channels
        self.score32 = nn.Conv2d(chans[-1], classes, 1)
        self.score16 = nn.Conv2d(chans[-2], classes, 1)
        self.score8 = nn.Conv2d(chans[-3], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        s = self.score32(feats[-1])
        s = F.interpolate(s, size=feats[-2].shape[-2:], mode="bilinear", align_corners=False) + self.score16(feats[-2])
        s = F.interpolate(s, size=feats[-3].shape[-2:], mode="bilinear", align_corners=False) + self.score8(feats[-3])
        return F.interpolate(s, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _smp(arch: str, encoder: str, multiple: int = 32, **kwargs):
    def factory(classes: int = 1, encoder_name: str = encoder, **extra):
        import segmentation_models_pytorch as smp

        net = getattr(smp, arch)(encoder_name=encoder_name, encoder_weights=None, in_channels=1, classes=classes,
                                 **{**kwargs, **extra})
        return PadCrop(net, multiple)

    return factory


def fcn(classes: int = 1, encoder_name: str = "resnet18"):
    return PadCrop(FCN(encoder_name, classes), 32)


def lraspp(classes: int = 1):
    """LR-ASPP on MobileNetV3-Large (Howard et al., ICCV 2019), first conv made single-channel."""
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    net = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=classes)
    first = net.backbone["0"][0]
    net.backbone["0"][0] = nn.Conv2d(1, first.out_channels, first.kernel_size, first.stride, first.padding, bias=False)
    return PadCrop(net, 32)


ZOO = [
    # decoder widths halved from smp's default (256-128-64-32-16): 25 % less compute at 256x256
    # (measured), which keeps the recipe and the quick tier inside the 2-core CPU budget
    ("unet-r18", "U-Net, ResNet-18 encoder, decoder 128-64-32-16-16",
     _smp("Unet", "resnet18", decoder_channels=(128, 64, 32, 16, 16)), "Ronneberger et al., MICCAI 2015"),
    # U-Net++'s nested skip nodes run at the encoder's stride-2 width (64 for ResNet-18: 30 min
    # of training, measured); MobileNetV2's 16/24-channel early stages bring it to ~10 min
    ("unetpp-mbv2", "U-Net++, MobileNetV2 encoder", _smp("UnetPlusPlus", "mobilenet_v2"),
     "Zhou et al., DLMIA 2018; Sandler et al., CVPR 2018"),
    ("fpn-r18", "Feature Pyramid Network, ResNet-18 encoder", _smp("FPN", "resnet18"), "Kirillov et al., CVPR 2019"),
    ("pspnet-r18", "PSPNet, ResNet-18 encoder", _smp("PSPNet", "resnet18"), "Zhao et al., CVPR 2017"),
    ("deeplabv3plus-r18", "DeepLabV3+, ResNet-18 encoder", _smp("DeepLabV3Plus", "resnet18"),
     "Chen et al., ECCV 2018"),
    ("fcn8s-r18", "FCN-8s, ResNet-18 encoder", fcn, "Long et al., CVPR 2015"),
    ("segformer-b0", "SegFormer, MiT-B0 encoder", _smp("Segformer", "mit_b0"), "Xie et al., NeurIPS 2021"),
    ("dpt-vit-tiny", "DPT on a plain ViT-Tiny/16", _smp("DPT", "tu-vit_tiny_patch16_224", multiple=32,
                                                       dynamic_img_size=True,
                                                       decoder_intermediate_channels=(48, 96, 192, 192),
                                                       decoder_fusion_channels=64),
     "Ranftl et al., ICCV 2021; Dosovitskiy et al., ICLR 2021"),
    ("upernet-convnext-atto", "UPerNet, ConvNeXt-Atto encoder", _smp("UPerNet", "tu-convnext_atto", decoder_channels=128),
     "Xiao et al., ECCV 2018; Liu et al., CVPR 2022"),
    ("lraspp-mbv3", "LR-ASPP, MobileNetV3-Large (mobile)", lraspp, "Howard et al., ICCV 2019"),
]


def weights_file(model: str, name: str) -> str:
    """Where the zoo's weights ``name`` (``nucleus``, ``nucleus@2/v2/seed1``) of ``model`` live
    in the user cache's weights folder."""
    return f"zoo/{model}__{name.replace('/', '__')}.pt"


def zoo_weights() -> dict[str, dict[str, Weights]]:
    """model -> dataset -> the registered (cache-resident) weights."""
    if not WEIGHTS_FILE.exists():
        return {}
    table = json.loads(WEIGHTS_FILE.read_text())["weights"]
    return {model: {ds: Weights(path=weights_file(model, ds), sha256="", state_sha256=w["state_sha256"],
                                command=w["command"], val_iou=w.get("val_iou"), convergence=_convergence(w))
                    for ds, w in per_ds.items()} for model, per_ds in table.items()}


def _convergence(w: dict) -> tuple[str, int, int] | None:
    c = w.get("convergence")
    return (str(c["state"]), int(c["best_step"]), int(c["stopped_at"])) if isinstance(c, dict) else None


@hookimpl
def fmbench_models():
    weights = zoo_weights()
    return [ModelSpec(name=name, summary=summary, factory=factory, paper=paper, weights=weights.get(name, {}),
                      needs_weights=True)
            for name, summary, factory, paper in ZOO]
