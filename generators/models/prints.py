"""Print step: give a garment the target pattern value's print, from the catalog's own photos.

Why: "this, but floral" must draw a print that is not in the photo. On 2 CPU cores neither
learned editor learned to: the Fader decoder's pattern edit changed 1 % of the pixels and the
classifier's probability of the target print stayed at 0.0003 at every strength (docs/
generators_eval.md). The catalog holds photos of every print, so:

1. per pattern value, an *exemplar tile* is cut from a typical training photo of that value
   (:func:`fit_prints`): a ``TILE`` px square inside the garment (at ``SIZE`` px), stored as each
   pixel's LAB offset from the photo's dominant colour less the tile's mean, i.e. the print
   without its fabric;
2. the edit first paints the photo's own print over in its dominant colour (as
   :func:`generators.models.palette.flatten_print` does, on the garment with its holes filled),
   then adds the target value's tile, repeated over the photo at its scale (mirrored where the
   tile's edges would show a seam), on the garment pixels. An edit to the plain value (found
   by :func:`generators.models.palette.plain_value`) only flattens.

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
SEAM = 1.5  # a tile whose edges differ more than this (seam_cost) is mirrored, not repeated (not tuned)


def register_prints(module: torch.nn.Module, n_values: int | None) -> None:
    """Give ``module`` the buffers ``print_tiles`` (``[V, 3, TILE, TILE]`` LAB offsets per
    pattern value) and ``print_ok`` (``[V]``: 1 where a value has a tile, 2 for the plain value),
    fitted before training and saved with the weights; both None without a print step."""
    if n_values:
        module.register_buffer("print_tiles", torch.zeros(n_values, 3, TILE, TILE))
        module.register_buffer("print_ok", torch.zeros(n_values))
    else:
        module.print_tiles = module.print_ok = None


def _windows(x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(detail [B, 3, SIZE, SIZE], inside [B, SIZE', SIZE'], energy [B, SIZE', SIZE'])`` of
    images in ``[0, 1]``: each pixel's LAB offset from the dominant colour, and per ``TILE``
    window whether it lies inside the eroded garment and how much print it holds."""
    x = F.interpolate(x01.float(), size=(SIZE, SIZE), mode="area") if x01.shape[-1] != SIZE \
        else x01.float()
    detail = rgb_to_lab(x) - dominant_lab(x)[..., None, None]
    inner = -F.max_pool2d(-foreground_weights(x, floor=0.0), 2 * ERODE + 1, 1, ERODE)
    inside = F.avg_pool2d(inner, TILE, 1)[:, 0] > 0.98
    energy = F.avg_pool2d(detail.abs().sum(1, keepdim=True), TILE, 1)[:, 0]
    return detail, inside, energy


def print_candidates(images: torch.Tensor, values: torch.Tensor, n_values: int, plain: int,
                     batch_size: int = 32) -> dict[int, list[torch.Tensor]]:
    """Per value (the ``plain`` one and values without a usable photo left out), the candidate
    tiles of its photos, ordered by their print energy: each photo's garment window beside its
    centre line, less the window's mean, from uint8 ``[N, 3, S, S]`` photos and their values."""
    found: dict[int, list[tuple[float, torch.Tensor]]] = {}
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
            detail, inside, energy = _windows(images[i:i + batch_size][keep].float() / 255.0)
        for d, ins, en, val in zip(detail, inside, energy, v[keep].tolist(), strict=True):
            if not bool(ins.any()):
                continue
            pos = int(centre_dist.masked_fill(~ins, float("inf")).flatten().argmin())
            r, c = divmod(pos, n)
            tile = d[:, r:r + TILE, c:c + TILE]
            # less its mean offset: half-and-half stripes would otherwise lighten or darken the whole
            # garment. (Less the median instead, or the mean of the lightness only, rose on 72 % and
            # 74 % of 100 pattern sliders, against 79 %.)
            found.setdefault(val, []).append((float(en[r, c]), tile - tile.mean((1, 2), keepdim=True)))
    return {val: [t for _, t in sorted(cands, key=lambda e: e[0])] for val, cands in found.items()}


def around_median(cands: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """The ``k`` candidates nearest the median in print energy, the median first."""
    mid = len(cands) // 2
    order = sorted(range(len(cands)), key=lambda i: (abs(i - mid), i))
    return [cands[i] for i in order[:k]]


def fit_prints(images: torch.Tensor, values: torch.Tensor, n_values: int, plain: int,
               batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tiles [V, 3, TILE, TILE], ok [V])`` from uint8 ``[N, 3, S, S]`` photos and their values.

    A value's tile is the garment window (beside the photo's centre line) of the photo whose
    window's print energy is the median among that value's photos: a typical print, not the
    loudest. The ``plain`` value gets no tile (``ok`` 2: the edit only flattens); a value
    without a photo whose garment holds a window gets none either (``ok`` 0: no edit).
    """
    return median_tiles(print_candidates(images, values, n_values, plain, batch_size), n_values, plain)


def median_tiles(candidates: dict[int, list[torch.Tensor]], n_values: int, plain: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tiles, ok)`` of :func:`fit_prints` from :func:`print_candidates`' tiles."""
    tiles = torch.zeros(n_values, 3, TILE, TILE)
    ok = torch.zeros(n_values)
    if 0 <= plain < n_values:
        ok[plain] = 2
    for val, cands in candidates.items():
        tiles[val] = around_median(cands, 1)[0]
        ok[val] = 1
    return tiles, ok


