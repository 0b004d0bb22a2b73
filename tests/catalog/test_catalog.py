"""The catalog format: schema defaults and inference, bad-row reporting, CLI, real sample."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from catalog import (
    CatalogError,
    CatalogWriter,
    Item,
    Schema,
    SchemaError,
    infer_schema,
    load_catalog,
    write_catalog,
)
from catalog import format as fmt
from catalog.format import one_hot_table, read_rows

REPO = Path(__file__).resolve().parents[2]


def _img(path: Path, color=(200, 30, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), color).save(path, "JPEG")


def _good_items(root: Path, n: int = 3) -> list[Item]:
    items = []
    for i in range(n):
        _img(root / "images" / f"{i}.jpg")
        items.append(
            Item(
                id=f"p{i}",
                img_path=f"images/{i}.jpg",
                name=f"Kleid {i}",
                attributes=["Farbe: Rot"],
                labels={"category": "dresses", "color": "red", "sleeve_length": None},
            )
        )
    return items


def test_default_schema_is_thesis_vocabulary():
    s = Schema.default()
    assert s.names == ["category", "color", "length", "sleeve_length", "fit", "pattern", "neckline"]
    assert s.values("sleeve_length") == ("half", "long", "short", "sleeveless")
    assert "3-4" in s.values("length")
    assert s.num_values == 7 + 9 + 5 + 4 + 3 + 6 + 6
    start, end = s.offsets()["color"]
    assert end - start == 9 and start == 7


def test_schema_errors_name_what_is_allowed():
    s = Schema.default()
    with pytest.raises(SchemaError, match="allowed: half, long, short, sleeveless"):
        s.check_value("sleeve_length", "elbow")
    with pytest.raises(SchemaError, match="groups are: category"):
        s.check_group("material")
    with pytest.raises(SchemaError, match="more than once"):
        Schema({"color": ("red", "red")})


def test_schema_roundtrip(tmp_path):
    s = Schema({"category": ("a", "b"), "color": ("x",)})
    s.save(tmp_path / "schema.json")
    assert Schema.load(tmp_path / "schema.json") == s
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        Schema.load(tmp_path / "bad.json")


def test_infer_schema_respects_min_count():
    rows = [{"color": "red"}] * 3 + [{"color": "blue"}] * 1 + [{"color": ""}]
    schema, counts = infer_schema(rows, ["color"], min_count=2)
    assert schema.values("color") == ("red",)
    assert counts["color"] == {"red": 3, "blue": 1}


def test_write_and_load_roundtrip(tmp_path):
    items = _good_items(tmp_path)
    write_catalog(tmp_path, items, Schema.default())
    cat = load_catalog(tmp_path, strict=True)
    assert [it.id for it in cat] == ["p0", "p1", "p2"]
    assert cat.items[0].labels["color"] == "red"
    assert cat.items[0].labels["sleeve_length"] is None
    assert cat.items[0].attributes == ["Farbe: Rot"]
    assert cat.checksum() == load_catalog(tmp_path).checksum()


def test_semicolon_dialect_is_read(tmp_path):
    _img(tmp_path / "a.jpg")
    (tmp_path / "catalog.csv").write_text('id;img_path;color;attributes\nx1;a.jpg;blue;"[""Farbe: Blau""]"\n')
    cat = load_catalog(tmp_path, strict=True)
    assert cat.items[0].labels["color"] == "blue"
    assert cat.items[0].attributes == ["Farbe: Blau"]


def test_every_bad_row_kind_is_reported_with_its_line(tmp_path):
    items = _good_items(tmp_path, 1)
    write_catalog(tmp_path, items, Schema.default())
    (tmp_path / "images" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path.parent / "outside.jpg").write_bytes((tmp_path / "images" / "0.jpg").read_bytes())
    header, _ = read_rows(tmp_path / "catalog.csv")

    def row(**kw) -> str:
        base = {c: "" for c in header}
        base.update(kw)
        import csv
        import io

        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([base[c] for c in header])
        return buf.getvalue()

    with open(tmp_path / "catalog.csv", "a") as fh:
        fh.write(row(id="m", img_path="images/missing.jpg"))                    # line 3
        fh.write(row(id="u", img_path="images/broken.jpg"))                     # line 4
        fh.write(row(id="v", img_path="images/0.jpg", color="purple"))          # line 5
        fh.write(row(id="p0", img_path="images/0.jpg"))                         # line 6
        fh.write(row(id="e", img_path="../outside.jpg"))                        # line 7
        fh.write("w,images/0.jpg,too,few\n")                                    # line 8
        fh.write(row(id="l", img_path="images/0.jpg", attributes="[broken"))    # line 9
    cat = load_catalog(tmp_path)
    got = {(i.line, i.reason) for i in cat.issues}
    assert got == {
        (3, fmt.MISSING_IMAGE),
        (4, fmt.UNREADABLE_IMAGE),
        (5, fmt.VALUE_OUTSIDE_SCHEMA),
        (6, fmt.DUPLICATE_ID),
        (7, fmt.PATH_ESCAPES),
        (8, fmt.WRONG_COLUMN_COUNT),
        (9, fmt.BAD_LIST),
    }
    assert [it.id for it in cat] == ["p0"]
    outside = next(i for i in cat.issues if i.reason == fmt.VALUE_OUTSIDE_SCHEMA)
    assert outside.field == "color" and "purple" in str(outside) and "line 5" in str(outside)
    with pytest.raises(CatalogError, match="7 bad rows"):
        load_catalog(tmp_path, strict=True)


def test_quoted_newline_keeps_line_numbers(tmp_path):
    items = _good_items(tmp_path, 2)
    items[0].name = "Kleid\nmit Zeilenumbruch"
    write_catalog(tmp_path, items, Schema.default())
    with open(tmp_path / "catalog.csv", "a") as fh:
        fh.write("bad,row\n")
    cat = load_catalog(tmp_path)
    assert len(cat.items) == 2
    assert cat.issues[0].line == 5  # header, 2-line row, row, bad row


def test_writer_appends_and_cuts_a_partial_row(tmp_path):
    items = _good_items(tmp_path, 3)
    with CatalogWriter(tmp_path, Schema.default()) as w:
        w.write(items[0])
        w.write(items[1])
    with open(tmp_path / "catalog.csv", "a") as fh:
        fh.write("p9,images/0.jpg,half-written")  # a crawl killed mid-row
    with CatalogWriter(tmp_path, Schema.default()) as w:
        assert w.existing_ids() == {"p0", "p1"}
        w.write(items[2])
    cat = load_catalog(tmp_path, strict=True)
    assert [it.id for it in cat] == ["p0", "p1", "p2"]


def test_one_hot_marks_unknown_as_all_zero(tmp_path):
    items = _good_items(tmp_path, 1)
    write_catalog(tmp_path, items, Schema.default())
    cols, rows = one_hot_table(load_catalog(tmp_path))
    row = dict(zip(cols, rows[0], strict=True))
    assert row["color_red"] == "1" and row["color_blue"] == "0"
    assert all(row[c] == "0" for c in cols if c.startswith("sleeve_length_"))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "catalog", *args], capture_output=True, text=True, cwd=REPO)


def test_cli_validate_strict_exit_codes(tmp_path):
    write_catalog(tmp_path, _good_items(tmp_path, 2), Schema.default())
    ok = _cli("validate", str(tmp_path), "--strict")
    assert ok.returncode == 0, ok.stderr
    assert "rows kept:    2" in ok.stdout
    with open(tmp_path / "catalog.csv", "a") as fh:
        fh.write("zz,images/nope.jpg" + "," * 14 + "\n")
    too_many = _cli("validate", str(tmp_path))  # 1 of 3 rows is over the default 5 %
    assert too_many.returncode == 1 and "missing image: 1" in too_many.stdout
    assert "--max-skipped 0.34" in too_many.stderr
    lenient = _cli("validate", str(tmp_path), "--max-skipped", "0.34")
    assert lenient.returncode == 0 and "kept 2 / skipped 1 / total 3 rows" in lenient.stdout
    strict = _cli("validate", str(tmp_path), "--strict")
    assert strict.returncode == 1 and "line 4" in strict.stdout


def test_cli_infer_schema_and_one_hot(tmp_path):
    write_catalog(tmp_path, _good_items(tmp_path, 3), Schema.default(), write_schema=False)
    res = _cli("infer-schema", str(tmp_path), "--groups", "category,color", "--min-count", "1")
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "schema.json").read_text()) == {
        "groups": {"category": ["dresses"], "color": ["red"]}
    }
    bad = _cli("infer-schema", str(tmp_path), "--groups", "material")
    assert bad.returncode == 2 and "material" in bad.stderr
    res = _cli("one-hot", str(tmp_path))
    assert res.returncode == 0
    assert (tmp_path / "img_attr.csv").read_text().splitlines()[0] == "img_path,category_dresses,color_red"


def test_myntra_sample_loads_with_inferred_schema(myntra_dir, tmp_path):
    header, rows = read_rows(myntra_dir / "catalog.csv")
    dict_rows = [dict(zip(header, r, strict=False)) for _, r in rows]
    schema, _ = infer_schema(dict_rows, ["category", "color", "pattern", "gender"], min_count=5)
    cat = load_catalog(myntra_dir, schema=schema, check_images=False)
    assert len(cat.items) > 4000
    assert "tshirts" in schema.values("category")
    reasons = cat.skipped_by_reason()
    # only rare values (under min_count) and duplicate photos may be skipped
    assert set(reasons) <= {fmt.VALUE_OUTSIDE_SCHEMA, fmt.DUPLICATE_ID}
    assert len(cat.issues) < 0.05 * len(rows)
    thesis = load_catalog(myntra_dir, schema=Schema.default(), check_images=False)
    assert len(thesis.items) < 0.1 * len(rows)  # the thesis vocabulary does not fit this shop...
    default = load_catalog(myntra_dir, check_images=False)  # ...so without schema.json it is not used
    assert len(default.items) == len(rows) and not default.issues
    assert default.schema.names == ["category", "color", "pattern"]  # the thesis-named columns it has
    assert "tshirts" in default.schema.values("category") and "inferred" in default.schema_source
    assert "gender" in default.items[0].extra  # other columns stay extras unless named in --infer-schema


def test_values_outside_schema_can_be_kept_as_unknown(tmp_path):
    items = _good_items(tmp_path, 2)
    items[1].labels["color"] = "purple"
    write_catalog(tmp_path, items, Schema.default(), write_schema=False)
    skipped = load_catalog(tmp_path)
    assert [it.id for it in skipped] == ["p0"]
    kept = load_catalog(tmp_path, unknown_values="unknown", strict=True)
    assert [it.id for it in kept] == ["p0", "p1"]
    assert kept.items[1].labels["color"] is None
    assert kept.blanked[0].field == "color" and kept.blanked[0].line == 3
    res = _cli("validate", str(tmp_path), "--unknown-values", "unknown", "--strict")
    assert res.returncode == 0 and "kept as unknown: 1" in res.stdout
