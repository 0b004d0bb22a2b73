"""Per-pixel edits run a band of rows at a time give what the whole photo at once gives, and
gradients still reach the input (training shares the path)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from generators.models import bands
from generators.models.bands import by_rows, identity_grid_rows, upsample_rows
from generators.models.maskedit import apply_maps, downsample
from generators.models.palette import flatten_print, palette_shift


def photo(side: int, seed: int = 0) -> torch.Tensor:
    """Two smooth garments on white (a noise photo would make the warp's rounding look large)."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(2, 3, 12, 12, generator=g) * 2 - 1, size=(side, side), mode="bilinear",
                      align_corners=False)
    x[:, :, : side // 6] = 1.0
    x[:, :, :, -side // 6:] = 1.0
    return x


def test_upsample_rows_and_identity_rows_equal_the_whole_photo_versions() -> None:
    lo = torch.randn(2, 5, 16, 24)
    size = (300, 170)
    whole = F.interpolate(lo, size=size, mode="bilinear", align_corners=False)
    banded = by_rows(lambda r0, r1: upsample_rows(lo, size, r0, r1), size[0], rows=37)
    assert banded.shape == whole.shape
    assert torch.allclose(banded, whole, atol=1e-5)
    grid = F.affine_grid(torch.eye(2, 3).expand(2, 2, 3), [2, 3, *size], align_corners=False)
    assert torch.allclose(by_rows(lambda r0, r1: identity_grid_rows(2, size, r0, r1, lo).movedim(-1, 1), size[0], 64)
                          .movedim(1, -1), grid, atol=1e-6)


def test_by_rows_joins_tuples_and_refuses_empty_bands() -> None:
    a, b = by_rows(lambda r0, r1: (torch.full((1, 1, r1 - r0, 2), r0), torch.zeros(1, 2, r1 - r0, 2)), 10, rows=4)
    assert a[0, 0, :, 0].tolist() == [0, 0, 0, 0, 4, 4, 4, 4, 8, 8] and b.shape == (1, 2, 10, 2)
    with pytest.raises(ValueError, match="rows"):
        by_rows(lambda r0, r1: torch.zeros(1), 10, rows=0)


@pytest.mark.parametrize("flow", [False, True])
def test_banded_edits_equal_one_band_and_pass_gradients(monkeypatch, flow: bool) -> None:
    x = photo(300).requires_grad_(True)
    maps = torch.randn(2, 10, 32, 32)
    target = torch.tensor([[50.0, 20.0, 20.0], [70.0, -10.0, 30.0]])

    def run() -> list[torch.Tensor]:
        out, mask, garment = apply_maps(x, maps, downsample(x, 32), flow=flow, strength=torch.tensor([1.0, 0.4]))
        return [out, mask, garment, palette_shift(x, target), flatten_print(x, strength=0.5)]

    monkeypatch.setattr(bands, "BAND_ROWS", 10_000)
    whole = run()
    monkeypatch.setattr(bands, "BAND_ROWS", 64)  # five bands, the last one short
    banded = run()
    for w, b in zip(whole, banded, strict=True):
        assert w.shape == b.shape
        assert torch.allclose(w, b, atol=1e-4), float((w - b).abs().max())
    grad, = torch.autograd.grad(sum(t.sum() for t in banded), x)
    assert grad.abs().sum() > 0 and torch.isfinite(grad).all()
