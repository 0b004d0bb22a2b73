"""Attention pooling for the parts head: each attribute learns where in the photo to look.

Why: many shop photos show the garment worn, over jeans or under a jacket, next to skin and
hair. Pooling the whole non-white area mixes all of them, so a navy sweater over a white shirt
reads "white", and a purple T-shirt over blue jeans reads "blue". A small learned attention
over the trunk's stage-11 and stage-16 maps (which know "this is the torso", "this is a shoe")
picks the positions that carry the labelled article, separately for each attribute, and pools
there: a colour histogram of the pixels and the early (colour, texture) and late (shape)
features. Measured on myntra-a (docs/indexing.md): held-out colour accuracy 0.630 -> 0.662 and
the colour block's P@10 0.52 -> 0.56 against the same head on globally pooled features.

The maps a head needs are flattened into one vector after the global pooled features, so the
head's input is still one vector per image: it is what the training recipe caches
(``indexing.train_head``) and what :class:`indexing.encoder.PartsHead` reads.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

MAP_STAGES = (5, 11, 16)  # early (colour, texture), middle (parts), late (shape) trunk stages
GRID = 14  # feature maps are resampled to GRID x GRID (stage 16 to GRID // 2)
PIXELS = 2 * GRID  # the colour histogram counts PIXELS x PIXELS pixels
HIST_BINS = 8  # per RGB channel: an 8x8x8 histogram, as in the global pooled features


def maps_dim(channels: tuple[int, int, int]) -> int:
    """Length of the flattened maps for trunk stages with these channel counts."""
    c5, c11, c16 = channels
    return (c5 + c11) * GRID * GRID + c16 * (GRID // 2) ** 2 + 2 * PIXELS * PIXELS


def flatten_maps(stage_maps: dict[int, torch.Tensor], weights: torch.Tensor, x01: torch.Tensor) -> torch.Tensor:
    """``[B, maps_dim]``: the stage maps, the garment mask and each pixel's histogram bin.

    ``stage_maps`` holds the outputs of :data:`MAP_STAGES`, ``weights`` the foreground mask
    (:func:`indexing.pooling.foreground_weights`) and ``x01`` the photo in ``[0, 1]``.
    """
    b = x01.shape[0]
    small = F.interpolate(x01.float(), size=(PIXELS, PIXELS), mode="area").clamp(0, 1)
    q = (small * HIST_BINS).long().clamp(max=HIST_BINS - 1)
    bins = (q[:, 0] * HIST_BINS + q[:, 1]) * HIST_BINS + q[:, 2]
    mask = F.adaptive_avg_pool2d(weights.float(), (PIXELS, PIXELS))
    parts = [F.adaptive_avg_pool2d(stage_maps[5].float(), GRID), F.adaptive_avg_pool2d(stage_maps[11].float(), GRID),
             F.adaptive_avg_pool2d(stage_maps[16].float(), GRID // 2), mask, bins.float()]
    return torch.cat([p.reshape(b, -1) for p in parts], dim=1)


def unflatten_maps(flat: torch.Tensor, channels: tuple[int, int, int]) -> tuple[torch.Tensor, ...]:
    """The inverse of :func:`flatten_maps`: ``(s5, s11, s16, mask, bins)``."""
    c5, c11, c16 = channels
    b, g, h = flat.shape[0], GRID, GRID // 2
    sizes = [c5 * g * g, c11 * g * g, c16 * h * h, PIXELS * PIXELS, PIXELS * PIXELS]
    s5, s11, s16, mask, bins = torch.split(flat, sizes, dim=1)
    return (s5.reshape(b, c5, g, g), s11.reshape(b, c11, g, g), s16.reshape(b, c16, h, h),
            mask.reshape(b, 1, PIXELS, PIXELS), bins.round().long())


class AttentionPool(nn.Module):
    """``heads`` attention maps over the GRID x GRID positions, and what each of them pools.

    The attention logits come from a small MLP on the stage-11 and (upsampled) stage-16
    features, plus a learned multiple of the log garment mask (so the white background starts
    out ignored). Each head pools: a square-rooted RGB histogram of the pixels under it and
    the three stages' features. Output: ``[B, heads * (HIST_BINS**3 + c5 + c11 + c16)]``.
    """

    def __init__(self, channels: tuple[int, int, int], heads: int = 2, hidden: int = 64) -> None:
        super().__init__()
        self.channels = tuple(int(c) for c in channels)
        self.heads = heads
        c5, c11, c16 = self.channels
        # per-position layers as matrix products (a 1x1 convolution costs more on one small map);
        # the trunk's stage outputs come out of batch norm already, so no input normalisation
        self.hidden = nn.Linear(c11 + c16, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        self.score = nn.Linear(hidden, heads)
        self.prior = nn.Parameter(torch.ones(heads))
        self.out_dim = heads * (HIST_BINS**3 + c5 + c11 + c16)

    @staticmethod
    def prepare(flat: torch.Tensor, channels: tuple[int, int, int]) -> dict[str, torch.Tensor]:
        """What every attribute's pool reads from the flattened maps, computed once for all of them.

        The stage maps stay channel-major views of ``flat`` (``[B, c, positions]``, no copy).
        """
        s5, s11, s16, mask, bins = unflatten_maps(flat, channels)
        return {"s5": s5.flatten(2), "s11": s11.flatten(2), "s16": s16.flatten(2),
                "prior": torch.log(F.avg_pool2d(mask, 2).clamp(min=1e-3)).flatten(1), "bins": bins.flatten(1)}

    def forward(self, flat: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """``flat`` maps, or their :meth:`prepare`-d form -> ``[B, out_dim]``.

        Stage 16 is on a grid half as fine. Upsampling it (nearest) commutes with every
        per-position linear map, so its share of the MLP's first layer is computed on its own
        grid and then upsampled, and what a map pools from it is the map summed over each 2x2
        block times the coarse features: the same values as on upsampled features, at a
        quarter of the cost for its 320 channels (on Lite0).
        """
        prep = self.prepare(flat, self.channels) if isinstance(flat, torch.Tensor) else flat
        s5, s11, s16 = prep["s5"], prep["s11"], prep["s16"]
        b, k, c11, half = s11.shape[0], self.heads, self.channels[1], GRID // 2
        w = self.hidden.weight
        coarse = torch.matmul(w[:, c11:], s16).view(b, -1, half, half)  # [B, hidden, 7, 7]
        h = torch.matmul(w[:, :c11], s11) + _upsample2(coarse).flatten(2) + self.hidden.bias[:, None]
        logits = torch.matmul(self.score.weight, F.gelu(self.norm(h))) + self.score.bias[:, None]  # [B, heads, P]
        att = torch.softmax(logits + self.prior.view(1, -1, 1) * prep["prior"][:, None, :], dim=-1)
        # each pixel of the PIXELS grid gets the attention of its cell, shared by its 4 pixels
        att_px = _upsample2(att.view(b, k, GRID, GRID)).flatten(2) / 4
        hist = torch.zeros(b, k, HIST_BINS**3, dtype=att.dtype, device=att.device)
        hist = hist.scatter_add(2, prep["bins"].view(b, 1, -1).expand(-1, k, -1), att_px)
        att_coarse = att.view(b, k, half, 2, half, 2).sum(dim=(3, 5)).flatten(2)  # [B, heads, 49]
        pooled = [torch.bmm(att, s5.transpose(1, 2)), torch.bmm(att, s11.transpose(1, 2)),
                  torch.bmm(att_coarse, s16.transpose(1, 2))]
        # x 4: a histogram's square root has norm 1, the pooled features are of order 1 per channel
        return torch.cat([4 * (hist.clamp(min=0) + 1e-8).sqrt(), *pooled], dim=2).flatten(1)


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 upsampling by broadcasting (F.interpolate copies slowly on CPU)."""
    b, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)
