"""Garment and body geometry in a canonical body frame, independent of any image.

Units: a standing person is 1000 units tall, ``y`` grows downwards from the top of the head
(0) to the soles (1000), ``x`` is 0 on the body's centre line and positive to the image's
right. Every garment is built on a :class:`Skeleton` (the shop's ghost mannequin for product
photos, the model's body for model photos), so the same dress looks the same in both and a
changed attribute changes the same region everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

Poly = np.ndarray  # (N, 2) float32, canonical units


def bezier(p0, p1, p2, n: int = 12) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None]
    p0, p1, p2 = (np.asarray(p, np.float32) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def chaikin(points: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Corner-cutting smoothing of an open polyline; keeps both end points."""
    pts = np.asarray(points, np.float32)
    for _ in range(iterations):
        if len(pts) < 3:
            return pts
        q = 0.75 * pts[:-1] + 0.25 * pts[1:]
        r = 0.25 * pts[:-1] + 0.75 * pts[1:]
        mid = np.empty((2 * (len(pts) - 1), 2), np.float32)
        mid[0::2], mid[1::2] = q, r
        pts = np.vstack([pts[:1], mid[1:-1], pts[-1:]])
    return pts


def mirror(right: np.ndarray) -> np.ndarray:
    """Closed symmetric outline from its right half (listed top to bottom, x >= 0)."""
    left = right[::-1].copy()
    left[:, 0] *= -1
    return np.vstack([right, left])


def ellipse_pts(cx: float, cy: float, rx: float, ry: float, n: int = 28, a0: float = 0.0,
                a1: float = 2 * math.pi) -> np.ndarray:
    t = np.linspace(a0, a1, n, dtype=np.float32)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1).astype(np.float32)


@dataclass(frozen=True)
class Skeleton:
    """Joint positions of the right half of a symmetric body (left = mirrored)."""

    width: float  # body width factor (1 = mannequin)
    arm: np.ndarray  # (4, 2): shoulder joint, elbow, wrist, fingertips
    leg: np.ndarray  # (3, 2): hip joint, knee, ankle

    @staticmethod
    def build(width: float, arm_angle: float, forearm_bend: float, leg_spread: float) -> Skeleton:
        a1 = math.radians(arm_angle)
        a2 = math.radians(arm_angle + forearm_bend)
        j0 = np.array([96.0 * width, 200.0])
        j1 = j0 + 185.0 * np.array([math.sin(a1), math.cos(a1)])
        j2 = j1 + 165.0 * np.array([math.sin(a2), math.cos(a2)])
        j3 = j2 + 92.0 * np.array([math.sin(a2), math.cos(a2)])
        hip = np.array([48.0 * width, 520.0])
        knee = np.array([(52.0 + 0.45 * leg_spread) * width, 745.0])
        ankle = np.array([(56.0 + leg_spread) * width, 955.0])
        return Skeleton(width, np.stack([j0, j1, j2, j3]).astype(np.float32),
                        np.stack([hip, knee, ankle]).astype(np.float32))

    def arm_point(self, s: float) -> tuple[np.ndarray, np.ndarray]:
        """Point at arc length ``s`` along the arm and the unit normal pointing away from the body."""
        seg = self.arm
        for i in range(len(seg) - 1):
            d = seg[i + 1] - seg[i]
            ln = float(np.hypot(*d))
            u = d / ln
            if s <= ln or i == len(seg) - 2:  # the last segment extrapolates
                return seg[i] + u * s, np.array([u[1], -u[0]], np.float32)
            s -= ln
        raise AssertionError("unreachable")

    def leg_x(self, y: float) -> float:
        """x of the right leg's centre line at height ``y``."""
        (x0, y0), (x1, y1), (x2, y2) = self.leg
        if y <= y1:
            return float(x0 + (x1 - x0) * (y - y0) / (y1 - y0))
        return float(x1 + (x2 - x1) * (y - y1) / (y2 - y1))


