"""The masked editor: exact copy where the mask is 0, full-resolution output, recipes, search report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from gan_helpers import make_tiny_catalog, write_tiny_config
from PIL import Image

from generators.inference import load_editor
from generators.models.maskedit import apply_maps, downsample, guided_upsample
from generators.recipes import all_recipes
from generators.train import main as train_main

QUICK = ["--steps", "2", "--batch-size", "2", "--quiet", "--no-tensorboard", "--threads", "1",
         "--sample-every", "2", "--checkpoint-every", "2", "--min-count", "1"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_catalog(tmp_path_factory.mktemp("tiny_maskedit"), n=12, size=64)


@pytest.fixture(scope="module")
def trained(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("maskedit_run") / "run"
    cfg = write_tiny_config(tmp_path_factory.mktemp("cfg") / "tiny.json")
    assert train_main(["--model", "maskedit", "--catalog", str(tiny), "--out", str(run), "--config", str(cfg),
                       "--image-size", "32", *QUICK]) == 0
    return run


def test_a_pixel_with_mask_zero_is_the_input_exactly() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    maps = torch.randn(2, 10, 64, 64)
    maps[:, 0, :, :32] = -200.0  # sigmoid(-200) == 0 in float32: left half masked out
    out, mask, _ = apply_maps(x, maps, x)
    assert torch.all(mask[:, :, :, :32] == 0)
    assert torch.equal(out[..., :32], x[..., :32])
    assert not torch.allclose(out[..., 32:], x[..., 32:])  # the unmasked half did change
    maps[:, 8:10] = 0.0  # with a zero displacement field the warp is the identity
    warped, _, _ = apply_maps(x, maps, x, flow=True)
    assert torch.allclose(warped[..., :32], x[..., :32], atol=1e-5)


def test_only_edits_of_the_flow_groups_warp() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    maps = torch.randn(2, 10, 64, 64)
    plain, _, _ = apply_maps(x, maps, x)
    warped, _, _ = apply_maps(x, maps, x, flow=True)
    gated, _, _ = apply_maps(x, maps, x, flow=True, flow_on=torch.tensor([0, 1]))
    assert not torch.allclose(warped[0], plain[0], atol=1e-3), "the displacement field does move pixels"
    assert torch.allclose(gated[0], plain[0], atol=1e-5), "a photo whose edit names no flow group is not warped"
    assert torch.allclose(gated[1], warped[1], atol=1e-5)


def test_guided_upsampling_is_bilinear_on_a_flat_photo_and_follows_edges() -> None:
    lo = torch.rand(1, 4, 16, 16)
    flat_lo, flat_hi = torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 64, 64)
    up = guided_upsample(lo, flat_lo, flat_hi)
    bil = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(lo, 3, 1, 1, count_include_pad=False),
                                          size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(up, bil, atol=1e-5)
    # a sharp vertical edge in the photo: a map that follows the photo stays sharp at full resolution
    hi = torch.full((1, 3, 64, 64), -1.0)
    hi[..., 33:] = 1.0
    lo_img = downsample(hi, 16)
    mask_lo = lo_img[:, :1]  # the map is the photo itself
    sharp = guided_upsample(mask_lo, lo_img, hi, eps=1e-4)
    blurry = torch.nn.functional.interpolate(mask_lo, size=(64, 64), mode="bilinear", align_corners=False)
    err_sharp = (sharp - hi[:, :1]).abs().mean()
    err_blurry = (blurry - hi[:, :1]).abs().mean()
    assert err_sharp < 0.5 * err_blurry


def test_full_resolution_edit_returns_the_input_size(trained: Path) -> None:
    editor = load_editor(trained, device="cpu")  # a run folder: its latest checkpoint
    caps = editor.capabilities()
    assert caps["model"] == "maskedit" and caps["full_resolution"]
    photo = Image.new("RGB", (300, 200), "white")
    photo.paste((200, 30, 30), (100, 40, 200, 160))
    group, values = next(iter(caps["edit"]["groups"].items()))
    out = editor.edit(photo, {group: values[0]})
    assert out.size == (300, 200)
    outs = editor.edit([photo, photo.resize((64, 64))], {group: values[-1]})
    assert [o.size for o in outs] == [(300, 200), (64, 64)]
    x = torch.rand(2, 3, 80, 80) * 2 - 1
    assert editor.edit(x, {group: values[0]}).shape == (2, 3, 80, 80)
    # strength 0 is the input itself
    same = editor.edit(x, {group: values[0]}, strength=0.0)
    assert torch.allclose(same, x, atol=1e-6)


@pytest.mark.parametrize(("model", "recipe"), [(m, n) for m, n, _ in all_recipes() if m == "maskedit"])
def test_each_recipe_trains_two_steps_and_loads(model: str, recipe: str, tiny: Path, tmp_path: Path) -> None:
    from generators.recipes import find

    run = tmp_path / recipe
    size = "128" if recipe == "gpu" else "64"  # the recipe's own model, at a size a test can afford
    assert train_main(["--recipe", recipe, "--model", model, "--catalog", str(tiny), "--out", str(run),
                       "--image-size", size, "--set", "maskedit.judge_steps=5", *QUICK]) == 0
    cfg = json.loads((run / "config.json").read_text())
    for sec, fields in find(recipe, model).overrides.items():
        for k, v in fields.items():
            if k not in ("image_size", "steps", "batch_size", "sample_every", "checkpoint_every"):
                assert cfg[sec][k] == v, f"{recipe}: {sec}.{k}"
    editor = load_editor(run / "checkpoints" / "last.pt", device="cpu")
    assert editor.capabilities()["edit"]["groups"]


def test_recipe_and_model_must_agree(tiny: Path, tmp_path: Path, capsys) -> None:
    assert train_main(["--recipe", "demo-cpu", "--model", "stargan", "--catalog", str(tiny),
                       "--out", str(tmp_path / "r"), *QUICK]) == 2
    assert "model stargan has no such recipe" in capsys.readouterr().err
    assert train_main(["--recipe", "nope", "--catalog", str(tiny), "--out", str(tmp_path / "r"), *QUICK]) == 2
    assert "its recipes: demo-cpu, colour-cpu, gpu" in capsys.readouterr().err


class _Identity:
    """An editor that returns its input: its success must equal the unedited query's."""

    def capabilities(self) -> dict:
        return {"model": "identity", "edit": {"groups": {"color": ["beige", "black", "blue", "gray", "green", "pink",
                                                                  "red", "white", "yellow"]}}}

    def edit(self, images, changes, source_labels=None, strength=1.0):
        return list(images)


