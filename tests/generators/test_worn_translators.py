"""Worn photos in the generators: pix2pix in reverse (model -> product), its options, the
evaluation by retrieval, and the committed demo translators."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gan_helpers import make_tiny_catalog, read_log, write_tiny_config
from PIL import Image

from generators.inference import EditError, load_editor
from generators.options import ConfigError, apply_overrides, defaults_for
from generators.train import main as train_main

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "generators" / "demo_checkpoints"
COMMON = ["--image-size", "32", "--batch-size", "4", "--quiet", "--no-tensorboard", "--threads", "1"]


@pytest.fixture(scope="module")
def m2p_run(tmp_path_factory) -> Path:
    tiny = make_tiny_catalog(tmp_path_factory.mktemp("tiny_worn"))
    cfg = write_tiny_config(tmp_path_factory.mktemp("cfg") / "tiny.json", {
        "pix2pix": {"direction": "model->product", "d_kind": "projected", "d_width": 8, "lambda_feat": 1.0}})
    run = tmp_path_factory.mktemp("m2p") / "run"
    assert train_main(["--model", "pix2pix", "--catalog", str(tiny), "--pairs", str(tiny / "pairs.jsonl"),
                       "--out", str(run), "--config", str(cfg), "--steps", "2", *COMMON]) == 0
    return run


def test_reverse_pix2pix_trains_on_the_pairs_read_backwards(m2p_run: Path) -> None:
    log = read_log(m2p_run)
    assert [r["step"] for r in log] == [1, 2]
    assert {"D/loss", "G/loss_gan", "G/loss_l1", "G/loss_feat"} <= set(log[-1])
    assert json.loads((m2p_run / "data.json").read_text())["meta"] == {"direction": "model->product"}
    assert json.loads((m2p_run / "samples" / "columns.json").read_text()) == [
        "model photo", "generated product photo", "true product photo"]


def test_reverse_checkpoint_translates_to_product_only(m2p_run: Path, tmp_path: Path) -> None:
    editor = load_editor(m2p_run, "cpu")
    caps = editor.capabilities()
    assert caps["to_product"] and not caps["to_model"] and caps["image_size"] == 32
    model_photo = Image.new("RGB", (48, 64), (230, 230, 230))
    (out,) = editor.to_product([model_photo])
    assert out.size == (32, 32) and out.mode == "RGB"
    with pytest.raises(EditError, match="cannot do to_model"):
        editor.to_model([model_photo])


def test_pix2pix_options_are_checked() -> None:
    cfg = defaults_for("pix2pix")
    apply_overrides(cfg, {"pix2pix": {"direction": "person->product"}})
    with pytest.raises(ConfigError, match="pix2pix.direction must be one of product->model, model->product"):
        cfg.validate()
    cfg = defaults_for("pix2pix")
    apply_overrides(cfg, {"pix2pix": {"d_kind": "stylegan"}})
    with pytest.raises(ConfigError, match="pix2pix.d_kind must be one of patch, projected"):
        cfg.validate()


def test_recipes_for_both_directions() -> None:
    from generators.recipes import find

    assert find("to-product-cpu", "pix2pix").overrides["pix2pix"]["direction"] == "model->product"
    assert find("to-model-cpu", "pix2pix").overrides["pix2pix"]["direction"] == "product->model"
    assert find("gpu", "pix2pix").overrides["train"]["image_size"] == 256


def test_worn_search_report_and_grid(m2p_run: Path, make_demo_catalog, tmp_path: Path) -> None:
    from catalog import load_catalog
    from generators.evaluate.worn import WornConfig, recall_at_k, worn_search
    from indexing.encoder import Encoder, EncoderConfig

    # the recall helper: per item, its best row; an excluded row does not count
    index = np.eye(3, dtype=np.float32)[[0, 1, 2, 2]]
    items = np.array([0, 1, 2, 0])
    assert recall_at_k(index[[0, 1]], [0, 1], index, items, 1) == (1.0, [1, 1])
    # item 2's only other row is gone: row 3 (item 0) now wins, item 2 is not in the top 1
    assert recall_at_k(index[[2]], [2], index, items, 1, exclude=[2]) == (0.0, [0])
    assert recall_at_k(index[[2]], [2], index, items, 2, exclude=[2]) == (0.0, [0])  # -inf never ranks above
    cat = load_catalog(make_demo_catalog(8, 0))
    encoder = Encoder.builtin(EncoderConfig(image_size=64), device="cpu")
    editor = load_editor(m2p_run, "cpu")
    grid = tmp_path / "grid.png"
    rep = worn_search(cat, encoder, to_product=editor, cfg=WornConfig(grid_rows=3, grid_cell=40), grid_path=grid)
    assert rep["products"] == 8 and rep["model_photos"] == 32 and rep["k"] == 10
    m2p, p2m = rep["model_to_product"], rep["product_to_model"]
    assert m2p["true_product_photo"] == 1.0  # the photo is in the index: the ceiling
    assert m2p["translated"] == 1.0 and p2m["untranslated_product_photo"] == 1.0  # k=10 > 8 items: all found
    assert m2p["to_true_product_photo"]["size"] == 32 and 0 < m2p["to_true_product_photo"]["l1"]["mean"] < 1
    assert "translated" not in p2m
    with Image.open(grid) as im:
        assert im.size == (3 * 40 + 16, 22 + 3 * 44 + 4)
    small = worn_search(cat, encoder, cfg=WornConfig(k=1))
    # a product's own front photo, left out, must be found through its other photos to count
    assert 0 <= small["product_to_model"]["true_front_model_photo_excluded"] <= 1
    assert small["model_to_product"]["true_product_photo"] == 1.0


M2P_DEMO = DEMO / "experimental" / "pix2pix_m2p_demo64.pt"


def test_demo_model_to_product_checkpoint(make_demo_catalog) -> None:
    """The committed model->product translator: small, loads, and turns a held-out front model
    photo (seed-0 demo catalog; it trained on seed 1) into a product shot on white."""
    if not M2P_DEMO.is_file():
        pytest.skip("no model->product demo checkpoint committed")
    assert M2P_DEMO.stat().st_size <= 8 * 2**20  # with any product->model one of ours: within 20 MB
    from catalog import load_catalog

    editor = load_editor(M2P_DEMO, "cpu")
    caps = editor.capabilities()
    assert caps["to_product"] and not caps["to_model"] and caps["image_size"] == 64
    cat = load_catalog(make_demo_catalog(8, 0))
    truth = json.loads((cat.root / "ground_truth.json").read_text())
    fronts = [Image.open(cat.root / next(p for p in it.model_img_paths if truth[p] == "front_full")).convert("RGB")
              for it in cat.items]
    outs = editor.to_product(fronts)
    a = np.stack([np.asarray(o, dtype=np.float32) / 255 for o in outs])
    assert a.shape == (8, 64, 64, 3)
    border = np.concatenate([a[:, :4].reshape(-1, 3), a[:, -4:].reshape(-1, 3)])
    assert border.mean() > 0.85  # a product shot on white, not the grey studio backdrop of the input
    centre = a[:, 24:40, 24:40]
    assert centre.mean() < border.mean() - 0.1  # and a garment in the middle