def limb(sk: Skeleton, s0: float, s1: float, widths: list[tuple[float, float]], n: int = 9) -> np.ndarray:
    """Outline of a tube along the arm from arc length s0 to s1; ``widths`` = [(s, half_width)]."""
    ss = np.linspace(s0, s1, n)
    ws = np.interp(ss, [w[0] for w in widths], [w[1] for w in widths])[:, None]
    seg = sk.arm.astype(np.float64)
    d = np.diff(seg, axis=0)
    ln = np.hypot(d[:, 0], d[:, 1])
    u = d / ln[:, None]
    start = np.concatenate([[0.0], np.cumsum(ln)[:-1]])
    i = np.clip(np.searchsorted(start, ss, side="right") - 1, 0, len(ln) - 1)
    p = seg[i] + u[i] * (ss - start[i])[:, None]
    nrm = np.stack([u[i, 1], -u[i, 0]], 1)
    return np.vstack([p + nrm * ws, (p - nrm * ws)[::-1]]).astype(np.float32)


# --- leg thickness of the body (half widths), by height ------------------------------------
LEG_Y = [520.0, 600.0, 745.0, 830.0, 955.0]
LEG_W = [46.0, 40.0, 27.0, 30.0, 16.0]


def leg_halfwidth(y: float, width: float) -> float:
    return float(np.interp(y, LEG_Y, LEG_W)) * width


@dataclass
class Garment:
    """Polygons of one garment seen from one side, plus decoration to draw on top."""

    body: list[Poly] = field(default_factory=list)  # torso / skirt / trousers
    sleeves: list[Poly] = field(default_factory=list)
    openings: list[Poly] = field(default_factory=list)  # neck openings: inside / skin shows
    holes: list[Poly] = field(default_factory=list)  # cut-outs showing what is behind
    seams: list[np.ndarray] = field(default_factory=list)  # open polylines, fabric-dark
    bands: list[Poly] = field(default_factory=list)  # rib bands, waistbands (darker fabric)
    buttons: list[tuple[float, float, float]] = field(default_factory=list)
    ribs: list[Poly] = field(default_factory=list)  # regions that get knit rib lines
    cuffs: list[Poly] = field(default_factory=list)  # sleeve ends, drawn with the sleeves
    hems: list[np.ndarray] = field(default_factory=list)  # lower edges (open polylines): lace scallops
    sleeve_hems: list[np.ndarray] = field(default_factory=list)

    def all_polys(self) -> list[Poly]:
        return self.sleeves + self.body


# Hem heights per length value.
DRESS_HEM = {"short": 615.0, "knee": 745.0, "3-4": 862.0, "long": 972.0}
TOP_HEM = {"short": 372.0, "normal": 498.0, "long": 612.0}
SLEEVE_LEN = {"short": 92.0, "half": 268.0, "long": 345.0}
EASE = {"tight": 2.0, "normal": 14.0, "loose": 34.0}

NECK_Y = 170.0


def _neck(neckline: str) -> tuple[float, float]:
    """Half width of the neck opening and the height of its top edge."""
    return {"wide": (90.0, 182.0), "lines": (50.0, NECK_Y), "deep": (46.0, NECK_Y),
            "back": (33.0, NECK_Y - 4), "v": (44.0, NECK_Y), "round": (42.0, NECK_Y)}[neckline]


