"""Pooling trunk feature maps into vectors, weighted towards the garment.

Shop photos show a garment on a plain (mostly white) background. Averaging a feature map
over the whole photo lets the background, which every photo shares, dominate the vector;
weighting each position by how much the pixels under it differ from the background keeps
the garment's colour and texture in front. The same pooling serves the retrieval encoder
(:mod:`indexing.encoder`) and the GAN editors' frozen judges (:mod:`generators.models.features`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def foreground_weights(x01: torch.Tensor, low: float = 0.04, high: float = 0.12, floor: float = 0.02) -> torch.Tensor:
    """``[B, 1, H, W]`` soft garment mask of images in ``[0, 1]``, never all zero.

    The background colour is the per-image median of the border pixels; a pixel's weight
    rises from 0 to 1 as its largest channel difference to it goes from ``low`` to ``high``.
    ``floor`` keeps a little weight everywhere, so a white shirt on white (whose mask is
    nearly empty) is pooled almost uniformly instead of not at all.
    """
    b = x01.shape[0]
    border = torch.cat([x01[..., 0, :], x01[..., -1, :], x01[..., :, 0], x01[..., :, -1]], dim=-1)  # [B, 3, 2(H+W)]
    bg = border.float().median(dim=-1).values.view(b, -1, 1, 1)
    diff = (x01.float() - bg).abs().amax(dim=1, keepdim=True)
    w = ((diff - low) / (high - low)).clamp(0, 1)
    return w.clamp(min=floor)


def weighted_gem(feat: torch.Tensor, weights: torch.Tensor | None, p: float | torch.Tensor = 3.0,
                 eps: float = 1e-6) -> torch.Tensor:
    """Generalised mean of ``feat`` ``[B, C, h, w]`` over positions, weighted by ``weights``.

    ``weights`` is any ``[B, 1, H, W]`` mask; it is area-averaged to the feature map's size.
    ``None`` gives plain GeM (Radenović et al.).
    """
    x = feat.float().clamp(min=eps).pow(p)
    if weights is None:
        return x.mean(dim=(2, 3)).pow(1.0 / p)
    w = F.adaptive_avg_pool2d(weights.float(), feat.shape[-2:])
    return ((x * w).sum(dim=(2, 3)) / w.sum(dim=(2, 3)).clamp(min=eps)).pow(1.0 / p)


def multi_stage(trunk: torch.nn.Module, x: torch.Tensor, stages: tuple[int, ...], weights: torch.Tensor | None,
                p: float | torch.Tensor = 3.0, start: int = 0) -> list[torch.Tensor]:
    """Weighted-GeM vectors of the outputs of trunk ``stages`` (indices into ``trunk.stages``).

    Early stages carry colour and texture, late ones shape; the trunk runs only as far as the
    last stage asked for. ``start`` > 0 means ``x`` is already the output of stage ``start-1``.
    """
    out = []
    last = max(stages)
    h = x
    for i in range(start, last + 1):
        h = trunk.stages[i](h)
        if i in stages:
            out.append(weighted_gem(h, weights, p))
    return out
