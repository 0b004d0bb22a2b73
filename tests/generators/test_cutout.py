"""The garment cut-out (model photo -> product photo): its masks and framing, its training on
pairs, the Editor's square output, and that it finds worn products better than the raw photo."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from generators.models.cutout import REGIONS, frame_on_white, person_mask, region_masks, strip_padding
from generators.options import CutoutOptions

ROOT = Path(__file__).resolve().parents[2]
POSE_DIR = ROOT / "models" / "pose"
needs_pose = pytest.mark.skipif(not (POSE_DIR / "pose_landmark_full.tflite").is_file(),
                                reason="pose models not installed (make pose-models)")

SKIN, TOP, TROUSERS = (200, 150, 120), (200, 30, 40), (30, 50, 160)


def _backdrop(h: int = 200, w: int = 120) -> np.ndarray:
    """A studio backdrop: a vertical grey gradient."""
    rows = np.linspace(235, 200, h)[:, None, None]
    return np.broadcast_to(rows, (h, w, 3)).astype(np.uint8).copy()


def _person() -> tuple[np.ndarray, SimpleNamespace]:
    """A drawn person (skin head and arms, a red top to the hips, blue trousers to the ankles)
    and a pose whose landmarks sit where they are drawn."""
    from generators.pairs import pose as P

    img = _backdrop()
    img[10:40, 50:70] = SKIN  # head
    img[45:110, 40:80] = TOP  # top: shoulders at y 45, hips at y 100
    img[45:110, 30:40] = SKIN  # arms
    img[45:110, 80:90] = SKIN
    img[110:180, 42:78] = TROUSERS  # ankles at y 180
    img[120:180, 54:66] = img[120:180, :1]  # the backdrop between the legs, enclosed by them and the shoes
    img[180:190, 42:78] = (20, 20, 20)  # shoes
    lm = np.zeros((33, 5), np.float32)
    points = {P.NOSE: (60, 24), P.LEFT_EYE: (64, 20), P.RIGHT_EYE: (56, 20), P.LEFT_SHOULDER: (75, 45),
              P.RIGHT_SHOULDER: (45, 45), P.LEFT_HIP: (72, 100), P.RIGHT_HIP: (48, 100),
              P.LEFT_ANKLE: (70, 180), P.RIGHT_ANKLE: (50, 180)}
    for i, (x, y) in points.items():
        lm[i, :2] = (x, y)
    return img, SimpleNamespace(landmarks=lm)


def test_person_mask_reads_the_backdrop_per_row() -> None:
    img = _backdrop()
    img[60:120, 40:80] = (120, 120, 120)
    img[80:100, 50:70] = 231  # a light patch inside the garment, as bright as the backdrop beside it
    m = person_mask(img, border=6, delta=10.0)
    assert m[60:120, 40:80].all()  # the inside is not reached from the edge: it stays the person's
    assert not m[:50].any() and not m[130:].any() and not m[:, :34].any() and not m[:, 86:].any()


def test_strip_padding_and_framing() -> None:
    img = np.full((100, 140, 3), 255, np.uint8)
    img[10:90, 30:110] = 128
    assert strip_padding(img).shape == (80, 80, 3)
    mask = np.zeros((100, 140), bool)
    mask[20:60, 40:60] = True  # 40 tall, 20 wide
    out = frame_on_white(img, mask, 64, frame=1.25)
    assert out.shape == (64, 64, 3)
    dark = out.min(axis=2) < 200
    rows, cols = np.nonzero(dark.any(1))[0], np.nonzero(dark.any(0))[0]
    assert abs((rows[-1] - rows[0] + 1) - 64 / 1.25) <= 2  # the longer side fills 1 / frame of the square
    assert abs((rows[0] + rows[-1]) / 2 - 31.5) <= 1.5 and abs((cols[0] + cols[-1]) / 2 - 31.5) <= 1.5
    assert (out[~dark] >= 250).all()  # white around it
    assert (frame_on_white(img, np.zeros_like(mask), 16, 1.1) == 255).all()


def test_regions_keep_the_clothes_and_drop_skin_head_and_shoes() -> None:
    img, pose = _person()
    masks = region_masks(img, pose, CutoutOptions())
    assert set(masks) == set(REGIONS)
    full, upper, lower = masks["full"], masks["upper"], masks["lower"]
    assert full[50:105, 45:75].all() and full[115:175, 45:52].all() and full[115:175, 68:75].all()  # top, legs
    assert not full[125:175, 57:63].any()  # the enclosed backdrop between the legs is not the outfit
    assert not full[10:40].any()  # the head
    assert not full[:, 30:40].any() and not full[:, 80:90].any()  # the arms: skin
    assert not full[181:].any()  # the shoes
    assert upper[50:100, 45:75].all() and not upper[130:].any()
    assert lower[115:175, 45:52].all() and not lower[:80].any()
    # no pose: the whole person, nothing removed
    assert (region_masks(img, None, CutoutOptions())["upper"] == person_mask(img, 6, 10.0)).all()


def _pairs_file(catalog_dir: Path) -> Path:
    truth = json.loads((catalog_dir / "ground_truth.json").read_text())
    from catalog import load_catalog

    cat = load_catalog(catalog_dir)
    path = catalog_dir / "front_pairs.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for it in cat.items:
            front = next(p for p in it.model_img_paths if truth[p] == "front_full")
            fh.write(json.dumps({"id": it.id, "product_path": it.img_path, "model_path": front,
                                 "method": "ground_truth"}) + "\n")
    return path


@pytest.fixture(scope="module")
def cutout_run(make_demo_catalog, tmp_path_factory) -> tuple[Path, Path]:
    from generators.train import main as train_main

    if not (POSE_DIR / "pose_landmark_full.tflite").is_file():
        pytest.skip("pose models not installed (make pose-models)")
    cat = make_demo_catalog(8, 3)
    run = tmp_path_factory.mktemp("cutout") / "run"
    assert train_main(["--model", "cutout", "--catalog", str(cat), "--pairs", str(_pairs_file(cat)),
                       "--out", str(run), "--steps", "2", "--log-every", "1", "--quiet", "--no-tensorboard", "--threads", "1",
                       "--set", f"cutout.pose_models={POSE_DIR}"]) == 0
    return cat, run


@needs_pose
def test_cutout_trains_on_pairs_and_translates_to_a_square_product_shot(cutout_run) -> None:
    from gan_helpers import read_log

    from generators.inference import EditError, load_editor

    cat, run = cutout_run
    log = read_log(run)
    assert [r["step"] for r in log] == [1, 2] and 0 <= log[-1]["P/acc"] <= 1
    assert abs(sum(log[-1][f"share/{r}"] for r in REGIONS) - 1) < 1e-6  # every pair got a region
    assert json.loads((run / "samples" / "columns.json").read_text()) == [
        "model photo", "upper", "lower", "full", "picked", "product", "dressed"]
    editor = load_editor(run, "cpu")
    caps = editor.capabilities()
    assert caps["to_product"] and caps["to_model"] and caps["edit"] is None
    truth = json.loads((cat / "ground_truth.json").read_text())
    front = next(p for p, v in truth.items() if v == "front_full")
    photo = Image.open(cat / front).convert("RGB")
    tall = photo.crop((32, 0, photo.width - 32, photo.height))  # not square: the output still is
    (out,) = editor.to_product([tall])
    assert out.size == (256, 256)
    a = np.asarray(out, np.float32)
    border = np.concatenate([a[:6].reshape(-1, 3), a[-6:].reshape(-1, 3), a[:, :6].reshape(-1, 3)])
    assert border.mean() > 250  # on white, not the studio backdrop
    assert a[96:160, 96:160].mean() < 235  # and a garment in the middle
    with pytest.raises(EditError, match="edits no attributes; it only translates"):
        editor.edit([photo], {"color": "red"})


@needs_pose
def test_cutout_dresses_a_product_on_the_catalogs_mannequin(cutout_run) -> None:
    """Product -> model: the product's own pixels, scaled into the box where its nearest
    training products are worn, on the median person of their region; a product photo that is
    all white stays the bare mannequin."""
    import torch

    from catalog import load_catalog
    from generators.checkpoint import load_checkpoint
    from generators.inference import load_editor
    from generators.models.cutout import box_of, dress

    cat, run = cutout_run
    m = load_checkpoint(run / "checkpoints" / "last.pt")["nets"]["M"]
    assert m["mannequins"].dtype == torch.uint8 and m["mannequins"].shape[1:] == (3, 256, 256)
    assert len(m["regions"]) == len(m["boxes"]) == len(m["keys"]) > 0
    assert ((m["boxes"] >= 0) & (m["boxes"] <= 1)).all() and (m["boxes"][:, 1] > m["boxes"][:, 0]).all()
    # a mannequin is a person on the studio backdrop, not white: the median of the worn photos
    worn = m["mannequins"][m["regions"][0]].float()
    assert worn.mean() < 245 and worn.std() > 5
    editor = load_editor(run, "cpu")
    catalog = load_catalog(cat)
    product = Image.open(catalog.image_path(catalog.items[0])).convert("RGB")
    (out,) = editor.to_model([product])
    assert out.size == (256, 256)
    assert not np.array_equal(np.asarray(out), worn.permute(1, 2, 0).numpy().astype(np.uint8))  # something was pasted

    # dress() itself: a red square on white lands, red and scaled, inside the box; white stays out
    shot = np.full((100, 100, 3), 255, np.uint8)
    shot[20:80, 30:70] = (200, 20, 20)  # 60 tall, 40 wide
    mannequin = np.full((200, 200, 3), 90, np.uint8)
    box = np.array([0.25, 0.75, 0.25, 0.75], np.float32)  # 100 x 100 px in the middle
    out = dress(shot, mannequin, box, CutoutOptions())
    red = (out[..., 0] > 150) & (out[..., 1] < 80)
    assert np.allclose(box_of(red), [0.25, 0.75, 0.333, 0.667], atol=0.02)  # fits the height, keeps the aspect
    assert (out[:40] == 90).all() and (out[-40:] == 90).all()
    assert np.array_equal(dress(np.full_like(shot, 255), mannequin, box, CutoutOptions()), mannequin)
    # zoom frames the box: a square 1.5 times its side around it, at the mannequin's size
    framed = dress(shot, mannequin, box, CutoutOptions(), zoom=1.5)
    assert framed.shape == mannequin.shape
    red = (framed[..., 0] > 150) & (framed[..., 1] < 80)
    assert abs((box_of(red)[1] - box_of(red)[0]) - 1 / 1.5) < 0.03  # the garment now fills 1 / zoom of the height


@needs_pose
def test_cutout_finds_worn_products_better_than_the_raw_photo(make_demo_catalog) -> None:
    """Recall@3 of the same product among 24, from its front model photo: the full-outfit cut-out
    (no training involved) against the untranslated photo."""
    from catalog import load_catalog
    from generators.evaluate.worn import front_photos, recall_at_k
    from generators.models.cutout import _Poses, cutouts
    from indexing.encoder import Encoder, EncoderConfig

    cat = load_catalog(make_demo_catalog(24, 0))
    fronts = front_photos(cat)
    items = [it for it in cat.items if it.id in fronts]
    enc = Encoder.builtin(EncoderConfig(image_size=128), device="cpu")
    products = enc.embed_images([Image.open(cat.image_path(it)).convert("RGB") for it in items])
    worn = [np.asarray(Image.open(cat.root / fronts[it.id]).convert("RGB")) for it in items]
    poses, o = _Poses(str(POSE_DIR)), CutoutOptions()
    cut = [Image.fromarray(cutouts(w, poses, o, 128)[0][REGIONS.index("full")]) for w in worn]
    own, ids = list(range(len(items))), np.arange(len(items))
    raw, _ = recall_at_k(enc.embed_images([Image.fromarray(w) for w in worn]), own, products, ids, 3)
    translated, _ = recall_at_k(enc.embed_images(cut), own, products, ids, 3)
    assert translated > raw, (translated, raw)


@needs_pose
def test_cutout_resume_is_exact(make_demo_catalog, tmp_path: Path) -> None:
    """Stopped at step 2 and resumed, the picker ends where an uninterrupted run ends: its cached
    cut-out features travel in the checkpoint."""
    import torch

    from generators.checkpoint import load_checkpoint
    from generators.train import main as train_main

    cat = make_demo_catalog(8, 3)
    pairs = _pairs_file(cat)
    common = ["--model", "cutout", "--catalog", str(cat), "--pairs", str(pairs), "--steps", "4", "--quiet",
              "--no-tensorboard", "--threads", "1", "--image-size", "128", "--set", f"cutout.pose_models={POSE_DIR}"]
    assert train_main([*common, "--out", str(tmp_path / "straight")]) == 0
    assert train_main([*common, "--out", str(tmp_path / "resumed"), "--stop-at", "2"]) == 0
    assert train_main([*common, "--out", str(tmp_path / "resumed"), "--resume"]) == 0
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 4
    for net in ("P", "M"):  # the picker and the fitted dresser alike
        for k, v in a["nets"][net].items():
            assert torch.equal(v, b["nets"][net][k]), (net, k)
