"""The demo renderer: layout, determinism, variants, German tags and drawn ground truth."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catalog import Schema, SchemaError, load_catalog
from crawler.demo import render as R
from crawler.demo.draw import _shot, lum, make_fabric
from crawler.demo.spec import APPLIES, LENGTHS, MODEL_VIEWS, applies, vocab


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- layout ---------------------------------------------------------------------------------
def test_catalog_validates_strictly_with_default_schema(demo_catalog_dir: Path) -> None:
    cat = load_catalog(demo_catalog_dir, strict=True)
    assert len(cat) == 24
    assert cat.schema == Schema.default()
    assert json.loads((demo_catalog_dir / "schema.json").read_text()) == Schema.default().to_dict()
    truth = json.loads((demo_catalog_dir / R.GROUND_TRUTH_FILE).read_text())
    for it in cat:
        assert it.img_path == f"images/{it.id}.jpg"
        with Image.open(cat.image_path(it)) as im:
            assert im.size == (256, 256) and im.format == "JPEG"
        assert len(it.model_img_paths) == 4 and len(set(it.model_img_paths)) == 4
        assert all(p.startswith("model_images/") for p in it.model_img_paths)
        assert sorted(truth[p] for p in it.model_img_paths) == sorted(MODEL_VIEWS)
        assert it.brand and it.name and it.model_img_urls == []
    # file names and order carry no pose information
    firsts = {truth[it.model_img_paths[0]] for it in cat}
    assert len(firsts) >= 3


def test_inapplicable_groups_are_unknown_and_values_fit_category(demo_catalog_dir: Path) -> None:
    cat = load_catalog(demo_catalog_dir)
    seen_categories = set()
    for it in cat:
        c = it.labels["category"]
        seen_categories.add(c)
        for group in APPLIES:
            assert (it.labels[group] is not None) == (c in APPLIES[group]), (it.id, group)
        assert it.labels["length"] in LENGTHS[c]
        assert all(it.labels[g] for g in ("color", "fit", "pattern", "length"))
    assert len(seen_categories) >= 5


def test_german_tags_cover_every_known_label(demo_catalog_dir: Path) -> None:
    v = vocab()
    cat = load_catalog(demo_catalog_dir)
    for it in cat:
        tags = dict(t.split(": ", 1) for t in it.attributes if ": " in t)
        for group, value in it.labels.items():
            if value is None:
                continue
            keys = v["tag_keys"][group]
            keys = keys.get(it.labels["category"], keys["default"]) if isinstance(keys, dict) else keys
            present = [k for k in keys if k in tags]
            assert len(present) == 1, (it.id, group, it.attributes)
            text = tags[present[0]]
            if group == "color":
                assert text in [w for w, _ in v["colors"][value]]
            elif group == "length":
                assert any(text in words for words in v["values"]["length"][value].values())
            else:
                assert text in v["values"][group][value], (it.id, group, text)
        assert any(t.startswith(("Material", "Pflegehinweis", "Nachhaltigkeit", "Futter", "Artikelnummer",
                                 "Größe", "Das Model")) for t in it.attributes)


def test_tag_wording_varies_and_kurz_is_used_in_two_groups() -> None:
    v = vocab()
    assert "Kurz" in v["values"]["sleeve_length"]["short"]
    assert "Kurz" in v["values"]["length"]["short"]["default"]
    assert "Ausgestellt" in v["values"]["fit"]["loose"]


# --- determinism ----------------------------------------------------------------------------
def test_same_seed_byte_identical_whatever_the_workers(tmp_path: Path) -> None:
    a = R.render_catalog(tmp_path / "a", products=8, seed=5, workers=1)
    b = R.render_catalog(tmp_path / "b", products=8, seed=5, workers=2)
    ta, tb = _tree(a), _tree(b)
    assert len(ta) == 8 * 5 + 4  # 5 photos per product + csv, schema, ground truth, manifest
    assert ta.keys() == tb.keys()
    assert all(ta[k] == tb[k] for k in ta)
    # a shorter catalog is a prefix of a longer one (product i depends on (seed, i) only)
    c = R.render_catalog(tmp_path / "c", products=3, seed=5, workers=1)
    for rel, data in _tree(c).items():
        if rel.startswith(("images/", "model_images/")):
            assert ta[rel] == data
    d = R.render_catalog(tmp_path / "d", products=3, seed=6, workers=1)
    assert (d / "catalog.csv").read_bytes() != (c / "catalog.csv").read_bytes()


def test_resume_keeps_existing_files_and_ends_identical(tmp_path: Path) -> None:
    out = R.render_catalog(tmp_path / "a", products=4, seed=1, workers=1)
    before = _tree(out)
    victim = out / sorted(before)[-1]
    victim.unlink()
    (out / "catalog.csv").unlink()
    R.render_catalog(out, products=4, seed=1, workers=1, resume=True)
    assert _tree(out) == before


# --- variants -------------------------------------------------------------------------------
def _first(cat, pred):
    return next(it for it in cat if pred(it))


def test_variant_with_unchanged_value_reproduces_the_photo(demo_catalog_dir: Path, tmp_path: Path) -> None:
    cat = load_catalog(demo_catalog_dir)
    it = cat.items[0]
    for view, rel in [("product", it.img_path)]:
        out = R.render_variant(demo_catalog_dir, it.id, {"color": it.labels["color"]}, tmp_path / "same.jpg", view)
        assert out.read_bytes() == (demo_catalog_dir / rel).read_bytes()
    truth = json.loads((demo_catalog_dir / R.GROUND_TRUTH_FILE).read_text())
    rel = it.model_img_paths[0]
    out = R.render_variant(demo_catalog_dir, it.id, {"fit": it.labels["fit"]}, tmp_path / "m.jpg", truth[rel])
    assert out.read_bytes() == (demo_catalog_dir / rel).read_bytes()


@pytest.mark.parametrize("group", ["sleeve_length", "length", "fit", "neckline", "color", "pattern"])
def test_variant_changes_only_the_requested_attribute(demo_catalog_dir: Path, tmp_path: Path, group: str) -> None:
    schema = Schema.default()
    cat = load_catalog(demo_catalog_dir)
    it = _first(cat, lambda i: i.labels[group] is not None and i.labels["category"] in ("dresses", "tops", "blouses"))
    allowed = LENGTHS[it.labels["category"]] if group == "length" else schema.values(group)
    value = next(v for v in allowed if v != it.labels[group])
    out = R.render_variant(demo_catalog_dir, it.id, {group: value}, tmp_path / "v.jpg")
    labels = R.variant_labels(demo_catalog_dir, it.id, {group: value})
    assert labels[group] == value
    assert {g: v for g, v in labels.items() if g != group} == {g: v for g, v in it.labels.items() if g != group}
    new, old = _rgb(out).astype(int), _rgb(demo_catalog_dir / it.img_path).astype(int)
    changed = np.abs(new - old).max(axis=2) > 40
    assert changed.mean() > 0.005, "the change must be visible"
    if group in ("sleeve_length", "length", "neckline"):
        # a shape change is local: most of the photo (background, the rest of the garment) stays
        assert changed.mean() < 0.35


def test_category_change_keeps_a_valid_length(demo_catalog_dir: Path, tmp_path: Path) -> None:
    cat = load_catalog(demo_catalog_dir)
    it = _first(cat, lambda i: i.labels["category"] in ("tops", "blouses", "knitwear", "jackets"))
    R.render_variant(demo_catalog_dir, it.id, {"category": "skirts"}, tmp_path / "s.jpg")
    labels = R.variant_labels(demo_catalog_dir, it.id, {"category": "skirts"})
    assert labels["length"] in LENGTHS["skirts"] and labels["sleeve_length"] is None


def _cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    R.add_arguments(p)
    return R.run(p.parse_args(argv))


def test_cli_variant_and_bad_sets(demo_catalog_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cat = load_catalog(demo_catalog_dir)
    top = _first(cat, lambda i: i.labels["sleeve_length"] is not None)
    bottom = _first(cat, lambda i: i.labels["category"] in ("pants", "skirts"))
    out = tmp_path / "v.jpg"
    base = ["--variant-of", top.id, "--catalog", str(demo_catalog_dir), "--out", str(out)]
    sleeve = "short" if top.labels["sleeve_length"] != "short" else "long"
    assert _cli(base + ["--set", f"sleeve_length={sleeve}", "--set", "color=red"]) == 0
    assert Image.open(out).size == (256, 256)
    capsys.readouterr()
    cases = [
        (["--set", "sleeves=short"], ["sleeves", "sleeve_length", "neckline"]),
        (["--set", "sleeve_length=tiny"], ["tiny", "half, long, short, sleeveless"]),
        (["--set", "sleeve_length"], ["GROUP=VALUE"]),
        ([], ["--set"]),
    ]
    for extra, words in cases:
        assert _cli(base + extra) == 2
        err = capsys.readouterr().err
        assert all(w in err for w in words), (extra, err)
    # a group that does not apply to the product's category names where it does apply
    assert _cli(["--variant-of", bottom.id, "--catalog", str(demo_catalog_dir), "--out", str(out),
                 "--set", "sleeve_length=short"]) == 2
    assert "does not apply" in capsys.readouterr().err
    assert _cli(["--variant-of", "NOPE-1", "--catalog", str(demo_catalog_dir), "--out", str(out),
                 "--set", "color=red"]) == 2
    assert "NOPE-1" in capsys.readouterr().err
    with pytest.raises(SchemaError, match="allowed"):
        R.render_variant(demo_catalog_dir, top.id, {"color": "mauve"}, out)


# --- the drawn poses match the ground truth -------------------------------------------------
def _pose_measures(img: np.ndarray, background: np.ndarray, skin, hair, head_share: float) -> dict[str, float]:
    """Simple image measurements: where the non-background is and what the head shows.

    ``skin_share``: among the pixels of the top ``head_share`` of the figure that look like
    the model's skin or hair, the share that is skin (a face shows skin, hair from behind not).
    """
    h, w, _ = img.shape
    fg = np.abs(img.astype(int) - background.astype(int)).max(axis=2) > 22
    rows = np.nonzero(fg.mean(axis=1) > 0.01)[0]
    top, bottom = (int(rows[0]), int(rows[-1])) if len(rows) else (h, 0)
    head_rows = max(int(head_share * (bottom - top)), 6)
    cols = np.nonzero(fg[top:top + head_rows].any(axis=0))[0]
    left, right = (int(cols[0]), int(cols[-1])) if len(cols) else (0, w - 1)
    quarter = (right - left) // 4  # the middle half of the head: face or hair, not ears
    head = img[top:top + head_rows, left + quarter:right - quarter + 1].reshape(-1, 3).astype(int)
    head_fg = fg[top:top + head_rows, left + quarter:right - quarter + 1].reshape(-1)
    d_skin = np.abs(head - np.array(skin)).max(axis=1)
    d_hair = np.abs(head - np.array(hair)).max(axis=1)
    near = head_fg & (np.minimum(d_skin, d_hair) < 40)
    skin_share = float((near & (d_skin < d_hair)).sum() / max(near.sum(), 1))
    return {"fg": float(fg.mean()), "top": top, "bottom": bottom, "height": (bottom - top + 1) / h,
            "top_rows": float(fg[:3].mean()), "bottom_rows": float(fg[-3:].mean()), "skin_share": skin_share}


def test_ground_truth_poses_match_what_was_drawn(demo_catalog_dir: Path) -> None:
    """Each photo's true pose shows in measurable properties of its pixels.

    Light garments on the light studio backdrop are left out of the measures that need the
    figure to stand out from the backdrop (their faces and hair are still checked).
    """
    cat = load_catalog(demo_catalog_dir)
    truth = json.loads((demo_catalog_dir / R.GROUND_TRUTH_FILE).read_text())
    checked = {v: 0 for v in MODEL_VIEWS}
    for it in cat:
        spec = R.spec_for(demo_catalog_dir, it.id)
        contrast = lum(make_fabric(spec, spec.labels).base) < 170
        companion_contrast = lum(spec.look.companion) < 170
        for rel in it.model_img_paths:
            pose = truth[rel]
            m = _pose_measures(_rgb(demo_catalog_dir / rel), _shot(spec, pose).background, spec.look.skin,
                               spec.look.hair, 0.25 if pose == "upper_close" else 0.1)
            where = f"{it.id} {rel} {pose}: {m}"
            if pose in ("front_full", "back_full"):
                # the whole body, head to feet, with backdrop above and below
                assert m["height"] > 0.8 and m["top"] >= 2 and m["bottom_rows"] < 0.02, where
                assert m["fg"] < 0.4, where
            if pose == "front_full":
                assert m["skin_share"] > 0.2, where  # a face
            if pose == "back_full":
                assert m["skin_share"] < 0.1, where  # hair from behind
            if pose == "upper_close":
                assert m["top"] >= 1 and m["skin_share"] > 0.3, where  # head in the picture, face
                if companion_contrast or spec.category == "dresses":
                    assert m["bottom_rows"] > 0.1, where  # cut below the waist
            if pose == "detail" and contrast:
                assert m["top_rows"] > 0.3 and m["fg"] > 0.45, where  # all cloth, no head
            checked[pose] += 1
    assert min(checked.values()) == len(cat)


def test_contact_sheet(demo_catalog_dir: Path, tmp_path: Path) -> None:
    out = R.contact_sheet(demo_catalog_dir, tmp_path / "sheet.png", n=3)
    with Image.open(io.BytesIO(out.read_bytes())) as im:
        assert im.size[1] == 3 * 128


def test_bad_arguments() -> None:
    with pytest.raises(R.RenderError, match="--products"):
        R.render_catalog("/nonexistent-never-created", products=0, seed=0)
    with pytest.raises(R.RenderError, match="render.json"):
        R.spec_for(Path(__file__).parent, "X")
    assert applies("length", "pants") and not applies("neckline", "skirts")


def test_failing_worker_is_reported_not_hung(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a worker interpreter that dies at once: the parent must stop and say which one, with exit code
    monkeypatch.setattr(R.sys, "executable", "/bin/false")
    with pytest.raises(R.RenderError, match=r"render worker .* failed \(exit 1\)"):
        R.render_catalog(tmp_path / "x", products=8, seed=0, workers=2)
    assert not (tmp_path / "x" / "catalog.csv").exists()
