"""Silhouette step: move a garment's outline to the target value's, from the catalog's own photos.

Why: a shape edit ("short sleeves", "knee length", "loose") must paint fabric where there was
background and background where there was fabric. On 2 CPU cores the masked editor's U-Net
did not learn to do that: its shape edits stayed further from the true re-rendering than the
unedited photo (docs/generators_eval.md). Shop photos of one category are framed alike, so
the catalog itself says where a value's fabric is:

1. per (anchor value, group value), the mean garment mask of the training photos at
   ``SIZE`` px is a *silhouette template* (:func:`fit_silhouettes`);
2. a photo's own anchor and current value are the template nearest its garment mask (L1),
   so inference needs no labels;
3. the edit adds the template difference ``P[a, target] - P[a, current]`` to the photo's
   mask: where it rises, the garment's dominant colour is painted; where it falls, the
   background colour is. Everything else is the input, bit-exact.

Mean templates are blurred: arms held at different angles average to a faint wide blob, so a
sleeve painted from the mean floated beside the arm, and a sleeve removed by it kept its cuff
and outline (the slider benchmark read 65-80 % of sleeve sliders as monotone). Models trained
with an *exemplar bank* (``exemplars`` > 0, :func:`fit_exemplars`: up to that many garment
masks per (anchor, value), bit-packed) edit the groups named for it (sleeves) crisply instead:

- **growth** takes the shape of the ``NEAREST`` exemplars of (anchor, target) whose masks are
  nearest the photo's (a majority vote), where the templates say the target has more fabric,
  connected to the garment: a real sleeve, attached where garments framed like this one
  have it;
- **removal** takes every garment pixel, outline and cuff included, connected to a firm
  template decrease through pixels where the target template rarely has fabric: the whole
  forearm goes, not a faded patch in its middle;
- **a longer sleeve continues the photo's own** (:func:`extend_parts`): where the grown part
  is attached to the end of one of the photo's own elongated parts (a half sleeve made long),
  that part's cuff is swept on along its own axis, as far from the neck as the exemplars' part
  reaches, instead of drawing the exemplars' forearm, held at their angle, as a blob at the cuff;
- **a partial strength** grows part of the new part, whole, rather than all of it faded: a
  sleeve grows from the shoulder (:func:`partial_part`), so "a bit longer" is a longer
  sleeve, not a faint full-length one. A cut part still fades out with the strength: cut back
  from the cuff, a sleeve passed through the other lengths and the slider benchmark read 12 of
  99 cuts as not monotone, against 1 of 99 faded (docs/generators.md);
- **the new edges are outlined** (:func:`outline_parts`) in the garment's own edge colour, so a
  white sleeve grown on a white shirt shows, anti-aliased at a distance measured from the
  part's smooth coverage (:func:`edge_distance`), as is the part's own edge; garment masks fill
  their holes, so a white garment's mask is not just its outline.

Checkpoints without a bank edit as they were trained, from the templates alone.

Like the palette step (:mod:`generators.models.palette`) it is a fixed first step; the
masked editor learns its own change on top, and the benchmark runs it alone as a
non-learned baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from catalog import Schema
from generators.models.bands import by_rows, identity_grid_rows
from generators.models.palette import dominant_lab, lab_to_rgb
from indexing.pooling import background_colour, foreground_weights

SIZE = 64  # templates are this size; the change is upsampled to the photo's
MIN_PHOTOS = 3  # a (anchor, value) pair with fewer training photos has no template
LOW, HIGH = 0.25, 0.6  # a template difference below LOW changes nothing, above HIGH it is a full change
SPLIT = 0.4  # a length edit stretches the garment below this share of its height (the waist, the crotch)
NEAREST = 3  # exemplars voting on a grown outline (a majority of them draws it)
FIRM = 0.45  # a template decrease above this seeds a removal (smaller ones are framing, not the group)
GROWS = 0.1  # a grown pixel needs the target template this much above the current one
PACKED = SIZE * SIZE // 8  # bytes per bit-packed exemplar mask
EXTEND_RADIUS = 12  # steps (at SIZE) through the garment from a grown part's contact: the own part read there
ELONGATION = 2.0  # that own part is extended where it is this much longer than wide (principal variances)
MIDLINE = 9  # steps in from the contact whose centres give a part's direction
TAPER = 0.8  # an extended part narrows to this share of its cuff's width (a sleeve towards the wrist)
CUFF = 2.5  # pixels of the photo's own cuff (its trim) painted over where a part is extended
EDGE = 2.0  # pixels (at SIZE) over which an extended part's edge ramps from background to fabric


def register_silhouettes(module: torch.nn.Module, shape: tuple[int, int] | None,
                         bank: tuple[int, int] | None = None) -> None:
    """Give ``module`` the buffers ``silhouettes`` (``[*shape, SIZE, SIZE]``: mean garment mask
    per (anchor value, value of each shape group, concatenated)), ``silhouette_counts``
    (the photos behind each) and, with ``bank`` (values of the banked groups, exemplars per
    value), ``silhouette_bank`` (``[A, values * exemplars, PACKED]`` uint8: bit-packed garment
    masks; 3-d so that a channels-last model keeps it), fitted before training and saved with
    the module's weights; all None without a shape."""
    if shape:
        module.register_buffer("silhouettes", torch.zeros(*shape, SIZE, SIZE))
        module.register_buffer("silhouette_counts", torch.zeros(*shape))
    else:
        module.silhouettes = module.silhouette_counts = None
    if shape and bank:
        module.register_buffer("silhouette_bank", torch.zeros(shape[0], bank[0] * bank[1], PACKED, dtype=torch.uint8))
    else:
        module.silhouette_bank = None


