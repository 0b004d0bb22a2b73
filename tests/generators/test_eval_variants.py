"""generators.evaluate.variants with stand-in editors, encoder and classifier (no model: fast).

The stand-ins are exact: a "slider" that blends towards the target colour is monotone by
construction, one that jumps around is not, and variants that are tinted differently have a
known distance, so the report's numbers can be checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gan_helpers import COLORS, make_tiny_catalog
from PIL import Image

from catalog import load_catalog
from generators.evaluate.common import EvaluationError
from generators.evaluate.variants import slider_report, strip, variants_report


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory):
    return load_catalog(make_tiny_catalog(tmp_path_factory.mktemp("eval_variants"), n=24, size=32))


def _blend(im: Image.Image, rgb: tuple[int, int, int], s: float) -> Image.Image:
    a = np.asarray(im.convert("RGB"), np.float32)
    return Image.fromarray(np.clip(a + s * (np.array(rgb, np.float32) - a), 0, 255).astype(np.uint8))


class MeanColourEncoder:
    checksum, encoder_id, dim = "mean-colour", "mean-colour", 3

    def embed_images(self, images):
        v = np.stack([np.asarray(im.convert("RGB"), np.float32).mean((0, 1)) / 255 + 1e-3 for im in images])
        return v / np.linalg.norm(v, axis=1, keepdims=True)


class TintVariants:
    """"pattern: stripes" from plain items; variant k is the photo tinted 10 % towards colour k."""

    tints = [(255, 255, 255), (0, 0, 0), (255, 0, 0), (0, 0, 255)]

    def capabilities(self):
        return {"model": "munit", "multi_modal": True,
                "edit": {"groups": {"pattern": ["stripes", "unicolors"]}, "edits": [{"pattern": "stripes"}],
                         "sources": [{"pattern": "unicolors"}]}}

    def edit_variants(self, images, changes, n):
        return [[_blend(im, self.tints[k], 0.1) for k in range(n)] for im in images]


class Slider:
    def __init__(self, steady: bool = True) -> None:
        self.steady = steady

    def capabilities(self):
        return {"model": "fader", "continuous": True, "edit": {"groups": {"color": list(COLORS)}}}

    def edit(self, images, changes, strength=1.0, source_labels=None):
        s = strength if self.steady else [0.0, 0.9, 0.1, 0.8, 0.2][int(round(strength * 4))]
        return [_blend(im, COLORS[changes["color"]], s) for im in images]


class ColourJudge:
    """P(colour) from the image's mean colour: the nearer the reference, the likelier."""

    groups = ["color"]
    heads = {"color": {"classes": list(COLORS)}}

    def features(self, images):
        return np.stack([np.asarray(im.convert("RGB"), np.float32).mean((0, 1)) for im in images])

    def proba_from_features(self, feats, group):
        ref = np.array([COLORS[c] for c in self.heads[group]["classes"]], np.float32)
        logits = -np.linalg.norm(feats[:, None] - ref[None], axis=2) / 20
        p = np.exp(logits - logits.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True)


def test_variants_report_measures_diversity_and_fused_search(catalog, tmp_path: Path) -> None:
    rep, shown = variants_report(TintVariants(), catalog, MeanColourEncoder(), n_variants=3, queries=10,
                                 holdout=0.5, cache_dir=tmp_path)
    e = rep["edits"]["pattern=stripes"]
    assert 0 < e["queries"] <= 10
    # white, black and red tints of 10 %: every pair differs by a known, non-zero amount
    assert 0.02 < e["pairwise_l1_pixels"]["mean"] < 0.1
    assert e["pairwise_cosine_distance_encoder"]["mean"] > 0
    succ = e["success@10"]
    assert set(succ) == {"unedited", "single", "fused", "best_variant"}  # not a demo catalog: no truth
    assert all(0.0 <= v <= 1.0 for v in succ.values()) and succ["best_variant"] >= succ["single"]
    assert rep["overall"]["queries"] == e["queries"]
    assert len(shown) == min(4, e["queries"]) and len(shown[0]["variants"]) == 3
    with pytest.raises(EvaluationError, match="not multi-modal"):
        variants_report(Slider(), catalog, MeanColourEncoder())


def test_slider_report_tells_a_steady_slider_from_an_erratic_one(catalog) -> None:
    steady, shown = slider_report(Slider(), catalog, ColourJudge(), queries=8, holdout=0.5)
    ov = steady["overall"]
    assert ov["queries"] > 0 and ov["monotone_probability"] == 1.0 and ov["monotone_distance"] == 1.0
    assert ov["strength0_l1_to_input"]["mean"] == 0.0
    curve = steady["groups"]["color"]["mean_target_probability"]
    assert curve == sorted(curve) and curve[-1] > curve[0]
    assert len(shown[0]["outputs"]) == 5
    erratic, _ = slider_report(Slider(steady=False), catalog, ColourJudge(), queries=8, holdout=0.5)
    assert erratic["overall"]["monotone_probability"] == 0.0 and erratic["overall"]["monotone_distance"] == 0.0


def test_strip_lays_out_one_row_per_example() -> None:
    im = Image.new("RGB", (40, 30), "red")
    pic = strip([("a", im, [im, im]), ("b", im, [im])], ["v1", "v2"], size=32)
    assert pic.size == (150 + 3 * 36 + 4, 14 + 2 * 36 + 4)
