"""Encoder: preprocessing, batching, normalisation, artefact folders and checksums, backbones, PCA."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from indexing.encoder import Encoder, EncoderConfig, EncoderError, with_pca


def _images(catalog_dir, n=6):
    return [Image.open(p).convert("RGB") for p in sorted((catalog_dir / "images").glob("*.jpg"))[:n]]


def test_embed_images_batched_equals_embed_tensor(small_encoder, small_catalog):
    ims = _images(small_catalog)
    v = small_encoder.embed_images(ims, batch_size=4)
    assert v.shape == (6, 1280) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    batch = torch.stack([small_encoder.preprocess(im) for im in ims])
    assert batch.shape == (6, 3, 64, 64)
    t = small_encoder.embed_tensor(batch).numpy()
    np.testing.assert_allclose(t, v, atol=1e-5)
    single = small_encoder.embed_tensor(batch[:1]).numpy()  # micro-batch of one
    np.testing.assert_allclose(single[0], v[0], atol=1e-5)
    with pytest.raises(EncoderError, match="Tensor"):
        small_encoder.embed_tensor(batch[0])


def test_preprocess_pads_to_square_with_white(small_encoder):
    tall = Image.new("RGB", (20, 60), (0, 0, 0))
    x = small_encoder.preprocess(tall)
    assert x.shape == (3, 64, 64)
    # left and right margins are white (1.0 after the [-1, 1] normalisation), the centre black
    assert x[:, 32, 0].min() > 0.95 and x[:, 32, 32].max() < -0.95


def test_save_load_round_trip_and_checksum(small_encoder, small_encoder_dir, small_catalog):
    loaded = Encoder.load(small_encoder_dir, "cpu")
    assert loaded.checksum == small_encoder.checksum
    assert loaded.encoder_id == small_encoder.encoder_id and loaded.dim == 1280
    ims = _images(small_catalog, 2)
    np.testing.assert_allclose(loaded.embed_images(ims), small_encoder.embed_images(ims), atol=1e-6)
    meta = json.loads((small_encoder_dir / "encoder.json").read_text())
    assert meta["checksum"] == small_encoder.checksum and meta["config"]["image_size"] == 64
    other = Encoder.builtin(EncoderConfig(image_size=64, pooling="avg"), device="cpu")
    assert other.checksum != small_encoder.checksum


def test_tampered_encoder_folder_is_refused(small_encoder, tmp_path):
    folder = small_encoder.save(tmp_path / "enc")
    state = torch.load(folder / "weights.pt", weights_only=True)
    state["pool.p"] = state["pool.p"] + 1  # an edited weight, same shapes
    torch.save(state, folder / "weights.pt")
    with pytest.raises(EncoderError, match="checksum mismatch"):
        Encoder.load(folder, "cpu")
    with pytest.raises(EncoderError, match="not an encoder folder"):
        Encoder.load(tmp_path, "cpu")


def test_torchvision_backbone_from_local_weights(tmp_path, small_catalog):
    import torchvision

    weights = tmp_path / "resnet18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    enc = Encoder(EncoderConfig(backbone="resnet18", image_size=64, pooling="avg"), weights=weights).to_device("cpu")
    enc.checksum = enc.compute_checksum()
    v = enc.embed_images(_images(small_catalog, 3))
    assert v.shape == (3, 512)
    enc.save(tmp_path / "r18")
    assert Encoder.load(tmp_path / "r18", "cpu").checksum == enc.checksum
    from indexing.backbones import BackboneError

    with pytest.raises(BackboneError, match="needs --weights"):
        Encoder(EncoderConfig(backbone="resnet18"))
    with pytest.raises(BackboneError, match="unknown backbone"):
        Encoder(EncoderConfig(backbone="no_such_net"), weights=weights)


def test_pca_whitening_projection(small_encoder, small_catalog):
    ims = _images(small_catalog, 30)
    pooled = small_encoder.embed_images(ims)
    enc = with_pca(small_encoder, pooled, dim=8, whiten=True)
    assert enc.dim == 8 and enc.checksum != small_encoder.checksum
    v = enc.embed_images(ims)
    assert v.shape == (30, 8)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    with pytest.raises(EncoderError, match="PCA dim"):
        with_pca(small_encoder, pooled, dim=100)


@pytest.mark.parametrize("backbone", ["efficientnet-lite0", "resnet18"])
def test_folded_batch_norms_embed_as_the_trained_trunk(backbone, tmp_path, small_catalog):
    """Inference folds each batch norm into the convolution before it: same vectors, and the
    folded copy is in neither the state dict nor the checksum; training runs the real trunk."""
    import torchvision

    from indexing.backbones import fold_batch_norms

    weights = None
    if backbone == "resnet18":
        weights = tmp_path / "w.pth"
        torch.manual_seed(0)
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    cfg = EncoderConfig(backbone=backbone, image_size=64, pooling="avg" if weights else "gem")
    enc = Encoder(cfg, weights=weights).to_device("cpu")
    checksum, keys = enc.compute_checksum(), set(enc.state_dict())
    ims = _images(small_catalog, 4)
    folded = enc.embed_images(ims)
    assert enc._folded  # built on first use
    enc.fold_batch_norms = False
    np.testing.assert_allclose(folded, enc.embed_images(ims), atol=2e-5)
    assert enc.compute_checksum() == checksum and set(enc.state_dict()) == keys
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in enc.trunk.modules())
    left = sum(isinstance(m, torch.nn.BatchNorm2d) for m in fold_batch_norms(enc.trunk).modules())
    assert norms > 0 and left == 0
    enc.train()
    assert not enc._folded