def garment_masks(x01: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """``[B, size, size]`` soft garment masks of images in ``[0, 1]``, holes filled.

    Why filled: a white garment on a white background differs from it only at its outline, so
    its mask was a ring; background that its outline encloses (not reachable from the
    photo's border) is garment.
    """
    x = F.interpolate(x01.float(), size=(size, size), mode="area") if x01.shape[-1] != size else x01.float()
    m = foreground_weights(x, floor=0.0)[:, 0]
    return torch.where(outside(m[:, None] > 0.5)[:, 0], m, torch.ones_like(m))


def outside(garment: torch.Tensor) -> torch.Tensor:
    """``[B, 1, h, w]`` bool: the background reachable from the photo's border without crossing
    ``garment`` (bool, same shape); what it leaves is the garment with its holes filled."""
    g = garment.detach().cpu().numpy()
    # scipy's fill (C, milliseconds at 1024 px) where a flood by repeated max-pooling took seconds
    # the background flood is 8-connected: a 1 px outline with only diagonal gaps still leaks
    eight = np.ones((3, 3), dtype=bool)
    filled = np.stack([ndimage.binary_fill_holes(m, eight) for m in g.reshape(-1, *g.shape[-2:])]).reshape(g.shape)
    return torch.from_numpy(~filled).to(garment.device)


def fit_silhouettes(images: torch.Tensor, anchors: torch.Tensor, values: torch.Tensor, n_anchors: int,
                    n_values: int, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``(templates [A, V, SIZE, SIZE], counts [A, V])``: mean garment mask per (anchor, value).

    ``images``: uint8 ``[N, 3, S, S]``; ``anchors``/``values``: ``[N]`` indices (-1: unknown,
    skipped). ``n_anchors`` may be 1 with ``anchors`` all 0 (a catalog without an anchor group).
    """
    sums = torch.zeros(n_anchors, n_values, SIZE, SIZE)
    counts = torch.zeros(n_anchors, n_values)
    for i in range(0, len(images), batch_size):
        a, v = anchors[i:i + batch_size], values[i:i + batch_size]
        keep = (a >= 0) & (v >= 0)
        if not bool(keep.any()):
            continue
        m = garment_masks(images[i:i + batch_size][keep].float() / 255.0)
        flat = a[keep] * n_values + v[keep]
        sums.view(-1, SIZE, SIZE).index_add_(0, flat, m)
        counts.view(-1).index_add_(0, flat, torch.ones(len(flat)))
    return sums / counts.clamp(min=1)[..., None, None], counts


def pack_masks(masks: torch.Tensor) -> torch.Tensor:
    """``[..., PACKED]`` uint8 of 0/1 masks ``[..., SIZE, SIZE]``, eight pixels a byte."""
    bits = masks.reshape(*masks.shape[:-2], PACKED, 8).to(torch.uint8)
    return (bits << torch.arange(8, dtype=torch.uint8, device=masks.device)).sum(-1, dtype=torch.uint8)


def unpack_masks(packed: torch.Tensor) -> torch.Tensor:
    """``[..., SIZE, SIZE]`` float 0/1 masks of :func:`pack_masks`' bytes."""
    bits = (packed[..., None] >> torch.arange(8, dtype=torch.uint8, device=packed.device)) & 1
    return bits.reshape(*packed.shape[:-1], SIZE, SIZE).float()


def fit_exemplars(images: torch.Tensor, anchors: torch.Tensor, values: torch.Tensor, n_anchors: int,
                  n_values: int, exemplars: int, batch_size: int = 64) -> torch.Tensor:
    """``[A, V * exemplars, PACKED]``: the garment masks (above 0.5) of the first ``exemplars``
    training photos of each (anchor, value), bit-packed; a pair with fewer photos leaves empty
    slots, which the edit never picks (``counts`` of :func:`fit_silhouettes` say how many)."""
    bank = torch.zeros(n_anchors, n_values, exemplars, PACKED, dtype=torch.uint8)
    filled = torch.zeros(n_anchors, n_values, dtype=torch.long)
    for i in range(0, len(images), batch_size):
        a, v = anchors[i:i + batch_size], values[i:i + batch_size]
        keep = torch.nonzero((a >= 0) & (v >= 0)).flatten()
        if not len(keep):
            continue
        packed = pack_masks(garment_masks(images[i:i + batch_size][keep].float() / 255.0) > 0.5)
        for row, ai, vi in zip(packed, a[keep].tolist(), v[keep].tolist(), strict=True):
            if filled[ai, vi] < exemplars:
                bank[ai, vi, filled[ai, vi]] = row
                filled[ai, vi] += 1
    return bank.reshape(n_anchors, n_values * exemplars, PACKED)


def nearest_shape(garment: torch.Tensor, bank: torch.Tensor, counts: torch.Tensor, anchor: torch.Tensor,
                  target: torch.Tensor) -> torch.Tensor:
    """``[B, 1, SIZE, SIZE]`` 0/1: where most of the ``NEAREST`` exemplars of (anchor, target)
    whose masks are nearest (L1) each photo's ``garment`` (0/1 ``[B, 1, SIZE, SIZE]``) have
    fabric. ``bank``: ``[A, V * M, PACKED]``; ``counts``: ``[A, V]`` photos per pair."""
    a_n, v_n = counts.shape
    m = bank.shape[1] // v_n
    rows = bank.reshape(a_n, v_n, m, PACKED)[anchor, target]  # [B, M, PACKED]
    masks = unpack_masks(rows.to(garment.device))  # [B, M, SIZE, SIZE]
    dist = (masks - garment).abs().mean((2, 3))
    have = counts.to(garment.device)[anchor, target].clamp(max=m)  # filled slots per photo
    dist = dist.masked_fill(torch.arange(m, device=garment.device)[None] >= have[:, None], float("inf"))
    k = min(NEAREST, m)
    near = dist.topk(k, dim=1, largest=False).indices
    picked = torch.gather(masks, 1, near[:, :, None, None].expand(-1, -1, SIZE, SIZE))
    usable = torch.gather(dist, 1, near).isfinite().float()  # fewer than k photos: vote among those
    votes = (picked * usable[:, :, None, None]).sum(1, keepdim=True)
    return (votes * 2 > usable.sum(1).view(-1, 1, 1, 1)).float()


def read_silhouette(masks: torch.Tensor, templates: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(anchor [B], value [B])`` of the template nearest each mask (``[B, SIZE, SIZE]``)."""
    a_n, v_n = counts.shape
    dist = (masks[:, None] - templates.reshape(1, a_n * v_n, SIZE, SIZE).to(masks)).abs().mean((2, 3))
    dist = dist.masked_fill(~(counts.reshape(1, -1) >= MIN_PHOTOS).to(masks.device), float("inf"))
    best = dist.argmin(1)
    return best // v_n, best % v_n


def reachable(region: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """``[B, 1, h, w]`` 0/1: the pixels of ``region`` connected (8-neighbourhood) to ``seed``."""
    region, cur = region.float(), seed.float()
    for _ in range(region.shape[-1]):
        nxt = torch.maximum(cur, F.max_pool2d(cur, 3, 1, 1) * region)
        if torch.equal(nxt, cur):
            break
        cur = nxt
    return cur * region


def neck_band(garment: torch.Tensor, share: float = 0.3) -> torch.Tensor:
    """``[B, 1, h, w]`` bool: the columns within ``share`` of its shoulders' half-width of each
    garment's centre (``garment``: 0/1), above its middle row.

    Why: a banked part (a sleeve) grows at the garment's sides. Where an exemplar's neckline is
    higher than the photo's, the vote also drew a collar-shaped patch above the neckline.
    """
    h, w = garment.shape[-2:]
    rows = torch.arange(h, device=garment.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=garment.device, dtype=garment.dtype).view(1, 1, 1, w)
    on_row = garment.amax(-1, keepdim=True) > 0  # [B, 1, h, 1]
    top = torch.where(on_row, rows, h).amin(-2, keepdim=True)
    bottom = torch.where(on_row, rows, -1).amax(-2, keepdim=True)
    shoulders = garment * ((rows >= top) & (rows <= top + (bottom - top) // 4))
    on_col = shoulders.amax(-2, keepdim=True) > 0  # [B, 1, 1, w]
    left = torch.where(on_col, cols, float(w)).amin(-1, keepdim=True)
    right = torch.where(on_col, cols, -1.0).amax(-1, keepdim=True)
    centre, half = (left + right) / 2, (right - left).clamp(min=0) / 2
    return ((cols - centre).abs() < share * half) & (rows < (top + bottom) // 2)


def extend_parts(grown: torch.Tensor, garment: torch.Tensor) -> torch.Tensor:
    """The coverage (``[B, 1, h, w]`` in ``[0, 1]``, smooth across their edges) of the parts an
    exemplar adds to ``garment`` (``grown``, 0/1), each part that continues one of the photo's
    own parts redrawn as that part, extended.

    Why: "half sleeves -> long" grew only the piece of the exemplars' long sleeve that lies
    beyond the photo's own half sleeve. Held at another angle, that is a blob at the cuff (a
    "mitten"). A part continues the photo's own part (:func:`_sweep`) where the garment it
    touches, read ``EXTEND_RADIUS`` steps into the garment from the contact, is elongated
    (principal variances at least ``ELONGATION`` apart) along its midline, and the contact lies
    across that part's end, not along its side (a new sleeve on a torso). Then the part's end
    (the cuff) is swept on along the midline, as far from the neck as the exemplars' part
    reaches, narrowing to ``TAPER``: the sleeve gets longer in its own direction and at its own
    width. Its edges ramp over ``EDGE`` pixels (:func:`_band`), so that upsampled to the photo
    its outline is a straight line. Other parts are kept as drawn, softened at their outer edge
    (upsampled, a crisp 64 px mask is a staircase).
    """
    g_np = garment[:, 0].detach().cpu().numpy() > 0.5
    parts = grown[:, 0].detach().cpu().numpy() > 0.5
    out = np.zeros(grown.shape, dtype=np.float32)
    h, w = g_np.shape[-2:]
    yy, xx = np.mgrid[0:h, 0:w]
    for b in range(len(out)):
        labels, n = ndimage.label(parts[b], structure=np.ones((3, 3), dtype=bool))
        for k in range(1, n + 1):
            part = labels == k
            drawn = _sweep(part, g_np[b], yy, xx) if g_np[b].any() else None
            if drawn is None:
                # kept as drawn, softened at its outer edge only (the garment counts as fabric, so
                # no seam opens between them): upsampled, a crisp 64 px mask is a staircase
                drawn = ndimage.uniform_filter((part | g_np[b]).astype(np.float32), 3, mode="constant") * part
            out[b, 0] = np.maximum(out[b, 0], drawn)
    return torch.from_numpy(out).to(grown)


def _neck(garment: np.ndarray) -> np.ndarray:
    """The garment's top row and mass-centre column (as :func:`part_depth` measures from)."""
    rows, cols = np.nonzero(garment)
    return np.array([rows.min(), cols.mean()])


def _band(u: np.ndarray, v: np.ndarray, start: float, end: float, half: np.ndarray) -> np.ndarray:
    """Coverage in ``[0, 1]`` of the band ``start <= u <= end``, ``|v| <= half`` (pixel coordinates
    along and across its axis): 0.5 on its edges, linear over ``EDGE`` pixels across them.

    Why that wide: upsampled bilinearly, a ramp wider than a pixel is reproduced exactly, so the
    edge stays a straight line; a one-pixel ramp came out wavy at the 64 px grid's period."""
    def ramp(t: np.ndarray) -> np.ndarray:
        return np.clip(t / EDGE + 0.5, 0, 1)

    return ramp(half - np.abs(v)) * ramp(u - start) * ramp(end - u)


def _sweep(part: np.ndarray, garment: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray | None:
    """Coverage of the cuff of the photo's own part that ``part`` (bool ``[h, w]``) continues,
    swept along that part's axis as far as ``part`` reaches (:func:`extend_parts`); None where
    it continues none."""
    eight = np.ones((3, 3), dtype=bool)
    contact = garment & ndimage.binary_dilation(part, eight)
    if contact.sum() < 2:
        return None
    # the photo's own fabric up to EXTEND_RADIUS steps from the contact through the garment, a
    # layer a step: up an arm it stays in the arm, where a torso is it spreads
    layers, seen = [contact], contact.copy()
    for _ in range(EXTEND_RADIUS):
        nxt = ndimage.binary_dilation(layers[-1], eight) & garment & ~seen
        if not nxt.any():
            break
        layers.append(nxt)
        seen |= nxt
    k = min(len(layers) - 1, MIDLINE)
    pts = np.stack([yy[seen], xx[seen]], 1).astype(np.float64)
    if k < 3 or len(pts) < 8:
        return None

    def mean(m: np.ndarray) -> np.ndarray:
        return np.array([yy[m].mean(), xx[m].mean()])

    tip = mean(contact)
    # the part's midline, from inside it out towards the contact; the layers next to the contact
    # are left out, as a blob touching the cuff's corner and side skews them
    axis = mean(layers[k // 3]) - mean(layers[k])
    axis /= max(np.linalg.norm(axis), 1e-6)
    normal = np.array([-axis[1], axis[0]])
    centre = pts.mean(0)
    evals, evecs = np.linalg.eigh(np.cov((pts - centre).T))
    touch = np.stack([yy[contact], xx[contact]], 1) - tip
    if (evals[1] < ELONGATION * max(evals[0], 1e-6) or abs(evecs[:, 1] @ axis) < 0.8
            or np.ptp(touch @ axis) > max(3.0, np.ptp(touch @ normal))):
        # not the end of a part longer than it is wide, lying along the midline (an arm):
        # a new sleeve along the torso's side, whose fabric spreads sideways
        return None
    # the part's end: its last pixels along the axis, and their extent across it (the cuff)
    proj, across = (pts - centre) @ axis, (pts - centre) @ normal
    end = proj >= proj.max() - 2.0
    mid, half = (across[end].max() + across[end].min()) / 2, (np.ptp(across[end]) + 1) / 2
    cuff = centre + proj.max() * axis + mid * normal
    # as far from the neck as the exemplars' part reaches (how part_depth measures a sleeve): the
    # blob beyond a cuff held at another angle is short along this axis, but ends where their cuff is
    neck = _neck(garment)
    goal = float(np.hypot(*(np.stack([yy[part], xx[part]], 1) - neck).T).max())
    start = float(np.hypot(*(cuff - neck)))
    if goal - start < 1:
        return None
    per_step = max(float(axis @ (cuff - neck)) / max(start, 1e-6), 0.3)  # away from the neck per pixel along the axis
    length = (goal - start) / per_step
    # a band as wide as the cuff, narrowing to TAPER of it, from the cuff out; it takes the cuff's
    # last CUFF pixels too, so the photo's own cuff line or trim does not cut the sleeve in two
    u = (yy - cuff[0]) * axis[0] + (xx - cuff[1]) * axis[1]
    v = (yy - cuff[0]) * normal[0] + (xx - cuff[1]) * normal[1]
    width = half * (1 - (1 - TAPER) * np.clip(u / length, 0, 1))
    swept = _band(u, v, -CUFF, length, width) * (~garment | seen)
    return swept if (swept[~garment] > 0.5).any() else None


def part_depth(part: torch.Tensor, garment: torch.Tensor) -> torch.Tensor:
    """``[B, 1, h, w]``: how far each pixel of ``part`` lies from the garment's shoulders, as
    1 + its distance from the top centre of ``garment`` (0/1, the photo's own fabric) less the
    part's nearest pixel's; 0 outside the part.

    Why the top centre and not the distance along the part from the body: a sleeve laid flat
    beside the torso touches it along its whole length, so every pixel of it is next to the
    body; measured from the neckline, a sleeve's cuff is its farthest point however it lies.
    """
    h, w = part.shape[-2:]
    rows = torch.arange(h, dtype=part.dtype, device=part.device).view(1, 1, h, 1)
    cols = torch.arange(w, dtype=part.dtype, device=part.device).view(1, 1, 1, w)
    mass = garment.sum((2, 3), keepdim=True).clamp(min=1)
    centre = (garment * cols).sum((2, 3), keepdim=True) / mass
    top = torch.where(garment.amax(-1, keepdim=True) > 0, rows, h).amin(-2, keepdim=True).clamp(max=h - 1)
    dist = ((rows - top) ** 2 + (cols - centre) ** 2).sqrt()
    inside = part > 0
    nearest = torch.where(inside, dist, float("inf")).flatten(1).amin(1).view(-1, 1, 1, 1)
    return torch.where(inside, dist - nearest + 1, torch.zeros_like(dist))


def partial_part(part: torch.Tensor, steps: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """``part`` (``[B, 1, h, w]``) cut to the share ``strength`` (``[B]``) of its depth
    (:func:`part_depth`), the pixels nearest the shoulders first: a grown sleeve lengthens from
    the shoulder. Strength 0 keeps none of it, 1 all of it."""
    depth = steps.flatten(1).amax(1).clamp(min=1).view(-1, 1, 1, 1)
    s = strength.view(-1, 1, 1, 1).to(part)
    return part * (s * depth - steps + 1).clamp(0, 1)


def _reading(stats: torch.Tensor, templates: torch.Tensor, counts: torch.Tensor, target: torch.Tensor,
             anchor: torch.Tensor | None, current: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(small garment masks, anchor, current, target, ok)`` of photos ``stats`` in ``[0, 1]``:
    the anchor and current value as given, or (where None or -1) as the nearest template reads
    them; ``ok`` where both the current and the target value have a template for the anchor."""
    small = garment_masks(stats)
    t_anchor, t_current = read_silhouette(small, templates, counts)
    anchor = t_anchor if anchor is None else torch.where(anchor.to(t_anchor.device) >= 0, anchor.to(t_anchor.device), t_anchor)
    current = t_current if current is None else torch.where(current.to(t_current.device) >= 0, current.to(t_current.device), t_current)
    t = target.to(anchor.device)
    seen = counts.to(anchor.device) >= MIN_PHOTOS
    # both silhouettes must exist: a value the anchor (as read) never had has no template to subtract
    ok = (t >= 0) & seen[anchor, t.clamp(min=0)] & seen[anchor, current] & (t != current)
    return small, anchor, current, t, ok


def silhouette_shift(x: torch.Tensor, templates: torch.Tensor, counts: torch.Tensor, target: torch.Tensor,
                     strength: torch.Tensor | float = 1.0, anchor: torch.Tensor | None = None,
                     current: torch.Tensor | None = None, bank: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` (``[-1, 1]``) with its outline moved to the target values' (``[B]``, -1: no change).

    ``anchor`` and ``current`` (``[B]`` indices) are the photo's anchor and current value, as a
    label or a classifier reads them; without them, or where they are -1, the nearest
    template's are used. A target never seen with the photo's anchor (sleeves on a skirt)
    changes nothing. ``bank`` (:func:`fit_exemplars`): grow and remove crisp parts (module
    docstring); None: paint the template difference.
    """
    x01 = (x.float() + 1) / 2
    b = x.size(0)
    stats = x01.detach()  # masks, colours and the reading are fixed: no gradient through them
    small, anchor, current, t, ok = _reading(stats, templates, counts, target, anchor, current)
    if not bool(ok.any()):
        return x
    tpl = templates.to(x01)
    goal = tpl[anchor, t.clamp(min=0)][:, None]  # [B, 1, SIZE, SIZE]
    diff = goal - tpl[anchor, current][:, None]
    garment = (small[:, None] > 0.5).float()
    per_strength = torch.as_tensor(strength, dtype=x01.dtype, device=x.device).expand(b)
    if bank is None:
        # fabric only grows out of the garment: a template difference that does not touch it (the
        # template of a misread anchor) paints nothing
        diff = torch.where(diff > 0, diff * reachable(diff > LOW, garment), diff)
        grow = ((diff - LOW) / (HIGH - LOW)).clamp(0, 1)
        shrink = ((-diff - LOW) / (HIGH - LOW)).clamp(0, 1)
    else:
        region = nearest_shape(garment, bank, counts, anchor, t.clamp(min=0)) * (1 - garment) * (diff > GROWS)
        region = region * ~neck_band(garment)
        # opened: slivers thinner than 3 px along the photo's own edge (an exemplar's arm a little
        # wider than the photo's) are framing, not a sleeve
        region = F.max_pool2d(-F.max_pool2d(-region, 3, 1, 1), 3, 1, 1)
        grown = reachable(region, F.max_pool2d(garment, 3, 1, 1))  # touching the garment, diagonals too
        grown = extend_parts(grown, garment)  # a longer sleeve continues the photo's own
        # a partial strength grows part of the part, whole (module docstring: partial_part)
        grow = partial_part(grown, part_depth(grown, garment), per_strength)
        rare = garment * (goal < LOW)
        cut = reachable(rare, rare * (-diff > FIRM))
        cut = F.max_pool2d(cut, 3, 1, 1) * (goal < LOW)  # and the outline around it
        shrink = F.avg_pool2d(cut, 3, 1, 1)  # softened, so that the cut line is no staircase
    size = x.shape[-2:]
    grow = F.interpolate(grow, size=size, mode="bilinear", align_corners=False)
    shrink = F.interpolate(shrink, size=size, mode="bilinear", align_corners=False)
    if bank is not None:
        # the part's core goes whole (its outline too), its edge anti-aliased over a pixel of
        # the photo at its distance from the smooth coverage's 0.5 contour; a cut over a few
        distance = edge_distance(grow)
        grow = (distance + 0.5).clamp(0, 1)
        shrink = ((shrink - 0.2) / 0.4).clamp(0, 1)
    per_photo = per_strength * ok.to(x01)
    full = foreground_weights(stats, floor=0.0)
    # a bank's parts are drawn whole: a grown sleeve covers the seam pixels too (the garment's soft
    # edge left a white line between it and the body), a cut one takes its outline
    # a bank's grown part is already cut to the strength, whole; everything else fades with it
    add = grow * ((1 - full) * per_photo.view(-1, 1, 1, 1) if bank is None else ok.to(x01).view(-1, 1, 1, 1))
    remove = shrink * (full if bank is None else 1) * per_photo.view(-1, 1, 1, 1)
    fabric = lab_to_rgb(dominant_lab(stats, garment=small)[..., None, None])  # [B, 3, 1, 1]; holes filled
    out = x01 + add * (fabric - x01)
    out = out + remove * (background_colour(stats) - out)
    changed = (add + remove) > 0
    if bank is not None:
        distance = torch.where(ok.view(-1, 1, 1, 1), distance, -torch.inf)  # no part: no outline
        out = outline_parts(out, stats, full > 0.5, distance, (shrink > 0.5) & changed, per_photo)
    return torch.where(changed, out * 2 - 1, x.float()).to(x.dtype)


def _dilate(m: torch.Tensor, width: int) -> torch.Tensor:
    """Bool ``m`` grown by ``width`` pixels (8-neighbourhood)."""
    return F.max_pool2d(m.float(), 2 * width + 1, 1, width) > 0.5


def edge_colour(x01: torch.Tensor, garment: torch.Tensor, background: torch.Tensor, width: int) -> torch.Tensor:
    """``[B, 3, 1, 1]``: the median colour of each garment's outermost ``width`` pixels
    (``garment``: ``[B, 1, H, W]`` bool), those next to ``background`` (bool, the background
    outside it, not a white shirt's white inside): a drawn outline, or the shading at a
    photo's edge."""
    ring = garment & _dilate(background, width)
    cols = []
    for img, r in zip(x01.float(), ring[:, 0], strict=True):
        px = img[:, r]
        cols.append(px.median(dim=1).values if px.shape[1] >= 8 else img.new_full((3,), 0.5))
    return torch.stack(cols)[..., None, None]


def edge_distance(field: torch.Tensor, level: float = 0.5) -> torch.Tensor:
    """Signed distance in pixels from the ``level`` contour of a smooth ``field`` (``[B, 1, H, W]``),
    positive above it: ``(field - level) / |gradient|``, exact for a linear ramp. Where the field
    is flat (far from the contour) it is large.

    Why: a line drawn along a binary mask's edge is a staircase; drawn at a distance measured
    from an upsampled, smooth mask, it is anti-aliased like the photo's own outline."""
    f = F.pad(field, (1, 1, 1, 1), mode="replicate")
    gy = (f[..., 2:, 1:-1] - f[..., :-2, 1:-1]) / 2
    gx = (f[..., 1:-1, 2:] - f[..., 1:-1, :-2]) / 2
    return (field - level) / (gx ** 2 + gy ** 2).sqrt().clamp(min=1e-3)


def outline_parts(out: torch.Tensor, x01: torch.Tensor, garment: torch.Tensor, grown: torch.Tensor,
                  cut: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """``out`` (``[0, 1]``) with the new edges of a bank edit drawn in the garment's own edge
    colour (:func:`edge_colour`): the outer edge of a grown part (``grown``: the signed distance
    in pixels from that edge, positive inside the part, :func:`edge_distance`), and a cut's line
    (bool).

    Why: a grown sleeve painted in flat fabric colour had no edge, so a white sleeve on a white
    background did not show at all and a grey one read as a blob; a cut sleeve left a raw edge.
    Shop photos and the demo's drawings both outline a garment. The line is about one pixel
    in 128 wide, anti-aliased (:func:`edge_distance`), on the part's side of its edge and only
    where the part meets the background, not the garment. A grown edge is drawn whole (the
    part is cut to the strength already); a cut's line, like the cut, fades with the strength.
    """
    width = max(1, round(out.shape[-1] / 128))
    background = outside(garment)
    colour = edge_colour(x01, garment, background, width).to(out)
    line = (grown + 0.5).clamp(0, 1) - (grown - width + 0.5).clamp(0, 1)
    line = line * _dilate(background & (grown < 0), width + 1)
    kept = ~background & ~cut
    cut_edge = cut & _dilate(kept, width)
    out = out + line * (colour - out)
    s = strength.view(-1, 1, 1, 1).to(out)
    return torch.where(cut_edge, out + s * (colour - out), out)


def _extent(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(top, height)`` in rows of each mask's pixels above 0.5 (``[B, h, w]``; empty: the frame)."""
    rows = (m > 0.5).any(2)
    idx = torch.arange(m.shape[1], device=m.device).expand_as(rows)
    top = torch.where(rows, idx, m.shape[1]).amin(1).float()
    bottom = torch.where(rows, idx, -1).amax(1).float()
    empty = bottom < top
    return torch.where(empty, 0.0, top), torch.where(empty, float(m.shape[1]), bottom - top + 1)


def hem_stretch(x: torch.Tensor, templates: torch.Tensor, counts: torch.Tensor, target: torch.Tensor,
                strength: torch.Tensor | float = 1.0, anchor: torch.Tensor | None = None,
                current: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` (``[-1, 1]``) with its hem moved to the target length (``[B]``, -1: no change) by
    stretching or squeezing the garment below ``SPLIT`` of its height.

    Why: painting the template difference drew a block of flat colour under a skirt, often
    apart from it (photos are framed unlike the catalog's mean) and faded at partial strength.
    A length is where the hem is; the garment's own pixels (its flare, its print) are moved
    there, and a partial strength moves the hem part of the way. The target height is the
    photo's own height times the templates' height ratio (target over current value), so a
    photo framed small gets a proportionally small change. Rows above the split, and photos
    without both templates, are the input, bit-exact.
    """
    x01 = (x.float() + 1) / 2
    stats = x01.detach()
    small, anchor, current, t, ok = _reading(stats, templates, counts, target, anchor, current)
    if not bool(ok.any()):
        return x
    tpl = templates.to(x01)
    _, h_goal = _extent(tpl[anchor, t.clamp(min=0)])
    _, h_now = _extent(tpl[anchor, current])
    s = torch.as_tensor(strength, dtype=torch.float32, device=x.device).expand(len(x)) * ok.to(x.device)
    top, height = _extent(small)  # in SIZE px
    scale = x.shape[-2] / small.shape[-2]
    split = (top + SPLIT * height) * scale  # full-resolution rows
    lower = (1 - SPLIT) * height * scale
    new_lower = (lower + s * (h_goal / h_now - 1) * height * scale).clamp(min=1.0)
    ratio = (lower / new_lower).view(-1, 1, 1)  # source rows per output row below the split
    split = split.view(-1, 1, 1)
    h, w = x.shape[-2:]
    moved = (s != 0).view(-1, 1, 1, 1)
    bg = background_colour(stats) * 2 - 1  # [B, 3, 1, 1]

    def band(r0: int, r1: int) -> torch.Tensor:
        grid = identity_grid_rows(len(x), (h, w), r0, r1, x01).clone()
        rows = (grid[..., 1] + 1) * h / 2 - 0.5  # the output rows in pixels
        src = torch.where(rows > split, split + (rows - split) * ratio, rows)
        grid[..., 1] = (2 * src + 1) / h - 1
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        # a squeezed garment reads rows from below the photo's edge: background there, not the
        # last row repeated (a garment that reached the edge left streaks of itself under the hem)
        past = (src - (h - 1)).clamp(0, 1)[:, None]
        out = out + past * (bg - out)
        keep = (rows <= split)[:, None] | ~moved
        return torch.where(keep, x[:, :, r0:r1].float(), out).to(x.dtype)

    return by_rows(band, h)


@dataclass(frozen=True)
class SilhouetteSteps:
    """Where a model's silhouette step reads and writes: the editable groups it reshapes
    (``js``, positions among the model's editable groups), their columns in the schema
    (``cols``), their values' offsets in the model's ``silhouettes`` buffer (``offsets``,
    :func:`register_silhouettes`), the anchor's column (-1: the catalog has no anchor group,
    and one set of silhouettes serves every photo) and which groups move the hem by
    :func:`hem_stretch` instead of painting (``stretch``), and how many exemplar masks per
    (anchor, value) its bank keeps (``exemplars``, 0: none, the templates alone) for the groups
    marked ``banked`` (the bank holds their values only, in the same order). The masked editor
    and Fader share it."""

    js: tuple[int, ...]
    cols: tuple[int, ...]
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    anchor_col: int
    n_anchor: int
    stretch: tuple[bool, ...] = ()
    exemplars: int = 0
    banked: tuple[bool, ...] = ()

    @classmethod
    def build(cls, groups: Sequence[str], edit_names: Sequence[str], schema: Schema,
              anchor: str, stretch: Sequence[str] = (), exemplars: int = 0,
              banked: Sequence[str] = ()) -> SilhouetteSteps | None:
        """The ``groups`` that this model edits (None: none of them); those also in ``stretch``
        are length groups, edited by :func:`hem_stretch`."""
        js = [list(edit_names).index(g) for g in groups if g in edit_names]
        if not js:
            return None
        sizes = [len(schema.values(edit_names[j])) for j in js]
        offsets = [sum(sizes[:i]) for i in range(len(js))]
        has_anchor = anchor in schema.names
        return cls(tuple(js), tuple(schema.names.index(edit_names[j]) for j in js), tuple(offsets), tuple(sizes),
                   schema.names.index(anchor) if has_anchor else -1, len(schema.values(anchor)) if has_anchor else 1,
                   tuple(edit_names[j] in stretch for j in js), exemplars,
                   tuple(edit_names[j] in banked for j in js))

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_anchor, sum(self.sizes)

    @property
    def bank_offsets(self) -> tuple[int | None, ...]:
        """Each group's first value in the bank (None: not banked)."""
        banked = self.banked or (False,) * len(self.js)
        starts = [sum(n for n, b in zip(self.sizes[:i], banked[:i], strict=True) if b) for i in range(len(self.js))]
        return tuple(st if b else None for st, b in zip(starts, banked, strict=True))

    @property
    def bank_shape(self) -> tuple[int, int] | None:
        """``(values, exemplars)`` of the bank (None: no bank)."""
        values = sum(n for n, b in zip(self.sizes, self.banked or (), strict=False) if b)
        return (values, self.exemplars) if self.exemplars and values else None

    @torch.no_grad()
    def fit(self, module: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Fill ``module``'s buffers from the training photos (uint8) and their labels (``[N, G]``)."""
        anchors = labels[:, self.anchor_col] if self.anchor_col >= 0 else torch.zeros(len(labels), dtype=torch.long)
        for col, off, n, b_off in zip(self.cols, self.offsets, self.sizes, self.bank_offsets, strict=True):
            tpl, counts = fit_silhouettes(images, anchors, labels[:, col], self.n_anchor, n)
            module.silhouettes[:, off:off + n] = tpl.to(module.silhouettes)
            module.silhouette_counts[:, off:off + n] = counts.to(module.silhouette_counts)
            if module.silhouette_bank is not None and b_off is not None:
                m = self.exemplars
                bank = fit_exemplars(images, anchors, labels[:, col], self.n_anchor, n, m)
                module.silhouette_bank[:, b_off * m:(b_off + n) * m] = bank.to(module.silhouette_bank)

    def apply(self, module: torch.nn.Module, x: torch.Tensor, trg: torch.Tensor,
              strength: torch.Tensor | float = 1.0, source: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` with the outline of each row that names a shape group (``trg``: ``[B, E]``
        target per editable group, -1: not named) moved by :func:`silhouette_shift` (or its hem by
        :func:`hem_stretch`).
        ``strength``: a float or ``[B]``; ``source`` (``[B, G]``): the photos' current labels,
        as known or read (None: read from the templates)."""
        stretch = self.stretch or (False,) * len(self.js)
        for j, col, off, n, hem, b_off in zip(self.js, self.cols, self.offsets, self.sizes, stretch,
                                              self.bank_offsets, strict=True):
            rows = torch.nonzero(trg[:, j].to(x.device) >= 0).flatten()
            if not len(rows):
                continue
            r = rows.cpu()
            s = strength[rows.to(strength.device)] if isinstance(strength, torch.Tensor) and strength.dim() else strength
            if self.anchor_col < 0:
                anchor = torch.zeros(len(r), dtype=torch.long)
            else:
                anchor = source[r, self.anchor_col] if source is not None else None
            current = source[r, col] if source is not None else None
            tpl, counts = module.silhouettes[:, off:off + n], module.silhouette_counts[:, off:off + n]
            if hem:
                y = hem_stretch(x[rows], tpl, counts, trg[r, j], s, anchor, current)
            else:
                bank = None
                if module.silhouette_bank is not None and b_off is not None:
                    m = self.exemplars
                    bank = module.silhouette_bank[:, b_off * m:(b_off + n) * m]
                y = silhouette_shift(x[rows], tpl, counts, trg[r, j], s, anchor, current, bank)
            x = x.index_copy(0, rows, y.to(x.dtype))
        return x