def front_opening(neckline: str, jit: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Neck opening on the front (bounded above by the back neckline) and an optional keyhole."""
    nw, ny = _neck(neckline)
    back = bezier((-nw, ny), (0, ny + 16), (nw, ny), 9)
    keyhole = None
    if neckline == "round":
        front = ellipse_pts(0, ny, nw, 40 + 4 * jit, 14, 0, math.pi)
    elif neckline == "v":
        front = np.array([[nw, ny], [nw * 0.5, ny + 50], [0, ny + 100 + 6 * jit], [-nw * 0.5, ny + 50], [-nw, ny]],
                         np.float32)
    elif neckline == "deep":
        front = np.vstack([bezier((nw, ny), (nw * 0.3, ny + 110), (0, ny + 185 + 8 * jit), 8),
                           bezier((0, ny + 185 + 8 * jit), (-nw * 0.3, ny + 110), (-nw, ny), 8)[1:]])
    elif neckline == "wide":
        front = ellipse_pts(0, ny, nw, 32 + 3 * jit, 16, 0, math.pi)
    elif neckline == "lines":
        d = 66 + 5 * jit
        front = np.array([[nw, ny], [nw, ny + d - 8], [nw - 8, ny + d], [-nw + 8, ny + d], [-nw, ny + d - 8],
                          [-nw, ny]], np.float32)
    elif neckline == "back":
        front = ellipse_pts(0, ny, nw, 22, 12, 0, math.pi)
        keyhole = np.vstack([ellipse_pts(0, ny + 70, 15, 15, 16, -0.35 * math.pi, 1.35 * math.pi),
                             [[0, ny + 34]]]).astype(np.float32)
    else:
        raise ValueError(f"unknown neckline {neckline!r}")
    return np.vstack([front, back[::-1][1:-1]]).astype(np.float32), keyhole


def back_opening(neckline: str) -> np.ndarray | None:
    """Skin visible on the back: the big cut-out of a back neckline (others are high at the back)."""
    if neckline != "back":
        return None
    nw, ny = _neck(neckline)
    return np.vstack([bezier((nw + 24, ny + 8), (nw + 50, ny + 215), (0, ny + 222), 10),
                      bezier((0, ny + 222), (-nw - 50, ny + 215), (-nw - 24, ny + 8), 10)[1:]]).astype(np.float32)


def _side(points: list[tuple[float, float]], hem_y: float) -> np.ndarray:
    """Smooth right side line through ``points`` (top to bottom), cut at ``hem_y``."""
    pts = np.array(points, np.float32)
    ys = pts[:, 1]
    keep = pts[ys < hem_y]
    x_hem = float(np.interp(hem_y, ys, pts[:, 0]))
    line = np.vstack([keep, [[x_hem, hem_y]]])
    return chaikin(line, 2)


def torso(labels: dict[str, str], sk: Skeleton, shape: tuple[float, ...], side: str = "front") -> Garment:
    """Tops, blouses, knitwear, jackets and dresses: bodice, optional skirt part, sleeves."""
    cat, fit, sleeve, neck = labels["category"], labels["fit"], labels["sleeve_length"], labels["neckline"]
    w = sk.width
    ease = EASE[fit] + 2.5 * shape[0]
    if cat == "jackets":
        ease += 6
    if cat == "knitwear":
        ease += 3
    nw, ny = _neck(neck)
    cw = 90 * w + ease  # chest
    armpit_y = 262.0 + (8 if fit == "loose" else 0)
    g = Garment()

    # shoulder / armhole
    if sleeve == "sleeveless":
        strap = 30.0 if cat != "jackets" else 44.0
        sh = (nw + strap, ny + 6)
        arm_curve = bezier(sh, (nw + strap + 6, armpit_y - 30), (cw - 4, armpit_y), 7)
        top = [(nw, ny), *[tuple(p) for p in arm_curve]]
    else:
        sh = (104 * w + ease * 0.45, 188.0)
        top = [(nw, ny), sh, (cw, armpit_y)]

    if cat == "dresses":
        waist_y, hem_y = 392.0, DRESS_HEM[labels["length"]] + 6 * shape[1]
        hipw = 98 * w + ease * 0.6 + 6
        if fit == "tight":
            ww = 70 * w + 4
            hem_w = max(hipw - 0.07 * (hem_y - 480), 64.0 * w)
            skirt = [(ww, waist_y), (hipw, 485), (hem_w, hem_y)]
        elif fit == "normal":
            ww = 72 * w + 8
            skirt = [(ww, waist_y), (hipw + 8, 490), (hipw + 12 + 0.24 * (hem_y - 490), hem_y)]
        else:
            ww = cw + 4
            skirt = [(ww, waist_y), (hipw + 26 + 0.38 * (hem_y - 470) * 0.6, 520), (hipw + 30 + 0.40 * (hem_y - 470), hem_y)]
        side_pts = [top[-1], *skirt]
        right = np.vstack([np.array(top[:-1], np.float32), _side(side_pts, hem_y)])
    else:
        hem_y = TOP_HEM[labels["length"]] + 5 * shape[1]
        if fit == "tight":
            pts = [(cw, armpit_y), (70 * w + 5, 392), (98 * w + 4, 480), (100 * w + 4, 640)]
        elif fit == "normal":
            pts = [(cw, armpit_y), (max(76 * w + 14, cw - 8), 392), (98 * w + 14, 480), (100 * w + 16, 640)]
        else:
            pts = [(cw, armpit_y), (cw + 6, 392), (cw + 14, 480), (cw + 22, 640)]
        right = np.vstack([np.array(top[:-1], np.float32), _side(pts, hem_y)])

    # hem: straight, or a shirt-tail curve for blouses
    hem_dip = 16.0 if cat == "blouses" else (4.0 if cat != "dresses" else 8.0)
    x_hem = float(right[-1, 0])
    hem_curve = bezier((x_hem, hem_y), (x_hem * 0.45, hem_y + hem_dip * 1.6), (0, hem_y + hem_dip), 6)[1:]
    right_half = np.vstack([right, hem_curve[:-1]])
    hem_line = np.vstack([[(x_hem, hem_y)], hem_curve])
    mirrored = hem_line[::-1].copy()
    mirrored[:, 0] *= -1
    outline = mirror(right_half)
    # top edge between the neck points is the back neckline: shallow dip
    back_curve = bezier((-nw, ny), (0, ny + 16), (nw, ny), 9)[1:-1]
    body = np.vstack([outline, back_curve]) if side == "front" else np.vstack(
        [outline, bezier((-nw, ny), (0, ny + 10), (nw, ny), 9)[1:-1]])
    g.body.append(body.astype(np.float32))
    g.hems.append(np.vstack([hem_line, mirrored[1:]]).astype(np.float32))

    # sleeves
    if sleeve != "sleeveless":
        length = SLEEVE_LEN[sleeve] + 6 * shape[2]
        root = float(np.hypot(sh[0] - cw, sh[1] - armpit_y)) / 2 + 2
        if sleeve == "short":
            end_w = 33 * w + ease * 0.45
        elif sleeve == "half":
            end_w = 22 * w + ease * 0.5 + (8 if fit == "loose" else 0)
        else:
            end_w = 15 * w + ease * 0.35 + (10 if fit == "loose" else 0)
        elbow_w = 25 * w + ease * 0.45
        widths = [(0.0, root), (60.0, max(root - 6, elbow_w + 6)), (185.0, elbow_w), (length, end_w)]
        if length < 185:
            widths = [(0.0, root), (length, end_w)]
        tube = limb(sk, 28.0, length, widths, 8)
        n_half = len(tube) // 2
        outer, inner = tube[:n_half], tube[n_half:]
        end = np.stack([outer[-1], inner[0]]).astype(np.float32)
        end_l = end * np.array([-1, 1], np.float32)
        g.sleeve_hems += [end, end_l]
        sleeve_poly = np.vstack([[sh], outer, inner, [(cw - 2, armpit_y + 4)]]).astype(np.float32)
        g.sleeves.append(sleeve_poly)
        left = sleeve_poly.copy()
        left[:, 0] *= -1
        g.sleeves.append(left[::-1].copy())
        if cat in ("blouses", "knitwear") and sleeve in ("long", "half"):
            cuff = 24.0 if cat == "knitwear" else 16.0
            band = limb(sk, length - cuff, length, [(0.0, end_w), (400.0, end_w)], 2)
            band_l = band.copy()
            band_l[:, 0] *= -1
            g.cuffs += [band, band_l]
            if cat == "knitwear":
                g.ribs += [band, band_l]

    # neckline
    if side == "front":
        opening, keyhole = front_opening(neck, shape[3])
        g.openings.append(opening)
        if keyhole is not None:
            g.holes.append(keyhole)
    else:
        cut = back_opening(neck)
        if cut is not None:
            g.openings.append(cut)

    # category details
    hem_w = x_hem
    if cat == "knitwear":
        hem_band = np.array([[-hem_w, hem_y - 26], [hem_w, hem_y - 26], [hem_w, hem_y + 3], [-hem_w, hem_y + 3]], np.float32)
        g.bands.append(hem_band)
        g.ribs.append(hem_band)
    if cat == "blouses" and side == "front":
        top_y = {"round": ny + 40, "v": ny + 100, "deep": ny + 185, "wide": ny + 32, "lines": ny + 66,
                 "back": ny + 22}[neck]
        g.seams.append(np.array([[-7, top_y], [-7, hem_y + 14]], np.float32))
        g.seams.append(np.array([[7, top_y], [7, hem_y + 14]], np.float32))
        y = top_y + 22
        while y < hem_y - 8:
            g.buttons.append((0.0, y, 5.5))
            y += 52
    if cat == "blouses" and side == "back":
        g.seams.append(bezier((-cw + 8, 250), (0, 262), (cw - 8, 250), 8))
    if cat == "jackets":
        if side == "front":
            top_y = {"round": ny + 40, "v": ny + 100, "deep": ny + 185, "wide": ny + 32, "lines": ny + 66,
                     "back": ny + 22}[neck]
            g.seams.append(np.array([[0, top_y], [0, hem_y + 4]], np.float32))
            g.seams.append(np.array([[3, top_y], [3, hem_y + 4]], np.float32))
            py = min(hem_y - 45, 430.0)
            for sx in (-1, 1):
                g.seams.append(np.array([[sx * 30, py], [sx * (cw - 18), py - 6]], np.float32))
            for sx in (-1, 1):  # collar along the neckline
                g.bands.append(np.array([[sx * nw, ny], [sx * (nw + 16), ny + 4], [sx * 14, top_y + 6],
                                         [sx * 2, top_y]], np.float32))
        else:
            g.seams.append(np.array([[0, ny + 14], [0, hem_y]], np.float32))
        g.bands.append(np.array([[-hem_w, hem_y - 18], [hem_w, hem_y - 18], [hem_w, hem_y + 3],
                                 [-hem_w, hem_y + 3]], np.float32))
    if cat == "dresses" and fit != "loose":
        g.seams.append(bezier((-78 * w, 392), (0, 398), (78 * w, 392), 8))
    if cat == "tops":
        g.seams.append(np.array([[-hem_w + 4, hem_y - 10], [hem_w - 4, hem_y - 10]], np.float32))
    return g


def skirt(labels: dict[str, str], sk: Skeleton, shape: tuple[float, ...], side: str = "front") -> Garment:
    fit = labels["fit"]
    w = sk.width
    top_y, hem_y = 376.0, DRESS_HEM[labels["length"]] + 6 * shape[1]
    ww = 72 * w + 5
    hipw = 98 * w + 5
    if fit == "tight":
        pts = [(ww, top_y), (hipw + 2, 485), (max(hipw - 0.07 * (hem_y - 480), 62.0 * w), hem_y)]
    elif fit == "normal":
        pts = [(ww, top_y), (hipw + 12, 490), (hipw + 14 + 0.25 * (hem_y - 490), hem_y)]
    else:
        pts = [(ww, top_y), (hipw + 30, 500), (hipw + 34 + 0.42 * (hem_y - 470), hem_y)]
    right = _side(pts, hem_y)
    x_hem = float(right[-1, 0])
    right = np.vstack([right, bezier((x_hem, hem_y), (x_hem * 0.5, hem_y + 10), (0, hem_y + 7), 5)[1:-1]])
    g = Garment(body=[mirror(right)])
    g.hems.append(np.array([[x_hem, hem_y], [0, hem_y + 7], [-x_hem, hem_y]], np.float32))
    g.bands.append(np.array([[-ww, top_y], [ww, top_y], [ww + 1.5, top_y + 24], [-ww - 1.5, top_y + 24]], np.float32))
    if fit == "loose":
        for k in (-2, -1, 1, 2):
            g.seams.append(np.array([[k * ww / 2.6, top_y + 26], [k * x_hem / 2.7, hem_y]], np.float32))
    elif side == "back":
        g.seams.append(np.array([[0, top_y + 24], [0, min(hem_y, 560.0)]], np.float32))
    return g


def trousers(labels: dict[str, str], sk: Skeleton, shape: tuple[float, ...], side: str = "front") -> Garment:
    fit = labels["fit"]
    w = sk.width
    top_y = 376.0
    hem_y = {"short": 590.0, "knee": 742.0, "3-4": 880.0, "long": 968.0}[labels["length"]] + 5 * shape[1]
    ww = 72 * w + 5
    crotch_y = 548.0

    def leg_w(y: float) -> float:
        body = leg_halfwidth(y, w)
        if fit == "tight":
            return body + 4
        if fit == "normal":
            return max(body + 13, 38.0 + 0.02 * (y - 540))
        return max(body + 30, 60.0 + 0.07 * (y - 540))

    hipw = 98 * w + (5 if fit == "tight" else 12 if fit == "normal" else 24)
    ys = [y for y in (600.0, 700.0, 800.0, 900.0) if y < hem_y] + [hem_y]
    outer = [(ww, top_y), (hipw, 478)] + [(sk.leg_x(y) + leg_w(y), y) for y in ys]
    outer_line = chaikin(np.array(outer, np.float32), 1)
    inner_hem = max(sk.leg_x(hem_y) - leg_w(hem_y), 6.0)
    inner = [(inner_hem, hem_y)] + [(max(sk.leg_x(y) - leg_w(y), 5.0), y) for y in ys[::-1][1:]] + [(3.0, crotch_y)]
    inner_line = np.array([p for p in inner if p[1] >= crotch_y or p is inner[-1]], np.float32)
    right = np.vstack([outer_line, inner_line])
    left = right[::-1].copy()
    left[:, 0] *= -1
    g = Garment(body=[np.vstack([right, left]).astype(np.float32)])
    g.hems += [np.array([[outer_line[-1, 0], hem_y], [inner_hem, hem_y]], np.float32),
               np.array([[-inner_hem, hem_y], [-outer_line[-1, 0], hem_y]], np.float32)]
    g.bands.append(np.array([[-ww, top_y], [ww, top_y], [ww + 1, top_y + 24], [-ww - 1, top_y + 24]], np.float32))
    if side == "front":
        g.seams.append(np.array([[4, top_y + 24], [6, 470], [0, crotch_y - 20]], np.float32))
        for sx in (-1, 1):
            g.seams.append(np.array([[sx * (ww - 30), top_y + 24], [sx * (hipw - 4), 460]], np.float32))
    else:
        for sx in (-1, 1):
            x0 = sx * 22
            g.seams.append(np.array([[x0, 430], [sx * 70, 430], [sx * 68, 480], [x0 + sx * 4, 484], [x0, 430]],
                                    np.float32))
    for sx in (-1, 1):  # pressed crease down each leg
        g.seams.append(np.array([[sx * sk.leg_x(crotch_y + 20), crotch_y + 20], [sx * sk.leg_x(hem_y - 12), hem_y - 12]],
                                np.float32))
    return g


def garment(labels: dict[str, str], sk: Skeleton, shape: tuple[float, ...], side: str = "front") -> Garment:
    cat = labels["category"]
    if cat == "skirts":
        return skirt(labels, sk, shape, side)
    if cat == "pants":
        return trousers(labels, sk, shape, side)
    return torso(labels, sk, shape, side)


# --- the model's body ---------------------------------------------------------------------
@dataclass
class BodyShapes:
    torso: Poly
    neck: Poly
    arms: list[Poly]
    hands: list[Poly]
    legs: list[Poly]
    feet: list[Poly]
    shoulders: list[Poly]  # round caps on top of the arms
    lower_arms: list[Poly]  # arms from above the elbow down, drawn again over the garment


def body_shapes(sk: Skeleton, back: bool = False) -> BodyShapes:
    w = sk.width
    right = np.array([(20 * w, 128), (21 * w, 176), (90 * w, 186), (100 * w, 200), (92 * w, 262), (72 * w, 392),
                      (100 * w, 490), (94 * w, 560), (0, 575)], np.float32)
    torso_poly = mirror(chaikin(right, 2))
    neck = np.array([(-20 * w, 100), (20 * w, 100), (22 * w, 190), (-22 * w, 190)], np.float32)
    arms, hands, caps, forearms = [], [], [], []
    for sx in (1, -1):
        # the arm starts below the shoulder cap (part of the torso outline), so a sleeve that
        # starts at the shoulder seam always covers its top
        widths = [(0.0, 25 * w), (60.0, 24 * w), (185.0, 16 * w), (350.0, 11 * w)]
        a = limb(sk, 14.0, 352.0, widths, 10)
        c, _ = sk.arm_point(12.0)
        caps.append(ellipse_pts(float(c[0]), float(c[1]), 25 * w, 25 * w, 16))
        lower = limb(sk, 70.0, 352.0, widths, 8)
        p, nrm = sk.arm_point(385.0)
        d = np.array([-nrm[1], nrm[0]], np.float32)
        ang = math.degrees(math.atan2(d[1], d[0]))
        h = ellipse_pts(0, 0, 42, 15 * w, 16)
        c, s = math.cos(math.radians(ang)), math.sin(math.radians(ang))
        h = h @ np.array([[c, s], [-s, c]], np.float32) + p
        if sx < 0:
            a = a * np.array([-1, 1], np.float32)
            h = h * np.array([-1, 1], np.float32)
            caps[-1] = caps[-1] * np.array([-1, 1], np.float32)
            lower = lower * np.array([-1, 1], np.float32)
        arms.append(a.astype(np.float32))
        forearms.append(lower.astype(np.float32))
        hands.append(h.astype(np.float32))
    legs, feet = [], []
    for sx in (1, -1):
        ys = np.array([520, 600, 680, 745, 800, 860, 930, 962], np.float32)
        xs = np.array([sk.leg_x(float(y)) for y in ys], np.float32)
        hw = np.array([leg_halfwidth(float(y), w) for y in ys], np.float32)
        outer = np.stack([xs + hw, ys], 1)
        inner = np.stack([np.maximum(xs - hw, 0), ys], 1)[::-1]
        leg = np.vstack([outer, inner]).astype(np.float32)
        ax = sk.leg_x(955.0)
        if back:
            foot = np.array([(ax - 17, 945), (ax + 17, 945), (ax + 19, 990), (ax + 10, 1000), (ax - 10, 1000),
                             (ax - 19, 990)], np.float32)
        else:
            foot = np.array([(ax - 16, 945), (ax + 16, 945), (ax + 24, 985), (ax + 18, 1004), (ax - 6, 1004),
                             (ax - 17, 990)], np.float32)
        if sx < 0:
            leg = leg * np.array([-1, 1], np.float32)
            foot = foot * np.array([-1, 1], np.float32)
        legs.append(leg)
        feet.append(foot)
    return BodyShapes(torso_poly, neck, arms, hands, legs, feet, caps, forearms)
