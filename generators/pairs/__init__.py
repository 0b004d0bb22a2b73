"""Pick, for each product, the front-facing full-body model photo: the pairs pix2pix trains on.

Two methods:

``kmeans`` — the thesis's method, reproduced: grayscale → 5×5 Gaussian blur → threshold 200
→ invert → fill the outer contours → crop the centre 116 px (of 256) width → 64×64 → K-Means
(k=3) over all model photos → per product, the photo nearest to the "full-body" cluster
centre. Which cluster is full-body is decided from the cluster centres alone (see
:func:`full_body_cluster`): a standing person seen whole is a figure that reaches from near
the top to near the bottom of the photo and is narrow compared with a close-up (which fills
the centre crop) or a detail shot (which fills everything). The masks cannot tell a front
view from a back view, which is the method's known ceiling.

``pose`` — BlazePose landmarks (:mod:`generators.pairs.pose`) score each photo as "front, full
body": a person is present (landmark model's pose flag times a skeleton plausibility check),
the feet (ankles, heels, toes) are visible and inside the photo, the nose is inside the
photo, and a face detector (BlazeFace) finds a face on the head region. The last one is what
tells front from back: the landmark model places a face and a front-view left/right order on
the back of a head too (measured on the demo catalog; see docs/generators_eval.md). Each photo
also gets a label (``front_full``, ``back_full``, ``upper_close``, ``detail``) for diagnostics.

Output: a pairs file (``.csv`` or ``.jsonl``, by extension; format in docs/generators.md):
``id, product_path, model_path, method, score`` with paths relative to the catalog folder,
one line per product that has a usable pick, written atomically.

``--eval`` scores the picks against the demo renderer's ``ground_truth.json``
(``{model image path: front_full|back_full|upper_close|detail}``).

Pose features are cached per photo in a JSONL file next to the output, appended and
flushed as they are computed, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from catalog import (
    Catalog,
    add_catalog_options,
    atomic_write_text,
    load_catalog,
    open_catalog,
    options_from_args,
)

METHODS = ("kmeans", "pose")
LABELS = ("front_full", "back_full", "upper_close", "detail")
GROUND_TRUTH_FILE = "ground_truth.json"
PAIRS_FIELDS = ("id", "product_path", "model_path", "method", "score")


# --------------------------------------------------------------------------------------------
# kmeans: the thesis method
# --------------------------------------------------------------------------------------------
@dataclass
class KMeansConfig:
    """The thesis's settings; ``crop_width`` is in pixels of a 256-px-wide photo."""

    blur: int = 5
    threshold: int = 200
    crop_width: int = 116
    size: int = 64
    k: int = 3
    seed: int = 0
    n_init: int = 10


