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


def background_colour(x01: torch.Tensor) -> torch.Tensor:
    """``[B, C, 1, 1]`` background colour of images in ``[0, 1]``: the median of the border pixels."""
    b = x01.shape[0]
    border = torch.cat([x01[..., 0, :], x01[..., -1, :], x01[..., :, 0], x01[..., :, -1]], dim=-1)  # [B, 3, 2(H+W)]
    return border.float().median(dim=-1).values.view(b, -1, 1, 1)


def foreground_weights(x01: torch.Tensor, low: float = 0.04, high: float = 0.12, floor: float = 0.02,
                       bg: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, 1, H, W]`` soft garment mask of images in ``[0, 1]``, never all zero.

    The background colour is the per-image median of the border pixels; a pixel's weight
    rises from 0 to 1 as its largest channel difference to it goes from ``low`` to ``high``.
    ``floor`` keeps a little weight everywhere, so a white shirt on white (whose mask is
    nearly empty) is pooled almost uniformly instead of not at all. ``bg`` (from
    :func:`background_colour` of the whole photo) lets a band of rows be weighted on its own.
    """
    bg = background_colour(x01) if bg is None else bg
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


def stage_outputs(trunk: torch.nn.Module, x: torch.Tensor, stages: tuple[int, ...], start: int = 0) -> dict[int, torch.Tensor]:
    """The raw outputs of trunk ``stages`` (indices into ``trunk.stages``), by stage.

    The trunk runs only as far as the last stage asked for. ``start`` > 0 means ``x`` is already
    the output of stage ``start-1``.
    """
    out = {}
    h = x
    for i in range(start, max(stages) + 1):
        h = trunk.stages[i](h)
        if i in stages:
            out[i] = h
    return out


def rgb_to_lab(x01: torch.Tensor) -> torch.Tensor:
    """sRGB ``[B, 3, H, W]`` in ``[0, 1]`` -> CIE LAB (D65): L in [0, 100], a and b roughly [-110, 110]."""
    x = x01.float().clamp(0, 1)
    lin = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    m = torch.tensor([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
                     dtype=lin.dtype, device=lin.device)
    xyz = torch.einsum("ij,bjhw->bihw", m, lin)
    xyz = xyz / torch.tensor([0.950456, 1.0, 1.088754], dtype=lin.dtype, device=lin.device).view(1, 3, 1, 1)
    d = 6.0 / 29.0
    f = torch.where(xyz > d**3, xyz.clamp(min=1e-12) ** (1.0 / 3.0), xyz / (3 * d * d) + 4.0 / 29.0)
    lum = 116.0 * f[:, 1] - 16.0
    a = 500.0 * (f[:, 0] - f[:, 1])
    b = 200.0 * (f[:, 1] - f[:, 2])
    return torch.stack([lum, a, b], dim=1)


LAB_RANGE = ((0.0, 100.0), (-80.0, 80.0), (-80.0, 80.0))


def colour_histogram(x01: torch.Tensor, bins: tuple[int, int, int] = (4, 8, 8), size: int = 64,
                     space: str = "lab") -> torch.Tensor:
    """``[B, prod(bins)]`` joint colour histogram of the garment's pixels, square-rooted and L2-normalised.

    ``space`` is ``"lab"`` (CIE LAB, the ranges of :data:`LAB_RANGE`) or ``"rgb"`` (sRGB cube).
    Pixels are counted with their :func:`foreground_weights`, so the white background does not
    fill the histogram. The square root (Hellinger) lets a small second colour still count.
    """
    if space not in ("lab", "rgb"):
        raise ValueError(f"colour space must be 'lab' or 'rgb', got {space!r}")
    x01 = _downscale(x01, size)
    w = foreground_weights(x01).flatten(1)  # [B, HW]
    values = rgb_to_lab(x01).flatten(2) if space == "lab" else x01.float().flatten(2)  # [B, 3, HW]
    ranges = LAB_RANGE if space == "lab" else ((0.0, 1.0),) * 3
    idx = torch.zeros_like(values[:, 0], dtype=torch.long)
    for c, (n, (lo, hi)) in enumerate(zip(bins, ranges, strict=True)):
        k = ((values[:, c] - lo) / (hi - lo) * n).long().clamp(0, n - 1)
        idx = idx * n + k
    total = bins[0] * bins[1] * bins[2]
    hist = torch.zeros(x01.shape[0], total, dtype=torch.float32, device=x01.device)
    hist.scatter_add_(1, idx, w.float())
    hist = hist / w.sum(1, keepdim=True).clamp(min=1e-6)
    return F.normalize(hist.sqrt(), dim=1)


QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
COLOUR_STATS_DIM = 4 * (len(QUANTILES) + 1) + 1


def colour_stats(x01: torch.Tensor, size: int = 64) -> torch.Tensor:
    """``[B, 25]`` garment-weighted quantiles and means of L, a, b and chroma (LAB / 100), and the
    garment's share of the photo.

    A histogram splits a colour across bin edges; quantiles say directly how light, how
    saturated and which hue the garment mostly is (grey vs black vs white is mostly a matter of
    the L quantiles, navy vs blue of L and chroma). The values are raw, not normalised: the
    trained head standardises its inputs.
    """
    x01 = _downscale(x01, size)
    w = foreground_weights(x01).flatten(1)
    lab = rgb_to_lab(x01).flatten(2) / 100.0
    chroma = (lab[:, 1] ** 2 + lab[:, 2] ** 2).sqrt()
    q = torch.tensor(QUANTILES, dtype=w.dtype, device=w.device)
    out = []
    for ch in (lab[:, 0], lab[:, 1], lab[:, 2], chroma):
        values, order = ch.sort(dim=1)
        cdf = torch.gather(w, 1, order).cumsum(1)
        cdf = cdf / cdf[:, -1:].clamp(min=1e-6)
        pos = torch.searchsorted(cdf.contiguous(), q.expand(len(cdf), -1).contiguous()).clamp(max=ch.shape[1] - 1)
        out += [values.gather(1, pos), ((ch * w).sum(1) / w.sum(1).clamp(min=1e-6))[:, None]]
    out.append(w.mean(1, keepdim=True))
    return torch.cat(out, dim=1)


def _downscale(x01: torch.Tensor, size: int) -> torch.Tensor:
    if x01.shape[-1] != size or x01.shape[-2] != size:
        return F.interpolate(x01.float(), size=(size, size), mode="area")
    return x01.float()
