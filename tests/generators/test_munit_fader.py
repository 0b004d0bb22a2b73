"""MUNIT (diverse edits) and Fader (sliders): training, exact resume, strength, variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gan_helpers import TINY_SCHEMA, garment, make_tiny_catalog, read_log, write_tiny_config
from PIL import Image

from generators.checkpoint import export_inference, load_checkpoint
from generators.inference import EditError, load_editor
from generators.models.munit import spread_styles
from generators.recipes import all_recipes
from generators.train import main as train_main
from indexing.fusion import reciprocal_rank_fusion

COMMON = ["--batch-size", "2", "--quiet", "--no-tensorboard", "--threads", "1", "--min-count", "1",
          "--image-size", "32", "--sample-every", "2", "--checkpoint-every", "2"]
DOMAINS = {"munit": ["--domain-a", "product:pattern=unicolors", "--domain-b", "product:pattern=stripes"], "fader": []}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_catalog(tmp_path_factory.mktemp("tiny_mf"), n=12, size=64)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_config(tmp_path_factory.mktemp("cfg_mf") / "tiny.json")


def _train(model: str, catalog: Path, out: Path, config: Path, *extra: str) -> int:
    return train_main(["--model", model, "--catalog", str(catalog), "--out", str(out), "--config", str(config),
                       *COMMON, *DOMAINS[model], *extra])


@pytest.fixture(scope="module")
def runs(tiny: Path, tiny_config: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each model trained 4 steps in one go (the resume test's reference, and the inference tests' model)."""
    out = {}
    for model in ("munit", "fader"):
        run = tmp_path_factory.mktemp(f"{model}_run") / "run"
        assert _train(model, tiny, run, tiny_config, "--steps", "4") == 0
        out[model] = run
    return out


@pytest.mark.parametrize("model", ["munit", "fader"])
def test_trains_two_steps_and_resumes_exactly(model: str, runs: dict[str, Path], tiny: Path, tiny_config: Path,
                                              tmp_path: Path) -> None:
    split = tmp_path / "split"
    assert _train(model, tiny, split, tiny_config, "--steps", "4", "--stop-at", "2") == 0
    assert load_checkpoint(split / "checkpoints" / "last.pt")["step"] == 2
    assert (split / "samples" / "step_00000002.png").is_file()
    assert train_main(["--model", model, "--catalog", str(tiny), "--out", str(split), "--resume", "--quiet",
                       "--no-tensorboard", "--threads", "1"]) == 0
    a, b = read_log(runs[model]), read_log(split)
    assert [r["step"] for r in a] == [1, 2, 3, 4]
    assert all(v == v for r in a for k, v in r.items() if k.startswith(("G/rec", "D/loss")))  # finite, not NaN
    assert a == b  # every loss and learning rate, bit for bit
    sd_a = load_checkpoint(runs[model] / "checkpoints" / "last.pt")["nets"]
    sd_b = load_checkpoint(split / "checkpoints" / "last.pt")["nets"]
    for net in sd_a:
        for k in sd_a[net]:
            assert torch.equal(sd_a[net][k], sd_b[net][k]), f"{net}.{k} differs after resume"


def _photo(w: int = 90, h: int = 70) -> Image.Image:
    im = Image.new("RGB", (w, h), "white")
    im.paste((200, 30, 30), (25, 10, 65, 60))
    return im


