"""The print step of pattern edits: a catalog exemplar's print replaces the photo's, scaled by the strength."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from generators.models.palette import texture_energy
from generators.models.prints import TILE, filled_garment, fit_prints, print_shift
from indexing.pooling import rgb_to_lab

S = 128


def photo(kind: str, fabric: tuple[int, int, int] = (200, 40, 40)) -> torch.Tensor:
    """``[1, 3, S, S]`` uint8: white background, a garment rectangle that is plain, striped or dotted."""
    x = torch.full((1, 3, S, S), 255, dtype=torch.uint8)
    x[0, :, 16:112, 24:104] = torch.tensor(fabric, dtype=torch.uint8).view(3, 1, 1)
    if kind == "stripes":
        for r in range(16, 112, 8):
            x[0, :, r:r + 3, 24:104] = 20
    if kind == "dots":
        for r in range(20, 108, 10):
            for c in range(28, 100, 10):
                x[0, :, r:r + 3, c:c + 3] = 255  # white dots: background-like, yet the print
    return x


def pm1(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 127.5 - 1


def fitted(painted: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Values: 0 = plain, 1 = stripes, 2 = dots (no photo of value 2 has a garment window: none).
    ``(tiles, ok, fabric)``; fabric None for the older, unpainted tiles."""
    images = torch.cat([photo("plain"), photo("stripes", (40, 40, 200)), photo("stripes", (40, 160, 40))])
    tiles, ok, fabric = fit_prints(images, torch.tensor([0, 1, 1]), n_values=3, plain=0, painted=painted)
    return tiles, ok, fabric if painted else None


@pytest.mark.parametrize("painted", [True, False])
def test_a_tile_per_print_value_and_none_for_the_plain_one(painted: bool) -> None:
    tiles, ok, fabric = fitted(painted)
    assert tiles.shape == (3, 4 if painted else 3, TILE, TILE) and ok.tolist() == [2, 1, 0]
    assert tiles[1, 0].std() > 5, "the stripes tile holds the stripes (lightness offsets)"
    assert tiles[0].abs().max() == 0 and tiles[2].abs().max() == 0
    if painted:
        alpha = tiles[1, 3]
        assert 0.2 < float(alpha.mean()) < 0.8 and alpha.min() == 0 and alpha.max() == 1, \
            "opaque where the window is not its dominant colour (the fabric), clear where it is"
        assert set(alpha.unique().tolist()) == {0.0, 1.0}, "two crisp colours: nothing in between"
        assert fabric is not None and fabric[1, 0] < 60 and fabric[0].abs().max() == 0, "the exemplar's fabric"


@pytest.mark.parametrize("painted", [True, False])
def test_the_print_rises_with_the_strength_and_the_background_stays(painted: bool) -> None:
    tiles, ok, fabric = fitted(painted)
    x = pm1(photo("plain", (230, 200, 60)))
    ys = [print_shift(x, tiles, ok, torch.tensor([1]), strength=s, fabric=fabric) for s in (0.0, 0.25, 0.5, 1.0)]
    assert torch.equal(ys[0], x), "strength 0 is the input"
    energy = [float(texture_energy((y + 1) / 2)) for y in ys]
    assert energy == sorted(energy) and energy[-1] > 3 * energy[0] + 1, energy
    for y in ys:
        assert torch.equal(y[..., :12, :], x[..., :12, :]), "the background is bit-exact"
    assert torch.equal(print_shift(x, tiles, ok, torch.tensor([2]), fabric=fabric), x), \
        "a value without a tile changes nothing"
    assert torch.equal(print_shift(x, tiles, ok, torch.tensor([-1]), fabric=fabric), x)


def test_a_painted_print_keeps_its_own_colour_and_the_fabric_between_stays() -> None:
    """Yellow stripes on navy, drawn on a pink garment: the stripes are yellow, the pink between
    them is the photo's pink; the older offsets tint the whole garment instead."""
    images = torch.cat([photo("plain"), photo("plain", (30, 30, 110))])
    for r in range(16, 112, 8):
        images[1, :, r:r + 3, 24:104] = torch.tensor([250, 220, 40], dtype=torch.uint8).view(3, 1, 1)
    x = pm1(photo("plain", (230, 120, 150)))
    lab_x = rgb_to_lab((x + 1) / 2)
    for painted in (True, False):
        tiles, ok, fabric = fit_prints(images, torch.tensor([0, 1]), n_values=2, plain=0, painted=painted)
        y = print_shift(x, tiles, ok, torch.tensor([1]), fabric=fabric if painted else None)
        lab = rgb_to_lab((y + 1) / 2)[0, :, 24:104, 40:88]
        yellow = lab[2] > 60
        fabric_err = (lab - lab_x[0, :, 24:104, 40:88]).norm(dim=0)
        if painted:
            assert 0.2 < float(yellow.float().mean()) < 0.5, "yellow stripes, about 3 rows in 8"
            assert float(lab[1, yellow].mean()) < 10, "the stripes are yellow, not tinted pink"
            assert float(fabric_err[~yellow].median()) < 3, "between the stripes the photo's own pink"
        else:
            assert float(fabric_err.median()) > 5, "offsets less their mean move every garment pixel"


