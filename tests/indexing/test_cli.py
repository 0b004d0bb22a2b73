"""The CLI end to end (in-process, same argv a user types): build, add, remove, search, info, export."""

from __future__ import annotations

import json

import pytest

from indexing.__main__ import main
from indexing.store import IndexStore


def test_cli_build_add_search_remove(small_catalog, extra_catalog, small_encoder_dir, tmp_path, capsys):
    idx = tmp_path / "idx"
    common = ["--workers", "0", "--batch-size", "8", "--device", "cpu"]
    assert main(["build", "--catalog", str(small_catalog), "--out", str(idx), "--encoder", str(small_encoder_dir),
                 "--index", "flat", *common]) == 0
    assert "built" in capsys.readouterr().out
    assert main(["add", "--index", str(idx), "--catalog", str(extra_catalog), *common]) == 0
    assert "added 12, replaced 0, now 48 items" in capsys.readouterr().out

    query = extra_catalog / "images" / "b0002.jpg"  # a green dress
    assert main(["search", "--index", str(idx), "--image", str(query), "-k", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:5] == ["rank", "id", "score", "category", "color"]
    assert out[2].split()[1] == "b2-0002" and len(out) == 2 + 4

    assert main(["search", "--index", str(idx), "--image", str(query), "-k", "5", "--filter", "color=blue",
                 "--filter", "category=pants", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    # only 4 blue pants exist (3 + 1 added): all of them, nothing else
    assert len(hits) == 4 and all(h["labels"] == {"category": "pants", "color": "blue"} for h in hits)

    assert main(["remove", "--index", str(idx), "--ids", "b2-0002", "1-0003"]) == 0
    assert "removed 2, now 46 items" in capsys.readouterr().out
    assert main(["search", "--index", str(idx), "--image", str(query), "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] != "b2-0002"

    assert main(["remove", "--index", str(idx), "--ids", "no-such-id"]) == 2
    assert "unknown ids" in capsys.readouterr().err
    assert main(["search", "--index", str(idx), "--image", str(query), "--filter", "colour=blue"]) == 2
    assert "unknown filter 'colour'" in capsys.readouterr().err
    assert main(["info", "--index", str(idx)]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 46
    assert IndexStore.open(idx).count == 46


def test_cli_builtin_encoder_is_found_from_manifest(small_catalog, tmp_path, capsys):
    idx = tmp_path / "idx"
    assert main(["build", "--catalog", str(small_catalog), "--out", str(idx), "--image-size", "64",
                 "--workers", "0", "--device", "cpu"]) == 0
    capsys.readouterr()
    # no --encoder: the manifest says "builtin" with its config, and the checksum must match
    assert main(["search", "--index", str(idx), "--image", str(small_catalog / "images" / "0004.jpg"), "-k", "1",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == "1-0004"


def test_cli_refuses_mismatched_encoder(small_catalog, small_encoder_dir, tmp_path, capsys):
    idx = tmp_path / "idx"
    assert main(["build", "--catalog", str(small_catalog), "--out", str(idx), "--image-size", "72",
                 "--workers", "0", "--device", "cpu"]) == 0
    capsys.readouterr()
    code = main(["search", "--index", str(idx), "--image", str(small_catalog / "images" / "0004.jpg"),
                 "--encoder", str(small_encoder_dir)])
    assert code == 2 and "was built with encoder" in capsys.readouterr().err


def test_cli_bad_catalog_and_schema_errors(tmp_path, capsys):
    assert main(["build", "--catalog", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no catalog.csv" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["build", "--catalog", str(tmp_path), "--out", str(tmp_path / "o"), "--index", "annoy"])


# --- bring your own catalog: one loading rule for build, add and train-encoder ----------------------------
def _own_catalog(root, n: int = 30, broken: int = 0, category: str | None = None, prefix: str = "s"):
    """A shop catalog in its own vocabulary, without schema.json; the first ``broken`` rows name missing images."""
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = ["id,img_path,category,color,gender"]
    for i in range(n):
        rel = f"images/missing{i}.jpg" if i < broken else f"images/{i}.jpg"
        if i >= broken:
            Image.new("RGB", (48, 48), ((90 * i) % 256, 60, 200 - 5 * i)).save(root / rel, "JPEG")
        lines.append(f"{prefix}{i},{rel},{category or ('tshirts', 'shirts', 'jeans')[i % 3]},"
                     f"{('navy_blue', 'grey')[i % 2]},men")
    (root / "catalog.csv").write_text("\n".join(lines) + "\n")
    return root


def test_cli_build_indexes_a_foreign_vocabulary_whole(tmp_path, capsys):
    idx = tmp_path / "idx"
    cat = _own_catalog(tmp_path / "shop")
    assert main(["build", "--catalog", str(cat), "--out", str(idx), "--image-size", "64", "--index", "flat",
                 "--workers", "0", "--device", "cpu"]) == 0
    out = capsys.readouterr()
    assert "30 items; kept 30 / skipped 0 / total 30 rows;" in out.out
    assert "schema: inferred from category, color" in out.err
    m = IndexStore.open(idx).manifest
    assert m["count"] == 30
    assert m["schema"] == {"category": ["jeans", "shirts", "tshirts"], "color": ["grey", "navy_blue"]}
    assert m["catalogs"][0]["schema_source"].startswith("inferred from category, color")
    assert (m["catalogs"][0]["skipped"], m["catalogs"][0]["total_rows"]) == (0, 30)

    # three more items of the same shop: too few to infer from, but they fit the index's schema
    more = _own_catalog(tmp_path / "more", n=3, category="tshirts", prefix="new")
    assert main(["add", "--index", str(idx), "--catalog", str(more), "--workers", "0", "--device", "cpu"]) == 0
    out = capsys.readouterr()
    assert "added 3, replaced 0, now 33 items; kept 3 / skipped 0 / total 3 rows" in out.out
    assert "the index's schema" in out.err
    assert main(["search", "--index", str(idx), "--image", str(more / "images" / "0.jpg"), "-k", "33",
                 "--filter", "category=tshirts", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 10 + 3


def test_cli_build_refuses_a_large_loss_and_accepts_it_when_told(tmp_path, capsys):
    idx = tmp_path / "idx"
    cat = _own_catalog(tmp_path / "shop", n=10, broken=3)
    common = ["--out", str(idx), "--image-size", "64", "--index", "flat", "--workers", "0", "--device", "cpu"]
    assert main(["build", "--catalog", str(cat), *common]) == 2
    err = capsys.readouterr().err
    assert "3 of 10 rows (30.0%) would be skipped" in err and "missing image: 3 rows" in err
    assert "--max-skipped 0.3 " in err
    assert not (idx / "manifest.json").exists()  # nothing was built
    assert main(["train-encoder", "--catalog", str(cat), "--out", str(tmp_path / "enc")]) == 2
    assert "3 of 10 rows" in capsys.readouterr().err

    assert main(["build", "--catalog", str(cat), *common, "--max-skipped", "0.3"]) == 0
    assert "7 items; kept 7 / skipped 3 / total 10 rows;" in capsys.readouterr().out
    assert IndexStore.open(idx).manifest["catalogs"][0]["skipped"] == 3
