"""Print step: give a garment the target pattern value's print, from the catalog's own photos.

Why: "this, but floral" must draw a print that is not in the photo. On 2 CPU cores neither
learned editor learned to: the Fader decoder's pattern edit changed 1 % of the pixels and the
classifier's probability of the target print stayed at 0.0003 at every strength (docs/
generators_eval.md). The catalog holds photos of every print, so:

1. per pattern value, an *exemplar tile* is cut from a typical training photo of that value
   (:func:`fit_prints`): a ``TILE`` px square inside the garment (at ``SIZE`` px), stored as each
   pixel's LAB offset from the square's dominant colour (its fabric);
2. the edit first paints the photo's own print over in its dominant colour (as
   :func:`generators.models.palette.flatten_print` does, on the garment with its holes filled),
   then draws the target value's tile, repeated over the photo at its scale (mirrored where the
   tile's edges would show a seam), on the garment pixels. An edit to the plain value (found
   by :func:`generators.models.palette.plain_value`) only flattens.

How the tile is drawn (``painted`` tiles, the default of new checkpoints): each tile pixel has an
opacity, 0 on the exemplar's fabric and 1 on its print (``ALPHA``, LAB distance to the fabric), and
the print is painted *in its own colours* (the exemplar's fabric plus the offset): yellow stripes
stay yellow on a blue top, as the catalog's striped photos are two colours. A tone-on-tone print
(lace: its elements lie within ``TONE`` of their fabric), or one whose colours are within ``NEAR``
of the photo's fabric (white dots on a white dress), is drawn as offsets on the photo's own fabric
instead. Older checkpoints hold tiles of offsets less their mean (no opacity, no fabric), added to
every garment pixel: those edit as they were trained. Measured (docs/generators.md): the offsets
turned a navy top's fabric lavender under light stripes and flipped out-of-range lightness pixel by
pixel into speckles, and the classifier's reading of the target print often peaked at half strength.

Both parts scale with the strength, so a slider adds the print gradually. Like the silhouette
step (:mod:`generators.models.silhouette`) it is a fixed first step: a learned editor adds its
own change on top, and everything outside the garment is the input, bit-exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from catalog import Schema
from generators.models.bands import upsample_rows
from generators.models.palette import SIGMA, dominant_lab, per_pixel_move, plain_value
from generators.models.silhouette import garment_masks, reachable
from indexing.pooling import foreground_weights, rgb_to_lab

SIZE = 128  # photos are read at this size to cut the tiles (64 px blurs dots and thin stripes away)
TILE = 40  # the tile's side at SIZE: about a third of the garment's width
ERODE = 7  # the tile must lie this far inside the garment's outline
STRENGTHS = (0.5, 0.75, 1.0)  # where tune_prints reads a candidate's slider
SEAM = 1.5  # a tile whose edges differ more than this (seam_cost) is mirrored, not repeated (not tuned)
ALPHA = (6.0, 18.0)  # LAB distance to the exemplar's fabric where a painted tile's opacity rises from 0 to 1
TONE = 20.0  # painted tiles whose print lies on average closer than this to its fabric are tone offsets (lace)
NEAR = 20.0  # print colours this close to the photo's own fabric would vanish: drawn as tone offsets


def register_prints(module: torch.nn.Module, n_values: int | None, painted: bool = True) -> None:
    """Give ``module`` the buffers ``print_tiles`` (``[V, 4, TILE, TILE]``: LAB offsets from the
    exemplar's fabric and the opacity, per pattern value; ``[V, 3, TILE, TILE]`` offsets less their
    mean without ``painted``), ``print_fabric`` (``[V, 3]``: each exemplar's fabric, LAB; None
    without ``painted``) and ``print_ok`` (``[V]``: 1 where a value has a tile, 2 for the plain
    value), fitted before training and saved with the weights; all None without a print step."""
    if n_values:
        module.register_buffer("print_tiles", torch.zeros(n_values, 4 if painted else 3, TILE, TILE))
        module.register_buffer("print_ok", torch.zeros(n_values))
        if painted:
            module.register_buffer("print_fabric", torch.zeros(n_values, 3))
        else:
            module.print_fabric = None
    else:
        module.print_tiles = module.print_ok = module.print_fabric = None


Candidate = tuple[torch.Tensor, torch.Tensor]  # (tile [C, TILE, TILE], the exemplar's fabric [3], LAB)


def _windows(x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x [B, 3, SIZE, SIZE], detail [B, 3, SIZE, SIZE], inside [B, SIZE', SIZE'], energy
    [B, SIZE', SIZE'])`` of images in ``[0, 1]``: the images at ``SIZE``, each pixel's LAB offset
    from the dominant colour, and per ``TILE`` window whether it lies inside the eroded garment
    and how much print it holds."""
    x = F.interpolate(x01.float(), size=(SIZE, SIZE), mode="area") if x01.shape[-1] != SIZE \
        else x01.float()
    detail = rgb_to_lab(x) - dominant_lab(x)[..., None, None]
    inner = -F.max_pool2d(-foreground_weights(x, floor=0.0), 2 * ERODE + 1, 1, ERODE)
    inside = F.avg_pool2d(inner, TILE, 1)[:, 0] > 0.98
    energy = F.avg_pool2d(detail.abs().sum(1, keepdim=True), TILE, 1)[:, 0]
    return x, detail, inside, energy


