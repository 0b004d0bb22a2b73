"""BlazePose (MediaPipe's pose detector + full landmark model) on single photos, without mediapipe.

The two ``.tflite`` models come from :mod:`generators.pairs.pose_models` (an install step) and run
with ``ai-edge-litert``'s interpreter. This module re-implements the parts of MediaPipe's
pose graph that sit around the models, for still images:

1. **Detector** (``pose_detection.tflite``, 224×224, 2254 SSD anchors): letterbox the image,
   decode boxes and 4 keypoints per anchor, weighted non-maximum suppression.
2. **Region of interest**: MediaPipe aligns the crop on keypoint 0 (mid-hip) and keypoint 1
   (a point whose distance to the hip is the radius of a circle around the whole body):
   centre = hip, side = 2·radius·1.25, rotated so that hip→head points up.
3. **Landmarks** (``pose_landmark_full.tflite``, 256×256): 39 landmarks (33 body points plus
   6 auxiliary ones) with visibility and presence logits, and a pose-presence flag. They
   are projected back through the rotated crop into image pixels.
4. **Refinement** (optional, on by default): MediaPipe's tracking re-crops the next frame from
   the auxiliary landmarks 33/34 (the same hip-centre/body-radius pair); for a still photo
   we do this once on the same image, which centres the body better than the detector's
   coarse keypoints did.

5. **Face check**: BlazeFace (short range, 128×128, 896 anchors) on a square around the head
   landmarks. The landmark model was trained to place a face even on the back of a head
   (its face visibility stays near 1 on back views), so a face detector on the head region
   is what tells a front view from a back view.

When the detector finds nobody (it was trained on people in the wild, and a product photo
often shows a torso only), :meth:`PoseEstimator.estimate` falls back to an upright square
ROI around the photo's foreground (non-white pixels) if ``mask_fallback`` is on; this is
exactly what a shop photo on white allows, and the landmark model's own presence flag then
says whether a person is there.

Landmark indices follow MediaPipe (0 nose, 2/5 eyes, 7/8 ears, 11/12 shoulders, 23/24 hips,
27/28 ankles, 29-32 heels and feet; odd = the person's left).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from generators.pairs.pose_models import DEFAULT_DIR, model_paths

DETECTOR_SIZE = 224
LANDMARK_SIZE = 256
FACE_SIZE = 128
NUM_LANDMARKS = 33  # body landmarks; the model emits 39 (6 auxiliary ROI points)

NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR = 0, 2, 5, 7, 8
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP = 11, 12, 23, 24
LEFT_KNEE, RIGHT_KNEE, LEFT_ANKLE, RIGHT_ANKLE = 25, 26, 27, 28
LEFT_HEEL, RIGHT_HEEL, LEFT_FOOT, RIGHT_FOOT = 29, 30, 31, 32
FACE = (NOSE, 1, LEFT_EYE, 3, 4, RIGHT_EYE, 6, LEFT_EAR, RIGHT_EAR, 9, 10)
FEET = (LEFT_ANKLE, RIGHT_ANKLE, LEFT_HEEL, RIGHT_HEEL, LEFT_FOOT, RIGHT_FOOT)

LANDMARK_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, np.float64), -80.0, 80.0)))


def ssd_anchors(
    input_size: int = DETECTOR_SIZE, strides: tuple[int, ...] = (8, 16, 32, 32, 32), offset: float = 0.5
) -> np.ndarray:
    """Anchor centres (N, 2) of BlazePose's detector, normalised to the 224 input.

    MediaPipe's SSD anchor options for pose detection: fixed anchor size, aspect ratio 1
    plus one interpolated scale per layer (2 anchors per cell per layer), and consecutive
    layers with the same stride share one grid. 28²·2 + 14²·2 + 7²·6 = 2254.
    """
    out = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        per_cell = 2 * (j - i)
        fm = math.ceil(input_size / strides[i])
        ys, xs = np.meshgrid(np.arange(fm), np.arange(fm), indexing="ij")
        centres = np.stack([(xs.ravel() + offset) / fm, (ys.ravel() + offset) / fm], axis=1)
        out.append(np.repeat(centres, per_cell, axis=0))
        i = j
    return np.concatenate(out).astype(np.float32)


@dataclass
class Detection:
    """A detector hit in image pixels: box (x0, y0, x1, y1), 4 keypoints (4, 2), score."""

    box: np.ndarray
    keypoints: np.ndarray
    score: float


@dataclass
class Roi:
    """A rotated square crop in image pixels (centre, side, rotation in radians)."""

    cx: float
    cy: float
    size: float
    rotation: float = 0.0
    source: str = "detector"  # detector | refined | mask

    def to_image(self, uv: np.ndarray) -> np.ndarray:
        """Map normalised crop coordinates (N, 2) in [0, 1] to image pixels."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        d = (uv - 0.5) * self.size
        x = c * d[:, 0] - s * d[:, 1] + self.cx
        y = s * d[:, 0] + c * d[:, 1] + self.cy
        return np.stack([x, y], axis=1)

    def crop(self, rgb: np.ndarray, out_size: int = LANDMARK_SIZE) -> np.ndarray:
        """The crop as an ``out_size`` square; outside the photo is filled by replication.

        Replicating the border (white on a shop photo) rather than padding black keeps the
        crop looking like the photo it came from.
        """
        corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
        src = self.to_image(corners).astype(np.float32)
        dst = corners * out_size
        m = cv2.getAffineTransform(src, dst.astype(np.float32))
        return cv2.warpAffine(rgb, m, (out_size, out_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@dataclass
class Pose:
    """Landmarks of one person in image pixels.

    ``landmarks`` is (33, 5): x, y (pixels), z (crop-relative depth), visibility and
    presence (both probabilities). ``presence`` is the landmark model's pose flag.
    """

    landmarks: np.ndarray
    presence: float
    roi: Roi
    image_size: tuple[int, int]  # (width, height)
    detection_score: float | None = None
    extra: dict = field(default_factory=dict)

    def xy(self, idx: int | tuple[int, ...] | list[int]) -> np.ndarray:
        return self.landmarks[idx, :2]

    def visibility(self, idx: int | tuple[int, ...] | list[int]) -> np.ndarray:
        return self.landmarks[idx, 3]

    def in_frame(self, idx: int | tuple[int, ...] | list[int], margin: float = 0.0) -> np.ndarray:
        """Whether the landmarks lie inside the photo (a model guesses points beyond it)."""
        w, h = self.image_size
        xy = np.atleast_2d(self.landmarks[idx, :2])
        return (xy[:, 0] >= -margin * w) & (xy[:, 0] <= (1 + margin) * w) & (xy[:, 1] >= -margin * h) & (
            xy[:, 1] <= (1 + margin) * h
        )

    def plausibility(self) -> float:
        """1 for an upright human skeleton, 0 for landmarks scattered over an object.

        The landmark model's presence flag is confidently high on some product shots
        (shoes, bags: about a third of myntra-a's shoe photos); the skeleton it then
        outputs is degenerate. Checked: nose above the shoulders above the hips, shoulders
        at least 15 % of the torso length apart, torso at least 8 % of the photo height.
        Shop photos are upright, so upright order is a fair requirement.
        """
        lm = self.landmarks
        h = self.image_size[1]
        ms = (lm[LEFT_SHOULDER, :2] + lm[RIGHT_SHOULDER, :2]) / 2
        mh = (lm[LEFT_HIP, :2] + lm[RIGHT_HIP, :2]) / 2
        torso = float(np.linalg.norm(ms - mh))
        shoulders = float(np.linalg.norm(lm[LEFT_SHOULDER, :2] - lm[RIGHT_SHOULDER, :2]))
        upright = lm[NOSE, 1] < ms[1] < mh[1]
        return float(upright and shoulders >= 0.15 * torso and torso >= 0.08 * h)

    def to_dict(self) -> dict:
        return {
            "presence": float(self.presence),
            "plausibility": self.plausibility(),
            "face_score": self.extra.get("face_score"),
            "detection_score": None if self.detection_score is None else float(self.detection_score),
            "roi": {"cx": self.roi.cx, "cy": self.roi.cy, "size": self.roi.size,
                    "rotation": self.roi.rotation, "source": self.roi.source},
            "landmarks": {
                name: [round(float(v), 4) for v in self.landmarks[i]] for i, name in enumerate(LANDMARK_NAMES)
            },
        }


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one box ``a`` (4,) against boxes ``b`` (N, 4), all as x0, y0, x1, y1."""
    x0 = np.maximum(a[0], b[:, 0])
    y0 = np.maximum(a[1], b[:, 1])
    x1 = np.minimum(a[2], b[:, 2])
    y1 = np.minimum(a[3], b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: np.clip(z[..., 2] - z[..., 0], 0, None) * np.clip(z[..., 3] - z[..., 1], 0, None)  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, kps: np.ndarray, scores: np.ndarray, iou: float = 0.3) -> list[int | tuple]:
    """MediaPipe's weighted NMS: overlapping hits are averaged by score, not discarded.

    Returns ``(box, keypoints, score)`` per cluster, best first.
    """
    order = np.argsort(-scores)
    boxes, kps, scores = boxes[order], kps[order], scores[order]
    out = []
    remaining = np.arange(len(scores))
    while remaining.size:
        top = remaining[0]
        ov = _box_iou(boxes[top], boxes[remaining])
        members = remaining[ov > iou]
        if members.size == 0:
            members = remaining[:1]
        w = scores[members][:, None]
        box = (boxes[members] * w).sum(0) / w.sum()
        kp = (kps[members].reshape(len(members), -1) * w).sum(0) / w.sum()
        out.append((box, kp.reshape(-1, 2), float(scores[top])))
        remaining = remaining[ov <= iou]
    return out


def foreground_box(rgb: np.ndarray, threshold: int = 240) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1) of the non-white pixels of a photo on white, or None."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    fg = cv2.GaussianBlur(gray, (5, 5), 0) < threshold
    fg = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    ys, xs = np.nonzero(fg)
    if xs.size < 0.002 * fg.size:
        return None
    # Robust extent: ignore a few stray pixels (shadows, JPEG ringing).
    x0, x1 = np.percentile(xs, [0.5, 99.5])
    y0, y1 = np.percentile(ys, [0.5, 99.5])
    return int(x0), int(y0), int(x1) + 1, int(y1) + 1


class SsdDetector:
    """MediaPipe's SSD-style detectors (BlazePose detector, BlazeFace) on a letterboxed input.

    Both regress, per anchor, a box (centre, size) and ``num_keypoints`` points as offsets in
    input pixels from the anchor centre, with one logit score; hits are merged by weighted
    non-maximum suppression. Inputs are RGB scaled to [-1, 1].
    """

    def __init__(self, path: Path, size: int, strides: tuple[int, ...], num_keypoints: int,
                 min_score: float, num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.size = size
        self.min_score = min_score
        self.num_keypoints = num_keypoints
        self.anchors = ssd_anchors(size, strides)
        self._it = Interpreter(model_path=str(path), num_threads=num_threads)
        self._it.allocate_tensors()
        self._in = self._it.get_input_details()[0]["index"]
        n = len(self.anchors)
        outs = {tuple(d["shape"]): d["index"] for d in self._it.get_output_details()}
        coords = 4 + 2 * num_keypoints
        if (1, n, coords) not in outs or (1, n, 1) not in outs:
            raise ValueError(f"{path}: outputs {sorted(outs)} do not fit {n} anchors with {num_keypoints} keypoints")
        self._boxes, self._scores = outs[(1, n, coords)], outs[(1, n, 1)]

    def scores(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[float, int, int]]:
        """Raw per-anchor regressions and sigmoid scores, plus the letterbox (scale, pad_x, pad_y)."""
        h, w = rgb.shape[:2]
        scale = self.size / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        pad_x, pad_y = (self.size - nw) // 2, (self.size - nh) // 2
        canvas = np.zeros((self.size, self.size, 3), np.float32)
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(rgb, (nw, nh), interpolation=interp).astype(np.float32)
        canvas[pad_y : pad_y + nh, pad_x : pad_x + nw] = resized / 127.5 - 1.0
        self._it.set_tensor(self._in, canvas[None])
        self._it.invoke()
        raw = self._it.get_tensor(self._boxes)[0]
        scores = _sigmoid(self._it.get_tensor(self._scores)[0, :, 0])
        return raw, scores, (scale, pad_x, pad_y)

    def detect(self, rgb: np.ndarray, min_score: float | None = None) -> list[Detection]:
        raw, scores, (scale, pad_x, pad_y) = self.scores(rgb)
        keep = scores >= (self.min_score if min_score is None else min_score)
        if not keep.any():
            return []
        raw, scores, anchors = raw[keep], scores[keep], self.anchors[keep]
        s = float(self.size)
        cx = raw[:, 0] / s + anchors[:, 0]
        cy = raw[:, 1] / s + anchors[:, 1]
        bw, bh = raw[:, 2] / s, raw[:, 3] / s
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        k = self.num_keypoints
        kps = raw[:, 4 : 4 + 2 * k].reshape(-1, k, 2) / s + anchors[:, None, :]

        def unletterbox(p: np.ndarray) -> np.ndarray:
            q = p.copy()
            q[..., 0] = (p[..., 0] * self.size - pad_x) / scale
            q[..., 1] = (p[..., 1] * self.size - pad_y) / scale
            return q

        return [Detection(box=unletterbox(box.reshape(2, 2)).reshape(4), keypoints=unletterbox(kp), score=score)
                for box, kp, score in weighted_nms(boxes, kps, scores)]


class PoseEstimator:
    """BlazePose on still images: detector → aligned crop → landmarks (→ one refinement).

    Not thread-safe (the interpreters hold state); make one per worker.
    """

    def __init__(
        self,
        model_dir: str | Path = DEFAULT_DIR,
        min_detection_score: float = 0.5,
        refine: bool = True,
        mask_fallback: bool = True,
        use_detector: bool = True,
        num_threads: int = 1,
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        paths = model_paths(model_dir)
        self.min_detection_score = min_detection_score
        self.refine = refine
        self.mask_fallback = mask_fallback
        self.use_detector = use_detector
        self._person = SsdDetector(paths["detector"], DETECTOR_SIZE, (8, 16, 32, 32, 32), 4,
                                   min_detection_score, num_threads)
        self._face = SsdDetector(paths["face"], FACE_SIZE, (8, 16, 16, 16), 6, 0.0, num_threads)
        self._lmk = Interpreter(model_path=str(paths["landmark"]), num_threads=num_threads)
        self._lmk.allocate_tensors()
        self._lmk_in = self._lmk.get_input_details()[0]["index"]
        lmk_out = {tuple(d["shape"]): d["index"] for d in self._lmk.get_output_details()}
        self._lmk_points = lmk_out[(1, 195)]
        self._lmk_flag = lmk_out[(1, 1)]

    # --- detector ----------------------------------------------------------------------
    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """All people found by the detector, best first, in image pixels."""
        return self._person.detect(rgb)

    @staticmethod
    def roi_from_points(center: np.ndarray, scale_point: np.ndarray, source: str, enlarge: float = 1.25) -> Roi:
        """MediaPipe's alignment: hip centre, body radius, rotate so that hip→head is up."""
        dx, dy = scale_point - center
        radius = float(math.hypot(dx, dy))
        rotation = math.pi / 2 - math.atan2(-dy, dx)
        rotation = (rotation + math.pi) % (2 * math.pi) - math.pi
        return Roi(float(center[0]), float(center[1]), 2 * radius * enlarge, rotation, source)

    @staticmethod
    def roi_from_mask(rgb: np.ndarray) -> Roi | None:
        """Upright square around the foreground: the person on a white shop photo."""
        box = foreground_box(rgb)
        if box is None:
            return None
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0) * 1.15
        return Roi((x0 + x1) / 2, (y0 + y1) / 2, float(side), 0.0, "mask")

    # --- landmarks ---------------------------------------------------------------------
    def landmarks(self, rgb: np.ndarray, roi: Roi) -> Pose:
        crop = roi.crop(rgb).astype(np.float32) / 255.0
        self._lmk.set_tensor(self._lmk_in, crop[None])
        self._lmk.invoke()
        raw = self._lmk.get_tensor(self._lmk_points)[0].reshape(39, 5)
        flag = float(self._lmk.get_tensor(self._lmk_flag)[0, 0])
        xy = roi.to_image(raw[:, :2] / LANDMARK_SIZE)
        lm = np.empty((39, 5), np.float32)
        lm[:, :2] = xy
        lm[:, 2] = raw[:, 2] / LANDMARK_SIZE * roi.size
        lm[:, 3] = _sigmoid(raw[:, 3])
        lm[:, 4] = _sigmoid(raw[:, 4])
        h, w = rgb.shape[:2]
        pose = Pose(landmarks=lm[:NUM_LANDMARKS], presence=flag, roi=roi, image_size=(w, h))
        pose.extra["aux"] = lm[NUM_LANDMARKS:]
        return pose

    def head_roi(self, pose: Pose, scale: float = 3.0) -> Roi:
        """Upright square around the head landmarks, ``scale`` times the ear-to-ear distance.

        Bounded below by half the shoulder width so that a head seen from behind (ears
        placed close together) still gives a crop that holds the whole head.
        """
        lm = pose.landmarks
        centre = lm[[NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR], :2].mean(axis=0)
        ears = float(np.linalg.norm(lm[LEFT_EAR, :2] - lm[RIGHT_EAR, :2]))
        shoulders = float(np.linalg.norm(lm[LEFT_SHOULDER, :2] - lm[RIGHT_SHOULDER, :2]))
        side = max(ears * scale, 0.5 * shoulders, 8.0)
        return Roi(float(centre[0]), float(centre[1]), side, 0.0, "head")

    def face_score(self, rgb: np.ndarray, pose: Pose) -> float:
        """BlazeFace's best score on the head region: high for a face, low for the back of a head."""
        crop = self.head_roi(pose).crop(rgb, FACE_SIZE)
        _, scores, _ = self._face.scores(crop)
        return float(scores.max())

    def estimate(self, image: np.ndarray | object) -> Pose | None:
        """The most prominent person of a photo, or None when there is none.

        ``image`` is an RGB uint8 array (H, W, 3) or a PIL image.
        """
        rgb = _as_rgb(image)
        roi, det_score = None, None
        if self.use_detector:
            dets = self.detect(rgb)
            if dets:
                best = dets[0]
                det_score = best.score
                roi = self.roi_from_points(best.keypoints[0], best.keypoints[1], "detector")
        if roi is None and self.mask_fallback:
            roi = self.roi_from_mask(rgb)
        if roi is None:
            return None
        pose = self.landmarks(rgb, roi)
        if self.refine:
            aux = pose.extra["aux"]
            refined = self.landmarks(rgb, self.roi_from_points(aux[0, :2], aux[1, :2], "refined"))
            if refined.presence >= pose.presence * 0.9:
                refined.extra["first_pass"] = pose
                pose = refined
        pose.detection_score = det_score
        pose.extra["face_score"] = self.face_score(rgb, pose) if pose.presence >= 0.5 else 0.0
        return pose


def _as_rgb(image: np.ndarray | object) -> np.ndarray:
    arr = image if isinstance(image, np.ndarray) else np.asarray(image.convert("RGB"))  # PIL
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {arr.shape}")
    return np.ascontiguousarray(arr[..., :3].astype(np.uint8))
