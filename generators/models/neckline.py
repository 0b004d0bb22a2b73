"""Neckline step: paint the target neckline's opening where garments like this one have it.

Why: a neckline edit changes a small opening at the top of the garment. The masked editor's
U-Net never learned it on 2 CPU cores, and no other fixed step touches it, so its edit
returned the photo unchanged (docs/generators_eval.md). On a product shot the opening shows
the inside of the garment's back, a darker shade of the same cloth, and it always meets the
garment's top edge. That is enough to find it, and the catalog itself shows where each
value's opening sits:

1. **Finding an opening** (:func:`opening_maps`): garment pixels darker than ``ratio`` of the
   garment's dominant colour, connected to the garment's top edge, in the central columns.
   The garment's own rim (outline, shading) is eroded away first.
2. **A bank of exemplars** (:func:`fit_neckline_bank`): for each (category, neckline value), up
   to ``M`` training photos' outlines (garment masks at ``KEY`` px) and openings, the latter
   resampled into the garment's bounding box (``WINDOW`` px), so garments framed at different
   scales line up.
3. **The edit** (:func:`neckline_shift`): the ``k`` exemplars of (category, target) whose
   outline is nearest the photo's are laid into the photo's box; where most of them have an
   opening and the photo has none, the photo's own pixels are darkened by the shade ratio
   learned from the bank; where the photo has an opening that most of them lack, its pixels
   in shade are lifted back by the same ratio (the print shows through again), and its drawn
   edge and rim are painted in the dominant colour. Every other pixel is the input, bit-exact.
4. **Abstaining**: a dark garment (its inside is not darker) or a busy one (dark print or
   stripes reach the top edge, where they would read as an opening) is returned unchanged.
   On demo1200's held-out products the step edits about 40 % of neckline queries.

Measured (docs/generators_eval.md): on held-out demo products the edit's L1 to the true
re-rendering is 0.00683 against the unedited photo's 0.00716.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from generators.models.palette import dominant_lab, lab_to_rgb
from generators.models.silhouette import garment_masks, reachable

WORK = 96  # openings are found and painted at this size; the change is upsampled to the photo's
KEY = 32  # outline keys: garment masks at this size
WINDOW = 48  # openings resampled into the garment's box at this size
ERODE = 2  # pixels (at WORK) of the garment's rim left out of the search
CENTRE = 0.3  # an opening lies within this share of the garment's width from its centre
MIN_SHADE, DARK_GARMENT = 0.3, 0.3  # shade ratio clamp; a garment darker than this (luma) is skipped


def _luma(x: torch.Tensor) -> torch.Tensor:
    return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]


def _work(x01: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x01.float(), size=(WORK, WORK), mode="area") if x01.shape[-1] != WORK else x01.float()


def _fabric(x01: torch.Tensor) -> torch.Tensor:
    """``[B, 3, 1, 1]`` the garment's dominant colour, RGB in [0, 1]."""
    return lab_to_rgb(dominant_lab(x01.float())[..., None, None]).clamp(0, 1)