def opacity(offsets: torch.Tensor) -> torch.Tensor:
    """``[..., 1, h, w]``: a painted tile's opacity from its LAB offsets ``[..., 3, h, w]``."""
    lo, hi = ALPHA
    return ((offsets.norm(dim=-3, keepdim=True) - lo) / (hi - lo)).clamp(0, 1)


def print_candidates(images: torch.Tensor, values: torch.Tensor, n_values: int, plain: int,
                     batch_size: int = 32, painted: bool = True) -> dict[int, list[Candidate]]:
    """Per value (the ``plain`` one and values without a usable photo left out), the candidate
    tiles of its photos with their fabrics, ordered by their print energy: each photo's garment
    window beside its centre line, from uint8 ``[N, 3, S, S]`` photos and their values. Painted
    tiles carry their opacity as a fourth channel; the others are less the window's mean."""
    found: dict[int, list[tuple[float, Candidate]]] = {}
    n = SIZE - TILE + 1
    grid = torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")).float()
    # the window's top-left corner nearest the one that ends just left of the centre line: plackets,
    # zips and button rows run down the middle, and a tile holding one repeats it as a print
    aim = torch.tensor([(n - 1) / 2, SIZE / 2 - TILE - 2]).view(2, 1, 1)
    centre_dist = (grid - aim).pow(2).sum(0)
    for i in range(0, len(images), batch_size):
        v = values[i:i + batch_size]
        keep = (v >= 0) & (v != plain) & (v < n_values)
        if not bool(keep.any()):
            continue
        with torch.no_grad():
            xs, detail, inside, energy = _windows(images[i:i + batch_size][keep].float() / 255.0)
        for x, d, ins, en, val in zip(xs, detail, inside, energy, v[keep].tolist(), strict=True):
            if not bool(ins.any()):
                continue
            pos = int(centre_dist.masked_fill(~ins, float("inf")).flatten().argmin())
            r, c = divmod(pos, n)
            tile = d[:, r:r + TILE, c:c + TILE]
            # a painted tile's fabric is the window's own dominant colour, so that at least its commonest
            # colour is the photo's fabric when drawn (the photo's dominant colour can be neither of a
            # striped window's two). Unpainted tiles are added to every garment pixel, so less their mean
            # offset: half-and-half stripes would otherwise lighten or darken the whole garment. (Less the
            # median instead, or the mean of the lightness only, rose on 72 % and 74 % of 100 pattern
            # sliders, against 79 %.)
            if painted:
                window = x[None, :, r:r + TILE, c:c + TILE]
                # framed in white, which dominant_lab reads as the background: every window pixel but white ones counts
                fab = dominant_lab(F.pad(window, (4, 4, 4, 4), value=1.0), size=TILE + 8)[0]
                tile = rgb_to_lab(window)[0] - fab[:, None, None]
                tile = torch.cat([tile, opacity(tile)])
            else:
                fab = torch.zeros(3)  # not used: the offsets are drawn on the photo's own fabric
                tile = tile - tile.mean((1, 2), keepdim=True)
            found.setdefault(val, []).append((float(en[r, c]), (tile, fab)))
    return {val: [t for _, t in sorted(cands, key=lambda e: e[0])] for val, cands in found.items()}