def test_to_the_plain_value_paints_the_print_over_white_dots_included() -> None:
    tiles, ok, fabric = fitted()
    x = pm1(photo("dots"))
    assert filled_garment((x + 1) / 2)[0, 0, 21, 29] == 1, "a white dot inside the garment is garment"
    y = print_shift(x, tiles, ok, torch.tensor([0]), fabric=fabric)
    assert float(texture_energy((y + 1) / 2)) < 0.3 * float(texture_energy((x + 1) / 2))
    assert (y[0, :, 21, 29] - pm1(photo("plain"))[0, :, 21, 29]).abs().max() < 0.1, "the dot is fabric now"


def test_the_judges_choose_among_candidate_tiles_the_one_that_reads_as_the_value() -> None:
    from generators.models.prints import around_median, median_tiles, print_candidates, tune_prints

    # value 1 has five photos: thin stripes on blue (3 of them) and thick ones on green (2)
    images = torch.cat([photo("plain"), *(photo("stripes", (40, 40, 200)) for _ in range(3)),
                        *(photo("plain", (40, 160, 40)) for _ in range(2))])
    for i in (4, 5):  # thick dark stripes (the fabric still dominant): more print energy than the thin ones
        for r in range(16, 112, 16):
            images[i, :, r:r + 6, 24:104] = 20
    values = torch.tensor([0, 1, 1, 1, 1, 1])
    found = print_candidates(images, values, n_values=2, plain=0)
    assert len(found[1]) == 5 and set(found) == {1}, "the plain value has no candidates"
    assert len(around_median(found[1], 3)) == 3 and around_median(found[1], 1)[0] is found[1][2]
    tiles, ok, fabric = median_tiles(found, 2, 0)

    def thick(x: torch.Tensor) -> torch.Tensor:
        """A judge that reads value 1 where six or more garment rows in a row are darker than most."""
        lum = x.mean(1)[:, 16:112, 30:100].mean(-1)  # [B, rows]
        dark = (lum < lum.mean(1, keepdim=True) - 0.05).float()
        p1 = (-F.max_pool1d(-dark[:, None], 6, 1)[:, 0]).amax(1)  # 1 where a run of 6 dark rows exists
        return torch.stack([1 - p1, p1], dim=1)

    tuned, tuned_fabric, scores = tune_prints(tiles, ok, fabric, found, images, values, thick, k=5)
    assert len(scores[1]) == 5 and max(scores[1]) > scores[1][0], "the median tile is not the one the judge reads"
    assert not torch.equal(tuned[1], tiles[1]) and torch.equal(tuned[0], tiles[0])
    chosen = next(c for c in found[1] if torch.equal(c[0], tuned[1]))
    assert not torch.equal(chosen[1], fabric[1]), "the two kinds of candidate have different fabrics"
    assert torch.equal(tuned_fabric[1], chosen[1]), "the chosen tile comes with its own fabric"


def test_a_tone_on_tone_print_is_drawn_on_the_photos_own_fabric() -> None:
    """Lace-like rosettes a shade darker than their red fabric, drawn on a blue garment: offsets on
    the blue (it stays blue, with darker blue motifs), not the exemplar's red painted over it."""
    images = torch.cat([photo("plain"), photo("plain", (200, 40, 40))])
    for r in range(20, 108, 10):
        for c in range(28, 100, 10):
            images[1, :, r:r + 4, c:c + 4] = torch.tensor([150, 28, 28], dtype=torch.uint8).view(3, 1, 1)
    tiles, ok, fabric = fit_prints(images, torch.tensor([0, 1]), n_values=2, plain=0)
    x = pm1(photo("plain", (40, 40, 200)))
    y = print_shift(x, tiles, ok, torch.tensor([1]), fabric=fabric)
    lab, lab_x = rgb_to_lab((y + 1) / 2)[0, :, 24:104, 40:88], rgb_to_lab((x + 1) / 2)[0, :, 24:104, 40:88]
    assert float(texture_energy((y + 1) / 2)) > float(texture_energy((x + 1) / 2)) + 0.5, "the motifs are drawn"
    assert float(lab[2].max()) < -30, "still blue everywhere (a red motif would have b > 0)"
    assert float((lab[0] - lab_x[0]).min()) < -3, "motifs a shade darker than the fabric"