@pytest.mark.parametrize("model", ["munit", "fader"])
def test_strength_zero_returns_the_input_and_strength_is_checked(model: str, runs: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    exported = export_inference(runs[model] / "checkpoints" / "last.pt", tmp_path / f"{model}.pt", fp16=True)
    editor = load_editor(exported, device="cpu")
    caps = editor.capabilities()
    assert caps["continuous"] is True and caps["full_resolution"] is True
    assert caps["multi_modal"] is (model == "munit")
    x = torch.rand(2, 3, 48, 48) * 2 - 1
    change = {"pattern": "stripes"}
    if model == "fader":  # a colour neither image has (as the heads read them): a real change
        read = {r["color"] for r in editor.predict_labels(x)}
        change = {"color": next(c for c in ("red", "blue", "green") if c not in read)}
    photo = _photo()
    same = editor.edit(photo, change, strength=0.0)
    assert same.size == photo.size  # full resolution: the photo's own size
    assert np.abs(np.asarray(same, np.float32) - np.asarray(photo, np.float32)).mean() / 255 < 0.01
    assert torch.equal(editor.edit(x, change, strength=0.0), x)
    full, half = editor.edit(x, change, strength=1.0), editor.edit(x, change, strength=0.5)
    d_full, d_half = (full - x).abs().mean(), (half - x).abs().mean()
    assert d_full > 0 and d_half < d_full  # a bigger strength moves further from the input
    for bad in (-0.1, 1.5, float("nan"), "1"):
        with pytest.raises(EditError, match="strength"):
            editor.edit(x, change, strength=bad)


def test_munit_variants_differ_from_one_another(runs: dict[str, Path]) -> None:
    editor = load_editor(runs["munit"], device="cpu")
    caps = editor.capabilities()["edit"]
    assert caps["edits"] == [{"pattern": "stripes"}, {"pattern": "unicolors"}]
    assert caps["sources"] == [{"pattern": "unicolors"}, {"pattern": "stripes"}]
    photos = [_photo(), _photo(64, 64)]
    out = editor.edit_variants(photos, {"pattern": "stripes"}, 4)
    assert len(out) == 2 and all(len(v) == 4 for v in out)
    assert [v[0].size for v in out] == [(90, 70), (64, 64)]
    # variant 1 is the single edit; every pair of variants differs
    single = editor.edit(photos, {"pattern": "stripes"})
    assert np.array_equal(np.asarray(out[0][0]), np.asarray(single[0]))
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    y = editor.edit_variants(x, {"pattern": "unicolors"}, 3)
    assert y.shape == (3, 3, 3, 32, 32)
    # a 4-step style encoder gives the bank near-identical styles: the variants differ, if only
    # slightly (the committed demo's visibly: test_munit_fader_demo)
    for i in range(3):
        for j in range(i + 1, 3):
            assert float((y[:, i] - y[:, j]).abs().mean()) > 1e-6, (i, j)
    # the same request gives the same variants
    assert torch.equal(y, editor.edit_variants(x, {"pattern": "unicolors"}, 3))
    with pytest.raises(EditError, match="variants"):
        editor.edit_variants(x, {"pattern": "unicolors"}, 0)
    with pytest.raises(EditError, match="unknown attribute group 'color'.*it edits: pattern"):
        editor.edit_variants(x, {"color": "red"}, 2)
    with pytest.raises(EditError, match="value 'floral' is not allowed"):
        editor.edit_variants(x, {"pattern": "floral"}, 2)


def test_munit_diversity_loss_is_on_by_default_and_can_be_switched_off(runs: dict[str, Path], tiny: Path,
                                                                     tiny_config: Path, tmp_path: Path) -> None:
    """StarGAN v2's diversity-sensitive term: the distance of two styles of one content is
    measured (and rewarded) on every step while its weight is above 0; ``lambda_ds 0`` switches it
    off, and then the second style is not even drawn."""
    ds = [r["G/ds"] for r in read_log(runs["munit"])]
    assert len(ds) == 4 and all(d > 0 for d in ds)
    off = tmp_path / "off"
    assert _train("munit", tiny, off, tiny_config, "--steps", "2", "--set", "munit.lambda_ds=0") == 0
    assert [r["G/ds"] for r in read_log(off)] == [0.0, 0.0]

def test_only_multi_modal_checkpoints_make_variants(runs: dict[str, Path]) -> None:
    editor = load_editor(runs["fader"], device="cpu")
    with pytest.raises(EditError, match="not multi-modal"):
        editor.edit_variants(_photo(), {"color": "blue"}, 2)


def test_variant_styles_are_spread_and_start_at_zero() -> None:
    s = spread_styles(5, 8, pool=4)
    assert s.shape == (5, 8) and torch.equal(s[0], torch.zeros(8))
    assert torch.equal(s, spread_styles(5, 8, pool=4))
    d = torch.cdist(s, s) + torch.eye(5) * 1e9
    plain = torch.cat([torch.zeros(1, 8), torch.randn(4, 8, generator=torch.Generator().manual_seed(1))])
    d_plain = torch.cdist(plain, plain) + torch.eye(5) * 1e9
    assert float(d.min()) > 1.0 and float(d.min()) >= float(d_plain.min()) * 0.9


def test_fader_asked_for_the_value_an_item_has_returns_it_unchanged(runs: dict[str, Path]) -> None:
    """The slider starts at the input's own values: the caller's known labels, else the heads' reading."""
    editor = load_editor(runs["fader"], device="cpu")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    own = [{"color": "blue"}, {"color": "blue"}]
    assert torch.equal(editor.edit(x, {"color": "blue"}, source_labels=own), x)
    assert not torch.equal(editor.edit(x, {"color": "red"}, source_labels=own), x)
    read = editor.predict_labels(x)
    assert torch.equal(editor.edit(x[:1], {"color": read[0]["color"]}), x[:1])


def test_reciprocal_rank_fusion_prefers_agreement() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "a"], ["b", "d"]])
    assert [i for i, _ in fused] == ["b", "a", "c", "d"]
    assert fused[0][1] == pytest.approx(1 / 62 + 2 / 61)  # b: ranks 2, 1, 1
    assert fused[1][1] == pytest.approx(1 / 61 + 1 / 63)
    # ties: the better best rank, then the order seen
    assert [i for i, _ in reciprocal_rank_fusion([["x", "y"], ["y", "x"]])] == ["x", "y"]
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([["a"]], k=-1)