def around_median(cands: list[Candidate], k: int) -> list[Candidate]:
    """The ``k`` candidates nearest the median in print energy, the median first."""
    mid = len(cands) // 2
    order = sorted(range(len(cands)), key=lambda i: (abs(i - mid), i))
    return [cands[i] for i in order[:k]]


def fit_prints(images: torch.Tensor, values: torch.Tensor, n_values: int, plain: int,
               batch_size: int = 32, painted: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(tiles [V, C, TILE, TILE], ok [V], fabric [V, 3])`` from uint8 ``[N, 3, S, S]`` photos and
    their values (``C`` 4 for ``painted`` tiles, else 3).

    A value's tile is the garment window (beside the photo's centre line) of the photo whose
    window's print energy is the median among that value's photos: a typical print, not the
    loudest. The ``plain`` value gets no tile (``ok`` 2: the edit only flattens); a value
    without a photo whose garment holds a window gets none either (``ok`` 0: no edit).
    """
    return median_tiles(print_candidates(images, values, n_values, plain, batch_size, painted), n_values, plain,
                        painted)


def median_tiles(candidates: dict[int, list[Candidate]], n_values: int, plain: int, painted: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(tiles, ok, fabric)`` of :func:`fit_prints` from :func:`print_candidates`' tiles."""
    tiles = torch.zeros(n_values, 4 if painted else 3, TILE, TILE)
    fabric = torch.zeros(n_values, 3)
    ok = torch.zeros(n_values)
    if 0 <= plain < n_values:
        ok[plain] = 2
    for val, cands in candidates.items():
        tiles[val], fabric[val] = around_median(cands, 1)[0]
        ok[val] = 1
    return tiles, ok, fabric


def tune_prints(tiles: torch.Tensor, ok: torch.Tensor, fabric: torch.Tensor,
                candidates: dict[int, list[Candidate]], images: torch.Tensor, values: torch.Tensor,
                judge: Callable[[torch.Tensor], torch.Tensor], k: int = 8, photos: int = 24
                ) -> tuple[torch.Tensor, torch.Tensor, dict[int, list[float]]]:
    """``(tiles, fabric, scores)``: each value's tile chosen among its ``k`` candidates nearest the
    median energy by the model's own judges (``judge``: ``[B, 3, S, S]`` in ``[-1, 1]`` -> ``[B, V]``
    probabilities), drawn on ``photos`` training photos of other values (uint8, the first ones).

    A candidate scores the judges' mean probability of its value at strength 1, less twice the
    mean amount by which that probability falls from strength 0.5 or 0.75 to 1 (``STRENGTHS``).

    Why: the median-energy tile of a value is not always one that reads as it. A full-contrast
    lace read as polka dots and strong stripes as a print, so the slider's target probability
    peaked at half strength and fell by strength 1 (docs/generators.md): a slider's reading must
    rise to its end. ``scores``: each candidate's score, for the training report.
    """
    tiles, fabric = tiles.clone(), fabric.clone()
    scores: dict[int, list[float]] = {}
    for val, cands in candidates.items():
        if len(cands) < 2 or ok[val] != 1:
            continue
        others = torch.nonzero((values != val) & (values >= 0)).flatten()[:photos]
        if not len(others):
            continue
        x = images[others].float() / 127.5 - 1
        target = torch.full((len(x),), val, dtype=torch.long)
        picks = around_median(cands, k)
        score = []
        for tile, fab in picks:
            tiles[val], fabric[val] = tile, fab
            p = [judge(print_shift(x, tiles, ok, target, s, fabric=fabric if tiles.shape[1] == 4 else None))[:, val]
                 for s in STRENGTHS]
            fall = (torch.maximum(p[0], p[1]) - p[2]).clamp(min=0)
            score.append(float((p[2] - 2 * fall).mean()))
        tiles[val], fabric[val] = picks[max(range(len(picks)), key=score.__getitem__)]
        scores[val] = [round(x, 4) for x in score]
    return tiles, fabric, scores


