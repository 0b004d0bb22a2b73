"""The masked residual that MUNIT and Fader apply their low-resolution output with.

Both models predict at a small working size (64-96 px on a CPU). Shown as-is, that output
would replace a sharp catalog photo with a blurry one. Instead they predict a *change*:

    out = x + strength * m * (y - x)          (MUNIT: y is the translated garment)
    out = x + m * (y_target - y_source)       (Fader: the difference of two decodings)

where ``m = sigmoid(logit + prior * (2 * garment - 1))`` is a mask that starts open on the
garment (the pixels unlike the background, :func:`indexing.pooling.foreground_weights`) and
closed on the background; the model's own mask logit can open it further (a longer sleeve)
or close it. At full resolution the change and the logit are upsampled bilinearly while the
garment prior is taken from the full-resolution photo, so the outline stays sharp. Where
``m`` is 0, and everywhere at strength 0, the output is the input pixel exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from indexing.pooling import foreground_weights


def downsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """``x`` at ``size`` x ``size`` (antialiased), unchanged when it already is."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def garment_mask(x: torch.Tensor, logit: torch.Tensor | None, prior: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask, garment)`` for images ``x`` in [-1, 1]; ``logit`` (or None) at ``x``'s size."""
    garment = foreground_weights((x.detach().float() + 1) / 2, floor=0.0)
    base = prior * (2 * garment - 1)
    return torch.sigmoid(base if logit is None else logit.float() + base), garment


def compose(x: torch.Tensor, y: torch.Tensor, logit: torch.Tensor | None, prior: float,
            strength: float | torch.Tensor = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x + strength * m * (y - x)`` at one resolution; returns (image, mask, garment)."""
    mask, garment = garment_mask(x, logit, prior)
    if isinstance(strength, torch.Tensor):
        strength = strength.view(-1, 1, 1, 1)
    return (x + strength * mask * (y.float() - x)).clamp(-1, 1), mask, garment


def apply_change(x_hi: torch.Tensor, change_lo: torch.Tensor, logit_lo: torch.Tensor | None, prior: float,
                 strength: float = 1.0, replace: torch.Tensor | None = None) -> torch.Tensor:
    """Apply a change predicted at low resolution to ``x_hi`` at its own resolution.

    ``change_lo`` is added under the mask: ``x + strength * m * change``. With ``replace``
    (MUNIT: the low-resolution output image), the change is ``replace - x`` taken at full
    resolution instead, so the garment is replaced, not overlaid (the input's own pattern
    must not shine through a pattern removal).
    """
    size = tuple(x_hi.shape[-2:])
    logit = upsample(logit_lo.float(), size) if logit_lo is not None else None
    mask, _ = garment_mask(x_hi, logit, prior)
    if replace is not None:
        change = upsample(replace.float(), size) - x_hi
    else:
        change = upsample(change_lo.float(), size)
    if strength == 0.0:
        return x_hi.clone()
    return (x_hi + strength * mask * change).clamp(-1, 1)
