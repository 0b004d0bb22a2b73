"""Rasterising a product into its five photos: the product shot and four model photos.

Geometry comes from :mod:`crawler.demo.shapes` in canonical body units; a 2x3 camera matrix
per photo maps it to pixels, so scale, position and rotation jitter cost nothing extra and
the fabric pattern stays glued to the garment across photos. Drawing is OpenCV polygon fills
(anti-aliased, sub-pixel) composited in float32, fast enough for ~100 photos/s per core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from crawler.demo import shapes
from crawler.demo.spec import (
    BOTTOMS,
    STREAM_TEXTURE,
    STREAM_VIEW,
    VIEWS,
    ProductSpec,
    color_wording,
    rng_for,
)

SIZE = 256
SHIFT = 4  # sub-pixel bits for cv2 polygon drawing
FIX = float(1 << SHIFT)

# Camera frames per category for the product shot: (centre x, centre y, square side), chosen
# to hold the largest variant of the category (long, loose, long sleeves) with a margin, so a
# changed attribute never rescales the rest of the photo.
PRODUCT_FRAME = {
    "blouses": (0.0, 392.0, 510.0), "jackets": (0.0, 392.0, 530.0), "knitwear": (0.0, 392.0, 515.0),
    "tops": (0.0, 392.0, 505.0), "dresses": (0.0, 572.0, 880.0), "skirts": (0.0, 672.0, 660.0),
    "pants": (0.0, 676.0, 680.0),
}


# --- small helpers ------------------------------------------------------------------------
def lum(rgb) -> float:
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b


def contrast(color, base, light=(248, 248, 246), dark=(32, 36, 66)) -> tuple[int, int, int]:
    """``color`` if it stands out from ``base``, else white or a dark navy, whichever does."""
    if abs(lum(color) - lum(base)) >= 70:
        return tuple(int(c) for c in color)
    return light if lum(base) < 160 else dark


def camera(center: tuple[float, float], side: float, rot_deg: float, shift: tuple[float, float],
           size: int = SIZE) -> np.ndarray:
    """2x3 matrix mapping canonical units to pixels: ``side`` units fill the image."""
    s = size / side
    c, n = math.cos(math.radians(rot_deg)) * s, math.sin(math.radians(rot_deg)) * s
    a = np.array([[c, -n], [n, c]])
    t = np.array([size / 2 + shift[0], size / 2 + shift[1]]) - a @ np.asarray(center, float)
    return np.hstack([a, t[:, None]])


def to_px(poly: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Canonical polygon -> fixed-point pixel coordinates for cv2's ``shift`` argument."""
    p = np.dot(poly, m[:, :2].T * FIX)
    p += m[:, 2] * FIX
    return np.rint(p).astype(np.int32)


