"""The one loading rule every command uses (catalog.loading): which schema a catalog without
schema.json gets, and the refusal of a large silent loss."""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import pytest
from PIL import Image

from catalog import (
    CatalogError,
    LoadOptions,
    Schema,
    SchemaError,
    TooManySkippedError,
    add_catalog_options,
    load_catalog,
    open_catalog,
    options_from_args,
)
from catalog import format as fmt
from catalog.loading import accepting_share


def write_csv(root: Path, header: list[str], rows: list[list[str]], images: bool = True) -> Path:
    """A catalog folder from raw rows; every ``img_path`` gets a small JPEG unless it names 'missing'."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    pos = header.index("img_path")
    for i, r in enumerate(rows):
        if images and "missing" not in r[pos]:
            Image.new("RGB", (8, 8), (10 * (i % 25), 90, 160)).save(root / r[pos], "JPEG")
    with open(root / "catalog.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return root


def foreign_catalog(root: Path) -> Path:
    """A shop with its own vocabulary and no schema.json: 30 rows of 3 categories x 3 colours,
    one rare category ('kurtas', once) and an extra 'gender' column."""
    cats, cols = ["tshirts", "shirts", "jeans"], ["navy_blue", "grey", "black"]
    rows = [[f"x{i}", f"images/{i}.jpg", cats[i % 3], cols[(i // 3) % 3], "men"] for i in range(30)]
    rows.append(["x30", "images/30.jpg", "kurtas", "grey", "women"])
    return write_csv(root, ["id", "img_path", "category", "color", "gender"], rows)


def thesis_catalog(root: Path, stray: str | None = None) -> Path:
    """A catalog in the thesis vocabulary without schema.json; ``stray`` replaces one colour."""
    cats, cols = ["dresses", "tops", "skirts"], ["red", "blue"]
    rows = [[f"t{i}", f"images/{i}.jpg", cats[i % 3], cols[i % 2], "short"] for i in range(24)]
    if stray:
        rows[5][3] = stray
    return write_csv(root, ["id", "img_path", "category", "color", "length"], rows)


# --- rule 1: the schema ------------------------------------------------------------------------
def test_foreign_vocabulary_without_schema_is_loaded_whole(tmp_path):
    cat = open_catalog(foreign_catalog(tmp_path))
    assert len(cat.items) == cat.total_rows == 31 and not cat.issues
    assert cat.schema == Schema({"category": ("jeans", "shirts", "tshirts"), "color": ("black", "grey", "navy_blue")})
    assert "inferred from category, color" in cat.schema_source and "'tshirts' in category" in cat.schema_source
    rare = cat.by_id()["x30"]
    assert rare.labels["category"] is None  # seen once, under the minimum count: kept as unknown
    assert [(b.line, b.field, b.value) for b in cat.blanked] == [(32, "category", "kurtas")]
    assert rare.extra == {"gender": "women"}  # columns not named like a group stay extras
    assert cat.counts_line() == "kept 31 / skipped 0 / total 31 rows (1 cells outside the schema kept as unknown)"
    assert load_catalog(tmp_path).schema == cat.schema  # library callers get the same rule


def test_thesis_vocabulary_stays_for_a_catalog_that_fits_it(tmp_path):
    cat = open_catalog(thesis_catalog(tmp_path / "fits"))
    assert cat.schema == Schema.default() and "thesis vocabulary" in cat.schema_source
    assert len(cat.items) == 24
    same = load_catalog(tmp_path / "fits", schema=Schema.default())
    assert cat.checksum() == same.checksum()
    # a stray value (under the minimum count) does not decide the vocabulary: its row is skipped, as before
    stray = load_catalog(thesis_catalog(tmp_path / "stray", stray="bleu"))
    assert stray.schema == Schema.default()
    assert [(i.line, i.reason, i.field, i.value) for i in stray.issues] == [(7, fmt.VALUE_OUTSIDE_SCHEMA, "color", "bleu")]


def test_demo_catalog_behaves_as_before(make_demo_catalog, tmp_path):
    demo = make_demo_catalog(24, 0)
    before = load_catalog(demo, schema=Schema.default(), unknown_values="skip")
    now = open_catalog(demo)
    assert now.schema == Schema.default() and str(demo / "schema.json") == now.schema_source
    assert now.checksum() == before.checksum() and [i.id for i in now] == [i.id for i in before]
    bare = tmp_path / "no_schema"  # the same catalog without its schema.json fits the thesis vocabulary
    shutil.copytree(demo, bare)
    (bare / "schema.json").unlink()
    without = open_catalog(bare)
    assert without.schema == Schema.default() and without.checksum() == before.checksum()


def test_fits_means_every_frequent_value_is_in_the_default(tmp_path):
    # five of one foreign colour is a vocabulary, not a stray: the schema is inferred
    rows = [[f"r{i}", f"images/{i}.jpg", "dresses", "red" if i < 10 else "petrol"] for i in range(15)]
    cat = load_catalog(write_csv(tmp_path, ["id", "img_path", "category", "color"], rows))
    assert cat.schema == Schema({"category": ("dresses",), "color": ("petrol", "red")})
    assert len(cat.items) == 15


def test_a_column_without_frequent_values_is_left_out_of_an_inferred_schema(tmp_path):
    rows = [[f"r{i}", f"images/{i}.jpg", "tshirts", f"pattern{i}"] for i in range(8)]
    cat = open_catalog(write_csv(tmp_path, ["id", "img_path", "category", "pattern"], rows))
    assert cat.schema.names == ["category"] and "left out" in cat.schema_source and "pattern" in cat.schema_source
    assert len(cat.items) == 8 and cat.items[3].extra == {"pattern": "pattern3"}


def test_the_index_schema_is_the_default_when_adding(tmp_path):
    # three new items of a shop whose index already knows 'tshirts': too few to infer anything
    rows = [[f"n{i}", f"images/{i}.jpg", "tshirts", "navy_blue"] for i in range(3)]
    root = write_csv(tmp_path, ["id", "img_path", "category", "color"], rows)
    index_schema = Schema({"category": ("shirts", "tshirts"), "color": ("black", "navy_blue")})
    cat = open_catalog(root, LoadOptions(default_schema=index_schema))
    assert cat.schema == index_schema and "index's schema" in cat.schema_source
    assert [it.labels["category"] for it in cat] == ["tshirts"] * 3
    with pytest.raises(TooManySkippedError, match="3 of 3 rows"):  # judged by the thesis vocabulary instead
        open_catalog(root)


def test_explicit_flags_win(tmp_path):
    root = foreign_catalog(tmp_path / "cat")
    Schema({"category": ("tshirts",)}).save(tmp_path / "only_tshirts.json")
    cat = open_catalog(root, LoadOptions(schema_file=tmp_path / "only_tshirts.json", max_skipped=1.0))
    assert len(cat.items) == 10 and "--schema" in cat.schema_source
    cat = open_catalog(root, LoadOptions(infer_groups=("category", "gender"), min_count=1))
    assert cat.schema.values("gender") == ("men", "women") and cat.schema.values("category")[1] == "kurtas"
    assert "color" not in cat.schema.groups and cat.items[0].extra == {"color": "navy_blue"}
    with pytest.raises(SchemaError, match="lower --min-count"):
        open_catalog(root, LoadOptions(infer_groups=("gender",), min_count=100))
    with pytest.raises(CatalogError, match="columns not in"):
        open_catalog(root, LoadOptions(infer_groups=("material",)))
    Schema({"category": ("tshirts", "shirts", "jeans", "kurtas")}).save(root / "schema.json")
    own = open_catalog(root)
    assert own.schema.names == ["category"] and own.schema_source == str(root / "schema.json")


# --- rule 2: a large loss stops the command ------------------------------------------------------
def broken_catalog(root: Path) -> Path:
    """10 rows of which 3 (30 %) name a missing image."""
    rows = [[f"b{i}", f"images/{'missing' if i in (2, 5, 8) else i}.jpg", "dresses", "red"] for i in range(10)]
    return write_csv(root, ["id", "img_path", "category", "color"], rows)


def test_thirty_percent_broken_rows_stop_with_reasons_and_flags(tmp_path):
    root = broken_catalog(tmp_path)
    with pytest.raises(TooManySkippedError) as err:
        open_catalog(root)
    msg = str(err.value)
    assert "3 of 10 rows (30.0%) would be skipped, more than the allowed 5.0%" in msg
    assert "missing image: 3 rows, e.g. line 4 (id b2)" in msg
    assert "--max-skipped 0.3 " in msg and "go on with the 7 rows that load" in msg
    assert "--infer-schema" not in msg  # no value is outside the schema: a schema flag would not help
    assert err.value.share == pytest.approx(0.3)
    cat = open_catalog(root, LoadOptions(max_skipped=0.3))  # the accepting flag
    assert cat.counts_line() == "kept 7 / skipped 3 / total 10 rows"
    assert cat.provenance()["skipped"] == 3 and cat.provenance()["total_rows"] == 10


def test_a_loss_from_values_outside_the_schema_names_the_schema_flags(tmp_path):
    root = foreign_catalog(tmp_path)
    Schema.default().save(tmp_path / "thesis.json")
    with pytest.raises(TooManySkippedError) as err:
        open_catalog(root, LoadOptions(schema_file=tmp_path / "thesis.json"))
    msg = str(err.value)
    assert "31 of 31 rows (100.0%)" in msg and "value outside schema: 31 rows" in msg
    assert "category 'tshirts' x10" in msg
    assert "--infer-schema category,color " in msg and "--schema FILE" in msg and "--unknown-values unknown" in msg
    assert "--max-skipped" not in msg  # nothing would load: accepting the loss is no way out
    assert len(open_catalog(root, LoadOptions(infer_groups=("category", "color"))).items) == 31


def test_below_the_threshold_skipped_rows_are_only_reported(tmp_path):
    rows = [[f"r{i}", f"images/{'missing' if i == 0 else i}.jpg", "dresses", "red"] for i in range(25)]
    cat = open_catalog(write_csv(tmp_path, ["id", "img_path", "category", "color"], rows))  # 1 of 25 = 4 %
    assert len(cat.items) == 24 and cat.skipped_by_reason() == {fmt.MISSING_IMAGE: 1}
    with pytest.raises(TooManySkippedError):
        open_catalog(tmp_path, LoadOptions(max_skipped=0.0))


def test_accepting_share_rounds_up_to_two_decimals():
    assert accepting_share(0.3) == 0.3 and accepting_share(3 / 10) == 0.3
    assert accepting_share(0.301) == 0.31 and accepting_share(1 / 3) == 0.34 and accepting_share(1.0) == 1.0


# --- the shared flags --------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--catalog", type=Path)
    add_catalog_options(p)
    return p


def test_shared_flags_become_load_options(tmp_path):
    args = _parser().parse_args(["--infer-schema", "category, color", "--min-count", "2", "--max-skipped", "0.5",
                                 "--unknown-values", "skip"])
    opts = options_from_args(args)
    assert opts == LoadOptions(infer_groups=("category", "color"), min_count=2, max_skipped=0.5, unknown_values="skip")
    assert options_from_args(_parser().parse_args([])) == LoadOptions()
    # the one call a command makes (what generators.train wires in)
    root = broken_catalog(tmp_path)
    args = _parser().parse_args(["--catalog", str(root), "--max-skipped", "0.3"])
    assert len(open_catalog(args.catalog, options_from_args(args))) == 7


@pytest.mark.parametrize("argv", [
    ["--schema", "s.json", "--infer-schema", "color"],
    ["--max-skipped", "1.5"],
    ["--max-skipped", "lots"],
    ["--min-count", "0"],
])
def test_shared_flags_refuse_bad_values(argv, capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(argv)
    assert "error:" in capsys.readouterr().err
