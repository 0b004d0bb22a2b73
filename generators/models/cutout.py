"""Garment cut-out: a photo of a person wearing a garment -> a product photo on white.

Why: pix2pix trained on a CPU budget turned the demo's model photos into blurs that searched
*worse* than the untranslated photo (Recall@10 of the same product 0.117 against 0.533,
docs/generators.md). What a photo of a garment being worn shares with the shop's product shot
is the garment's own pixels; what differs is everything around them: the backdrop, the person,
the second garment, the framing. So the translation keeps the garment's pixels and removes the
rest, the way the masked editor keeps a photo's pixels and changes only the edit
(:mod:`generators.models.maskedit`):

1. **person**: the backdrop is read per row from the photo's left and right borders (a studio
   backdrop is flat or a vertical gradient, and white for many shops); the region connected to
   the photo's edge within ``background_delta`` of it is the backdrop, the rest the person;
2. **skin, head and feet** (from the pose, :mod:`generators.pairs.pose`): the skin colour is the
   median of a patch below the nose, and pixels within ``skin_delta`` (LAB) of it or of its
   shade are removed (face, arms, legs); above the shoulders is the head, below the ankles the
   shoes; below the hips, backdrop enclosed by the legs goes too; thin rims and specks last;
3. **regions**: what is left is the outfit. ``upper`` ends a little below the hips, ``lower``
   starts a little above them, ``full`` is both (a dress);
4. each region's pixels are framed on white like a product shot: centred, the longer side
   filling ``1 / frame`` of the square.

Which region is the product is the one learned part (:class:`RegionPicker`): a linear score on
the frozen Lite0 features (:class:`generators.models.features.FrozenFeatures`) of the three
cut-outs, fitted on the catalog's own (product, model photo) pairs, where the label is the
cut-out nearest the true product photo in those features. On a demo catalog this picks the
top of a top worn with trousers and the skirt of a skirt worn with a tee.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from catalog import Schema
from generators.datasets import float_to_uint8, uint8_to_float
from generators.models.base import Solver
from generators.models.features import FrozenFeatures
from generators.options import Config

REGIONS = ("upper", "lower", "full")
WHITE = 250  # a padding row or column (pad_to_square) is at least this bright everywhere


# --------------------------------------------------------------------------------------------
# the fixed part: masks and framing
# --------------------------------------------------------------------------------------------
def strip_padding(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` without the white rows and columns around it (the Editor pads photos to a square
    with white; they would read as backdrop)."""
    content = rgb.min(axis=2) < WHITE
    rows, cols = np.nonzero(content.any(axis=1))[0], np.nonzero(content.any(axis=0))[0]
    if not len(rows):
        return rgb
    return rgb[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def backdrop_distance(rgb: np.ndarray, border: int) -> np.ndarray:
    """``[H, W]``: each pixel's largest RGB difference from its row's backdrop colour (the median
    of the border columns; a studio backdrop is flat or a vertical gradient), after a small blur
    that takes the backdrop's grain out."""
    f = rgb.astype(np.float32)
    b = max(1, min(border, rgb.shape[1] // 4))
    backdrop = np.median(np.concatenate([f[:, :b], f[:, -b:]], axis=1), axis=1)  # [H, 3]
    return cv2.GaussianBlur(np.abs(f - backdrop[:, None]).max(axis=-1), (5, 5), 0)


def person_mask(rgb: np.ndarray, border: int, delta: float, distance: np.ndarray | None = None) -> np.ndarray:
    """``[H, W]`` bool: everything but the backdrop.

    The backdrop is the region, connected to the photo's edge, of pixels within ``delta`` of
    their row's backdrop colour (:func:`backdrop_distance`, or ``distance`` when the caller has
    it). Pixels it does not reach are the person, so a white lace top on a light backdrop keeps
    its inside whole.
    """
    near = (backdrop_distance(rgb, border) if distance is None else distance) <= delta
    _, comp = cv2.connectedComponents(near.astype(np.uint8), connectivity=4)
    edge = np.unique(np.concatenate([comp[0], comp[-1], comp[:, 0], comp[:, -1]]))
    edge = edge[edge > 0]  # 0 is "not backdrop-like"
    return ~np.isin(comp, edge) | (comp == 0)


def region_masks(rgb: np.ndarray, pose: Any, o: Any) -> dict[str, np.ndarray]:
    """Per region of :data:`REGIONS`, ``[H, W]`` bool: the outfit's pixels in it.

    ``pose``: a :class:`generators.pairs.pose.Pose` of the photo, or None (no person found:
    every region is the whole foreground, nothing removed).
    """
    from generators.pairs.pose import (
        LEFT_ANKLE,
        LEFT_EYE,
        LEFT_HIP,
        LEFT_SHOULDER,
        NOSE,
        RIGHT_ANKLE,
        RIGHT_EYE,
        RIGHT_HIP,
        RIGHT_SHOULDER,
    )

    distance = backdrop_distance(rgb, o.border)
    person = person_mask(rgb, o.border, o.background_delta, distance)
    if pose is None:
        return dict.fromkeys(REGIONS, person)
    lm = pose.landmarks
    shoulder_y = float(lm[[LEFT_SHOULDER, RIGHT_SHOULDER], 1].mean())
    hip_y = float(lm[[LEFT_HIP, RIGHT_HIP], 1].mean())
    ankle_y = float(lm[[LEFT_ANKLE, RIGHT_ANKLE], 1].mean())
    torso = max(1.0, hip_y - shoulder_y)
    eyes = float(np.linalg.norm(lm[LEFT_EYE, :2] - lm[RIGHT_EYE, :2]))
    r = max(2, int(round(0.4 * eyes)))
    cx, cy = int(round(lm[NOSE, 0])), int(round(lm[NOSE, 1] + 0.3 * eyes))
    patch = rgb[max(0, cy - r):cy + r, max(0, cx - r):cx + r].reshape(-1, 3)
    keep = person
    if len(patch):
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
        lit = np.median(patch, axis=0)
        # the lit skin and its shade (the edge of an arm, a fold): both are skin
        tones = np.stack([lit, lit * o.skin_shade]).clip(0, 255).astype(np.uint8)[None]
        for skin in cv2.cvtColor(tones, cv2.COLOR_RGB2LAB)[0].astype(np.float32):
            keep = keep & (np.linalg.norm(lab - skin, axis=-1) >= o.skin_delta)
    rows = np.arange(rgb.shape[0])[:, None]
    keep = keep & (rows >= shoulder_y - o.head_margin * torso) & (rows <= ankle_y)
    # below the hips, backdrop enclosed by the legs and a hem is backdrop, not the person
    keep = keep & ~((distance <= o.background_delta) & (rows > hip_y))
    keep = _solid(keep, o.min_part)
    return {"upper": keep & (rows <= hip_y + o.waist_margin * torso),
            "lower": keep & (rows >= hip_y - o.waist_margin * torso), "full": keep}


def _solid(mask: np.ndarray, min_part: float) -> np.ndarray:
    """``mask`` without lines and specks: an opening takes off what is at most 4 px thin (the
    blended rim of an arm against the backdrop), then parts below ``min_part`` of the largest go."""
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    n, comp, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 2:
        return m.astype(bool)
    area = stats[1:, cv2.CC_STAT_AREA]
    big = 1 + np.nonzero(area >= min_part * area.max())[0]
    return np.isin(comp, big)


def frame_on_white(rgb: np.ndarray, mask: np.ndarray, size: int, frame: float) -> np.ndarray:
    """``mask``'s pixels of ``rgb`` on white, centred in a ``size`` px square whose side is
    ``frame`` times their bounding box's longer side (an empty mask: a white square)."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return np.full((size, size, 3), 255, np.uint8)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = np.where(mask[y0:y1, x0:x1, None], rgb[y0:y1, x0:x1], 255).astype(np.uint8)
    side = max(1, int(round(max(y1 - y0, x1 - x0) * frame)))
    canvas = np.full((side, side, 3), 255, np.uint8)
    oy, ox = (side - (y1 - y0)) // 2, (side - (x1 - x0)) // 2
    canvas[oy:oy + y1 - y0, ox:ox + x1 - x0] = crop
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)


def box_of(mask: np.ndarray) -> np.ndarray:
    """``[4]`` float: ``(top, bottom, left, right)`` of ``mask``'s pixels as fractions of its
    height and width (an empty mask: the middle third)."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return np.array([1 / 3, 2 / 3, 1 / 3, 2 / 3], np.float32)
    h, w = mask.shape
    return np.array([ys.min() / h, (ys.max() + 1) / h, xs.min() / w, (xs.max() + 1) / w], np.float32)


def cutouts(rgb: np.ndarray, pose_of: Callable[[np.ndarray], Any], o: Any, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``([len(REGIONS), size, size, 3] uint8, [len(REGIONS), 4])``: each region of a worn photo
    framed on white, and where it was in the photo (:func:`box_of`)."""
    rgb = strip_padding(np.ascontiguousarray(rgb))
    masks = region_masks(rgb, pose_of(rgb), o)
    return (np.stack([frame_on_white(rgb, masks[r], size, o.frame) for r in REGIONS]),
            np.stack([box_of(masks[r]) for r in REGIONS]))


def garment_alpha(product: np.ndarray, o: Any) -> np.ndarray:
    """``[H, W]`` float in [0, 1]: the garment of a product shot, opaque inside its outline.

    The outline is :func:`person_mask` of the shot (the white backdrop read from its borders,
    so white dots on the garment stay garment); one pixel of the anti-aliased rim, half white,
    is taken off and the edge softened, so the pasted garment has no white halo."""
    m = person_mask(product, o.border, o.background_delta).astype(np.float32)
    return cv2.GaussianBlur(cv2.erode(m, np.ones((3, 3), np.uint8)), (3, 3), 0)


def silhouette_key(product: np.ndarray, o: Any, size: int = 32) -> np.ndarray:
    """``[size * size]``: a product shot's garment mask at ``size`` px, what the dresser places by
    (a skirt and a top of one print look alike in features, not in outline)."""
    m = person_mask(np.ascontiguousarray(product), o.border, o.background_delta).astype(np.float32)
    return cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA).reshape(-1)


def dress(product: np.ndarray, mannequin: np.ndarray, box: np.ndarray, o: Any, zoom: float = 0.0) -> np.ndarray:
    """``product``'s garment (HWC uint8 on white) pasted onto ``mannequin`` (HWC uint8) inside
    ``box`` (:func:`box_of` fractions): scaled to fit it, centred, opaque inside its outline
    (:func:`garment_alpha`). The garment's own pixels are kept, only resampled. ``zoom`` > 0
    then frames the result on the box (a square ``zoom`` times its longer side, at the
    mannequin's size), like a shop's close-up of the garment worn."""
    alpha = garment_alpha(product, o)
    ys, xs = np.nonzero(alpha > 0.5)
    if not len(ys):
        return mannequin.copy()
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    garment, alpha = product[y0:y1, x0:x1], alpha[y0:y1, x0:x1]
    h, w = mannequin.shape[:2]
    top, bottom, left, right = (np.asarray(box, np.float64) * [h, h, w, w]).round().astype(int)
    bh, bw = max(2, bottom - top), max(2, right - left)
    scale = min(bh / garment.shape[0], bw / garment.shape[1])
    gh, gw = max(1, round(garment.shape[0] * scale)), max(1, round(garment.shape[1] * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    garment = cv2.resize(garment, (gw, gh), interpolation=interp).astype(np.float32)
    alpha = cv2.resize(alpha, (gw, gh), interpolation=interp).clip(0, 1)[..., None]
    oy = int(np.clip(top + (bh - gh) // 2, 0, max(0, h - gh)))
    ox = int(np.clip(left + (bw - gw) // 2, 0, max(0, w - gw)))
    gh, gw = min(gh, h - oy), min(gw, w - ox)
    out = mannequin.astype(np.float32)
    patch = out[oy:oy + gh, ox:ox + gw]
    out[oy:oy + gh, ox:ox + gw] = alpha[:gh, :gw] * garment[:gh, :gw] + (1 - alpha[:gh, :gw]) * patch
    out = out.round().clip(0, 255).astype(np.uint8)
    if zoom <= 0:
        return out
    cy, cx, side = (top + bottom) / 2, (left + right) / 2, max(bh, bw) * zoom
    t, b = int(max(0, cy - side / 2)), int(min(h, cy + side / 2))
    lft, rgt = int(max(0, cx - side / 2)), int(min(w, cx + side / 2))
    return cv2.resize(out[t:b, lft:rgt], (w, h), interpolation=cv2.INTER_CUBIC)


def _uint8_images(x: torch.Tensor) -> list[np.ndarray]:
    """``[B, 3, H, W]`` in [-1, 1] -> HWC uint8 arrays."""
    return list(float_to_uint8(x).cpu().permute(0, 2, 3, 1).numpy())


class _Poses:
    """The pose estimator, made on first use (it loads three TFLite models; not thread-safe)."""

    def __init__(self, model_dir: str) -> None:
        self.model_dir = model_dir
        self.estimator = None

    def __call__(self, rgb: np.ndarray) -> Any:
        if self.estimator is None:
            from generators.pairs.pose import PoseEstimator

            path = Path(self.model_dir)
            if not path.is_absolute() and not path.is_dir():  # a server started outside the checkout
                path = Path(__file__).resolve().parents[2] / path
            self.estimator = PoseEstimator(path)
        return self.estimator.estimate(rgb)


# --------------------------------------------------------------------------------------------
# the learned part: which region is the product
# --------------------------------------------------------------------------------------------
class RegionPicker(nn.Module):
    """``score[b, r] = w . f[b, r] + c[r]`` over the frozen features of each region's cut-out."""

    def __init__(self, dim: int, regions: int = len(REGIONS)) -> None:
        super().__init__()
        self.w = nn.Linear(dim, 1, bias=False)
        self.c = nn.Parameter(torch.zeros(regions))
        nn.init.zeros_(self.w.weight)  # before training: the region prior alone

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.w(feats).squeeze(-1) + self.c


def nearest_region(crop_feats: torch.Tensor, product_feats: torch.Tensor) -> torch.Tensor:
    """``[N]`` index of the cut-out whose features are nearest (cosine) the true product photo's."""
    return (F.normalize(crop_feats, dim=-1) * F.normalize(product_feats, dim=-1)[:, None]).sum(-1).argmax(1)


class Dresser(nn.Module):
    """Product -> model: where on a person a product photo's garment goes, and the person.

    Fitted in one pass over the training pairs, nothing by gradient: per pair, the product
    photo's outline (``keys``, :func:`silhouette_key`), which region of the worn photo is the
    product (``regions``, the label the picker learns) and that region's box in the worn photo
    (``boxes``); per region, the *mannequin*: the per-pixel median of the worn photos of that
    region, a person in the catalog's framing, backdrop and light whom no single product
    owns (a real model's photo would bring its other garments into the search). A query
    product is placed like its ``k`` nearest training products by outline (their majority
    region and the median of their boxes), pasted on that region's mannequin and framed on
    the garment by :func:`dress`.
    """

    def __init__(self, dim: int, pairs: int, size: int, regions: int = len(REGIONS)) -> None:
        super().__init__()
        self.register_buffer("keys", torch.zeros(pairs, dim, dtype=torch.float16))
        self.register_buffer("regions", torch.zeros(pairs, dtype=torch.long))
        self.register_buffer("boxes", torch.zeros(pairs, 4))
        self.register_buffer("mannequins", torch.full((regions, 3, size, size), 255, dtype=torch.uint8))

    @torch.no_grad()
    def fit(self, keys: torch.Tensor, regions: torch.Tensor, boxes: torch.Tensor, photos: torch.Tensor) -> None:
        """``keys``: each pair's :func:`silhouette_key`, ``[N, D]``; ``photos``: the worn photos,
        uint8 ``[N, 3, H, W]``. A region no pair has keeps a white mannequin."""
        self.keys.copy_(F.normalize(keys.float(), dim=1).half())
        self.regions.copy_(regions)
        self.boxes.copy_(boxes)
        size = self.mannequins.shape[-2:]
        for r in range(len(self.mannequins)):
            of_r = photos[regions == r]
            if len(of_r):
                med = of_r.float().median(dim=0).values[None]
                self.mannequins[r] = F.interpolate(med, size=size, mode="bilinear", align_corners=False,
                                                   antialias=True)[0].round().clamp(0, 255).to(torch.uint8)

    @torch.no_grad()
    def place(self, keys: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(region [B], box [B, 4])`` for product photos with these :func:`silhouette_key` s."""
        sim = F.normalize(keys.float(), dim=1) @ self.keys.float().T
        near = sim.topk(min(k, sim.size(1)), dim=1).indices  # [B, k]
        region = self.regions[near].mode(dim=1).values
        boxes = torch.stack([self.boxes[near[b][self.regions[near[b]] == region[b]]].median(dim=0).values
                             for b in range(len(near))])
        return region, boxes

    def dress(self, products: torch.Tensor, o: Any) -> torch.Tensor:
        """``[B, 3, S, S]`` in [-1, 1]: each product photo (``[B, 3, H, W]`` in [-1, 1]) worn
        (``o``: the cutout options: ``dress_k``, ``dress_zoom`` and the backdrop's)."""
        rgb = _uint8_images(products)
        keys = torch.from_numpy(np.stack([silhouette_key(p, o) for p in rgb]))
        region, boxes = self.place(keys.to(self.keys.device), o.dress_k)
        out = [dress(p, self.mannequins[r].permute(1, 2, 0).cpu().numpy(), b.cpu().numpy(), o, o.dress_zoom)
               for p, r, b in zip(rgb, region.tolist(), boxes, strict=True)]
        return uint8_to_float(torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)).to(products.device)


class _Cutter:
    """Cut-outs and their frozen features, shared by training and inference."""

    def __init__(self, cfg: Config, device: torch.device) -> None:
        self.o = cfg.cutout
        self.size = cfg.train.image_size
        self.device = device
        self.features = FrozenFeatures(self.o.feature_size).to(device).eval()
        self.poses = _Poses(self.o.pose_models)

    def crops(self, photos: Sequence[np.ndarray]) -> torch.Tensor:
        """``[B, R, 3, S, S]`` in [-1, 1]."""
        return self.crops_and_boxes(photos)[0]

    def crops_and_boxes(self, photos: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B, R, 3, S, S] in [-1, 1], [B, R, 4])``: the cut-outs and where they were."""
        made = [cutouts(p, self.poses, self.o, self.size) for p in photos]
        crops = torch.from_numpy(np.stack([c for c, _ in made]))
        return uint8_to_float(crops.movedim(-1, -3)), torch.from_numpy(np.stack([b for _, b in made]))

    @torch.no_grad()
    def embed(self, x: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """Pooled frozen features of ``[..., 3, S, S]`` images in [-1, 1]."""
        flat = x.reshape(-1, *x.shape[-3:]).float()
        if flat.shape[-1] != self.o.feature_size:
            flat = F.interpolate(flat, size=(self.o.feature_size,) * 2, mode="bilinear", align_corners=False,
                                 antialias=True)
        out = [self.features(flat[i:i + batch_size].to(self.device), maps=False)[1].float().cpu()
               for i in range(0, len(flat), batch_size)]
        return torch.cat(out).reshape(*x.shape[:-3], -1)


class CutoutSolver(Solver):
    """Fits the :class:`RegionPicker` on (product, model photo) pairs (``--pairs``)."""

    kind = "cutout"
    inference_nets = ("P", "M")

    def __init__(self, cfg: Config, schema: Schema, device: torch.device, meta: dict | None = None) -> None:
        super().__init__(cfg, schema, device, meta)
        self.cutter = _Cutter(cfg, device)
        self.P = RegionPicker(self.cutter.features.pooled_dim).to(device)
        self.M = Dresser(1, 0, cfg.cutout.mannequin_size).to(device)  # sized by prepare
        self.nets = {"P": self.P, "M": self.M}
        self._add_optim("P", self.P.parameters(), cfg.cutout.lr, (0.9, 0.999))
        self.feats: torch.Tensor | None = None  # [N, R, D] cut-out features of every training pair
        self.labels: torch.Tensor | None = None  # [N] the region nearest the product photo

    def prepare(self, images: dict[str, torch.Tensor], labels: torch.Tensor | None = None,
                progress: bool = False) -> None:
        """Cut out every training model photo (``images["b"]``), label the region nearest its
        product photo (``images["a"]``) in the frozen features, and fit the :class:`Dresser`
        (product -> model) on the same pairs."""
        from tqdm import tqdm

        products, photos = images["a"], images["b"]
        feats, prods, boxes = [], [], []
        for i in tqdm(range(0, len(photos), 16), desc="cut-outs", unit="batch", disable=not progress, leave=False):
            rgb = [p.permute(1, 2, 0).numpy() for p in photos[i:i + 16]]
            crops, where = self.cutter.crops_and_boxes(rgb)
            feats.append(self.cutter.embed(crops))
            boxes.append(where)
            prods.append(self.cutter.embed(uint8_to_float(products[i:i + 16])))
        self.feats = torch.cat(feats)
        prods_t = torch.cat(prods)
        self.labels = nearest_region(self.feats, prods_t)
        where = torch.cat(boxes)[torch.arange(len(self.labels)), self.labels]
        keys = torch.from_numpy(np.stack([silhouette_key(p.permute(1, 2, 0).numpy(), self.cfg.cutout) for p in products]))
        self.M = Dresser(keys.size(1), len(self.labels), self.cfg.cutout.mannequin_size).to(self.device)
        self.M.fit(keys, self.labels, where, photos)
        self.nets["M"] = self.M

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        """One full-batch step of the picker's cross-entropy on the cached cut-out features (the
        image batch is not needed: every pair's features are cached)."""
        if self.feats is None or self.labels is None:
            raise RuntimeError("CutoutSolver.prepare must run before training")
        logits = self.P(self.feats.to(self.device))
        y = self.labels.to(self.device)
        loss = F.cross_entropy(logits, y) + self.cfg.cutout.weight_decay * self.P.w.weight.pow(2).sum()
        self.optims["P"].zero_grad(set_to_none=True)
        loss.backward()
        self.optims["P"].step()
        with torch.no_grad():
            acc = float((logits.argmax(1) == y).float().mean())
        shares = {f"share/{r}": float((self.labels == j).float().mean()) for j, r in enumerate(REGIONS)}
        return {"P/loss": loss.item(), "P/acc": acc, **shares}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        m = state["nets"].get("M")
        if m is None:  # a run from before product -> model: it keeps translating to product only
            self.nets.pop("M", None)
        else:  # sized like the saved one (prepare sized it by the training pairs)
            self.M = Dresser(m["keys"].shape[1], len(m["regions"]), m["mannequins"].shape[-1]).to(self.device)
            self.nets["M"] = self.M
        super().load_state_dict(state)

    def extra_state(self) -> dict[str, Any]:
        # the cached features make resume exact without cutting every photo out again
        return {"feats": self.feats, "labels": self.labels}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.feats, self.labels = state.get("feats"), state.get("labels")

    @torch.no_grad()
    def sample_grid(self, fixed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[str]]:
        """Model photo, its three cut-outs, the picked one, the true product photo, and that
        product photo dressed on the mannequin (product -> model)."""
        photos = _uint8_images(fixed["b"])
        crops = self.cutter.crops(photos)  # [B, R, 3, S, S]
        pick = self.P(self.cutter.embed(crops).to(self.device)).argmax(1).cpu()
        size = crops.shape[-1]
        up = lambda t: F.interpolate(t.float(), size=(size, size), mode="bilinear", align_corners=False)  # noqa: E731
        worn = self.M.dress(fixed["a"], self.cfg.cutout)
        cols = [up(fixed["b"]).cpu(), *crops.unbind(1), crops[torch.arange(len(crops)), pick], up(fixed["a"]).cpu(),
                up(worn).cpu()]
        return torch.stack(cols, dim=1), ["model photo", *REGIONS, "picked", "product", "dressed"]


class CutoutInference:
    """What :class:`generators.inference.Editor` calls for a cutout checkpoint: model -> product."""

    full_resolution = True  # the pose and the cut-out work on the photo as given
    square_output = True  # a product shot, not the worn photo's frame

    def __init__(self, ckpt: dict, cfg: Config, schema: Schema, device: torch.device) -> None:
        self.cfg = cfg
        self.cutter = _Cutter(cfg, device)
        self.P = RegionPicker(self.cutter.features.pooled_dim)
        self.P.load_state_dict(ckpt["nets"]["P"])
        self.P.to(device).eval().requires_grad_(False)
        self.M: Dresser | None = None
        m = ckpt["nets"].get("M")  # checkpoints before product -> model have none
        if m is not None:
            self.M = Dresser(m["keys"].shape[1], len(m["regions"]), m["mannequins"].shape[-1])
            self.M.load_state_dict(m)
            self.M.to(device).eval()

    def capabilities(self) -> dict | None:
        return None

    def translations(self) -> dict[str, str]:
        return {"to_product": "P", **({"to_model": "M"} if self.M is not None else {})}

    def translate(self, net: str, x: torch.Tensor) -> torch.Tensor:
        if net == "M":
            assert self.M is not None
            return self.M.dress(x, self.cfg.cutout)
        crops = self.cutter.crops(_uint8_images(x))  # [B, R, 3, S, S]
        pick = self.P(self.cutter.embed(crops).to(x.device)).argmax(1).cpu()
        return crops[torch.arange(len(crops)), pick].to(x.device)
