"""The palette step of colour edits: the garment's dominant colour moves, its print and the background stay."""

from __future__ import annotations

import torch

from generators.models.palette import dominant_lab, fit_palette, lab_to_rgb, palette_shift
from indexing.pooling import rgb_to_lab


def dotted_garment(base: tuple[float, float, float], dots: tuple[float, float, float] = (1.0, 0.85, 0.1),
                   size: int = 64) -> torch.Tensor:
    """``[1, 3, S, S]`` in [-1, 1]: white background, a square garment of ``base`` with a grid of dots."""
    x = torch.ones(1, 3, size, size)
    lo, hi = size // 8, size - size // 8
    x[0, :, lo:hi, lo:hi] = torch.tensor(base).view(3, 1, 1)
    for i in range(lo + 4, hi - 4, 10):
        for j in range(lo + 4, hi - 4, 10):
            x[0, :, i:i + 3, j:j + 3] = torch.tensor(dots).view(3, 1, 1)
    return x * 2 - 1


def lab_of(rgb: tuple[float, float, float]) -> torch.Tensor:
    return rgb_to_lab(torch.tensor(rgb).view(1, 3, 1, 1))[0, :, 0, 0]


def test_lab_round_trip() -> None:
    x = torch.rand(2, 3, 16, 16)
    assert (lab_to_rgb(rgb_to_lab(x)) - x).abs().max() < 2e-3


def test_the_dominant_colour_is_the_fabric_not_the_print() -> None:
    navy = (0.1, 0.12, 0.35)
    dom = dominant_lab((dotted_garment(navy) + 1) / 2)[0]
    assert (dom - lab_of(navy)).norm() < 3.0


def test_palette_shift_moves_the_fabric_and_keeps_the_print_and_background() -> None:
    navy, dots = (0.1, 0.12, 0.35), (1.0, 0.85, 0.1)
    x = dotted_garment(navy, dots)
    target = lab_of((0.8, 0.1, 0.1))[None]
    y = palette_shift(x, target, sigma=20.0)
    fabric, dot, background = (9, 9), (13, 13), (2, 2)  # the garment starts at 8, its dots at 12
    y_lab = rgb_to_lab((y + 1) / 2)[0]
    assert (y_lab[:, fabric[0], fabric[1]] - target[0]).norm() < 3.0
    assert (y[0, :, dot[0], dot[1]] - x[0, :, dot[0], dot[1]]).abs().max() < 0.05
    assert torch.equal(y[0, :, background[0], background[1]], x[0, :, background[0], background[1]])


def test_switched_off_or_at_strength_zero_the_photo_comes_back_exactly() -> None:
    x = torch.cat([dotted_garment((0.1, 0.5, 0.2)), dotted_garment((0.6, 0.2, 0.6))])
    target = lab_of((0.9, 0.9, 0.1)).expand(2, 3)
    assert torch.equal(palette_shift(x, target, on=torch.tensor([0, 0])), x)
    assert torch.equal(palette_shift(x, target, strength=0.0), x)
    half = palette_shift(x, target, on=torch.tensor([1, 0]))
    assert torch.equal(half[1], x[1]) and not torch.equal(half[0], x[0])


def test_fit_palette_learns_each_values_fabric_colour() -> None:
    red, blue = (0.8, 0.1, 0.1), (0.1, 0.2, 0.8)
    photos = torch.cat([dotted_garment(red), dotted_garment(blue), dotted_garment(red), dotted_garment(blue)])
    images = ((photos + 1) * 127.5).round().to(torch.uint8)
    pal = fit_palette(images, torch.tensor([0, 1, 0, -1]), n_values=3)
    assert (pal[0] - lab_of(red)).norm() < 3.0
    assert (pal[1] - lab_of(blue)).norm() < 3.0
    assert pal.shape == (3, 3)  # value 2 has no photo: it gets the median of all, never NaN
    assert torch.isfinite(pal).all()


def test_flatten_print_paints_the_print_over_and_finds_the_plain_value() -> None:
    from generators.models.palette import flatten_print, plain_value, texture_energy

    navy = (0.1, 0.12, 0.35)
    dotted = dotted_garment(navy)
    y = flatten_print(dotted)
    plain = dotted_garment(navy, dots=navy)
    assert (y - plain).abs().max() < 0.05, "the dots are navy now"
    assert torch.equal(y[..., :4, :], dotted[..., :4, :]), "the background is bit-exact"
    assert torch.equal(flatten_print(dotted, on=torch.tensor([0])), dotted)
    assert torch.equal(flatten_print(dotted, strength=0.0), dotted)
    energy = texture_energy((torch.cat([dotted, plain]) + 1) / 2)
    assert energy[0] > 1.0 and energy[1] < 0.1
    images = ((torch.cat([dotted, dotted, plain, plain]) + 1) * 127.5).round().to(torch.uint8)
    assert plain_value(images, torch.tensor([0, 0, 1, 1]), 3) == 1, "value 1's photos have no print"
    assert plain_value(images, torch.full((4,), -1), 3) == -1


def test_tune_palette_replaces_a_median_that_retrieves_nothing_by_a_colour_of_the_values_photos() -> None:
    import torch.nn.functional as F

    from generators.models.palette import PaletteTuning, fit_palette, tune_palette

    red, grey = (0.85, 0.1, 0.1), (0.6, 0.6, 0.6)
    photos = torch.cat([dotted_garment(red, dots=red) for _ in range(6)] + [dotted_garment(grey, dots=grey)
                                                                         for _ in range(6)])
    images = ((photos + 1) * 127.5).round().to(torch.uint8)
    values = torch.tensor([0] * 6 + [1] * 6)
    anchors = torch.zeros(12, dtype=torch.long)

    def embed(x: torch.Tensor) -> torch.Tensor:  # the garment's mean colour, as a direction
        return F.normalize(((x + 1) / 2).mean((2, 3)) - 0.5, dim=1)

    fitted = fit_palette(images, values, 2)
    bad = fitted.clone()
    bad[0] = fitted[1]  # a "red" whose median came out grey
    tuned = tune_palette(bad, images, values, anchors, embed, embed(photos), PaletteTuning(k=5, min_photos=3),
                         generator=torch.Generator().manual_seed(0))
    assert (tuned[0] - lab_of(red)).norm() < 5.0, "red's colour comes from its own photos"
    assert torch.equal(tuned[1], bad[1]), "grey's median already retrieves grey: kept"