def test_edited_search_report_on_a_tiny_demo_catalog(make_demo_catalog, tmp_path: Path) -> None:
    from catalog import load_catalog
    from catalog.split import holdout_mask
    from generators.evaluate.baselines import LabColourShift, PaletteShift
    from generators.evaluate.search import SearchEvalConfig, edited_search, example_grid
    from indexing.encoder import Encoder

    cat = load_catalog(make_demo_catalog(30, 3), check_images=False)
    held = holdout_mask([it.id for it in cat.items], 0.3)
    train = [it for it, h in zip(cat.items, held, strict=True) if not h]
    editors = {"identity": _Identity(), "lab-shift": LabColourShift.fit(cat, train),
               "palette-shift": PaletteShift.fit(cat, train)}
    res = edited_search(editors, cat, Encoder.load(None, "cpu"), SearchEvalConfig(queries_per_group=4, holdout=0.3),
                        cache_dir=tmp_path)
    rep = res.report
    assert rep["mode"] == "render" and rep["reference"] == "truth"
    color = rep["groups"]["color"]
    assert color["queries"] >= 1
    s = color["success@10"]
    assert set(s) == {"unedited", "truth", "identity", "lab-shift", "palette-shift"}
    assert all(0.0 <= v <= 1.0 for v in s.values())
    per_value = color["by_target"]
    assert sum(e["queries"] for e in per_value.values()) == color["queries"]
    assert all(0.0 <= v <= 1.0 for e in per_value.values() for v in e["success@10"].values())
    assert s["identity"] == s["unedited"]  # the same pixels search the same way
    l1 = color["l1_to_truth"]
    assert l1["identity"] == pytest.approx(l1["unedited"])
    assert 0.0 < l1["unedited"] < 1.0
    head = rep["headline"]
    assert head["groups"] == ["color"] and 0.0 <= head["success@10"]["truth"] <= 1.0
    assert example_grid(res, ["identity", "lab-shift", "truth"]).size[0] > 0
    assert list(tmp_path.glob("gallery_*.npy")), "the gallery embedding is cached"


