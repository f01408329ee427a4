"""``mmseg:CONFIG.py``: an mmsegmentation 1.x config file, or one of mmseg's shipped configs;
needs the ``mmseg`` extra."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import sys
import types
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fmbench import ModelLoadError

from ._common import _first_line, _suggest

MMSEG_ARGS = {"classes": "output channels: 1 (default, one sigmoid logit) or N >= 2 (softmax, class 0 background)",
              "size_divisor": "pad the input to a multiple of this (default 32) and crop the logits back"}


class _MissingCompiledOps(types.ModuleType):
    """Stands in for ``mmcv.ops`` under mmcv-lite, which ships mmcv without its compiled ops.

    mmsegmentation imports a few names from ``mmcv.ops`` at import time (``point_sample``,
    ``sigmoid_focal_loss``...) although most models never use them. Every name here is a class
    that raises as soon as it is constructed or called, so a config that needs a compiled op
    fails on that op with a message, and ``isinstance`` checks against it are simply false.
    """

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def refuse(self, *args, **kwargs):
            raise ModelLoadError(f"mmcv.ops.{name} is one of mmcv's compiled ops, which mmcv-lite does not "
                                 f"have: this config needs full mmcv (see docs/adapters.md)")

        stand_in = type(name, (nn.Module,), {"__init__": refuse, "__module__": "mmcv.ops",
                                              "__doc__": f"mmcv-lite stand-in for mmcv.ops.{name}"})
        setattr(self, name, stand_in)
        return stand_in


def _import_mmseg():
    """Import mmseg's models, with :class:`_MissingCompiledOps` as ``mmcv.ops`` when mmcv has no
    compiled extension at all (mmcv-lite); installed once, for the whole process.  A full mmcv
    whose ops fail to load is an error, not replaced."""
    if "mmcv.ops" not in sys.modules and importlib.util.find_spec("mmcv._ext") is None:
        import mmcv

        sys.modules["mmcv.ops"] = mmcv.ops = _MissingCompiledOps("mmcv.ops")
    import mmseg.models  # noqa: F401  (registers every mmseg model)


@contextlib.contextmanager
def _quiet_openmmlab():
    """Silence mmengine's INFO log (``init_weights`` prints one entry per parameter to stdout)
    and the openmmlab packages' advice warnings while a model is built."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"(mmcv|mmseg|mmengine)(\.|$)")
            yield
    finally:
        logger.setLevel(level)


def _mmseg_config_file(config: str) -> Path:
    """The config file: the path as given, else one of mmseg's shipped configs (``.mim/configs``)."""
    import mmseg

    shipped = Path(mmseg.__file__).parent / ".mim" / "configs"
    try:
        given = Path(config).expanduser()
    except RuntimeError:  # "~nobody/...": no such home folder
        given = Path(config)
    for candidate in (given, shipped / config, shipped.parent / config):
        if candidate.is_file():
            return candidate
    names = [str(p.relative_to(shipped)) for p in shipped.rglob("*.py") if "_base_" not in p.parts]
    hint = _suggest(config, names, "configs", listing=False)
    raise ModelLoadError(f"mmseg config {config} does not exist, here or among mmsegmentation's shipped configs "
                         f"in {shipped}{hint}")


def _strip_pretrained(node):
    """Drop every pretrained-weight source from a config tree, so building downloads nothing."""
    if isinstance(node, dict):
        for key in list(node):
            value = node[key]
            if key == "init_cfg" and any(isinstance(c, dict) and c.get("type") == "Pretrained"
                                         for c in (value if isinstance(value, list) else [value])):
                node[key] = None
            elif key == "pretrained" and value:
                node[key] = False if isinstance(value, bool) else None
            else:
                _strip_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for item in node:
            _strip_pretrained(item)


def _set_classes(model_cfg, classes: int) -> None:
    """Give every decode and auxiliary head ``classes`` outputs; 1 is mmseg's binary form
    (``num_classes=2, out_channels=1``) with its threshold at sigmoid 0.5, i.e. logit 0."""
    for key in ("decode_head", "auxiliary_head"):
        heads = model_cfg.get(key)
        for head in (heads if isinstance(heads, (list, tuple)) else [heads]):
            if isinstance(head, dict):
                if classes == 1:
                    head.update(num_classes=2, out_channels=1, threshold=0.5)
                else:
                    head.update(num_classes=classes, out_channels=classes)


