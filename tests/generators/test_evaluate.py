"""``python -m generators.evaluate``: metrics, the attribute classifier, and end-to-end runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from catalog import load_catalog
from generators import evaluate as E
from generators.evaluate.classifier import AttributeClassifier, ClassifierConfig, load_or_fit

SIZE = 32  # the GAN working size used throughout (smallest the trainer allows; fast on CPU)


# --- metrics --------------------------------------------------------------------------------
def test_ssim_reference_values() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g)
    assert torch.allclose(E.ssim(x, x), torch.ones(2), atol=1e-6)
    # constant images: variances vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.2, 0.7, 0.01**2
    s = E.ssim(torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b))
    assert s.item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-5)
    noisy = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    noisier = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert (E.ssim(x, noisier) < E.ssim(x, noisy)).all() and (E.ssim(x, noisy) < 1).all()
    assert torch.allclose(E.ssim(x, noisy), E.ssim(noisy, x), atol=1e-6)
    with pytest.raises(ValueError, match="same shape|one shape"):
        E.ssim(x, x[:, :, :16])


def test_l1_and_frechet_distance() -> None:
    a, b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.25)
    assert E.l1(a, b).item() == pytest.approx(0.25)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 6))
    shift = np.array([1.0, -2.0, 0, 0, 0.5, 0])
    # equal covariances: the distance is the squared mean difference
    assert E.frechet_distance(x, x + shift) == pytest.approx(float(shift @ shift), rel=1e-6)
    y = rng.standard_normal((4000, 6))
    assert E.frechet_distance(x, y) < 0.05
    # different spread adds the trace term: N(0, I) vs N(0, 4I) in 6-d is 6 * (1 + 4 - 2*2) = 6
    assert E.frechet_distance(x, 2 * y) == pytest.approx(6.0, rel=0.1)
    # both branches (fewer / more samples than dimensions) agree with the textbook formula
    from scipy import linalg

    for n, dim in ((12, 40), (300, 5)):
        a = rng.standard_normal((n, dim)) @ rng.standard_normal((dim, dim))
        b = rng.standard_normal((n + 3, dim)) + 0.3
        s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2) - 2 * np.trace(np.real(linalg.sqrtm(s1 @ s2)))
        assert E.frechet_distance(a, b) == pytest.approx(ref, rel=1e-6, abs=1e-6)


# --- the classifier -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def classifier(demo_catalog_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[AttributeClassifier, Path]:
    folder = tmp_path_factory.mktemp("clf") / "classifier"
    cat = load_catalog(demo_catalog_dir, check_images=False)
    # no mirrored copies: half the trunk passes, and the test needs the wiring, not accuracy
    return load_or_fit(cat, folder, ClassifierConfig(resolution=SIZE, flip=False)), folder


def test_classifier_reports_heldout_accuracy_and_round_trips(classifier, demo_catalog_dir: Path) -> None:
    clf, folder = classifier
    rep = clf.report
    assert rep["items"] == 24 and rep["heldout_items"] == 5 and rep["train_items"] == 19
    for g in ("color", "pattern", "category"):
        e = rep["groups"][g]
        assert 0.0 <= e["heldout_accuracy"] <= 1.0 and e["heldout"] >= 1
    cat = load_catalog(demo_catalog_dir, check_images=False)
    train = [it for it in cat.items if it.id not in set(rep["heldout_ids"])][:10]
    images = [Image.open(cat.image_path(it)).convert("RGB") for it in train]
    pred = clf.predict(images)
    # heads wired to the right classes: the training photos are read back (linear probe)
    acc = np.mean([p == it.labels["color"] for p, it in zip(pred["color"], train, strict=True)])
    assert acc >= 0.9
    again = AttributeClassifier.load(folder)
    assert again.predict(images[:4]) == clf.predict(images[:4])
    # reused, not refitted, for the same catalog and resolution
    assert load_or_fit(cat, folder, ClassifierConfig(resolution=SIZE, flip=False)).report == again.report


# --- edit metrics with known editors --------------------------------------------------------
class _FakeEditor:
    """Duck-typed Editor: returns its inputs (identity) or the renderer's true variant (oracle)."""

    def __init__(self, catalog_dir: Path, by_image: dict[int, str], oracle: bool, tmp: Path) -> None:
        self.catalog_dir, self.by_image, self.oracle, self.tmp = catalog_dir, by_image, oracle, tmp

    def edit(self, images, changes, source_labels=None):
        if not self.oracle:
            return [im.resize((SIZE, SIZE), Image.BICUBIC) for im in images]
        from crawler.demo.render import render_variant

        out = []
        for im in images:
            iid = self.by_image[id(im)]
            p = render_variant(self.catalog_dir, iid, dict(changes), self.tmp / f"{iid}_{len(out)}.png")
            out.append(Image.open(p).convert("RGB").resize((SIZE, SIZE), Image.BICUBIC))
        return out


