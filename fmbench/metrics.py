"""Segmentation metrics with an accumulate / compute shape.

Foreground IoU and Dice per image and pooled over the dataset (higher is better), and the
study's robustness measure: IoU under a condition divided by IoU under the reference
condition, per image, then averaged.
"""

from __future__ import annotations

import math

import torch


def predict(logits: torch.Tensor) -> torch.Tensor:
    """Foreground prediction ``(B, H, W)`` bool: ``logit > 0`` for ``C == 1``, otherwise the
    arg-max class is not 0 (background)."""
    if logits.shape[1] == 1:
        return logits[:, 0] > 0
    return logits.argmax(1) != 0


def overlap_counts(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image intersection, union, predicted and true foreground pixel counts."""
    p = pred.flatten(1)
    t = target.flatten(1).to(torch.bool)
    return {
        "inter": (p & t).sum(1),
        "union": (p | t).sum(1),
        "pred": p.sum(1),
        "true": t.sum(1),
    }


def per_image_iou(pred: torch.Tensor, target: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Foreground IoU of each image, ``(B,)`` in ``dtype``; 1 where prediction and truth are
    both empty.  ``pred`` and ``target`` are ``(B, H, W)`` bool (or ``(B, N)``)."""
    counts = overlap_counts(pred, target)
    inter, union = counts["inter"].to(dtype), counts["union"]
    return torch.where(union > 0, inter / union.clamp_min(1).to(dtype), torch.ones_like(inter))


def iou_dice(counts: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and Dice per image; both are 1 when prediction and truth are both empty."""
    inter = counts["inter"].double()
    union = counts["union"].double()
    denom = (counts["pred"] + counts["true"]).double()
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter))
    dice = torch.where(denom > 0, 2 * inter / denom.clamp_min(1), torch.ones_like(inter))
    return iou, dice


class SegmentationMetrics:
    """Accumulates per-image IoU / Dice and pooled counts over ``update`` calls."""

    higher_is_better = True

    def __init__(self):
        self.iou: list[float] = []
        self.dice: list[float] = []
        self.inter = 0
        self.union = 0
        self.pred_true = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        counts = overlap_counts(pred, target)
        iou, dice = iou_dice(counts)
        self.add(iou.tolist(), dice.tolist(), int(counts["inter"].sum()), int(counts["union"].sum()),
                 int((counts["pred"] + counts["true"]).sum()))

    def add(self, iou: list[float], dice: list[float], inter: int, union: int, pred_true: int) -> None:
        self.iou.extend(iou)
        self.dice.extend(dice)
        self.inter += inter
        self.union += union
        self.pred_true += pred_true

    def compute(self) -> dict[str, float]:
        n = len(self.iou)
        return {
            "iou": math.fsum(self.iou) / n if n else float("nan"),
            "dice": math.fsum(self.dice) / n if n else float("nan"),
            "iou_pooled": self.inter / self.union if self.union else 1.0,
            "dice_pooled": 2 * self.inter / self.pred_true if self.pred_true else 1.0,
            "n_images": n,
        }


def relative(values: list[float], reference: list[float]) -> tuple[list[float | None], float | None]:
    """Per-image ``value / reference`` and their mean.

    Images whose reference IoU is 0 have no ratio (``None``) and are left out of the mean;
    the mean is ``None`` when no image has a ratio.
    """
    ratios = [v / r if r > 0 else None for v, r in zip(values, reference)]
    valid = [r for r in ratios if r is not None]
    return ratios, (math.fsum(valid) / len(valid) if valid else None)


def output_problem(logits: object, inputs: torch.Tensor, channels: int | None = None) -> str | None:
    """What is wrong with a model's output for ``inputs`` ``(B, 1, H, W)`` under the contract
    (floating-point logits ``(B, C, H, W)``, C >= 1), or ``None``: checked on every batch, since a
    model may keep it on the probe and break it later."""
    if not isinstance(logits, torch.Tensor):
        return f"is a {type(logits).__name__}, not a logits tensor"
    b, _, h, w = inputs.shape
    if logits.dim() != 4 or logits.shape[0] != b or tuple(logits.shape[2:]) != (h, w):
        return f"has shape {tuple(logits.shape)} for input {tuple(inputs.shape)}, expected ({b}, C, {h}, {w})"
    if logits.shape[1] == 0:
        return "has 0 channels, expected 1 (sigmoid) or at least 2 (softmax)"
    if channels is not None and logits.shape[1] != channels:  # 1 is read as sigmoid, 2+ as softmax
        return f"has {logits.shape[1]} channels, but had {channels} on the probe batch"
    if not logits.is_floating_point():
        return f"has dtype {logits.dtype}, expected floating-point logits"
    return None