def opening_maps(x01: torch.Tensor, ratio: float = 0.8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(openings, garment, shade)`` at ``WORK`` px: 0/1 ``[B, WORK, WORK]`` neckline openings
    (step 1 of the module docstring), the garment masks, and each pixel's luma over the
    dominant colour's."""
    xs = _work(x01)
    garment = garment_masks(xs, WORK) > 0.5
    inner = (-F.max_pool2d(-garment.float()[:, None], 2 * ERODE + 1, 1, ERODE))[:, 0] > 0.5
    shade = _luma(xs) / _luma(_fabric(x01)).clamp(min=0.05)
    dark = inner & (shade < ratio)
    rows = torch.arange(WORK, device=xs.device)[None, :, None].expand_as(dark)
    top = torch.where(inner, rows, torch.full_like(rows, WORK)).amin(1, keepdim=True)  # first row per column
    cols = torch.arange(WORK, device=xs.device, dtype=torch.float32)
    has = garment.any(1)  # [B, WORK] columns with garment
    x0 = torch.where(has, cols, torch.full_like(cols, WORK)).amin(1)
    x1 = torch.where(has, cols, torch.full_like(cols, -1)).amax(1)
    centre, half = (x0 + x1) / 2, CENTRE * (x1 - x0)
    band = ((cols[None] - centre[:, None]).abs() <= half[:, None])[:, None, :].expand_as(dark)
    seed = dark & band & (rows <= top + 2)
    openings = reachable((dark & band)[:, None], seed[:, None])[:, 0] > 0
    return openings, garment, shade


def garment_boxes(garment: torch.Tensor) -> torch.Tensor:
    """``[B, 4]`` (x0, y0, x1, y1) of each mask's garment, in pixels (the whole frame when empty)."""
    n = garment.shape[-1]
    idx = torch.arange(n, device=garment.device, dtype=torch.float32)
    cols, rows = garment.any(1), garment.any(2)
    big, small = torch.full_like(idx, n), torch.full_like(idx, -1)
    box = torch.stack([torch.where(cols, idx, big).amin(1), torch.where(rows, idx, big).amin(1),
                       torch.where(cols, idx, small).amax(1), torch.where(rows, idx, small).amax(1)], 1)
    empty = ~cols.any(1)
    return torch.where(empty[:, None], torch.tensor([0.0, 0.0, n - 1.0, n - 1.0], device=garment.device), box)


def _grid(box: torch.Tensor, size: int, inverse: bool, n: int) -> torch.Tensor:
    """``grid_sample`` grids between an ``n`` px image and its garment box's ``size`` px window."""
    t = (torch.arange(size, dtype=torch.float32, device=box.device) + 0.5) / size
    x0, y0, x1, y1 = (box[:, i, None] for i in range(4))
    if not inverse:  # window pixel -> image coordinate
        gx = (x0 + t * (x1 - x0 + 1)) / n * 2 - 1
        gy = (y0 + t * (y1 - y0 + 1)) / n * 2 - 1
    else:  # image pixel -> window coordinate
        px = t * n
        gx = (px - x0) / (x1 - x0 + 1) * 2 - 1
        gy = (px - y0) / (y1 - y0 + 1) * 2 - 1
    return torch.stack([gx[:, None, :].expand(-1, size, -1), gy[:, :, None].expand(-1, -1, size)], -1)


def to_window(maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``[B, WINDOW, WINDOW]``: each map's garment box, resampled."""
    grid = _grid(boxes, WINDOW, False, maps.shape[-1])
    return F.grid_sample(maps.float()[:, None], grid, mode="bilinear", align_corners=False)[:, 0]


def from_window(windows: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``[B, WORK, WORK]``: windows laid back into the boxes (0 outside)."""
    grid = _grid(boxes, WORK, True, WORK)
    return F.grid_sample(windows.float()[:, None], grid, mode="bilinear", align_corners=False)[:, 0]


def fit_neckline_bank(images: torch.Tensor, anchors: torch.Tensor, values: torch.Tensor, n_anchors: int,
                      n_values: int, per_value: int, ratio: float = 0.8, batch_size: int = 64
                      ) -> dict[str, torch.Tensor]:
    """The exemplars (step 2): ``keys [A, V, M, KEY, KEY]`` and ``windows [A, V, M, WINDOW,
    WINDOW]`` (uint8 0/1), ``counts [A, V]`` and the shade inside an opening, ``shade [1]``.

    ``images``: uint8 ``[N, 3, S, S]``; ``anchors``/``values``: ``[N]`` (-1: unknown, skipped).
    The first ``per_value`` photos of each (anchor, value) are kept.
    """
    keys = torch.zeros(n_anchors, n_values, per_value, KEY, KEY, dtype=torch.uint8)
    windows = torch.zeros(n_anchors, n_values, per_value, WINDOW, WINDOW, dtype=torch.uint8)
    counts = torch.zeros(n_anchors, n_values, dtype=torch.long)
    shades = []
    for i in range(0, len(images), batch_size):
        a, v = anchors[i:i + batch_size], values[i:i + batch_size]
        keep = (a >= 0) & (v >= 0)
        if not bool(keep.any()):
            continue
        x01 = images[i:i + batch_size][keep].float() / 255.0
        openings, garment, shade = opening_maps(x01, ratio)
        key = (garment_masks(x01, KEY) > 0.5).to(torch.uint8)
        win = (to_window(openings, garment_boxes(garment)) > 0.5).to(torch.uint8)
        for b, (ai, vi) in enumerate(zip(a[keep].tolist(), v[keep].tolist(), strict=True)):
            if openings[b].sum() >= 5:
                shades.append(shade[b][openings[b]].median())
            m = int(counts[ai, vi])
            if m < per_value:
                keys[ai, vi, m], windows[ai, vi, m] = key[b], win[b]
                counts[ai, vi] += 1
    shade = torch.stack(shades).median().clamp(MIN_SHADE, 1.0) if shades else torch.tensor(0.6)
    return {"keys": keys, "windows": windows, "counts": counts, "shade": shade.reshape(1)}


def neckline_shift(x: torch.Tensor, bank: dict[str, torch.Tensor], target: torch.Tensor, anchor: torch.Tensor,
                   strength: torch.Tensor | float = 1.0, k: int = 5, clutter: float = 0.06,
                   ratio: float = 0.8) -> torch.Tensor:
    """``x`` (``[-1, 1]``) with its neckline opening moved to the target value's (``[B]``; -1:
    no change), from the ``k`` exemplars of ``(anchor, target)`` nearest by outline (module
    docstring). ``anchor`` -1: the exemplars of every anchor. Rows it abstains on are returned
    as they are."""
    x01 = ((x.float() + 1) / 2).detach()
    b = x.size(0)
    openings, garment, shade_map = opening_maps(x01, ratio)
    fabric = _fabric(x01)
    inner = (-F.max_pool2d(-garment.float()[:, None], 2 * ERODE + 1, 1, ERODE))[:, 0] > 0.5
    busy = ((shade_map < ratio) & inner & ~openings).flatten(1).sum(1) / inner.flatten(1).sum(1).clamp(min=1)
    ok = (target >= 0).to(x.device) & (_luma(fabric)[:, 0, 0] >= DARK_GARMENT) & (busy < clutter)
    keys, windows, counts = bank["keys"], bank["windows"], bank["counts"]
    key = garment_masks(x01, KEY) > 0.5
    boxes = garment_boxes(garment)
    want = torch.zeros_like(openings, dtype=torch.float32)
    for i in range(b):
        t = int(target[i])
        if not bool(ok[i]):
            continue
        a = int(anchor[i])
        sel = [a] if 0 <= a < counts.size(0) else list(range(counts.size(0)))
        cand_k = torch.cat([keys[j, t, :int(counts[j, t])] for j in sel]) if sel else keys[:0, 0, 0]
        cand_w = torch.cat([windows[j, t, :int(counts[j, t])] for j in sel]) if sel else windows[:0, 0, 0]
        if not len(cand_k):
            ok[i] = False
            continue
        d = (cand_k.float() - key[i].float()).abs().mean((1, 2))
        near = d.argsort()[:k]
        want[i] = from_window(cand_w[near].float().mean(0, keepdim=True), boxes[i:i + 1])[0]
    if not bool(ok.any()):
        return x
    want = (want > 0.5) & garment
    add = want & ~openings
    remove = openings & ~want
    rim = (F.max_pool2d(openings.float()[:, None], 3, 1, 1)[:, 0] > 0) & ~openings & ~want & garment
    s = torch.as_tensor(strength, dtype=torch.float32, device=x.device).expand(b) * ok.float()
    size = tuple(x.shape[-2:])

    def up(m: torch.Tensor) -> torch.Tensor:
        return F.interpolate(m.float()[:, None], size=size, mode="bilinear", align_corners=False) * s.view(-1, 1, 1, 1)

    shade = bank["shade"].to(x01).view(1, 1, 1, 1)
    a_, r_, g_ = up(add), up(remove), up(rim)
    # lifting applies to the pixels that are in shade at full resolution: the cloth around an
    # opening would turn too bright; the opening's drawn edge, still dark when lifted, is cloth
    dark = (_luma(x01) < ratio * _luma(fabric))[:, None]
    lifted = (x01 / shade).clamp(0, 1)
    lifted = torch.where((_luma(lifted) < ratio * _luma(fabric))[:, None], fabric.expand_as(x01), lifted)
    lifted = torch.where(dark, lifted, x01)
    out = x01 + a_ * (x01 * shade - x01) + r_ * (lifted - x01) + g_ * (fabric - x01)
    changed = (a_ + r_ + g_) > 0
    return torch.where(changed, out * 2 - 1, x.float()).to(x.dtype)
