"""The default encoder recipe (parts head on cached features): artefact, index binding, resume, defaults."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from catalog import load_catalog
from indexing.__main__ import build_parser, main
from indexing.encoder import Encoder, EncoderConfig, EncoderError, PartsHead
from indexing.train_encoder import TrainConfig
from indexing.train_head import HeadTrainConfig, precision_at_k, train_head_encoder, work_dir

DOCS = Path(__file__).resolve().parents[2] / "docs" / "indexing.md"
FAST = ["--image-size", "64", "--workers", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def head_encoder_dir(small_catalog, tmp_path_factory) -> Path:
    """One epoch of the default recipe through the CLI, on the tiny catalog (64 px to stay fast)."""
    out = tmp_path_factory.mktemp("head") / "enc"
    assert main(["train-encoder", "--catalog", str(small_catalog), "--out", str(out), "--epochs", "1", *FAST]) == 0
    return out


def test_one_epoch_writes_an_encoder_that_loads_with_its_checksum(head_encoder_dir, small_catalog):
    meta = json.loads((head_encoder_dir / "encoder.json").read_text())
    enc = Encoder.load(head_encoder_dir, "cpu")  # verifies the checksum
    assert enc.checksum == meta["checksum"] and enc.config.kind == "head"
    names = [p["name"] for p in enc.config.parts]
    assert names == ["category", "color"]
    # the stated dimension: the blocks of weight > 0 (3 categories, 4 colours in the tiny catalog)
    sizes = {"category": 3, "color": 4}
    assert meta["dim"] == enc.dim == sum(sizes[p["name"]] for p in enc.config.parts if p["weight"] > 0)
    ims = [Image.open(p) for p in sorted((small_catalog / "images").glob("*.jpg"))[:5]]
    v = enc.embed_images(ims)
    assert v.shape == (5, meta["dim"]) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert not work_dir(head_encoder_dir).exists()  # the feature cache is removed after success
    report = json.loads((head_encoder_dir / "train_report.json").read_text())
    assert report["recipe"] == "head" and len(report["history"]) == 1
    # by default the final fit reads the training photos and their mirror images
    assert report["config"]["flip_augment"] and report["head_rows"] == 2 * report["train_items"] == 2 * 36


def test_mirror_images_are_embedded_in_their_own_shards(small_catalog, small_encoder, tmp_path):
    """The engine's mirror embeds the photo flipped left-right (as a flipped copy on disk would),
    and a shard of mirror images is never reused for the photos themselves, nor the reverse."""
    from indexing.embed import embed_paths
    from indexing.engines import EngineConfig

    paths = sorted((small_catalog / "images").glob("*.jpg"))[:4]
    flipped = []
    for p in paths:
        q = tmp_path / f"{p.stem}.png"  # lossless: the very pixels of the decoded photo, mirrored
        Image.open(p).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(q)
        flipped.append(str(q))
    ids = [p.stem for p in paths]
    cfg = {"batch_size": 2, "num_workers": 0}
    shards = tmp_path / "shards"
    mirror = embed_paths(small_encoder, ids, [str(p) for p in paths], shards, engine_cfg=EngineConfig(**cfg, mirror=True),
                         progress=False)
    on_disk = embed_paths(small_encoder, ids, flipped, tmp_path / "disk", engine_cfg=EngineConfig(**cfg), progress=False)
    np.testing.assert_allclose(mirror, on_disk, atol=1e-5)
    plain = embed_paths(small_encoder, ids, [str(p) for p in paths], shards, engine_cfg=EngineConfig(**cfg),
                        progress=False)  # the same shard folder: the mirror shards must not be taken
    assert np.abs(plain - mirror).max() > 1e-3  # the catalog's garments are not symmetric
    again = embed_paths(small_encoder, ids, [str(p) for p in paths], shards, engine_cfg=EngineConfig(**cfg, mirror=True),
                        progress=False)
    np.testing.assert_allclose(again, mirror, atol=1e-6)


def test_no_flip_fits_the_photos_alone(small_catalog, tmp_path):
    out = tmp_path / "no_flip"
    assert main(["train-encoder", "--catalog", str(small_catalog), "--out", str(out), "--epochs", "1",
                 "--no-flip", *FAST]) == 0
    report = json.loads((out / "train_report.json").read_text())
    assert not report["config"]["flip_augment"] and report["head_rows"] == report["train_items"] == 36


def test_an_edited_weight_is_refused(head_encoder_dir, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(head_encoder_dir, folder)
    state = torch.load(folder / "weights.pt", weights_only=True)
    state["proj.layers.0.bias"] = state["proj.layers.0.bias"] + 0.5
    torch.save(state, folder / "weights.pt")
    with pytest.raises(EncoderError, match="checksum mismatch"):
        Encoder.load(folder, "cpu")


def test_an_index_built_with_it_refuses_a_different_encoder(head_encoder_dir, small_catalog, tmp_path):
    from indexing.build import BuildConfig, build
    from indexing.store import EncoderMismatchError, IndexStore

    enc = Encoder.load(head_encoder_dir, "cpu")
    cat = load_catalog(small_catalog)
    build(cat, tmp_path / "idx", enc, BuildConfig(num_workers=0))
    store = IndexStore.open(tmp_path / "idx", enc)
    assert store.count == len(cat.items) and store.manifest["encoder"]["checksum"] == enc.checksum
    with pytest.raises(EncoderMismatchError):
        IndexStore.open(tmp_path / "idx", Encoder.builtin(EncoderConfig(image_size=64), device="cpu"))
    # another trained head (different seed) is a different encoder too
    cfg = HeadTrainConfig(image_size=64, epochs=1, seed=1, num_workers=0, tune=False)
    other, _ = train_head_encoder(cat, tmp_path / "other", cfg)
    assert other.checksum != enc.checksum
    with pytest.raises(EncoderMismatchError):
        IndexStore.open(tmp_path / "idx", other)


def test_a_rerun_resumes_from_the_cached_features(small_catalog, tmp_path, monkeypatch):
    """Features cached by a run that died after caching are reused, and the result is identical."""
    cat = load_catalog(small_catalog)
    cfg = HeadTrainConfig(image_size=64, epochs=3, num_workers=0, keep_cache=True, flip_augment=True)
    first, _ = train_head_encoder(cat, tmp_path / "a", cfg)
    shards = sorted((work_dir(tmp_path / "a") / "features").glob("shard-*.npz"))
    assert shards and sorted((work_dir(tmp_path / "a") / "features_mirrored").glob("shard-*.npz"))
    # the run "dies" here: the encoder folder is gone, the cache stays; the rerun must not embed again
    import shutil

    shutil.rmtree(tmp_path / "a")
    import indexing.embed

    def no_engine(name):
        raise AssertionError("the rerun embedded images again instead of using the cached features")

    monkeypatch.setattr(indexing.embed, "get_engine", no_engine)
    again, _ = train_head_encoder(cat, tmp_path / "a", HeadTrainConfig(image_size=64, epochs=3, num_workers=0,
                                                                        flip_augment=True))
    assert again.checksum == first.checksum
    assert not work_dir(tmp_path / "a").exists()


def test_a_partial_encoder_folder_never_loads(head_encoder_dir, tmp_path):
    import shutil

    folder = tmp_path / "partial"
    folder.mkdir()
    shutil.copy(head_encoder_dir / "weights.pt", folder / "weights.pt")  # weights written, description not
    with pytest.raises(EncoderError, match="not an encoder folder"):
        Encoder.load(folder, "cpu")


def test_trained_head_ranks_category_and_colour_better_than_builtin(small_catalog, tmp_path):
    cat = load_catalog(small_catalog)
    enc, report = train_head_encoder(cat, tmp_path / "enc", HeadTrainConfig(image_size=64, epochs=30, num_workers=0))
    ims = [Image.open(cat.image_path(it)) for it in cat.items]
    labels = np.array([[cat.schema.index(g, it.labels[g]) for g in ("category", "color")] for it in cat.items])
    builtin = Encoder.builtin(EncoderConfig(image_size=64), device="cpu")
    both_trained = precision_at_k(enc.embed_images(ims), labels, k=2)[-1]
    both_builtin = precision_at_k(builtin.embed_images(ims), labels, k=2)[-1]
    assert both_trained > both_builtin
    assert report["history"][-1]["ce"] < report["history"][0]["ce"]


def test_joint_block_similarity_is_the_product_of_the_group_similarities():
    parts = [{"name": "a", "values": ["x", "y", "z"]}, {"name": "b", "values": ["u", "v"]},
             {"name": "a*b", "joint": ["a", "b"]}]
    head = PartsHead(5, parts)
    torch.manual_seed(0)
    with torch.no_grad():
        pa, pb, pj = head.parts(head.logits(torch.randn(2, 5)))
    assert pj.shape == (2, 6)
    np.testing.assert_allclose(float(pj[0] @ pj[1]), float((pa[0] @ pa[1]) * (pb[0] @ pb[1])), rtol=1e-5)
    only_joint = PartsHead(5, [{**parts[0], "weight": 0}, {**parts[1], "weight": 0}, parts[2]])
    assert only_joint.dim == 6
    with pytest.raises(EncoderError, match="joint"):
        PartsHead(5, [parts[0], {"name": "a*c", "joint": ["a", "c"]}])


def _docs_defaults() -> dict[str, tuple[str, str]]:
    """``{option: (head default, finetune default)}`` from the train-encoder table in docs/indexing.md."""
    text = DOCS.read_text()
    section = text[text.index("### train-encoder options"):]
    rows = re.findall(r"^\| `(--[a-z-]+)` \| ([^|]+) \| ([^|]+) \|", section, flags=re.M)
    return {opt: (head.strip().strip("`"), ft.strip().strip("`")) for opt, head, ft in rows}


def test_help_defaults_are_the_documented_ones(capsys):
    docs = _docs_defaults()
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["train-encoder"]
    actions = {a.option_strings[0]: a for a in sub._actions if a.option_strings}
    recipe_defaults = {"--image-size": (HeadTrainConfig.image_size, TrainConfig.image_size),
                       "--epochs": (HeadTrainConfig.epochs, TrainConfig.epochs),
                       "--train-stages": ("-", TrainConfig.train_stages), "--dim": ("-", TrainConfig.proj_dim)}
    assert set(recipe_defaults) <= set(docs) and "--recipe" in docs
    for opt, (head, ft) in recipe_defaults.items():
        assert docs[opt] == (str(head), str(ft)), opt
        helptext = actions[opt].help
        for value in (head, ft):
            if value != "-":
                assert str(value) in helptext, (opt, helptext)
    assert docs["--recipe"][0] == actions["--recipe"].default == "head"
    for opt in ("--holdout", "--seed"):
        assert docs[opt][0] == str(actions[opt].default)
    with pytest.raises(SystemExit):
        main(["train-encoder", "--help"])
    out = capsys.readouterr().out
    assert "head 224, finetune 160" in out and "head 30, finetune 12" in out


def test_demo_encoder_is_trained_once_per_catalog(small_catalog, tmp_path):
    from indexing.train_head import train_demo_encoder

    enc, trained = train_demo_encoder(small_catalog, tmp_path / "demo_enc")
    assert trained and enc.config.kind == "head" and enc.config.image_size == HeadTrainConfig.image_size
    again, trained_again = train_demo_encoder(small_catalog, tmp_path / "demo_enc")
    assert not trained_again and again.checksum == enc.checksum


def test_block_gradients_stay_finite_when_a_probability_underflows():
    """A metric loss backpropagates through the sqrt-softmax blocks; where a class probability
    underflows to 0, a plain sqrt's gradient is infinite and the head's weights turn NaN."""
    head = PartsHead(3, [{"name": "a", "values": ["x", "y", "z"]}])
    with torch.no_grad():
        head.layers[0].weight.zero_()
        head.layers[0].bias.copy_(torch.tensor([0.0, 200.0, -200.0]))
    v = head(torch.randn(2, 3))
    (v @ v.T).sum().backward()
    grads = [p.grad for p in head.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    np.testing.assert_allclose(v.norm(dim=1).detach().numpy(), 1.0, rtol=1e-6)


def test_attention_is_the_default_and_can_be_turned_off(head_encoder_dir, small_catalog, tmp_path):
    enc = Encoder.load(head_encoder_dir, "cpu")
    assert enc.config.attention == HeadTrainConfig.attention == 2
    assert isinstance(enc.proj, PartsHead) and set(enc.proj.attention) == {"category", "color"}
    out = tmp_path / "plain"
    assert main(["train-encoder", "--catalog", str(small_catalog), "--out", str(out), "--epochs", "1",
                 "--attention", "0", *FAST]) == 0
    plain = Encoder.load(out, "cpu")
    assert plain.config.attention == 0 and plain.maps_dim == 0 and not len(plain.proj.attention)
    assert plain.proj.layers[1].in_features < enc.proj.layers[1].in_features
    with pytest.raises(SystemExit, match="--attention"):
        main(["train-encoder", "--catalog", str(small_catalog), "--out", str(tmp_path / "ft"), "--recipe", "finetune",
              "--attention", "2", *FAST])