class MMSegModel(nn.Module):
    """An mmsegmentation segmentor under the fmbench contract.

    The (B, 1, H, W) input in [0, 1] is padded to a multiple of ``size_divisor``, replicated to
    the backbone's input channels, scaled to 0-255 and normalised with the config's
    ``data_preprocessor`` mean and std (its BGR/RGB swap is moot on identical channels), then run
    through the segmentor's own ``inference`` (``whole`` or ``slide``, as the config's
    ``test_cfg`` says), which resizes the logits to the padded size; they are cropped back.
    The segmentor's children are registered as this module's own, so the state dict has
    mmseg's key names and an mmseg checkpoint loads as it is.
    """

    def __init__(self, segmentor: nn.Module, in_channels: int, size_divisor: int):
        super().__init__()
        for name, child in segmentor.named_children():
            self.add_module(name, child)
        self.__dict__["segmentor"] = segmentor  # kept out of the module tree: its children are ours already
        self.in_channels = in_channels
        self.size_divisor = size_divisor
        pre = segmentor.data_preprocessor
        self.normalise = bool(getattr(pre, "_enable_normalize", False))
        if self.normalise and pre.mean.numel() not in (1, in_channels):
            raise ModelLoadError(f"the config's data_preprocessor has {pre.mean.numel()} means but its backbone "
                                 f"takes {in_channels} input channels")

    def train(self, mode: bool = True):
        super().train(mode)
        self.segmentor.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.size_divisor, (-w) % self.size_divisor
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        x = x.expand(-1, self.in_channels, -1, -1) * 255.0
        if self.normalise:
            pre = self.segmentor.data_preprocessor
            x = (x - pre.mean) / pre.std
        shape = tuple(x.shape[-2:])
        metas = [dict(ori_shape=shape, img_shape=shape, pad_shape=shape, padding_size=[0, 0, 0, 0])
                 for _ in range(x.shape[0])]
        return self.segmentor.inference(x, metas)[..., :h, :w]


def mmseg_model(config: str, args: dict) -> nn.Module:
    """An mmsegmentation 1.x model from ``config`` (a path, or one of mmseg's shipped configs
    such as ``segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py``), randomly initialised
    as the config says but with every pretrained-weight source removed (nothing is downloaded),
    SyncBN reverted to BatchNorm, and the heads set to ``classes`` outputs.  With mmcv-lite,
    ``mmcv.ops`` is a stand-in that refuses to run any compiled op (see
    :class:`_MissingCompiledOps`): UNet and SegFormer need none; configs that do need full mmcv.
    """
    try:
        import mmseg  # noqa: F401
    except ImportError as exc:
        raise ModelLoadError(
            f"'mmseg:{config}' needs mmsegmentation, which is not installed: install the extra with "
            f"`pip install 'fmbench[mmseg]'` (docs/adapters.md has the full-mmcv route)"
        ) from exc
    except AssertionError as exc:  # mmseg asserts the mmcv and mmengine versions it accepts
        raise ModelLoadError(f"mmsegmentation refuses the installed openmmlab packages: {exc}") from exc
    unknown = sorted(set(args) - set(MMSEG_ARGS))
    if unknown:
        raise ModelLoadError(f"mmseg: models take no model argument {', '.join(unknown)} (they take: "
                             + "; ".join(f"{k}: {v}" for k, v in MMSEG_ARGS.items()) + ")")
    classes, size_divisor = args.get("classes", 1), args.get("size_divisor", 32)
    for key, value in (("classes", classes), ("size_divisor", size_divisor)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ModelLoadError(f"mmseg: model argument {key}={value!r}: expected a positive integer")
    file = _mmseg_config_file(config)
    with _quiet_openmmlab():
        from mmengine.config import Config
        from mmengine.model.utils import revert_sync_batchnorm
        from mmengine.registry import DefaultScope

        try:
            cfg = Config.fromfile(str(file))
        except Exception as exc:
            raise ModelLoadError(f"mmseg config {file} could not be read: {_first_line(exc)}") from exc
        if not isinstance(cfg.get("model"), dict):
            raise ModelLoadError(f"mmseg config {file} defines no `model` dict")
        model_cfg = cfg.model
        _strip_pretrained(model_cfg)
        _set_classes(model_cfg, classes)
        backbone = model_cfg.get("backbone") or {}
        try:
            _import_mmseg()
            from mmseg.registry import MODELS

            with DefaultScope.overwrite_default_scope(cfg.get("default_scope", "mmseg")):
                segmentor = MODELS.build(model_cfg)
                segmentor.init_weights()
            segmentor = revert_sync_batchnorm(segmentor)  # SyncBN needs a process group; BN on one device
        except Exception as exc:
            raise ModelLoadError(f"mmseg config {file} does not build: {_first_line(exc)}") from exc
    if not callable(getattr(segmentor, "inference", None)):
        raise ModelLoadError(f"mmseg config {file} builds a {type(segmentor).__name__}, not an mmseg segmentor "
                             f"with inference() (EncoderDecoder and the like)")
    if getattr(segmentor, "test_cfg", None) is None:
        from mmengine.config import ConfigDict

        segmentor.test_cfg = ConfigDict(mode="whole")
    pre_test = getattr(segmentor.data_preprocessor, "test_cfg", None) or {}
    size_divisor = math.lcm(size_divisor, pre_test.get("size_divisor") or 1)
    mean = getattr(segmentor.data_preprocessor, "mean", None)
    in_channels = backbone.get("in_channels") or (mean.numel() if mean is not None else 3)
    return MMSegModel(segmentor, int(in_channels), size_divisor)
