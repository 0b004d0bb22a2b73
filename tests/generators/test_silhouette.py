"""The silhouette step of shape edits: fabric grows or is cut where the target value's silhouette says."""

from __future__ import annotations

import torch

from generators.models.silhouette import (
    extend_parts,
    fit_silhouettes,
    garment_masks,
    read_silhouette,
    silhouette_shift,
)

RED = (0.8, 0.1, 0.1)


def garment(hem: int, size: int = 64, top: int = 8, colour: tuple[float, float, float] = RED,
            left: int = 20, right: int = 44) -> torch.Tensor:
    """``[1, 3, S, S]`` uint8: white background, a rectangle of ``colour`` from ``top`` to ``hem``."""
    x = torch.full((1, 3, size, size), 255, dtype=torch.uint8)
    x[0, :, top:hem, left:right] = (torch.tensor(colour) * 255).round().to(torch.uint8).view(3, 1, 1)
    return x


def to_pm1(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 127.5 - 1


def fitted() -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor 0 of two: value 0 = short (hem at 28-30), value 1 = long (hem at 54-56)."""
    photos = [garment(h) for h in (28, 29, 30)] + [garment(h) for h in (54, 55, 56)]
    images = torch.cat(photos)
    anchors = torch.zeros(6, dtype=torch.long)
    values = torch.tensor([0, 0, 0, 1, 1, 1])
    return fit_silhouettes(images, anchors, values, n_anchors=2, n_values=2)


def test_templates_are_mean_masks_per_anchor_and_value() -> None:
    tpl, counts = fitted()
    assert tpl.shape == (2, 2, 64, 64) and counts.tolist() == [[3, 3], [0, 0]]
    assert tpl[0, 0, 20, 32] == 1 and tpl[0, 0, 45, 32] == 0 and tpl[0, 1, 45, 32] == 1
    assert tpl[0, 0, 2, 2] == 0, "the background is not garment"
    a, v = read_silhouette(garment_masks(torch.cat([garment(29), garment(55)]).float() / 255), tpl, counts)
    assert a.tolist() == [0, 0] and v.tolist() == [0, 1]


def test_lengthening_paints_fabric_below_the_hem_and_keeps_the_rest() -> None:
    tpl, counts = fitted()
    x = to_pm1(garment(29))
    y = silhouette_shift(x, tpl, counts, torch.tensor([1]))
    long = to_pm1(garment(55))
    assert (y - long).abs().mean() < 0.25 * (x - long).abs().mean(), "the edit lands near the long garment"
    assert (y[..., 45, 32] - long[..., 45, 32]).abs().max() < 0.05, "fabric colour below the old hem"
    assert torch.equal(y[..., :20, :], x[..., :20, :]), "the garment above the change is the input's, bit-exact"
    assert torch.equal(y[..., :, :12], x[..., :, :12]), "background away from the change is bit-exact"


def test_shortening_cuts_the_garment_to_background() -> None:
    tpl, counts = fitted()
    x = to_pm1(garment(55))
    y = silhouette_shift(x, tpl, counts, torch.tensor([0]))
    assert (y[..., 40:52, 22:42] > 0.95).all(), "below the short hem is white background now"
    assert torch.equal(y[..., 10:25, :], x[..., 10:25, :])


def test_no_change_when_off_unseen_or_already_there() -> None:
    tpl, counts = fitted()
    x = to_pm1(garment(29))
    assert torch.equal(silhouette_shift(x, tpl, counts, torch.tensor([-1])), x), "-1: not named"
    assert torch.equal(silhouette_shift(x, tpl, counts, torch.tensor([0])), x), "already short"
    assert torch.equal(silhouette_shift(x, tpl, counts, torch.tensor([1]), strength=0.0), x)
    # anchor 1 has no photos of either value: a value never seen with the anchor changes nothing
    assert torch.equal(silhouette_shift(x, tpl, counts, torch.tensor([1]), anchor=torch.tensor([1]),
                                        current=torch.tensor([0])), x)


def test_given_labels_override_the_template_reading() -> None:
    tpl, counts = fitted()
    x = to_pm1(garment(29))
    # told it is already long, asking for long changes nothing although it looks short
    assert torch.equal(silhouette_shift(x, tpl, counts, torch.tensor([1]), anchor=torch.tensor([0]),
                                        current=torch.tensor([1])), x)


def test_fabric_only_grows_out_of_the_garment() -> None:
    """A template difference that does not touch the photo's garment paints nothing."""
    tpl, counts = fitted()
    x = to_pm1(garment(20, top=2, left=2, right=10))  # a small garment far left, away from the band
    y = silhouette_shift(x, tpl, counts, torch.tensor([1]), anchor=torch.tensor([0]), current=torch.tensor([0]))
    assert torch.equal(y, x)


def test_a_current_value_without_a_silhouette_changes_nothing() -> None:
    """Read as a value its category never had, there is no template to subtract: no edit."""
    tpl, counts = fitted()
    counts[0, 0] = 0
    x = to_pm1(garment(29))
    assert torch.equal(silhouette_shift(x, tpl, counts, torch.tensor([1]), anchor=torch.tensor([0]),
                                        current=torch.tensor([0])), x)


def test_hem_stretch_moves_the_hem_part_of_the_way_with_the_garments_own_pixels() -> None:
    from generators.models.silhouette import hem_stretch

    tpl, counts = fitted()
    x = to_pm1(garment(29))
    x[..., 20:29, 20:44] = to_pm1(garment(29, colour=(0.1, 0.1, 0.8)))[..., 20:29, 20:44]  # a blue lower half

    def hem(y: torch.Tensor) -> int:
        return int(garment_masks((y + 1) / 2)[0].gt(0.5).any(1).nonzero().max()) + 1

    heights = [hem(hem_stretch(x, tpl, counts, torch.tensor([1]), strength=s)) for s in (0.0, 0.5, 1.0)]
    assert heights[0] == 29 and 38 <= heights[1] <= 46 and 52 <= heights[2] <= 58, heights
    y = hem_stretch(x, tpl, counts, torch.tensor([1]))
    assert torch.equal(y[..., :16, :], x[..., :16, :]), "above the waist the input, bit-exact"
    assert (y[0, 2, 45, 22:42] > 0.5).all() and (y[0, 0, 45, 22:42] < -0.5).all(), "the stretched fabric is the blue hem's"
    short = hem_stretch(to_pm1(garment(55)), tpl, counts, torch.tensor([0]))
    assert 26 <= hem(short) <= 32 and (short[..., 40:52, 22:42] > 0.95).all(), "squeezed up, background below"
    assert torch.equal(hem_stretch(x, tpl, counts, torch.tensor([-1])), x)


def test_a_squeezed_garment_that_reached_the_photos_edge_leaves_background_under_its_hem() -> None:
    """A long dress framed to the bottom edge: squeezed to a short one, the rows under its new
    hem are read from below the photo, which is background, not its last row repeated."""
    from generators.models.silhouette import hem_stretch

    tpl, counts = fitted()
    x = garment(64, top=10)  # down to the last row
    x[0, :, 63, 20:44] = torch.tensor([20, 20, 20], dtype=torch.uint8)[:, None]  # a dark hem line
    y = hem_stretch(to_pm1(x), tpl, counts, torch.tensor([0]))
    below = y[..., 48:, 20:44]
    assert (below > 0.95).all(), f"white under the new hem; darkest {float(below.min()):.2f}"


def shirt(sleeve_end: int, arm: int = 6, outline: bool = True, colour: tuple[float, float, float] = RED) -> torch.Tensor:
    """``[1, 3, 64, 64]`` uint8: a torso (rows 10-50, columns 24-40) with arms ``arm`` px wide
    beside it down to row ``sleeve_end``, in ``colour`` with a dark one-pixel outline."""
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[10:50, 24:40] = True
    mask[10:sleeve_end, 24 - arm:24] = True
    mask[10:sleeve_end, 40:40 + arm] = True
    x = torch.full((1, 3, 64, 64), 255, dtype=torch.uint8)
    x[0, :, mask] = (torch.tensor(colour) * 255).round().to(torch.uint8)[:, None]
    if outline:
        grown = torch.nn.functional.max_pool2d(mask[None, None].float(), 3, 1, 1)[0, 0] > 0
        x[0, :, grown & ~mask] = 40
    return x


def shirts() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Six training shirts of anchor 0: value 0 short sleeves (ending at row 18-20), value 1
    long ones (ending at row 44-46), arms 5-7 px wide."""
    photos = [shirt(e, a) for e, a in ((18, 5), (19, 6), (20, 7), (44, 5), (45, 6), (46, 7))]
    return torch.cat(photos), torch.zeros(6, dtype=torch.long), torch.tensor([0, 0, 0, 1, 1, 1])


def test_masks_pack_eight_pixels_a_byte_and_unpack_exactly() -> None:
    from generators.models.silhouette import PACKED, pack_masks, unpack_masks

    masks = torch.rand(3, 2, 64, 64) > 0.5
    packed = pack_masks(masks)
    assert packed.shape == (3, 2, PACKED) and packed.dtype == torch.uint8
    assert torch.equal(unpack_masks(packed), masks.float())


def test_the_bank_grows_a_whole_attached_sleeve_where_the_mean_paints_a_faint_one() -> None:
    from generators.models.silhouette import fit_exemplars

    images, anchors, values = shirts()
    tpl, counts = fit_silhouettes(images, anchors, values, n_anchors=1, n_values=2)
    bank = fit_exemplars(images, anchors, values, 1, 2, exemplars=4)
    assert bank.shape == (1, 8, 512), "four slots per value, three of them filled"
    x, truth = to_pm1(shirt(19, 6)), to_pm1(shirt(45, 6))
    crisp = silhouette_shift(x, tpl, counts, torch.tensor([1]), bank=bank)
    blurred = silhouette_shift(x, tpl, counts, torch.tensor([1]))
    assert (crisp - truth).abs().mean() < 0.5 * (x - truth).abs().mean(), "the long sleeve is drawn"
    forearm = (slice(None), slice(None), slice(26, 42), slice(18, 23))  # left arm below the old sleeve
    assert (crisp[forearm] - truth[forearm]).abs().max() < 0.05, "in full fabric colour, to the cuff"
    assert (crisp - truth).abs().mean() <= (blurred - truth).abs().mean()
    assert torch.equal(crisp[..., 10:50, 24:40], x[..., 10:50, 24:40]), "the torso is the input's, bit-exact"
    half = silhouette_shift(x, tpl, counts, torch.tensor([1]), strength=0.5, bank=bank)
    assert (x - half).abs().mean() < (x - crisp).abs().mean(), "a partial strength changes less"


def test_the_bank_cuts_a_whole_sleeve_with_its_outline() -> None:
    from generators.models.silhouette import fit_exemplars

    images, anchors, values = shirts()
    tpl, counts = fit_silhouettes(images, anchors, values, n_anchors=1, n_values=2)
    bank = fit_exemplars(images, anchors, values, 1, 2, exemplars=4)
    x = to_pm1(shirt(45, 9))  # wider arms than any training shirt's: the mean misses their outer edge
    y = silhouette_shift(x, tpl, counts, torch.tensor([0]), bank=bank)
    below = (slice(None), slice(None), slice(24, 47), slice(12, 22))  # the left forearm, its outline and cuff
    assert (y[below] > 0.9).all(), "nothing of the forearm is left, outline included"
    line = y[..., 24:47, 22]  # beside what is kept (the torso's edge): the cut's new outline
    assert (line - to_pm1(torch.full((1, 3, 1, 1), 40))).abs().max() < 0.05, "the cut line is drawn as an outline"
    assert (silhouette_shift(x, tpl, counts, torch.tensor([0]))[below] < 0).any(), \
        "(the mean templates alone leave its outer edge)"
    assert torch.equal(y[..., 10:50, 24:40], x[..., 10:50, 24:40]), "the torso is the input's, bit-exact"


def test_a_partial_strength_grows_a_sleeve_from_the_shoulder_in_full_colour() -> None:
    """"A bit longer" is a longer sleeve, not a faint full one: at strength 0.5 the bank draws
    the upper part of the grown sleeve in full colour and none of its lower part."""
    from generators.models.silhouette import fit_exemplars

    images, anchors, values = shirts()
    tpl, counts = fit_silhouettes(images, anchors, values, n_anchors=1, n_values=2)
    bank = fit_exemplars(images, anchors, values, 1, 2, exemplars=4)
    arm = (slice(None), slice(None), slice(None), slice(18, 23))  # the left arm's columns

    def painted_rows(y: torch.Tensor) -> torch.Tensor:
        return ((y[arm] - 1).abs().amax(1) > 0.5).any(-1)[0]  # [64] rows where the arm has fabric

    short = to_pm1(shirt(19, 6))
    rows = [painted_rows(silhouette_shift(short, tpl, counts, torch.tensor([1]), strength=s, bank=bank))
            for s in (0.0, 0.5, 1.0)]
    assert torch.equal(rows[0], painted_rows(short)), "strength 0 grows nothing"
    end = [int(r.nonzero().max()) for r in rows]
    assert end[0] < end[1] < end[2], f"the sleeve ends lower as the strength rises: {end}"
    half = silhouette_shift(short, tpl, counts, torch.tensor([1]), strength=0.5, bank=bank)
    grown = (slice(None), slice(None), slice(22, end[1] - 3), slice(19, 22))  # above its new cuff line
    assert (half[grown] - to_pm1(shirt(45, 6))[grown]).abs().max() < 0.05, "what is drawn is full fabric"


def test_a_grown_sleeve_is_outlined_so_a_white_one_shows_on_white() -> None:
    """A white shirt on a white background: a sleeve painted in flat fabric colour would not
    show at all. The grown part's outer edge takes the garment's own edge colour."""
    from generators.models.silhouette import fit_exemplars

    white = (1.0, 1.0, 1.0)
    images, anchors, values = shirts()
    images = torch.cat([shirt(e, a, colour=white) for e, a in ((18, 5), (19, 6), (20, 7), (44, 5), (45, 6), (46, 7))])
    tpl, counts = fit_silhouettes(images, anchors, values, n_anchors=1, n_values=2)
    bank = fit_exemplars(images, anchors, values, 1, 2, exemplars=4)
    x, truth = to_pm1(shirt(19, 6, colour=white)), to_pm1(shirt(45, 6, colour=white))
    y = silhouette_shift(x, tpl, counts, torch.tensor([1]), anchor=torch.tensor([0]), current=torch.tensor([0]),
                         bank=bank)
    forearm = (slice(None), slice(None), slice(26, 42), slice(14, 28))  # the left arm below the old sleeve
    dark = (y[forearm] < 0).all(1)
    assert dark[0, :, :6].any(1).all(), "every row of the grown forearm has its outer edge drawn"
    inside = (slice(None), slice(None), slice(26, 42), slice(18, 23))
    assert (y[inside] - truth[inside]).abs().max() < 0.05, "inside its outline the sleeve is the shirt's white"


def test_the_neck_band_covers_the_top_centre_and_leaves_the_sleeves() -> None:
    """A banked part grows at the sides: the band where it may not grow (a collar-shaped
    patch from an exemplar's higher neckline) is the top centre, never an arm."""
    from generators.models.silhouette import neck_band

    mask = (to_pm1(shirt(45, 6))[:, :1] < 0.9).float()  # fabric and outline
    band = neck_band(mask)[0, 0]
    assert band[12, 31] and band[12, 33], "the top centre"
    assert not band[:, 9:25].any() and not band[:, 40:].any(), "never an arm's columns"
    assert not band[32:].any(), "never below the garment's middle"


def _arm_photo() -> tuple[torch.Tensor, torch.Tensor]:
    """A 64 px garment mask: a torso (rows 8-40, columns 24-40) with a half sleeve hanging from its
    left shoulder down and out at 30 degrees, 6 px wide, its cuff near row 27; and the blob that
    an exemplar's long sleeve, held straight down, adds below that cuff (a "mitten")."""
    g = torch.zeros(1, 1, 64, 64)
    g[0, 0, 8:41, 24:41] = 1
    rows = torch.arange(64).view(64, 1).float()
    cols = torch.arange(64).view(1, 64).float()
    # the arm's axis runs from (10, 24) along (cos 30, -sin 30) for 20 px
    along = (rows - 10) * 0.866 - (cols - 24) * 0.5
    across = (rows - 10) * 0.5 + (cols - 24) * 0.866
    g[0, 0] = torch.maximum(g[0, 0], ((along >= 0) & (along <= 20) & (across.abs() <= 3)).float())
    blob = ((rows >= 27) & (rows <= 37) & (cols >= 13) & (cols <= 19)).float()  # straight down from the cuff
    return g, blob.view(1, 1, 64, 64) * (1 - g)


def test_a_grown_part_at_a_sleeves_end_continues_the_sleeve_along_its_own_axis() -> None:
    garment_mask, mitten = _arm_photo()
    out = extend_parts(mitten, garment_mask)[0, 0] > 0.5
    ys, xs = torch.nonzero(out, as_tuple=True)
    across = (ys.float() - 10) * 0.5 + (xs.float() - 24) * 0.866
    along = (ys.float() - 10) * 0.866 - (xs.float() - 24) * 0.5
    assert int((out & (garment_mask[0, 0] == 0)).sum()) > 20, "fabric grows on the background"
    assert float(across.abs().max()) <= 4.5, "the extension keeps the sleeve's width and line, not the blob's"
    assert float(along.max()) >= 25, "it reaches as far from the neck as the blob did"
    taken = garment_mask[0, 0][out] > 0
    assert bool((along[taken] >= 17).all()), "of the photo's own fabric it takes only the cuff's trim"


def test_a_part_grown_on_the_torsos_side_is_kept_as_drawn_and_softened() -> None:
    garment_mask = torch.zeros(1, 1, 64, 64)
    garment_mask[0, 0, 8:50, 24:41] = 1
    sleeve = torch.zeros(1, 1, 64, 64)
    sleeve[0, 0, 10:30, 18:24] = 1  # a new sleeve along a sleeveless body's side
    out = extend_parts(sleeve, garment_mask)
    assert bool((out <= sleeve).all()), "nothing is drawn beyond the part"
    assert bool((out[0, 0, 11:29, 19:24] > 0.5).all()), "its core and its seam with the torso are whole"
    assert 0.5 < float(out[0, 0, 20, 18]) < 1, "its outer edge is softened"


def test_a_grown_parts_outline_is_anti_aliased_on_its_outer_side() -> None:
    from generators.models.silhouette import edge_distance, outline_parts

    n = 256  # the line is 2 px wide at this size
    rows = torch.arange(n).float().view(n, 1)
    cols = torch.arange(n).float().view(1, n)
    inside = ((40.3 + 0.3 * rows - cols) / (1 + 0.3 ** 2) ** 0.5).expand(n, n)  # px into the part, left of a slant
    coverage = (0.5 + inside / 8).clamp(0, 1).view(1, 1, n, n)  # upsampled, smooth across its edge
    garment = torch.zeros(1, 1, n, n, dtype=torch.bool)
    garment[..., 80:180, 200:240] = True
    x01 = torch.ones(1, 3, n, n)
    x01[..., 80:180, 200:240] = 0.2  # a dark garment: its edge colour is 0.2
    out = outline_parts(x01.clone(), x01, garment, edge_distance(coverage), torch.zeros_like(garment),
                        torch.ones(1))[0, 0]
    top = (rows < 60).expand(n, n)
    line, d = out[top], inside[top]
    assert float((line[(d > 0.6) & (d < 1.4)] - 0.2).abs().max()) < 1e-4, "on the part's side, in the edge colour"
    assert bool((line[d < -0.6] == 1).all()) and bool((line[d > 2.6] == 1).all()), "2 px wide, nothing outside"
    assert bool(((line > 0.3) & (line < 0.9)).any()), "its ends are partial: anti-aliased"


def test_an_edge_distance_is_exact_on_a_linear_ramp() -> None:
    from generators.models.silhouette import edge_distance

    cols = torch.arange(64).float().view(1, 1, 1, 64).expand(1, 1, 8, 64)
    field = (0.5 + 0.1 * (cols - 20.3)).clamp(0, 1)  # its 0.5 contour: column 20.3
    d = edge_distance(field)[0, 0, 4]
    assert torch.allclose(d[18:24], torch.arange(18, 24).float() - 20.3, atol=1e-4)
    assert float(d[40]) > 100 and float(d[2]) < -100, "flat: far from the contour"