def test_a_colour_edit_starts_with_the_palette_step_and_other_edits_do_not(trained: Path) -> None:
    from test_palette import dotted_garment, lab_of

    from catalog import Schema
    from generators.checkpoint import load_checkpoint
    from generators.models.maskedit import (
        MaskEditInference,
        build_maskedit_generator,
        edit_photo,
        palette_index,
    )
    from generators.models.palette import dominant_lab
    from generators.options import Config

    ckpt = load_checkpoint(trained / "checkpoints" / "last.pt")
    assert "palette" in ckpt["nets"]["G"], "the fitted palette ships inside the generator"
    inf = MaskEditInference(ckpt, Config.from_dict(ckpt["config"]), Schema.from_dict(ckpt["schema"]),
                            torch.device("cpu"))
    cfg, schema = inf.cfg, inf.schema
    G = build_maskedit_generator(cfg, schema)  # untrained: its own maps change nothing
    j = palette_index(cfg, schema)
    assert j is not None and inf.edit_names[j] == "color"
    red = lab_of((0.8, 0.1, 0.1))
    G.palette[:] = red
    x = dotted_garment((0.1, 0.12, 0.35))
    trg = torch.full((1, len(inf.edit_names)), -1, dtype=torch.long)
    trg[0, j] = 0
    out, _, _ = edit_photo(G, x, trg, inf.edit_sizes, cfg.maskedit, j)
    assert (dominant_lab((out + 1) / 2)[0] - red).norm() < 5.0
    other = torch.full_like(trg, -1)
    other[0, next(i for i in range(len(inf.edit_names)) if i != j)] = 0
    same, _, _ = edit_photo(G, x, other, inf.edit_sizes, cfg.maskedit, j)
    assert torch.equal(same, x)


def test_a_checkpoint_from_before_the_palette_step_loads_and_edits_without_it(trained: Path, tmp_path: Path) -> None:
    from generators.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(trained / "checkpoints" / "last.pt")
    del ckpt["nets"]["G"]["palette"]
    old = save_checkpoint(tmp_path / "before_palette.pt", ckpt)
    editor = load_editor(old, device="cpu")
    assert editor.impl.palette_j is None and editor.impl.G.palette is None
    x = torch.rand(1, 3, 48, 48) * 2 - 1
    assert editor.edit(x, {"color": editor.capabilities()["edit"]["groups"]["color"][0]}).shape == x.shape


def test_a_shape_edit_starts_with_the_silhouette_step_and_old_checkpoints_load_without_it(
        trained: Path, tmp_path: Path) -> None:
    from test_silhouette import fitted, garment, to_pm1

    from catalog import Schema
    from generators.checkpoint import load_checkpoint, save_checkpoint
    from generators.models.maskedit import MaskEditInference, build_maskedit_generator, edit_photo
    from generators.options import Config

    ckpt = load_checkpoint(trained / "checkpoints" / "last.pt")
    assert "silhouettes" in ckpt["nets"]["G"], "the fitted silhouettes ship inside the generator"
    inf = MaskEditInference(ckpt, Config.from_dict(ckpt["config"]), Schema.from_dict(ckpt["schema"]),
                            torch.device("cpu"))
    assert inf.shape is not None and [inf.edit_names[j] for j in inf.shape.js] == ["length"]
    assert inf.shape.anchor_col == -1, "the tiny catalog has no category: one set of silhouettes"
    G = build_maskedit_generator(inf.cfg, inf.schema)  # untrained: its own maps change nothing
    tpl, counts = fitted()
    G.silhouettes[:] = tpl[:1]
    G.silhouette_counts[:] = counts[:1]
    j = inf.shape.js[0]
    x, long = to_pm1(garment(29)), to_pm1(garment(55))
    trg = torch.full((1, len(inf.edit_names)), -1, dtype=torch.long)
    trg[0, j] = 1
    out, _, _ = edit_photo(G, x, trg, inf.edit_sizes, inf.cfg.maskedit, None, shape=inf.shape)
    assert (out - long).abs().mean() < 0.25 * (x - long).abs().mean()
    same, _, _ = edit_photo(G, x, trg, inf.edit_sizes, inf.cfg.maskedit, None, shape=None)
    assert torch.equal(same, x), "without the step an untrained G changes nothing"

    assert "silhouette_bank" not in ckpt["nets"]["G"], "a length-only model keeps no exemplar bank"
    for key in ("silhouettes", "silhouette_counts"):
        del ckpt["nets"]["G"][key]
    editor = load_editor(save_checkpoint(tmp_path / "before_silhouettes.pt", ckpt), device="cpu")
    assert editor.impl.shape is None and editor.impl.G.silhouettes is None
    x = torch.rand(1, 3, 48, 48) * 2 - 1
    assert editor.edit(x, {"length": editor.capabilities()["edit"]["groups"]["length"][0]}).shape == x.shape


