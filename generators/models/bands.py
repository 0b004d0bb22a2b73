"""Per-pixel work on a full-resolution photo, a band of rows at a time.

Why: the editors' fixed steps and learned maps are per-pixel arithmetic on photos up to 1024 px
a side. Run on the whole photo at once, each intermediate is a full-size tensor (a 3-channel
LAB copy is 12 MiB at 1024², the eight upsampled maps 32 MiB), and one colour edit peaked at
~300 MiB above a warm server. Run on bands of rows, with the per-photo statistics (the
background colour, the dominant colour, the low-resolution maps) computed once beforehand,
only the input and the output are full size. The results are the same (to float rounding),
and autograd flows through the concatenation, so training and inference share one path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

BAND_ROWS = 128  # at 1024 px wide: 128K pixels a band, 0.5 MiB a channel


def by_rows(fn: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]], height: int, rows: int | None = None
            ) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """``fn(r0, r1)`` for bands ``[r0, r1)`` covering ``height`` rows, joined along the rows (dim 2).

    ``fn`` returns a ``[B, C, r1 - r0, W]`` tensor or a tuple of them. A photo of at most ``rows``
    rows (default :data:`BAND_ROWS`) is one call, ``fn(0, height)``.
    """
    rows = BAND_ROWS if rows is None else rows
    if rows < 1:
        raise ValueError(f"rows must be >= 1; got {rows}")
    parts = [fn(r0, min(r0 + rows, height)) for r0 in range(0, height, rows)]
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], tuple):
        return tuple(torch.cat(p, dim=2) for p in zip(*parts, strict=True))
    return torch.cat(parts, dim=2)


def upsample_rows(t: torch.Tensor, size: tuple[int, int], r0: int, r1: int) -> torch.Tensor:
    """Rows ``[r0, r1)`` of ``F.interpolate(t, size, mode="bilinear", align_corners=False)``,
    without making the other rows."""
    h_in, h_out = t.shape[-2], size[0]
    if (h_in, t.shape[-1]) == tuple(size):
        return t[:, :, r0:r1]
    y = ((torch.arange(r0, r1, device=t.device, dtype=torch.float32) + 0.5) * (h_in / h_out) - 0.5).clamp(min=0)
    y0 = y.floor().long().clamp(max=h_in - 1)
    y1 = (y0 + 1).clamp(max=h_in - 1)
    wy = (y - y0).clamp(0, 1).to(t.dtype).view(1, 1, -1, 1)
    band = t[:, :, y0] * (1 - wy) + t[:, :, y1] * wy  # [B, C, r1 - r0, w_in]: the rows, still narrow
    # the same height in and out is the identity along the rows; only the columns are interpolated
    return F.interpolate(band, size=(r1 - r0, size[1]), mode="bilinear", align_corners=False)


def identity_grid_rows(b: int, size: tuple[int, int], r0: int, r1: int, like: torch.Tensor) -> torch.Tensor:
    """Rows ``[r0, r1)`` of ``F.affine_grid(identity, [b, C, *size], align_corners=False)``:
    ``[b, r1 - r0, W, 2]`` sampling positions (x, then y) at the pixel centres."""
    h, w = size
    ys = (2 * torch.arange(r0, r1, device=like.device, dtype=like.dtype) + 1) / h - 1
    xs = (2 * torch.arange(w, device=like.device, dtype=like.dtype) + 1) / w - 1
    grid = torch.stack(torch.broadcast_tensors(xs[None, :], ys[:, None]), dim=-1)
    return grid[None].expand(b, -1, -1, -1)