def tune_prints(tiles: torch.Tensor, ok: torch.Tensor, candidates: dict[int, list[torch.Tensor]],
                images: torch.Tensor, values: torch.Tensor, judge: Callable[[torch.Tensor], torch.Tensor],
                k: int = 8, photos: int = 24) -> tuple[torch.Tensor, dict[int, list[float]]]:
    """``(tiles, scores)``: each value's tile chosen among its ``k`` candidates nearest the median
    energy by the model's own judges: the one whose print, drawn at full strength on ``photos``
    training photos of other values (uint8, the first ones), the judges read as that value
    most (``judge``: ``[B, 3, S, S]`` in ``[-1, 1]`` -> ``[B, V]`` probabilities).

    Why: the median-energy tile of a value is not always one that reads as it. A full-contrast
    lace read as polka dots and strong stripes as a print, so the slider's target probability
    peaked at half strength and fell by strength 1 (docs/generators.md). ``scores``: the mean
    probability of each candidate, for the training report.
    """
    tiles = tiles.clone()
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
        mean_p = []
        for tile in picks:
            trial = tiles.clone()
            trial[val] = tile
            mean_p.append(float(judge(print_shift(x, trial, ok, target, 1.0))[:, val].mean()))
        tiles[val] = picks[max(range(len(picks)), key=mean_p.__getitem__)]
        scores[val] = [round(p, 4) for p in mean_p]
    return tiles, scores


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
                strength: torch.Tensor | float = 1.0, sigma: float = SIGMA) -> torch.Tensor:
    """``x`` (``[-1, 1]``) with its print replaced by the target values' (``[B]``, -1: no change).

    ``tiles``/``ok``: the fitted buffers (:func:`register_prints`). A target without a tile (and
    not the plain value) changes nothing. Where the tile's lightness offset would leave the
    LAB range (a dark print on a black dress), it is mirrored, so the print stays visible.
    """
    t = target.to(ok.device)
    kind = torch.where(t >= 0, ok[t.clamp(min=0)], torch.zeros_like(ok[:1]).expand(len(t)))
    on = (kind > 0).to(x.device)
    if not bool(on.any()):
        return x
    size = tuple(x.shape[-2:])
    add = (kind == 1).to(x)[:, None, None, None]
    chosen = tiles[t.clamp(min=0)].to(x)
    field = texture_field(chosen, size, seam_cost(chosen) > SEAM)
    filled = filled_garment((x.detach().float() + 1) / 2)
    per_photo = (torch.as_tensor(strength, dtype=torch.float32, device=x.device).expand(len(x)) * on).view(-1, 1, 1, 1)

    def move(lab: torch.Tensor, dom: torch.Tensor, close: torch.Tensor, weight: torch.Tensor, rows: tuple[int, int]):
        weight = torch.maximum(weight, upsample_rows(filled.to(lab), size, *rows) * per_photo)
        # the photo's own print painted over; closeness at half the palette's sigma, so a print near
        # the fabric's colour goes too, and only the fabric's shading stays
        flat = lab + (1 - close.pow(4)) * (dom - lab)
        texture = upsample_rows(field, size, *rows) * add
        lum = flat[:, :1] + texture[:, :1]
        lum = torch.where((lum < 0) | (lum > 100), flat[:, :1] - texture[:, :1], lum)
        return lab + weight * (torch.cat([lum, flat[:, 1:] + texture[:, 1:]], 1) - lab), weight

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
        plain = plain_value(images, values, self.n_values)
        found = print_candidates(images, values, self.n_values, plain)
        tiles, ok = median_tiles(found, self.n_values, plain)
        scores: dict[int, list[float]] = {}
        if judge is not None and candidates > 1:
            tiles, scores = tune_prints(tiles, ok, found, images, values, judge, candidates)
        module.print_tiles.copy_(tiles.to(module.print_tiles))
        module.print_ok.copy_(ok.to(module.print_ok))
        return scores

    def apply(self, module: torch.nn.Module, x: torch.Tensor, trg: torch.Tensor,
              strength: torch.Tensor | float = 1.0) -> torch.Tensor:
        """``x`` with the print step on the rows whose edit names the pattern group (``trg``:
        ``[B, E]`` target per editable group, -1: not named); ``strength``: a float or ``[B]``."""
        if module.print_tiles is None:
            return x
        return print_shift(x, module.print_tiles, module.print_ok, trg[:, self.j], strength)
