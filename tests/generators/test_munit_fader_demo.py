"""The committed MUNIT and Fader demo checkpoints: inside their share of the demo budget, they
load, MUNIT's variants differ, Fader's strength 0 returns the photo and more strength moves further."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generators.inference import load_editor

DEMO = Path(__file__).resolve().parents[2] / "generators" / "demo_checkpoints"
MUNIT, FADER = DEMO / "experimental" / "munit_demo64.pt", DEMO / "experimental" / "fader_demo64.pt"
BUDGET_MB = 12.0  # MUNIT + Fader together, of the 40 MB demo budget


def _px(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"), np.float32) / 255.0


@pytest.fixture(scope="module")
def photos(make_demo_catalog) -> list[tuple[Image.Image, dict]]:
    """Held-out demo products (seed 0; the checkpoints trained on a seed-1 catalog): plain ones first."""
    from catalog import load_catalog

    cat = load_catalog(make_demo_catalog(24, 0))
    items = sorted(cat.items, key=lambda it: it.labels.get("pattern") != "unicolors")[:4]
    return [(Image.open(cat.image_path(it)).convert("RGB"), dict(it.labels)) for it in items]


def test_demo_checkpoints_fit_their_budget() -> None:
    sizes = {p.name: p.stat().st_size / 1e6 for p in (MUNIT, FADER)}
    assert sum(sizes.values()) < BUDGET_MB, sizes


def test_munit_demo_makes_different_floral_variants(photos) -> None:
    editor = load_editor(MUNIT, device="cpu")
    caps = editor.capabilities()
    assert caps["multi_modal"] and caps["edit"]["edits"] == [{"pattern": "floral"}, {"pattern": "unicolors"}]
    for photo, _ in photos[:2]:
        variants = editor.edit_variants(photo, {"pattern": "floral"}, 4)
        assert [v.size for v in variants] == [photo.size] * 4
        dists = [float(np.abs(_px(a) - _px(b)).mean()) for a, b in combinations(variants, 2)]
        assert min(dists) > 0.002, dists  # every pair differs (the whole photo, background included)
        assert float(np.abs(_px(variants[0]) - _px(photo)).mean()) > 0.005  # and it is an edit


def test_fader_demo_slides(photos) -> None:
    editor = load_editor(FADER, device="cpu")
    caps = editor.capabilities()
    assert caps["continuous"] and not caps["multi_modal"]
    photo, labels = photos[0]
    target = "black" if labels["color"] != "black" else "white"
    outs = [editor.edit(photo, {"color": target}, source_labels=[labels], strength=s) for s in (0.0, 0.5, 1.0)]
    d = [float(np.abs(_px(o) - _px(photo)).mean()) for o in outs]
    assert d[0] < 0.01 and d[0] < d[1] < d[2], d