def seam_cost(tiles: torch.Tensor) -> torch.Tensor:
    """``[B]``: how much a tile's opposite edges differ, over how much neighbouring pixels do
    inside it. Near 1 a tile repeats without a visible seam (its print's period fits it); far
    above 1 it must be mirrored instead (which turns a diagonal stripe into a chevron)."""
    wrap = ((tiles[..., :, 0] - tiles[..., :, -1]).abs().mean((1, 2))
            + (tiles[..., 0, :] - tiles[..., -1, :]).abs().mean((1, 2))) / 2
    inner = ((tiles[..., :, 1:] - tiles[..., :, :-1]).abs().mean((1, 2, 3))
             + (tiles[..., 1:, :] - tiles[..., :-1, :]).abs().mean((1, 2, 3))) / 2
    return wrap / inner.clamp(min=1e-6)


def texture_field(tiles: torch.Tensor, size: tuple[int, int], mirror: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, 3, h, w]``: each tile repeated over a photo of ``size`` at ``SIZE`` px scale (so the
    print keeps its size relative to the photo), still at that scale; :func:`print_shift` brings
    it to the photo's resolution a band of rows at a time. Tiles with ``mirror`` (``[B]`` bool;
    default all) alternate with their mirror images, which never shows a seam."""
    h = max(1, round(SIZE * size[0] / max(size)))
    w = max(1, round(SIZE * size[1] / max(size)))
    flipped = torch.cat([tiles, tiles.flip(-1)], dim=-1)
    flipped = torch.cat([flipped, flipped.flip(-2)], dim=-2)  # [B, 3, 2T, 2T]
    plain = tiles.repeat(1, 1, 2, 2)
    block = flipped if mirror is None else torch.where(mirror.view(-1, 1, 1, 1), flipped, plain)
    reps = (-(-h // block.shape[-2]), -(-w // block.shape[-1]))
    return block.repeat(1, 1, *reps)[..., :h, :w]


def filled_garment(x01: torch.Tensor) -> torch.Tensor:
    """``[B, 1, SIZE, SIZE]`` 0/1: the garment with its holes filled, i.e. every pixel not joined
    to the photo's border through background-like pixels. White dots on a navy skirt are
    background-like, yet they are the print to paint over."""
    bg = (garment_masks(x01, SIZE) < 0.5)[:, None]
    seed = torch.zeros_like(bg)
    seed[..., 0, :] = seed[..., -1, :] = seed[..., :, 0] = seed[..., :, -1] = True
    return 1 - reachable(bg, seed & bg)


def print_shift(x: torch.Tensor, tiles: torch.Tensor, ok: torch.Tensor, target: torch.Tensor,
                strength: torch.Tensor | float = 1.0, sigma: float = SIGMA,
                fabric: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` (``[-1, 1]``) with its print replaced by the target values' (``[B]``, -1: no change).

    ``tiles``/``ok``/``fabric``: the fitted buffers (:func:`register_prints`); without ``fabric``
    the tiles are the older offsets, added to every garment pixel. A target without a tile (and
    not the plain value) changes nothing. Where a tone offset's lightness would leave the LAB range
    (a dark lace on a black dress), it is mirrored, so the print stays visible.
    """
    t = target.to(ok.device)
    kind = torch.where(t >= 0, ok[t.clamp(min=0)], torch.zeros_like(ok[:1]).expand(len(t)))
    on = (kind > 0).to(x.device)
    if not bool(on.any()):
        return x
    size = tuple(x.shape[-2:])
    add = (kind == 1).to(x)[:, None, None, None]
    chosen = tiles[t.clamp(min=0)].to(x)
    field = texture_field(chosen, size, seam_cost(chosen[:, :3]) > SEAM)
    filled = filled_garment((x.detach().float() + 1) / 2)
    per_photo = (torch.as_tensor(strength, dtype=torch.float32, device=x.device).expand(len(x)) * on).view(-1, 1, 1, 1)
    if fabric is not None:
        fab = fabric[t.clamp(min=0)].to(x).view(-1, 3, 1, 1)
        alpha = chosen[:, 3:].clamp(min=1e-6)
        alpha = alpha / alpha.sum((2, 3), keepdim=True)  # the print's pixels, as weights
        mean_offset = (chosen[:, :3] * alpha).sum((2, 3), keepdim=True)
        spread = (chosen[:, :3].norm(dim=1, keepdim=True) * alpha).sum((2, 3), keepdim=True)

    def tone(flat: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        lum = flat[:, :1] + offset[:, :1]
        lum = torch.where((lum < 0) | (lum > 100), flat[:, :1] - offset[:, :1], lum)
        return torch.cat([lum, flat[:, 1:] + offset[:, 1:]], 1)

    def move(lab: torch.Tensor, dom: torch.Tensor, close: torch.Tensor, weight: torch.Tensor, rows: tuple[int, int]):
        weight = torch.maximum(weight, upsample_rows(filled.to(lab), size, *rows) * per_photo)
        # the photo's own print painted over; closeness at half the palette's sigma, so a print near
        # the fabric's colour goes too, and only the fabric's shading stays
        flat = lab + (1 - close.pow(4)) * (dom - lab)
        texture = upsample_rows(field, size, *rows)
        if fabric is None:
            new = tone(flat, texture * add)
        else:
            as_tone = (spread < TONE) | ((fab + mean_offset - dom).norm(dim=1, keepdim=True) < NEAR)
            ink = torch.where(as_tone, tone(flat, texture[:, :3]), fab + texture[:, :3])
            new = flat + texture[:, 3:] * add * (ink - flat)
        return lab + weight * (new - lab), weight

    return per_pixel_move(x, on, strength, sigma, move)


@dataclass(frozen=True)
class PrintStep:
    """Where a model's print step reads and writes: the pattern group's position among the
    model's editable groups (``j``), its schema column (``col``) and its number of values."""

    j: int
    col: int
    n_values: int

    @classmethod
    def build(cls, group: str, edit_names: list[str], schema: Schema) -> PrintStep | None:
        """The step for ``group`` if the model edits it ("" or not edited: None)."""
        if not group or group not in edit_names:
            return None
        return cls(edit_names.index(group), schema.names.index(group), len(schema.values(group)))

    @torch.no_grad()
    def fit(self, module: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
            judge: Callable[[torch.Tensor], torch.Tensor] | None = None, candidates: int = 8
            ) -> dict[int, list[float]]:
        """Fill ``module``'s buffers from the training photos (uint8) and their labels (``[N, G]``).
        With a ``judge`` (the model's own frozen heads on the pattern group, :func:`tune_prints`),
        each value's tile is the one of its ``candidates`` that reads most as it; the judges'
        scores are returned (empty without one)."""
        values = labels[:, self.col]
        painted = module.print_fabric is not None
        plain = plain_value(images, values, self.n_values)
        found = print_candidates(images, values, self.n_values, plain, painted=painted)
        tiles, ok, fabric = median_tiles(found, self.n_values, plain, painted)
        scores: dict[int, list[float]] = {}
        if judge is not None and candidates > 1:
            tiles, fabric, scores = tune_prints(tiles, ok, fabric, found, images, values, judge, candidates)
        module.print_tiles.copy_(tiles.to(module.print_tiles))
        module.print_ok.copy_(ok.to(module.print_ok))
        if painted:
            module.print_fabric.copy_(fabric.to(module.print_fabric))
        return scores

    def apply(self, module: torch.nn.Module, x: torch.Tensor, trg: torch.Tensor,
              strength: torch.Tensor | float = 1.0) -> torch.Tensor:
        """``x`` with the print step on the rows whose edit names the pattern group (``trg``:
        ``[B, E]`` target per editable group, -1: not named); ``strength``: a float or ``[B]``."""
        if module.print_tiles is None:
            return x
        return print_shift(x, module.print_tiles, module.print_ok, trg[:, self.j], strength,
                           fabric=module.print_fabric)
