"""Rasterising a product into its five photos: the product shot and four model photos.

Geometry comes from :mod:`crawler.demo.shapes` in canonical body units; a 2x3 camera matrix
per photo maps it to pixels, so scale, position and rotation jitter cost nothing extra and
the fabric pattern stays glued to the garment across photos. Drawing is OpenCV polygon fills
(anti-aliased, sub-pixel) composited in float32, fast enough for ~100 photos/s per core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    "blouses": (0.0, 392.0, 560.0), "jackets": (0.0, 392.0, 580.0), "knitwear": (0.0, 392.0, 570.0),
    "tops": (0.0, 392.0, 560.0), "dresses": (0.0, 575.0, 900.0), "skirts": (0.0, 672.0, 680.0),
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
    p = poly.astype(np.float64) @ m[:, :2].T + m[:, 2]
    return np.round(p * FIX).astype(np.int32)


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
    a = alpha[y0:y0 + h, x0:x0 + w].astype(np.float32)[..., None] * (1.0 / 255.0)
    dst = img[y0:y0 + h, x0:x0 + w]
    out = dst.astype(np.float32)
    out += a * (color - out)
    dst[:] = np.clip(out + 0.5, 0, 255).astype(np.uint8)


def darken(img: np.ndarray, amount: np.ndarray, roi: tuple[int, int, int, int]) -> None:
    """Multiply the canvas by ``1 - amount`` (float32, roi-sized) inside ``roi``."""
    x0, y0, w, h = roi
    dst = img[y0:y0 + h, x0:x0 + w]
    dst[:] = (dst.astype(np.float32) * (1.0 - amount)[..., None] + 0.5).astype(np.uint8)


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
    lace_period = float(r.uniform(15, 20))
    return Fabric(
        base=base, pattern=labels["pattern"],
        second=contrast(look.accent, base), third=contrast(look.accent2, base, light=(250, 220, 90)),
        stripe_angle=look.stripe_angle, stripe_period=look.stripe_period, stripe_duty=look.stripe_duty,
        dot_period=look.dot_period, dot_radius=look.dot_radius, phase=phase, flowers=flowers, prints=prints,
        lace_period=lace_period, knit=labels["category"] == "knitwear",
    )