def test_the_silhouette_baseline_brings_a_length_edit_closer_to_the_true_rerendering(make_demo_catalog,
                                                                                      tmp_path: Path) -> None:
    from catalog import load_catalog
    from catalog.split import holdout_mask
    from generators.evaluate.baselines import non_learned_baselines
    from generators.evaluate.search import SearchEvalConfig, edited_search
    from indexing.encoder import Encoder

    cat = load_catalog(make_demo_catalog(160, 4), check_images=False)
    held = holdout_mask([it.id for it in cat.items], 0.3)
    train = [it for it, h in zip(cat.items, held, strict=True) if not h]
    editors = non_learned_baselines(cat, train, ["length", "sleeve_length"])
    assert set(editors) == {"silhouette-shift"}, "no colour group asked for: no colour baseline"
    res = edited_search(editors, cat, Encoder.load(None, "cpu"),
                        SearchEvalConfig(queries_per_group=12, holdout=0.3, groups=["length"]), cache_dir=tmp_path)
    l1 = res.report["groups"]["length"]["l1_to_truth"]
    assert l1["silhouette-shift"] < 0.8 * l1["unedited"]


def test_an_edit_to_the_plain_value_paints_the_print_over(trained: Path) -> None:
    from test_palette import dotted_garment

    from catalog import Schema
    from generators.checkpoint import load_checkpoint
    from generators.models.maskedit import MaskEditInference, build_maskedit_generator, edit_photo

    ckpt = load_checkpoint(trained / "checkpoints" / "last.pt")
    assert "plain" in ckpt["nets"]["G"], "the plain value ships inside the generator"
    from generators.options import Config

    inf = MaskEditInference(ckpt, Config.from_dict(ckpt["config"]), Schema.from_dict(ckpt["schema"]),
                            torch.device("cpu"))
    j = inf.plain_j
    assert j is not None and inf.edit_names[j] == "pattern"
    G = build_maskedit_generator(inf.cfg, inf.schema)  # untrained: its own maps change nothing
    G.plain.fill_(1)
    navy = (0.1, 0.12, 0.35)
    x = dotted_garment(navy)
    trg = torch.full((1, len(inf.edit_names)), -1, dtype=torch.long)
    trg[0, j] = 1
    out, _, _ = edit_photo(G, x, trg, inf.edit_sizes, inf.cfg.maskedit, None, plain_j=j)
    assert (out - dotted_garment(navy, dots=navy)).abs().max() < 0.05
    trg[0, j] = 0  # another pattern: no print removal
    same, _, _ = edit_photo(G, x, trg, inf.edit_sizes, inf.cfg.maskedit, None, plain_j=j)
    assert torch.equal(same, x)


def test_a_pattern_edit_draws_the_target_print_and_old_checkpoints_load_without_it(trained: Path,
                                                                                   tmp_path: Path) -> None:
    from generators.checkpoint import load_checkpoint, save_checkpoint
    from generators.models.palette import texture_energy

    ckpt = load_checkpoint(trained / "checkpoints" / "last.pt")
    g = ckpt["nets"]["G"]
    assert g["print_ok"].tolist() == [2, 1], "unicolors is the plain value (found from the photos), stripes has a tile"
    editor = load_editor(trained / "checkpoints" / "last.pt", device="cpu")
    plain = Image.fromarray(make_plain_garment())
    striped = editor.edit(plain, {"pattern": "stripes"})
    def energy(im: Image.Image) -> float:
        return float(texture_energy(torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255))

    before, after = energy(plain), energy(striped)
    assert after > before + 1, (before, after)
    for key in ("print_tiles", "print_ok"):
        del g[key]
    old = load_editor(save_checkpoint(tmp_path / "before_prints.pt", ckpt), device="cpu")
    assert old.impl.prints is None and old.impl.G.print_tiles is None and old.impl.plain_j is not None
    assert energy(old.edit(plain, {"pattern": "stripes"})) < before + 0.3, "without the tiles no print is drawn"


def make_plain_garment(size: int = 128):
    from gan_helpers import garment

    return garment("red", "unicolors", "long", size)