@pytest.mark.parametrize("oracle", [False, True], ids=["identity", "oracle"])
def test_edit_metrics_against_identity_and_oracle_editors(classifier, demo_catalog_dir: Path, tmp_path: Path,
                                                          monkeypatch, oracle: bool) -> None:
    clf, _ = classifier
    cat = load_catalog(demo_catalog_dir, check_images=False)
    by_image: dict[int, str] = {}
    from generators.evaluate import edits as edits_module

    real_open = edits_module.open_rgb

    def tracking_open(path: Path):  # remember which product each input image is
        im = real_open(path)
        for it in cat.items:
            if Path(path) == cat.image_path(it):
                by_image[id(im)] = it.id
        return im

    monkeypatch.setattr(edits_module, "open_rgb", tracking_open)
    groups = {g: list(cat.schema.groups[g]) for g in ("color", "pattern")}
    cfg = E.EvalConfig(items=3, variant_of=True)
    editor = _FakeEditor(demo_catalog_dir, by_image, oracle, tmp_path)
    out = E.evaluate_edits(editor, cat, clf, groups, SIZE, cfg, None, pass_labels=False)
    pres = out["preservation"]
    assert out["edits"] == 6
    ref = pres["reference_input_to_true_variant"]
    if oracle:
        # the output is the truth: zero distance to it, and as far from the input as the truth is
        assert pres["l1_to_true_variant"]["mean"] < 1e-6 and pres["ssim_to_true_variant"]["mean"] > 0.999
        assert pres["l1_to_input"]["mean"] == pytest.approx(ref["l1"]["mean"], abs=1e-6)
        assert ref["l1"]["mean"] > 0.005  # the true variants do differ from the inputs
    else:
        # returning the input: nothing changed, and it is exactly as far from the truth as the input
        assert pres["l1_to_input"]["mean"] < 1e-6 and pres["ssim_to_input"]["mean"] > 0.999
        assert pres["l1_to_true_variant"]["mean"] == pytest.approx(ref["l1"]["mean"], abs=1e-6)
        # the classifier sees the very same pixels before and after: every other group is kept
        assert out["kept_other_groups"] == 1.0


# --- end to end on real (tiny) checkpoints --------------------------------------------------
TINY = ["--image-size", str(SIZE), "--steps", "2", "--batch-size", "2", "--quiet", "--no-tensorboard",
        "--set", "train.sample_every=2", "--set", "train.checkpoint_every=2"]


def test_evaluate_cli_on_a_stargan_checkpoint(demo_catalog_dir: Path, classifier, tmp_path: Path) -> None:
    from generators.train import main as train_main

    run = tmp_path / "stargan"
    assert train_main(["--model", "stargan", "--catalog", str(demo_catalog_dir), "--out", str(run), *TINY,
                       "--set", "stargan.g_conv_dim=8", "--set", "stargan.d_conv_dim=8",
                       "--set", "stargan.g_repeat_num=1", "--set", "stargan.n_critic=1"]) == 0
    out = tmp_path / "eval.json"
    _, clf_dir = classifier
    assert E.main(["--run", str(run), "--catalog", str(demo_catalog_dir), "--out", str(out), "--variant-of",
                   "--items", "2", "--classifier", str(clf_dir)]) == 0
    rep = json.loads(out.read_text())
    ed = rep["edits"]
    assert rep["image_size"] == SIZE and ed["items"] == 2 and ed["edits"] >= 6
    assert 0.0 <= ed["edit_success"] <= 1.0 and 0.0 <= ed["kept_other_groups"] <= 1.0
    for key in ("l1_to_input", "ssim_to_input", "l1_to_true_variant", "ssim_to_true_variant"):
        assert ed["preservation"][key]["n"] == ed["edits"]
    assert ed["frechet_distance"]["value"] > 0 and ed["frechet_distance"]["generated"] == ed["edits"]
    assert rep["classifier"]["heldout_items"] == 5 and "to_model" not in rep


def test_evaluate_pix2pix_on_held_out_products(demo_catalog_dir: Path, tmp_path: Path) -> None:
    from generators.pairs import select_pairs, write_pairs
    from generators.train import main as train_main

    res = select_pairs(demo_catalog_dir, "kmeans", progress=False)  # any pairs do for a 2-step run
    pairs = write_pairs(tmp_path / "pairs.jsonl", res.pairs)
    run = tmp_path / "pix2pix"
    assert train_main(["--model", "pix2pix", "--catalog", str(demo_catalog_dir), "--pairs", str(pairs),
                       "--out", str(run), "--max-items", "16", *TINY,
                       "--set", "pix2pix.ngf=8", "--set", "pix2pix.ndf=8"]) == 0
    rep = E.evaluate(run, demo_catalog_dir, E.EvalConfig(items=3))
    tm = rep["to_model"]
    assert tm["heldout"] is True and tm["products"] == 3 and tm["truth"] == "ground_truth.json"
    assert 0 < tm["l1_to_true_model_photo"]["mean"] < 1 and -1 <= tm["ssim_to_true_model_photo"]["mean"] <= 1
    assert "edits" not in rep


def test_evaluate_errors_name_the_problem(demo_catalog_dir: Path, tmp_path: Path, capsys) -> None:
    assert E.main(["--run", str(tmp_path / "nothing"), "--catalog", str(demo_catalog_dir),
                   "--out", str(tmp_path / "e.json")]) == 1
    assert "--run" in capsys.readouterr().err
