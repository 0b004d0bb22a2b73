"""train-encoder: attribute heads + multi-similarity loss on a tiny catalog; artefact is versioned."""

from __future__ import annotations

import json

import numpy as np
import torch

from catalog import load_catalog
from indexing.__main__ import main
from indexing.encoder import Encoder
from indexing.train_encoder import holdout_split, multi_similarity_loss, pair_masks


def test_pair_masks_and_loss_prefers_matching_pairs():
    labels = torch.tensor([[0, 1], [0, 1], [0, 2], [-1, 1]])
    pos, neg = pair_masks(labels)
    assert pos[0, 1] and not pos[0, 0] and not pos[0, 2]  # same category+colour only
    assert neg[0, 2] and not neg[0, 3] and not pos[0, 3]  # unknown category: neither
    good = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1.0, 0.05], [0, 1.0], [0.7, 0.7]]), dim=1)
    bad = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [0, 1.0], [1.0, 0.05], [0.7, 0.7]]), dim=1)
    assert multi_similarity_loss(good, pos, neg) < multi_similarity_loss(bad, pos, neg)


def test_holdout_split_is_stable_and_disjoint():
    ids = [f"id{i}" for i in range(1000)]
    tr, te = holdout_split(ids, 0.3)
    assert set(tr).isdisjoint(te) and len(tr) + len(te) == 1000 and 250 < len(te) < 350
    tr2, te2 = holdout_split(list(reversed(ids)), 0.3)
    assert {ids[i] for i in te} == {list(reversed(ids))[i] for i in te2}


def test_train_encoder_cli_writes_versioned_encoder(small_catalog, tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["train-encoder", "--recipe", "finetune", "--catalog", str(small_catalog), "--out", str(out),
                 "--image-size", "64",
                 "--epochs", "30", "--dim", "32", "--workers", "0", "--device", "cpu", "--no-flip"]) == 0
    assert "saved" in capsys.readouterr().out
    enc = Encoder.load(out, "cpu")
    assert enc.dim == 32 and enc.config.kind == "finetuned" and enc.config.image_size == 64
    meta = json.loads((out / "encoder.json").read_text())
    assert meta["checksum"] == enc.checksum and enc.config.info["groups"] == ["category", "color"]
    report = json.loads((out / "train_report.json").read_text())
    assert report["history"][-1]["loss"] < report["history"][0]["loss"]  # it learned something
    # items sharing category and colour come closer than with the pretrained encoder
    cat = load_catalog(small_catalog)
    from PIL import Image

    from indexing.encoder import EncoderConfig

    ims = [Image.open(cat.image_path(it)) for it in cat.items]
    combo = np.array([f"{it.labels['category']}/{it.labels['color']}" for it in cat.items])

    def p_at_2(v):
        sims = v @ v.T
        np.fill_diagonal(sims, -np.inf)
        return (combo[np.argsort(-sims, axis=1)[:, :2]] == combo[:, None]).mean()

    pretrained = Encoder.builtin(EncoderConfig(image_size=64), device="cpu")
    assert p_at_2(enc.embed_images(ims)) > p_at_2(pretrained.embed_images(ims))
