"""Model-photo pose selection (``python -m generators.pairs``) against the demo's ground truth."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from generators import pairs as P

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "models" / "pose"
HAVE_MODELS = all((MODELS_DIR / n).is_file() for n in (
    "pose_detection.tflite", "pose_landmark_full.tflite", "face_detection_short_range.tflite"))
needs_models = pytest.mark.skipif(
    not HAVE_MODELS, reason=f"pose models not installed in {MODELS_DIR} (run `make pose-models`)")


@pytest.fixture(scope="module")
def kmeans_result(demo_catalog_dir: Path) -> P.PairsResult:
    return P.select_pairs(demo_catalog_dir, "kmeans", progress=False)


@pytest.fixture(scope="module")
def pose_run(demo_catalog_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[P.PairsResult, Path]:
    if not HAVE_MODELS:
        pytest.skip(f"pose models not installed in {MODELS_DIR} (run `make pose-models`)")
    cache = tmp_path_factory.mktemp("pose_cache") / "features.jsonl"
    return P.select_pairs(demo_catalog_dir, "pose", MODELS_DIR, cache_path=cache, progress=False), cache


# --- the thesis method ----------------------------------------------------------------------
def test_thesis_mask_fills_the_silhouette_and_crops_the_centre() -> None:
    img = np.full((256, 256), 255, np.uint8)
    # an outlined (not filled) tall figure in the centre, and a blob far left outside the crop
    img[20:240, 110:146] = 255
    img[20:240, 110] = img[20:240, 145] = img[20, 110:146] = img[239, 110:146] = 0
    img[100:140, 5:40] = 0
    mask = P.thesis_mask(img)
    assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0.0, 1.0}
    # filled contour: the inside of the outline is foreground
    assert mask[32, 32] == 1.0
    # the left blob lies outside the centre 116 px and is gone; background is empty
    assert mask[:, :8].sum() == 0 and mask[:3].sum() == 0


def test_full_body_cluster_is_the_tall_narrow_centre() -> None:
    side = 64
    full = np.zeros((side, side))
    full[2:62, 26:38] = 1  # head-to-feet figure, narrow
    close = np.zeros((side, side))
    close[0:64, 6:58] = 1  # torso filling the crop
    detail = np.ones((side, side))  # fabric everywhere
    centres = np.stack([detail.ravel(), full.ravel(), close.ravel()])
    idx, feats = P.full_body_cluster(centres)
    assert idx == 1
    assert feats[1]["extent"] > 0.9 and feats[1]["width"] < 0.3


def test_kmeans_beats_chance_and_picks_full_body_photos(kmeans_result: P.PairsResult, demo_catalog_dir: Path) -> None:
    rep = P.evaluate_pairs(kmeans_result, demo_catalog_dir)
    assert rep["products_with_front_full"] == 24
    # chance (a random photo of the 4) is 0.25; masks cannot tell front from back, so ~0.5
    assert rep["accuracy"] > 0.35, rep
    picked = rep["picked_truth_counts"]
    full = picked.get("front_full", 0) + picked.get("back_full", 0)
    assert full >= 0.9 * sum(picked.values()), picked


# --- the pose method ------------------------------------------------------------------------
@needs_models
def test_pose_picks_the_front_full_body_photo(pose_run, demo_catalog_dir: Path) -> None:
    res, _ = pose_run
    rep = P.evaluate_pairs(res, demo_catalog_dir)
    assert rep["accuracy"] >= 0.95, rep["first_errors"]
    # every photo got a label, and the labels mostly agree with the truth
    assert rep["photo_label_accuracy"] >= 0.8, rep["photo_confusion"]
    assert rep["photo_confusion"]["upper_close"].get("upper_close", 0) >= 20


@needs_models
def test_pose_cache_resumes_without_rerunning_the_models(pose_run, demo_catalog_dir: Path, monkeypatch) -> None:
    res, cache = pose_run
    lines = cache.read_text().splitlines()
    assert len(lines) == res.n_photos
    # a kill mid-write leaves a partial line: it is ignored and the rest is reused
    cache.write_text("\n".join(lines) + "\n" + lines[0][: len(lines[0]) // 2])

    import generators.pairs.pose

    def boom(*a, **k):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(generators.pairs.pose, "PoseEstimator", boom)
    again = P.select_pairs(demo_catalog_dir, "pose", MODELS_DIR, cache_path=cache, progress=False)
    assert again.pairs == res.pairs


@needs_models
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_cli_writes_a_pairs_file_pix2pix_reads(demo_catalog_dir: Path, tmp_path: Path, suffix: str, pose_run) -> None:
    from generators.datasets import read_pairs

    _, cache = pose_run
    out = tmp_path / f"pairs{suffix}"
    rc = P.main(["--catalog", str(demo_catalog_dir), "--method", "pose", "--out", str(out), "--eval",
                 "--cache", str(cache), "--quiet", "--pose-models", str(MODELS_DIR)])
    assert rc == 0
    rows = P.read_pairs(out)
    assert len(rows) == 24 and {r["method"] for r in rows} == {"pose"}
    pairs = read_pairs(out, demo_catalog_dir)  # the training side's reader accepts it
    assert len(pairs) == 24
    gt = json.loads((demo_catalog_dir / "ground_truth.json").read_text())
    assert sum(gt[r["model_path"]] == "front_full" for r in rows) >= 23
    report = json.loads(out.with_name(out.name + ".eval.json").read_text())
    assert report["accuracy"] >= 0.95


def test_cli_errors_name_the_problem(demo_catalog_dir: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        P.main(["--catalog", str(demo_catalog_dir), "--method", "kmeans", "--out", str(tmp_path / "p.txt")])
    assert "--out" in capsys.readouterr().err
    # a catalog without model photos
    from catalog import load_catalog, write_catalog

    cat = load_catalog(demo_catalog_dir, check_images=False)
    bare = tmp_path / "bare"
    (bare / "images").mkdir(parents=True)
    items = cat.items[:3]
    for it in items:
        (bare / it.img_path).write_bytes((demo_catalog_dir / it.img_path).read_bytes())
        it.model_img_paths = []
    write_catalog(bare, items, cat.schema)
    assert P.main(["--catalog", str(bare), "--method", "kmeans", "--out", str(tmp_path / "p.csv"), "--quiet"]) == 1
    assert "model_img_paths" in capsys.readouterr().err
    # --eval on a catalog without ground truth
    with pytest.raises(FileNotFoundError, match="ground truth"):
        P.load_ground_truth(bare)
    # a catalog that would lose more than --max-skipped of its rows (1 of 3 images gone)
    (bare / items[0].img_path).unlink()
    assert P.main(["--catalog", str(bare), "--method", "kmeans", "--out", str(tmp_path / "p.csv"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "1 of 3 rows (33.3%) would be skipped" in err and "--max-skipped 0.34" in err


def test_pairs_file_round_trip_and_bad_rows(tmp_path: Path) -> None:
    rows = [{"id": "a", "product_path": "images/a.jpg", "model_path": "model_images/a_1.jpg",
             "method": "kmeans", "score": -1.5}]
    P.write_pairs(tmp_path / "p.csv", rows)
    with open(tmp_path / "p.csv", newline="") as fh:
        assert next(csv.reader(fh)) == list(P.PAIRS_FIELDS)
    assert P.read_pairs(tmp_path / "p.csv")[0]["model_path"] == "model_images/a_1.jpg"
    (tmp_path / "bad.jsonl").write_text('{"id": "a", "product_path": "x"}\n')
    with pytest.raises(ValueError, match="row 1: missing model_path"):
        P.read_pairs(tmp_path / "bad.jsonl")


# --- the detector on real photos --------------------------------------------------------------
@needs_models
def test_detector_finds_people_in_real_worn_photos_and_not_on_watches(myntra_dir: Path) -> None:
    from PIL import Image

    from generators.pairs.pose import PoseEstimator

    with open(myntra_dir / "catalog.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    tops = [r for r in rows if r["category"] == "tops"][:15]  # mostly worn by a model
    things = [r for r in rows if r["sub_category"] in ("watches", "wallets", "belts")][:15]
    est = PoseEstimator(MODELS_DIR)

    def person(r: dict) -> bool:
        with Image.open(myntra_dir / r["img_path"]) as im:
            pose = est.estimate(im)
        return pose is not None and pose.presence * pose.plausibility() >= 0.5

    assert sum(map(person, tops)) >= 10
    assert sum(map(person, things)) <= 2