def canon_coords(m: np.ndarray, roi: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Canonical (u, v) of every pixel of the region ``roi`` = (x, y, w, h)."""
    inv = cv2.invertAffineTransform(m)
    x0, y0, w, h = roi
    xs = np.arange(x0, x0 + w, dtype=np.float32)[None, :]
    ys = np.arange(y0, y0 + h, dtype=np.float32)[:, None]
    u = inv[0, 0] * xs + inv[0, 1] * ys + np.float32(inv[0, 2])
    v = inv[1, 0] * xs + inv[1, 1] * ys + np.float32(inv[1, 2])
    return u.astype(np.float32), v.astype(np.float32)


def mask(polys: list[np.ndarray], m: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Anti-aliased coverage (uint8) of the union of ``polys``.

    One fillPoly call per polygon: a single call with several polygons fills by the even-odd
    rule, so overlaps (a hand on an arm) would turn into holes.
    """
    buf = np.zeros((size, size), np.uint8)
    for p in polys:
        cv2.fillPoly(buf, [to_px(p, m)], 255, cv2.LINE_AA, SHIFT)
    return buf


def fill(img: np.ndarray, polys: list[np.ndarray], m: np.ndarray, color) -> None:
    """Solid anti-aliased polygons straight onto the uint8 canvas."""
    col = tuple(float(c) for c in color)
    for p in polys:
        cv2.fillPoly(img, [to_px(p, m)], col, cv2.LINE_AA, SHIFT)


def lines(img: np.ndarray, polys: list[np.ndarray], m: np.ndarray, color, thickness: int = 1,
          closed: bool = True) -> None:
    if polys:
        cv2.polylines(img, [to_px(p, m) for p in polys], closed, tuple(float(c) for c in color), thickness,
                      cv2.LINE_AA, SHIFT)


def composite(img: np.ndarray, alpha: np.ndarray, color: np.ndarray, roi: tuple[int, int, int, int]) -> None:
    """In place on the uint8 canvas, inside ``roi``: ``img = img * (1 - a) + color * a``."""
    x0, y0, w, h = roi
    a = alpha[y0:y0 + h, x0:x0 + w].astype(np.float32) * np.float32(1.0 / 255.0)
    dst = img[y0:y0 + h, x0:x0 + w]
    dst[:] = cv2.blendLinear(cv2.convertScaleAbs(color), dst, a, 1.0 - a)


def darken(img: np.ndarray, amount: np.ndarray, roi: tuple[int, int, int, int]) -> None:
    """Multiply the canvas by ``1 - amount`` (float32, roi-sized) inside ``roi``."""
    x0, y0, w, h = roi
    dst = img[y0:y0 + h, x0:x0 + w]
    keep = (1.0 - amount).astype(np.float32)
    dst[:] = cv2.blendLinear(dst, np.zeros_like(dst), keep, 1.0 - keep)


# --- fabric -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fabric:
    """The product's cloth: colour and pattern parameters, fixed per product."""

    base: tuple[int, int, int]
    pattern: str
    second: tuple[int, int, int]
    third: tuple[int, int, int]
    stripe_angle: float
    stripe_period: float
    stripe_duty: float
    dot_period: float
    dot_radius: float
    phase: tuple[float, float]
    flowers: np.ndarray  # (N, 6): x, y, size, rotation, colour pick, petals
    prints: np.ndarray  # (N, 6): x, y, size, rotation, kind, colour pick
    lace_period: float
    knit: bool


def make_fabric(spec: ProductSpec, labels: dict[str, str]) -> Fabric:
    look = spec.look
    _, rgb = color_wording(labels["color"], look.shade)
    amp = 3.0 if labels["color"] in ("white", "black") else 9.0
    base = tuple(int(np.clip(c + amp * j, 0, 255)) for c, j in zip(rgb, look.color_jitter, strict=True))
    r = rng_for(spec.seed, spec.index, STREAM_TEXTURE)
    # flowers on a jittered grid (fixed count, whatever the garment)
    cell = 92.0
    gx, gy = np.meshgrid(np.arange(-560, 561, cell), np.arange(-80, 1101, cell))
    n = gx.size
    flowers = np.stack([
        gx.ravel() + r.uniform(-0.3, 0.3, n) * cell + (gy.ravel() // cell % 2) * cell / 2,
        gy.ravel() + r.uniform(-0.3, 0.3, n) * cell,
        r.uniform(0.8, 1.15, n), r.uniform(0, 2 * np.pi, n), r.integers(0, 2, n), r.integers(5, 7, n),
    ], 1)
    pcell = 64.0
    px, py = np.meshgrid(np.arange(-560, 561, pcell), np.arange(-80, 1101, pcell))
    m = px.size
    prints = np.stack([
        px.ravel() + r.uniform(-0.35, 0.35, m) * pcell, py.ravel() + r.uniform(-0.35, 0.35, m) * pcell,
        r.uniform(0.7, 1.2, m), r.uniform(0, np.pi, m), r.integers(0, 3, m), r.integers(0, 2, m),
    ], 1)
    phase = (float(r.uniform()), float(r.uniform()))
    lace_period = float(r.uniform(14, 18))
    return Fabric(
        base=base, pattern=labels["pattern"],
        second=contrast(look.accent, base), third=contrast(look.accent2, base, light=(250, 220, 90)),
        stripe_angle=look.stripe_angle, stripe_period=look.stripe_period, stripe_duty=look.stripe_duty,
        dot_period=look.dot_period, dot_radius=look.dot_radius, phase=phase, flowers=flowers, prints=prints,
        lace_period=lace_period, knit=labels["category"] == "knitwear",
    )


def _soft(d: np.ndarray, px_per_unit: float) -> np.ndarray:
    """Anti-aliased step: 1 where ``d`` (canonical units, signed) < 0, fading over a pixel."""
    return np.clip(0.5 - d * px_per_unit, 0.0, 1.0)


def local(m: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """Camera matrix for drawing into the sub-image ``roi`` = (x, y, w, h)."""
    out = m.copy()
    out[0, 2] -= roi[0]
    out[1, 2] -= roi[1]
    return out


def fabric_image(fab: Fabric, m: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """The cloth, unshaded, over the region ``roi`` of the photo (masked by the garment later)."""
    w, h = roi[2], roi[3]
    scale = float(math.hypot(m[0, 0], m[1, 0]))
    img = np.empty((h, w, 3), np.float32)
    img[:] = fab.base
    pat = fab.pattern
    if pat in ("stripes", "polkadots", "lace"):
        u, v = canon_coords(m, roi)
    if pat == "stripes":
        a = math.radians(fab.stripe_angle)
        t = (u * math.sin(a) + v * math.cos(a)) / fab.stripe_period + fab.phase[0]
        d = (np.abs(t - np.floor(t) - 0.5) - fab.stripe_duty / 2) * fab.stripe_period
        k = _soft(d, scale)[..., None]
        img += k * (np.asarray(fab.second, np.float32) - img)
    elif pat == "polkadots":
        p = fab.dot_period
        row = np.floor(v / p + fab.phase[1])
        uu = u / p + fab.phase[0] + 0.5 * (row % 2)
        vv = v / p + fab.phase[1]
        du = (uu - np.floor(uu) - 0.5) * p
        dv = (vv - np.floor(vv) - 0.5) * p
        d = np.sqrt(du * du + dv * dv) - fab.dot_radius * p
        k = _soft(d, scale)[..., None]
        img += k * (np.asarray(fab.second, np.float32) - img)
    elif pat == "lace":
        # sheer ground, a fine net, and bold rings (the lace's flowers) on a coarser lattice,
        # all in the garment's own colour: reads as lace, not as dots, even at 64 px
        p = fab.lace_period
        base = np.asarray(fab.base, np.float32)
        light = base * 0.6 + 255 * 0.4 if lum(fab.base) < 200 else base * 0.86
        img[:] = light
        a1 = (u + v) / p
        a2 = (u - v) / p
        d = np.minimum(np.abs(a1 - np.round(a1)), np.abs(a2 - np.round(a2))) * (p / 1.414) - 1.2
        k = 0.8 * _soft(d, scale)
        q = 3.0 * p
        c1 = u / q
        c2 = v / q + 0.5 * (np.floor(c1 + 0.5) % 2)
        ring = np.abs(np.hypot(c1 - np.round(c1), c2 - np.round(c2)) * q - 0.19 * q) - 0.055 * q
        k = np.maximum(k, _soft(ring, scale))[..., None]
        img += k * (base - img)
    elif pat == "floral":
        _draw_flowers(img, fab, local(m, roi), scale)
    elif pat == "print":
        _draw_prints(img, fab, local(m, roi), scale)
    return img


def _visible(pts: np.ndarray, margin: float, w: int, h: int) -> np.ndarray:
    return (pts[:, 0] > -margin) & (pts[:, 0] < w + margin) & (pts[:, 1] > -margin) & (pts[:, 1] < h + margin)


def _draw_flowers(img: np.ndarray, fab: Fabric, m: np.ndarray, scale: float) -> None:
    h, w = img.shape[:2]
    centers = fab.flowers[:, :2] @ m[:, :2].T + m[:, 2]
    r_unit = 13.0
    keep = _visible(centers, r_unit * 3 * scale, w, h)
    rot = math.atan2(m[1, 0], m[0, 0])
    cols = (tuple(float(c) for c in fab.second), tuple(float(c) for c in fab.third))
    for (cx, cy), (_, _, sz, ang, ci, npet) in zip(centers[keep], fab.flowers[keep], strict=True):
        r = r_unit * sz * scale
        petal = cols[int(ci)]
        for k in range(int(npet)):
            t = ang + rot + 2 * math.pi * k / npet
            x, y = cx + math.cos(t) * r, cy + math.sin(t) * r
            cv2.circle(img, (round(x * FIX), round(y * FIX)), max(round(0.62 * r * FIX), 1), petal, -1,
                       cv2.LINE_AA, SHIFT)
        cv2.circle(img, (round(cx * FIX), round(cy * FIX)), max(round(0.42 * r * FIX), 1), cols[1 - int(ci)], -1,
                   cv2.LINE_AA, SHIFT)


def _draw_prints(img: np.ndarray, fab: Fabric, m: np.ndarray, scale: float) -> None:
    h, w = img.shape[:2]
    centers = fab.prints[:, :2] @ m[:, :2].T + m[:, 2]
    keep = _visible(centers, 40 * scale, w, h)
    cols = (tuple(float(c) for c in fab.second), tuple(float(c) for c in fab.third))
    for (cx, cy), (_, _, sz, ang, kind, ci) in zip(centers[keep], fab.prints[keep], strict=True):
        r = 16.0 * sz * scale
        col = cols[int(ci)]
        if kind == 0:  # triangle
            pts = [[cx + r * math.cos(ang + k * 2.094), cy + r * math.sin(ang + k * 2.094)] for k in range(3)]
            cv2.fillPoly(img, [np.round(np.array(pts) * FIX).astype(np.int32)], col, cv2.LINE_AA, SHIFT)
        elif kind == 1:  # brush stroke
            dx, dy = math.cos(ang) * r * 1.3, math.sin(ang) * r * 1.3
            cv2.line(img, (round((cx - dx) * FIX), round((cy - dy) * FIX)),
                     (round((cx + dx) * FIX), round((cy + dy) * FIX)), col, max(round(r * 0.55), 1), cv2.LINE_AA, SHIFT)
        else:  # open square
            pts = [[cx + r * 0.8 * math.cos(ang + k * 1.5708), cy + r * 0.8 * math.sin(ang + k * 1.5708)]
                   for k in range(4)]
            cv2.polylines(img, [np.round(np.array(pts) * FIX).astype(np.int32)], True, col, max(round(r * 0.3), 1),
                          cv2.LINE_AA, SHIFT)


def shading(alpha_roi: np.ndarray, m: np.ndarray, roi: tuple[int, int, int, int], light_angle: float,
            knit: bool) -> np.ndarray:
    """Multiplicative light over ``roi``: a soft directional gradient, folds and darker edges."""
    u, v = canon_coords(m, roi)
    sh = 1.0 + 0.045 * math.cos(light_angle) * (u / 300.0) + 0.045 * math.sin(light_angle) * ((v - 500.0) / 500.0)
    sh += 0.035 * np.sin(u / 23.0 + 0.002 * v) * np.clip((v - 380.0) / 300.0, 0.0, 1.0)
    if knit:
        sh -= 0.05 * (0.5 + 0.5 * np.sin(u * (2 * math.pi / 9.0)))
    dist = cv2.distanceTransform((alpha_roi > 127).astype(np.uint8), cv2.DIST_L2, 3)
    sh *= 0.80 + 0.20 * np.minimum(dist * 0.2, 1.0)
    return sh.astype(np.float32)[..., None]


def bbox(alpha: np.ndarray, pad: int = 1) -> tuple[int, int, int, int] | None:
    x, y, w, h = cv2.boundingRect(alpha)
    if w == 0 or h == 0:
        return None
    size_y, size_x = alpha.shape
    x0, y0 = max(x - pad, 0), max(y - pad, 0)
    return x0, y0, min(x + w + pad, size_x) - x0, min(y + h + pad, size_y) - y0


class Cloth:
    """A garment's fabric in one photo, computed once over the garment's bounding box."""

    def __init__(self, fab: Fabric, m: np.ndarray, polys: list[np.ndarray], size: int) -> None:
        self.fab = fab
        self.m = m
        self.roi = bbox(mask(polys, m, size), 2) or (0, 0, 1, 1)
        self.image = fabric_image(fab, m, self.roi)

    def crop(self, roi: tuple[int, int, int, int]) -> np.ndarray:
        x0, y0 = roi[0] - self.roi[0], roi[1] - self.roi[1]
        return self.image[y0:y0 + roi[3], x0:x0 + roi[2]]


def _within(roi: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    x0, y0 = max(roi[0], outer[0]), max(roi[1], outer[1])
    x1 = min(roi[0] + roi[2], outer[0] + outer[2])
    y1 = min(roi[1] + roi[3], outer[1] + outer[3])
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


# --- photos -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shot:
    view: str
    m: np.ndarray
    background: np.ndarray  # (H, W, 3) uint8
    noise: float
    rng: np.random.Generator


def _shot(spec: ProductSpec, view: str, size: int = SIZE,
          garment_box: tuple[float, float, float, float] | None = None) -> Shot:
    """Camera, background and noise of one photo, from that photo's own random stream.

    ``garment_box`` (canonical x0, y0, x1, y1 of the product on the model) frames the detail shot.
    """
    r = rng_for(spec.seed, spec.index, STREAM_VIEW + VIEWS.index(view))
    j = r.uniform(-1, 1, 7)
    cat = spec.category
    if view == "product":
        cx, cy, side = PRODUCT_FRAME[cat]
        m = camera((cx, cy), side * (1.0 + 0.04 * j[0]), 2.0 * j[1], (5 * j[2], 5 * j[3]), size)
        tone = int(round(255.0 - 3.0 * max(j[4], 0.0)))
        return Shot(view, m, np.full((size, size, 3), tone, np.uint8), 0.8 + 1.2 * abs(j[5]), r)
    focus = spec.look.detail_focus
    if view in ("front_full", "back_full"):
        m = camera((0.0, 495.0), 1160.0 * (1.0 + 0.03 * j[0]), 1.5 * j[1], (5 * j[2], 4 * j[3]), size)
    elif view == "upper_close":
        m = camera((0.0, 292.0), 730.0 * (1.0 + 0.03 * j[0]), 1.5 * j[1], (5 * j[2], 3 * j[3]), size)
    else:
        # a close-up of the cloth: centred on the garment (one leg of trousers), never wider
        # than the garment is tall, so no face and little backdrop get in
        x0, y0, x1, y1 = garment_box if garment_box is not None else (-100.0, 200.0, 100.0, 500.0)
        gh = y1 - y0
        side = min(250.0, 0.9 * gh) * (1.0 + 0.06 * j[0])
        cx = 0.5 * x1 if cat == "pants" else 0.0
        c = (cx + 0.08 * (x1 - x0) * focus[0], 0.5 * (y0 + y1) + max(0.0, 0.5 * gh - 0.5 * side) * 0.6 * focus[1])
        m = camera(c, side, 4.0 * j[1], (4 * j[2], 4 * j[3]), size)
    tone = 222.0 + 14.0 * j[4]
    tint = np.array([1.0 + 0.02 * j[5], 1.0, 1.0 - 0.02 * j[5]], np.float32)
    ramp = np.linspace(1.03, 0.95, size, dtype=np.float32)[:, None, None]
    col = np.clip(tone * tint * ramp + 0.5, 0, 255).astype(np.uint8)  # (size, 1, 3)
    bg = np.ascontiguousarray(np.broadcast_to(col, (size, size, 3)))
    return Shot(view, m, bg, 1.5 + 1.5 * abs(j[6]), r)


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed 512x512 field of unit Gaussian noise (same in the 3 channels: luma noise);
    each photo takes a window of it at a random offset, with a random sign.

    Drawing 65k normals per photo costs more than the whole garment; a random window is as
    good as fresh noise for a JPEG and fully deterministic.
    """
    n = np.random.default_rng(20240611).standard_normal((512, 512, 1), dtype=np.float32)
    return np.repeat(n, 3, axis=2)


def _finish(img: np.ndarray, shot: Shot) -> np.ndarray:
    """Sensor noise."""
    h, w = img.shape[:2]
    ox, oy, sign = (int(x) for x in shot.rng.integers(0, [512 - w, 512 - h, 2]))
    n = _noise_bank()[oy:oy + h, ox:ox + w] * np.float32(shot.noise if sign else -shot.noise)
    return cv2.add(img, n, dtype=cv2.CV_8U)


def _outline_color(base) -> tuple[float, float, float]:
    if lum(base) > 200:
        return (168.0, 168.0, 170.0)
    return tuple(float(c) * 0.62 for c in base)


def _paint(img: np.ndarray, polys: list[np.ndarray], cloth: Cloth, light: float) -> None:
    """Composite the shaded cloth inside ``polys`` and outline them."""
    if not polys:
        return
    a = mask(polys, cloth.m, img.shape[0])
    roi = bbox(a)
    roi = roi and _within(roi, cloth.roi)
    if roi is None:
        return
    x0, y0, w, h = roi
    sh = shading(a[y0:y0 + h, x0:x0 + w], cloth.m, roi, light, cloth.fab.knit)
    composite(img, a, cloth.crop(roi) * sh, roi)
    lines(img, polys, cloth.m, _outline_color(cloth.fab.base), 1)


def _ribs(img: np.ndarray, polys: list[np.ndarray], m: np.ndarray) -> None:
    scale = float(math.hypot(m[0, 0], m[1, 0]))
    if not polys or scale * 6 < 2.0:
        return
    a = mask(polys, m, img.shape[0])
    roi = bbox(a)
    if roi is None:
        return
    x0, y0, w, h = roi
    u, _ = canon_coords(m, roi)
    stripes = (0.5 + 0.5 * np.sin(u * (2 * math.pi / 6.0))) * (a[y0:y0 + h, x0:x0 + w].astype(np.float32) / 255.0)
    darken(img, 0.16 * stripes, roi)


def _band_color(base) -> tuple[float, float, float]:
    b = np.asarray(base, np.float32)
    return tuple(float(c) for c in (b * 0.86 if lum(base) > 50 else b + 18))


def _cuffs(img: np.ndarray, g: shapes.Garment, m: np.ndarray, fab: Fabric) -> None:
    if g.cuffs:
        fill(img, g.cuffs, m, _band_color(fab.base))
        lines(img, g.cuffs, m, _outline_color(fab.base), 1)
        if fab.knit:
            _ribs(img, g.cuffs, m)


def _scallops(img: np.ndarray, hems: list[np.ndarray], m: np.ndarray, fab: Fabric) -> None:
    """Lace trim: a row of small half-discs hanging from each hem."""
    if fab.pattern != "lace" or not hems:
        return
    base = np.asarray(fab.base, np.float32)
    fill_col = tuple(float(c) for c in (base * 0.6 + 255 * 0.4 if lum(fab.base) < 200 else base * 0.86))
    line_col = _outline_color(fab.base)
    scale = math.hypot(m[0, 0], m[1, 0])
    r_units = 6.5
    r_px = max(round(r_units * scale * FIX), int(FIX))
    for hem in hems:
        seg = np.diff(hem, axis=0)
        lengths = np.hypot(seg[:, 0], seg[:, 1])
        total = float(lengths.sum())
        n = max(int(total / (2 * r_units)), 1)
        ss = (np.arange(n) + 0.5) * total / n
        cum = np.concatenate([[0.0], np.cumsum(lengths)])
        xs = np.interp(ss, cum, hem[:, 0])
        ys = np.interp(ss, cum, hem[:, 1])
        pts = to_px(np.stack([xs, ys], 1).astype(np.float32), m)
        for x, y in pts:
            cv2.circle(img, (int(x), int(y)), r_px + int(FIX), line_col, -1, cv2.LINE_AA, SHIFT)
        for x, y in pts:
            cv2.circle(img, (int(x), int(y)), r_px, fill_col, -1, cv2.LINE_AA, SHIFT)


def _decorate(img: np.ndarray, g: shapes.Garment, cloth: Cloth, inner, hole_color) -> None:
    """Neck openings, cut-outs, bands, seams and buttons on top of a painted garment.

    ``inner`` is the colour seen through the neck opening (skin on a model) or None for a
    product shot, where the inside of the garment's back shows, darker.
    """
    fab, m = cloth.fab, cloth.m
    dark = _outline_color(fab.base)
    if g.openings:
        if inner is None:
            a = mask(g.openings, m, img.shape[0])
            roi = bbox(a)
            roi = roi and _within(roi, cloth.roi)
            if roi is not None:
                inside = cloth.crop(roi) * 0.58 + (0 if lum(fab.base) > 60 else 30)
                composite(img, a, inside, roi)
        else:
            fill(img, g.openings, m, inner)
        lines(img, g.openings, m, dark, 1)
    if g.holes:
        fill(img, g.holes, m, hole_color)
        lines(img, g.holes, m, dark, 1)
    if g.bands:
        fill(img, g.bands, m, _band_color(fab.base))
        lines(img, g.bands, m, dark, 1)
        _ribs(img, g.ribs and [b for b in g.ribs if any(b is x for x in g.bands)], m)
    if g.seams:
        lines(img, g.seams, m, dark, 1, closed=False)
    if g.buttons:
        btn = (238.0, 236.0, 228.0) if lum(fab.base) < 150 else (60.0, 56.0, 52.0)
        scale = math.hypot(m[0, 0], m[1, 0])
        for x, y, r in g.buttons:
            c = to_px(np.array([[x, y]], np.float32), m)[0]
            cv2.circle(img, (int(c[0]), int(c[1])), max(round(r * scale * FIX), int(FIX)), btn, -1, cv2.LINE_AA, SHIFT)


def _soft_shadow(img: np.ndarray, polys: list[np.ndarray], m: np.ndarray, offset: tuple[float, float],
                 sigma: float, strength: float) -> None:
    shifted = m.copy()
    shifted[:, 2] += offset
    a = mask(polys, shifted, img.shape[0])
    roi = bbox(a, int(3 * sigma) + 1)
    if roi is None:
        return
    x0, y0, w, h = roi
    blurred = cv2.GaussianBlur(a[y0:y0 + h, x0:x0 + w], (0, 0), sigma)
    darken(img, strength / 255.0 * blurred.astype(np.float32), roi)


def render_product(spec: ProductSpec, size: int = SIZE) -> np.ndarray:
    """The shop's product shot: the garment alone on white, on an invisible mannequin."""
    shot = _shot(spec, "product", size)
    sk = shapes.Skeleton.build(1.0, 19.0 + 1.5 * spec.look.shape[4], 3.0, 18.0)
    g = shapes.garment(spec.labels, sk, spec.look.shape, "front")
    fab = make_fabric(spec, spec.labels)
    m = shot.m
    img = shot.background.copy()
    _soft_shadow(img, g.all_polys(), m, (2.0, 3.0), 3.0, 0.10)  # as from a light table
    cloth = Cloth(fab, m, g.all_polys(), size)
    light = spec.look.light_angle
    _paint(img, g.sleeves, cloth, light)
    _scallops(img, g.sleeve_hems, m, fab)
    _paint(img, g.body, cloth, light)
    _scallops(img, g.hems, m, fab)
    _cuffs(img, g, m, fab)
    _decorate(img, g, cloth, None, shot.background[0, 0])
    return _finish(img, shot)


# --- the model ----------------------------------------------------------------------------
def _companion(spec: ProductSpec) -> tuple[dict[str, str], Fabric]:
    """The plain garment the model wears with the product (trousers with a top, a tee with a skirt)."""
    if spec.category in BOTTOMS:
        labels = {"category": "tops", "length": "short", "sleeve_length": "short", "fit": "normal",
                  "neckline": "round", "pattern": "unicolors", "color": "white"}
    else:
        labels = {"category": "pants", "length": "long", "sleeve_length": "short", "fit": "normal",
                  "neckline": "round", "pattern": "unicolors", "color": "blue"}
    fab = Fabric(base=spec.look.companion, pattern="unicolors", second=(0, 0, 0), third=(0, 0, 0), stripe_angle=0,
                 stripe_period=1, stripe_duty=0.5, dot_period=1, dot_radius=0.1, phase=(0, 0),
                 flowers=np.zeros((0, 6)), prints=np.zeros((0, 6)), lace_period=16, knit=False)
    return labels, fab


def _draw_head(img: np.ndarray, spec: ProductSpec, m: np.ndarray, back: bool) -> None:
    look = spec.look
    skin = np.asarray(look.skin, np.float32)
    hair = np.asarray(look.hair, np.float32)
    skin_dark = tuple(float(c) for c in skin * 0.78)
    hair_dark = tuple(float(c) for c in hair * 0.7)
    style = look.hair_style
    E = shapes.ellipse_pts
    if back:
        fill(img, [E(-45, 72, 7, 13, 12), E(45, 72, 7, 13, 12)], m, skin)  # ears
        fill(img, [E(0, 62, 50, 68, 32)], m, hair)
        crown = (0.0, 2.0) if style != 2 else (0.0, -4.0)
        # strands fanning from the crown: hair from behind, not a blank oval a face detector likes
        strands = [shapes.bezier(crown, (dx * 0.8, 40), (dx, 122), 8) for dx in (-40, -24, -9, 9, 24, 40)]
        lines(img, strands, m, tuple(float(c) for c in hair * 0.85), 1, closed=False)
        if style == 2:
            fill(img, [E(0, -6, 23, 20, 20)], m, hair)
            lines(img, [E(0, -6, 23, 20, 20)], m, hair_dark)
        elif style == 3:
            fill(img, [np.array([(-16, 90), (16, 90), (20, 200), (0, 232), (-20, 200)], np.float32)], m, hair)
            lines(img, [np.array([(0, 100), (2, 220)], np.float32)], m, hair_dark, 1, closed=False)
        lines(img, [E(0, 62, 50, 68, 32)], m, hair_dark)
        return
    fill(img, [E(-44, 74, 7, 13, 12), E(44, 74, 7, 13, 12)], m, skin)  # ears
    face = E(0, 70, 43, 62, 32)
    fill(img, [face], m, skin)
    lines(img, [face], m, skin_dark)
    # hair cap and fringe framing the face
    if style == 1:  # bob with a side part
        cap = np.vstack([shapes.bezier((-52, 110), (-62, -20), (0, -6), 10),
                         shapes.bezier((0, -6), (60, -18), (52, 110), 10)[1:],
                         [(40, 112), (40, 40)], shapes.bezier((40, 40), (10, 18), (-30, 36), 6),
                         [(-38, 60), (-40, 112)]]).astype(np.float32)
    else:
        cap = np.vstack([shapes.bezier((-48, 82), (-58, -22), (0, -8), 10),
                         shapes.bezier((0, -8), (58, -22), (48, 82), 10)[1:],
                         [(41, 70)], shapes.bezier((38, 34), (0, 14), (-38, 34), 7),
                         [(-41, 70)]]).astype(np.float32)
    fill(img, [cap], m, hair)
    if style == 2:
        fill(img, [E(0, -10, 24, 20, 20)], m, hair)
    # face: brows, eyes, nose, mouth
    brows = [np.array([(sx * 8, 52), (sx * 18, 48), (sx * 28, 51)], np.float32) for sx in (-1, 1)]
    lines(img, brows, m, hair_dark, 1, closed=False)
    fill(img, [E(-17, 64, 8, 4.5, 12), E(17, 64, 8, 4.5, 12)], m, (240.0, 240.0, 236.0))
    fill(img, [E(-17, 64, 4, 4, 10), E(17, 64, 4, 4, 10)], m, (40.0, 30.0, 26.0))
    lines(img, [np.array([(2, 70), (4, 90), (-3, 93)], np.float32)], m, skin_dark, 1, closed=False)
    fill(img, [E(0, 106, 12, 5, 14)], m, (176.0, 82.0, 84.0) if look.skin[0] > 150 else (120.0, 60.0, 60.0))


@dataclass
class Scene:
    """Geometry of the model and her clothes from one side, shared by that side's photos."""

    body: shapes.BodyShapes
    product: shapes.Garment
    companion: shapes.Garment
    companion_fabric: Fabric
    fabric: Fabric

    @property
    def product_box(self) -> tuple[float, float, float, float]:
        pts = np.vstack(self.product.body)
        return (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))


def model_scene(spec: ProductSpec, side: str) -> Scene:
    look = spec.look
    sk = shapes.Skeleton.build(look.body_width, look.arm_angle, 3.0, 8.0)
    comp_labels, comp_fab = _companion(spec)
    return Scene(
        body=shapes.body_shapes(sk, side == "back"),
        product=shapes.garment(spec.labels, sk, look.shape, side),
        companion=shapes.garment(comp_labels, sk, (0.0,) * 8, side),
        companion_fabric=comp_fab,
        fabric=make_fabric(spec, spec.labels),
    )


def render_model(spec: ProductSpec, view: str, size: int = SIZE, scene: Scene | None = None) -> np.ndarray:
    """A model wearing the product: ``front_full``, ``back_full``, ``upper_close`` or ``detail``."""
    back = view == "back_full"
    scene = scene or model_scene(spec, "back" if back else "front")
    shot = _shot(spec, view, size, scene.product_box)
    look = spec.look
    m = shot.m
    body = scene.body
    skin = np.asarray(look.skin, np.float32)
    skin_dark = tuple(float(c) for c in skin * 0.8)
    hair = np.asarray(look.hair, np.float32)
    img = shot.background.copy()
    if view in ("front_full", "back_full"):  # floor shadow
        _soft_shadow(img, [shapes.ellipse_pts(0, 1000, 150, 22, 24)], m, (0.0, 0.0), 4.0, 0.18)
    long_hair = look.hair_style in (0, 3)
    if not back and long_hair:
        fill(img, [np.vstack([shapes.bezier((-54, 60), (-70, 200), (-58, 300), 8),
                              shapes.bezier((58, 300), (70, 200), (54, 60), 8)]).astype(np.float32)], m, hair * 0.9)
    fill(img, body.legs, m, skin)
    lines(img, body.legs, m, skin_dark)
    fill(img, body.feet, m, look.shoes)
    lines(img, body.arms, m, skin_dark, 2)
    # round shoulders only show next to a sleeveless armhole; under a sleeve they would peek out
    bare = spec.category not in BOTTOMS and spec.labels["sleeve_length"] == "sleeveless"
    fill(img, [body.neck, body.torso] + body.arms + (body.shoulders if bare else []), m, skin)
    lines(img, [body.torso], m, skin_dark)

    prod, comp = scene.product, scene.companion
    prod_cloth = Cloth(scene.fabric, m, prod.all_polys(), size)
    comp_cloth = Cloth(scene.companion_fabric, m, comp.all_polys(), size)
    light = look.light_angle
    if spec.category in BOTTOMS:
        layers = [(prod, prod_cloth), (comp, comp_cloth)]
    elif spec.category == "dresses":
        layers = [(prod, prod_cloth)]
    else:
        layers = [(comp, comp_cloth), (prod, prod_cloth)]
    for g, cloth in layers:
        _paint(img, g.body, cloth, light)
        _scallops(img, g.hems, m, cloth.fab)
        _decorate(img, g, cloth, skin, skin)
    lines(img, body.lower_arms + body.hands, m, skin_dark, 2)
    fill(img, body.lower_arms + body.hands, m, skin)
    for g, cloth in layers:
        _paint(img, g.sleeves, cloth, light)
        _scallops(img, g.sleeve_hems, m, cloth.fab)
        _cuffs(img, g, m, cloth.fab)
    fill(img, [body.neck], m, skin)
    if not back:
        fill(img, [shapes.ellipse_pts(0, 128, 20, 8, 12)], m, skin * 0.85)  # shadow under the chin
    _draw_head(img, spec, m, back)
    if back and long_hair:
        fill(img, [np.vstack([shapes.bezier((-50, 70), (-58, 200), (-40, 290), 8),
                              shapes.bezier((40, 290), (58, 200), (50, 70), 8)]).astype(np.float32)], m, hair)
    return _finish(img, shot)


def render_view(spec: ProductSpec, view: str, size: int = SIZE) -> np.ndarray:
    """RGB uint8 image of one view of a product."""
    if view == "product":
        return render_product(spec, size)
    return render_model(spec, view, size)


def render_views(spec: ProductSpec, views: tuple[str, ...] = VIEWS, size: int = SIZE) -> dict[str, np.ndarray]:
    """Several views of one product, computing the model's geometry once per side."""
    scenes: dict[str, Scene] = {}
    out = {}
    for view in views:
        if view == "product":
            out[view] = render_product(spec, size)
            continue
        side = "back" if view == "back_full" else "front"
        if side not in scenes:
            scenes[side] = model_scene(spec, side)
        out[view] = render_model(spec, view, size, scenes[side])
    return out