def thesis_mask(gray: np.ndarray, cfg: KMeansConfig | None = None) -> np.ndarray:
    """Binary silhouette (size×size, float32 in {0, 1}) of one model photo, as the thesis made it.

    Photos of another width are handled by scaling the centre crop: ``crop_width`` of 256.
    """
    cfg = cfg or KMeansConfig()
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
    blur = cv2.GaussianBlur(gray, (cfg.blur, cfg.blur), 0)
    _, binary = cv2.threshold(blur, cfg.threshold, 255, cv2.THRESH_BINARY)
    inverted = cv2.bitwise_not(binary)
    contours, _ = cv2.findContours(inverted, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(inverted)
    cv2.drawContours(filled, contours, -1, 255, thickness=cv2.FILLED)
    w = filled.shape[1]
    cw = max(1, round(cfg.crop_width * w / 256))
    x0 = (w - cw) // 2
    crop = filled[:, x0 : x0 + cw]
    small = cv2.resize(crop, (cfg.size, cfg.size), interpolation=cv2.INTER_AREA)
    return (small >= 128).astype(np.float32)


def mask_shape_features(mask: np.ndarray) -> dict[str, float]:
    """Shape of a (soft) silhouette: coverage, vertical extent, top and bottom reach, width."""
    rows = mask.mean(axis=1)
    cols = mask.mean(axis=0)
    on_rows = np.nonzero(rows > 0.05)[0]
    on_cols = np.nonzero(cols > 0.05)[0]
    n = len(rows)
    if on_rows.size == 0:
        return {"coverage": 0.0, "extent": 0.0, "top": 1.0, "bottom": 0.0, "width": 0.0}
    return {
        "coverage": float(mask.mean()),
        "extent": float((on_rows[-1] - on_rows[0] + 1) / n),
        "top": float(on_rows[0] / n),
        "bottom": float((on_rows[-1] + 1) / n),
        "width": float(np.median(rows[rows > 0.05])) if on_cols.size else 0.0,
    }


def full_body_cluster(centres: np.ndarray) -> tuple[int, list[dict[str, float]]]:
    """Index of the cluster whose centre looks like a whole standing person.

    Scores each centre (an average silhouette) by vertical extent times narrowness: a full
    body spans the height (extent near 1) while occupying a small share of each row
    (typical row fill well below a close-up's or a detail's). Decided from the data, no
    cluster index is assumed.
    """
    side = int(round(np.sqrt(centres.shape[1])))
    feats = [mask_shape_features(c.reshape(side, side)) for c in centres]
    scores = [f["extent"] * (1.0 - f["width"]) for f in feats]
    for f, s in zip(feats, scores, strict=True):
        f["full_body_score"] = float(s)
    return int(np.argmax(scores)), feats


def kmeans_pick(
    model_paths: list[Path], groups: list[list[int]], cfg: KMeansConfig | None = None, progress: bool = True
) -> tuple[list[tuple[int, float] | None], dict]:
    """Thesis pick: per group (product), the photo index nearest to the full-body centre."""
    from sklearn.cluster import KMeans
    from tqdm import tqdm

    cfg = cfg or KMeansConfig()
    masks = np.zeros((len(model_paths), cfg.size * cfg.size), np.float32)
    for i, p in enumerate(tqdm(model_paths, desc="masks", unit="img", disable=not progress)):
        gray = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise ValueError(f"{p}: unreadable image")
        masks[i] = thesis_mask(gray, cfg).ravel()
    k = min(cfg.k, len(model_paths))
    km = KMeans(n_clusters=k, n_init=cfg.n_init, random_state=cfg.seed).fit(masks)
    full, feats = full_body_cluster(km.cluster_centers_)
    dist = np.linalg.norm(masks - km.cluster_centers_[full], axis=1)
    picks: list[tuple[int, float] | None] = []
    for members in groups:
        if not members:
            picks.append(None)
            continue
        best = min(members, key=lambda i: dist[i])
        picks.append((best, -float(dist[best])))
    info = {
        "full_body_cluster": full,
        "cluster_sizes": np.bincount(km.labels_, minlength=k).tolist(),
        "cluster_shapes": feats,
        "labels": km.labels_.tolist(),
    }
    return picks, info


# --------------------------------------------------------------------------------------------
# pose: BlazePose landmarks
# --------------------------------------------------------------------------------------------
@dataclass
class PoseRules:
    """Thresholds of the landmark rules (probabilities from the landmark model)."""

    min_presence: float = 0.5  # pose flag x skeleton plausibility: a person is in the photo
    min_feet: float = 0.3  # visibility (x inside the photo) from which feet count as shown
    min_front: float = 0.5  # frontness (face detector, damped by left/right order): a front view
    min_score: float = 0.25  # a product's best photo must reach this to be paired


def pose_features(pose, image_size: tuple[int, int]) -> dict[str, float]:
    """Per-photo numbers the rules use (all in [0, 1] except ``facing``, in [-1, 1]).

    ``person``: landmark model's pose flag times the skeleton's plausibility; ``face``: the
    face detector on the head region; ``feet``: the weaker foot's best visible point (ankle,
    heel or toe) inside the photo; ``head_in``: the nose inside the photo; ``facing``:
    shoulder and hip left/right order (+1 front, -1 back; kept for the report: the landmark
    model mostly answers "front" for back views too, so the rules do not rely on it);
    ``landmark_face``: the landmark model's own face visibility (same caveat).
    """
    from generators.pairs import pose as P

    if pose is None:
        return {"person": 0.0, "presence": 0.0, "face": 0.0, "feet": 0.0, "head_in": 0.0, "facing": 0.0,
                "landmark_face": 0.0, "height": 0.0}
    h = image_size[1]
    vis = pose.landmarks[:, 3]
    inside = pose.in_frame(list(range(P.NUM_LANDMARKS)), margin=0.0)
    seen = vis * inside
    left_foot = float(max(seen[P.LEFT_ANKLE], seen[P.LEFT_HEEL], seen[P.LEFT_FOOT]))
    right_foot = float(max(seen[P.RIGHT_ANKLE], seen[P.RIGHT_HEEL], seen[P.RIGHT_FOOT]))
    ls, rs = pose.landmarks[P.LEFT_SHOULDER, :2], pose.landmarks[P.RIGHT_SHOULDER, :2]
    lh, rh = pose.landmarks[P.LEFT_HIP, :2], pose.landmarks[P.RIGHT_HIP, :2]
    # Front view: the person's left side is on the image's right (x grows).
    span = float(np.linalg.norm(ls - rs) + np.linalg.norm(lh - rh)) + 1e-6
    facing = float(np.clip(((ls[0] - rs[0]) + (lh[0] - rh[0])) / span, -1.0, 1.0))
    ys = pose.landmarks[:, 1]
    return {
        "person": float(pose.presence * pose.plausibility()),
        "presence": float(pose.presence),
        "face": float(pose.extra.get("face_score", 0.0)),
        "feet": min(left_foot, right_foot),
        "head_in": float(inside[P.NOSE]),
        "facing": facing,
        "landmark_face": float(np.mean(np.sort(seen[[P.NOSE, P.LEFT_EYE, P.RIGHT_EYE]])[-2:])),
        "height": float((ys[list(P.FEET)].max() - ys[P.NOSE]) / h),
    }


def frontness(f: dict[str, float]) -> float:
    """Evidence of a front view: the face detector, damped when the body's left/right order
    says "back". The face detector is the strong cue (the landmark model outputs a face on
    the back of a head too); the shoulder/hip order is right on most back views once the
    crop is refined and halves the score there."""
    return f["face"] * (0.75 + 0.25 * f["facing"])


def pose_label(f: dict[str, float], rules: PoseRules | None = None) -> str:
    rules = rules or PoseRules()
    if f["person"] < rules.min_presence:
        return "detail"
    if f["feet"] < rules.min_feet or f["head_in"] < 0.5:
        return "upper_close"
    return "front_full" if frontness(f) >= rules.min_front else "back_full"


def front_full_score(f: dict[str, float], rules: PoseRules | None = None) -> float:
    """Soft "front, full body" score in [0, 1]: every condition must hold, so they multiply.

    Feet count fully from ``min_feet`` visibility on: what makes a photo full-body is that
    the feet are inside it at all (a close-up has them outside, visibility x in-frame = 0),
    not how sure the model is about a small foot.
    """
    rules = rules or PoseRules()
    feet = min(1.0, f["feet"] / rules.min_feet)
    return float(f["person"] * feet * f["head_in"] * frontness(f))


class FeatureCache:
    """Append-only JSONL of per-photo features keyed by path, size and mtime (resumable)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, dict] = {}
        if path is not None and path.is_file():
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut off by a kill
                    self.data[rec["key"]] = rec["features"]
        self._fh = None

    @staticmethod
    def key(p: Path) -> str:
        st = p.stat()
        return f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"

    def get(self, p: Path) -> dict | None:
        return self.data.get(self.key(p))

    def put(self, p: Path, features: dict) -> None:
        k = self.key(p)
        self.data[k] = features
        if self.path is None:
            return
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.is_file() and self.path.stat().st_size:
                with open(self.path, "rb+") as fh:  # drop a partial last line
                    data = fh.read()
                    if not data.endswith(b"\n"):
                        fh.truncate(data.rfind(b"\n") + 1)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open across put() calls
        self._fh.write(json.dumps({"key": k, "features": features}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def pose_photo_features(
    model_paths: list[Path],
    model_dir: str | Path = "models/pose",
    cache: FeatureCache | None = None,
    progress: bool = True,
    estimator_kwargs: dict | None = None,
) -> list[dict[str, float]]:
    from PIL import Image
    from tqdm import tqdm

    from generators.pairs.pose import PoseEstimator

    cache = cache or FeatureCache(None)
    est = None
    out = []
    for p in tqdm(model_paths, desc="pose", unit="img", disable=not progress):
        f = cache.get(p)
        if f is None:
            if est is None:
                est = PoseEstimator(model_dir, **(estimator_kwargs or {}))
            with Image.open(p) as im:
                rgb = np.asarray(im.convert("RGB"))
            f = pose_features(est.estimate(rgb), (rgb.shape[1], rgb.shape[0]))
            cache.put(p, f)
        out.append(f)
    cache.close()
    return out


def pose_pick(
    feats: list[dict[str, float]], groups: list[list[int]], rules: PoseRules | None = None
) -> list[tuple[int, float] | None]:
    rules = rules or PoseRules()
    scores = [front_full_score(f, rules) for f in feats]
    picks: list[tuple[int, float] | None] = []
    for members in groups:
        if not members:
            picks.append(None)
            continue
        best = max(members, key=lambda i: scores[i])
        picks.append((best, scores[best]) if scores[best] >= rules.min_score else None)
    return picks


# --------------------------------------------------------------------------------------------
# driver, output, evaluation
# --------------------------------------------------------------------------------------------
@dataclass
class PairsResult:
    method: str
    pairs: list[dict]  # rows of the pairs file
    photo_labels: dict[str, str]  # relative model path -> predicted label (pose only)
    info: dict
    seconds: float
    n_photos: int


def select_pairs(
    catalog_dir: str | Path | Catalog,
    method: str,
    model_dir: str | Path = "models/pose",
    cache_path: Path | None = None,
    kmeans: KMeansConfig | None = None,
    rules: PoseRules | None = None,
    progress: bool = True,
    limit: int | None = None,
) -> PairsResult:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    # a loaded catalog (the CLI loads it by the shared rule, catalog.open_catalog) or a folder
    cat = catalog_dir if isinstance(catalog_dir, Catalog) else load_catalog(catalog_dir, check_images=False)
    items = cat.items[:limit] if limit else cat.items
    rel_paths: list[str] = []
    groups: list[list[int]] = []
    for it in items:
        idx = []
        for rp in it.model_img_paths:
            idx.append(len(rel_paths))
            rel_paths.append(rp)
        groups.append(idx)
    if not rel_paths:
        raise ValueError(f"{cat.root}: no item has model photos (column model_img_paths is empty)")
    full_paths = [cat.root / rp for rp in rel_paths]
    t0 = time.perf_counter()
    labels: dict[str, str] = {}
    if method == "kmeans":
        picks, info = kmeans_pick(full_paths, groups, kmeans, progress)
        info.pop("labels")
    else:
        rules = rules or PoseRules()
        feats = pose_photo_features(full_paths, model_dir, FeatureCache(cache_path), progress)
        picks = pose_pick(feats, groups, rules)
        labels = {rp: pose_label(f, rules) for rp, f in zip(rel_paths, feats, strict=True)}
        info = {"rules": asdict(rules), "label_counts": dict(Counter(labels.values()))}
    seconds = time.perf_counter() - t0
    pairs = []
    for it, pick in zip(items, picks, strict=True):
        if pick is None:
            continue
        i, score = pick
        pairs.append({"id": it.id, "product_path": it.img_path, "model_path": rel_paths[i],
                      "method": method, "score": round(score, 6)})
    info["products"] = len(items)
    info["products_without_model_photos"] = sum(1 for g in groups if not g)
    info["products_without_pick"] = sum(1 for g, p in zip(groups, picks, strict=True) if g and p is None)
    return PairsResult(method, pairs, labels, info, seconds, len(rel_paths))


def write_pairs(path: str | Path, pairs: list[dict]) -> Path:
    """Write a pairs file atomically; ``.jsonl`` or ``.csv`` by extension."""
    path = Path(path)
    if path.suffix == ".jsonl":
        text = "".join(json.dumps({k: r[k] for k in PAIRS_FIELDS}, ensure_ascii=False) + "\n" for r in pairs)
    elif path.suffix == ".csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(PAIRS_FIELDS), lineterminator="\n")
        w.writeheader()
        w.writerows({k: r[k] for k in PAIRS_FIELDS} for r in pairs)
        text = buf.getvalue()
    else:
        raise ValueError(f"pairs file {path}: extension must be .csv or .jsonl, got {path.suffix!r}")
    atomic_write_text(path, text)
    return path


def read_pairs(path: str | Path) -> list[dict]:
    path = Path(path)
    rows: list[dict] = []
    if path.suffix == ".jsonl":
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {n}: not JSON: {exc}") from exc
    else:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    for n, r in enumerate(rows, 1):
        missing = [k for k in ("id", "product_path", "model_path") if not r.get(k)]
        if missing:
            raise ValueError(f"{path}: row {n}: missing {', '.join(missing)}")
    return rows


def load_ground_truth(catalog_dir: str | Path) -> dict[str, str]:
    path = Path(catalog_dir) / GROUND_TRUTH_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no ground truth (only demo catalogs rendered by crawler.demo have one)")
    gt = json.loads(path.read_text(encoding="utf-8"))
    bad = {k: v for k, v in gt.items() if v not in LABELS}
    if bad:
        k, v = next(iter(bad.items()))
        raise ValueError(f"{path}: {k!r} has label {v!r}; allowed: {', '.join(LABELS)}")
    return gt


def evaluate_pairs(result: PairsResult, catalog_dir: str | Path) -> dict:
    """Accuracy of picking a front full-body photo, against ``ground_truth.json``.

    ``accuracy``: over products that have at least one true front full-body photo, the share
    whose pick is one (no pick counts as wrong). ``abstain_ok``: over products without any,
    the share left out of the pairs file (a pick there is a bad training pair).
    """
    gt = load_ground_truth(catalog_dir)
    cat = load_catalog(catalog_dir, check_images=False)
    picked = {r["id"]: r["model_path"] for r in result.pairs}
    by_id = cat.by_id()
    n_pos = n_ok = n_neg = n_abstain = 0
    picked_labels: Counter = Counter()
    errors = []
    for iid in ([it.id for it in cat.items][: result.info["products"]]):
        photos = by_id[iid].model_img_paths
        if not photos:
            continue
        has_front = any(gt.get(p) == "front_full" for p in photos)
        pick = picked.get(iid)
        if pick is not None:
            picked_labels[gt.get(pick, "unknown")] += 1
        if has_front:
            n_pos += 1
            if pick is not None and gt.get(pick) == "front_full":
                n_ok += 1
            elif len(errors) < 20:
                errors.append({"id": iid, "picked": pick, "picked_truth": gt.get(pick) if pick else None})
        else:
            n_neg += 1
            n_abstain += pick is None
    report = {
        "method": result.method,
        "products_with_front_full": n_pos,
        "correct": n_ok,
        "accuracy": n_ok / n_pos if n_pos else None,
        "products_without_front_full": n_neg,
        "abstain_ok": n_abstain / n_neg if n_neg else None,
        "picked_truth_counts": dict(picked_labels),
        "photos": result.n_photos,
        "seconds": round(result.seconds, 3),
        "ms_per_photo": round(1000 * result.seconds / max(result.n_photos, 1), 2),
        "first_errors": errors,
    }
    if result.photo_labels:
        conf: dict[str, Counter] = {t: Counter() for t in LABELS}
        for p, lab in result.photo_labels.items():
            if p in gt:
                conf[gt[p]][lab] += 1
        total = sum(sum(c.values()) for c in conf.values())
        report["photo_label_accuracy"] = (sum(conf[t][t] for t in LABELS) / total) if total else None
        report["photo_confusion"] = {t: dict(c) for t, c in conf.items()}
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m generators.pairs", description="Pick each product's front full-body model photo."
    )
    ap.add_argument("--catalog", type=Path, required=True, help="catalog folder with model_img_paths")
    ap.add_argument("--method", choices=METHODS, default="pose")
    ap.add_argument("--out", type=Path, required=True, help="pairs file to write (.csv or .jsonl)")
    ap.add_argument("--eval", action="store_true", help="score the picks against ground_truth.json")
    ap.add_argument("--report", type=Path, default=None, help="write the --eval JSON here (default: OUT.eval.json)")
    ap.add_argument("--pose-models", type=Path, default=Path("models/pose"))
    ap.add_argument("--cache", type=Path, default=None, help="pose feature cache (default: OUT.pose-cache.jsonl)")
    ap.add_argument("--min-score", type=float, default=PoseRules.min_score, help="pose: leave products below out")
    ap.add_argument("--seed", type=int, default=0, help="kmeans: random state")
    ap.add_argument("--limit", type=int, default=None, help="only the first N products (quick looks)")
    ap.add_argument("--quiet", action="store_true")
    add_catalog_options(ap)
    args = ap.parse_args(argv)
    if args.out.suffix not in (".csv", ".jsonl"):
        ap.error(f"--out: extension must be .csv or .jsonl, got {args.out.name!r}")
    cache = args.cache or args.out.with_name(args.out.name + ".pose-cache.jsonl")
    try:
        cat = open_catalog(args.catalog, options_from_args(args), check_images=False)
        res = select_pairs(
            cat, args.method, args.pose_models, cache if args.method == "pose" else None,
            KMeansConfig(seed=args.seed), PoseRules(min_score=args.min_score), not args.quiet, args.limit,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_pairs(args.out, res.pairs)
    print(f"{len(res.pairs)} pairs from {res.info['products']} products ({res.n_photos} photos, "
          f"{res.seconds:.1f} s) -> {args.out}; catalog {cat.counts_line()}")
    if args.eval:
        try:
            report = evaluate_pairs(res, args.catalog)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        report["info"] = res.info
        rpath = args.report or args.out.with_name(args.out.name + ".eval.json")
        atomic_write_text(rpath, json.dumps(report, indent=2) + "\n")
        short = {k: report[k] for k in ("method", "accuracy", "correct", "products_with_front_full",
                                        "abstain_ok", "ms_per_photo")}
        print(json.dumps(short))
        print(f"report -> {rpath}")
    return 0