@pytest.mark.parametrize(("model", "recipe"), [(m, n) for m, n, _ in all_recipes() if m in ("munit", "fader")])
def test_each_recipe_trains_a_step_and_loads(model: str, recipe: str, tiny: Path, tmp_path: Path) -> None:
    run = tmp_path / recipe
    size = "64" if recipe == "gpu" else "32"  # the recipe's own networks, at a size a test can afford
    extra = ["--set", f"{model}.judge_steps=2"]
    if model == "fader" and recipe == "gpu":
        extra += ["--set", "fader.n_down=5"]  # 64 px has room for five halvings, not six
    assert train_main(["--recipe", recipe, "--model", model, "--catalog", str(tiny), "--out", str(run),
                       "--image-size", size, "--steps", "1", "--batch-size", "2", "--quiet", "--no-tensorboard",
                       "--threads", "1", "--min-count", "1", *DOMAINS[model], *extra]) == 0
    assert load_editor(run, device="cpu").capabilities()["edit"]["groups"]


def test_fader_fits_silhouettes_and_a_shape_slider_moves_the_outline(runs: dict[str, Path]) -> None:
    """Length is a shape group: the decoder carries the catalog's mean outlines, and a length edit
    moves the garment's outline (at strength 1; at 0 it is the input)."""
    from generators.models.silhouette import garment_masks

    editor = load_editor(runs["fader"], device="cpu")
    G = editor.impl.G
    assert G.silhouettes is not None and bool((G.silhouette_counts > 0).all()), "short and long were both seen"
    long_, short = G.silhouettes[0, 1], G.silhouettes[0, 0]
    assert float((long_ - short).abs().mean()) > 0.1, "a long garment's outline differs from a short one's"
    x = torch.from_numpy(garment("red", "unicolors", "short", 32)).permute(2, 0, 1)[None].float() / 127.5 - 1
    own = [{"color": "red", "pattern": "unicolors", "length": "short"}]
    before = garment_masks((x + 1) / 2)
    after = garment_masks((editor.edit(x, {"length": "long"}, source_labels=own) + 1) / 2)
    assert float((after - before).clamp(min=0).sum()) > 20, "fabric grew below the hem"
    assert torch.equal(editor.edit(x, {"length": "long"}, source_labels=own, strength=0.0), x)


def test_fader_judges_the_slider_against_the_mix_and_the_unnamed_groups_against_the_input() -> None:
    """The slider loss: at strength s the heads should read ``(1 - s) source + s target``, and the
    groups an edit does not name as the input reads them (no tint on a length edit)."""
    from generators.models.fader import FaderSolver
    from generators.options import Config

    cfg = Config()
    solver = FaderSolver(cfg, TINY_SCHEMA, torch.device("cpu"))
    s = solver.sample_strengths(8)
    assert int((s == 1).sum()) == 4 and bool(((s > 0) & (s < 1)).sum() == 4)
    own, trg = torch.tensor([[0, 0, 0]]), torch.tensor([[1, 0, 0]])  # colour red -> blue
    named = trg != own
    sure = [torch.tensor([[9.0, -9.0, -9.0]]), torch.tensor([[9.0, -9.0]]), torch.tensor([[9.0, -9.0]])]
    half = [torch.tensor([[0.0, 0.0, -9.0]]), sure[1], sure[2]]
    at_half = solver._target_ce(half, own, trg, named, torch.tensor([0.5]))[0]
    assert float(at_half) < float(solver._target_ce(sure, own, trg, named, torch.tensor([0.5]))[0])
    assert float(solver._target_ce(sure, own, trg, named, torch.tensor([0.0]))[0]) < 1e-3, "strength 0: the source"
    assert float(solver._keep_kl(half, sure, named)) == pytest.approx(0.0, abs=1e-6), "only the named group moved"
    tinted = [sure[0], torch.tensor([[-9.0, 9.0]]), sure[2]]
    assert float(solver._keep_kl(tinted, sure, named)) > 1.0, "the pattern moved on a colour edit"
