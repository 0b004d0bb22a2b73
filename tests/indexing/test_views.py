"""Views: product shots and model photos in one index, results per item with the matched photo."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from catalog import load_catalog
from indexing.build import BuildConfig, build
from indexing.engines import EngineConfig
from indexing.store import IndexStore, MissingViewError, ViewError, parse_views

FAST = dict(num_workers=0, batch_size=8, shard_size=16, progress=False)
BOTH = ("product", "model")


@pytest.fixture(scope="module")
def demo(make_demo_catalog):
    return load_catalog(make_demo_catalog(8, 0))


@pytest.fixture(scope="module")
def both_index(demo, small_encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("views") / "both"
    build(demo, out, small_encoder, BuildConfig(views=BOTH, **FAST))
    return out


def _embed(encoder, path):
    with Image.open(path) as im:
        return encoder.embed_images([im])


def test_parse_views_names_the_allowed_views():
    assert parse_views("model,product") == BOTH and parse_views(None) == ("product",) and parse_views([]) == ("product",)
    with pytest.raises(ViewError, match="unknown view 'worn'; views: product, model"):
        parse_views(["worn"])


def test_build_with_views_tags_every_photo(both_index, demo, small_encoder):
    m = json.loads((both_index / "manifest.json").read_text())
    n_model = sum(len(it.model_img_paths) for it in demo.items)
    assert m["views"] == ["product", "model"] and m["count"] == 8 and m["vectors"] == 8 + n_model == 40
    store = IndexStore.open(both_index, small_encoder)
    assert store.views == BOTH and store.vector_count == 40
    item = demo.items[3]
    assert store.vectors_of(item.id) == [("product", item.img_path)] + [("model", p) for p in item.model_img_paths]


def test_model_photo_finds_its_item_and_names_the_photo(both_index, demo, small_encoder):
    store = IndexStore.open(both_index, small_encoder)
    for item in demo.items[:4]:
        photo = item.model_img_paths[1]
        q = _embed(small_encoder, demo.root / photo)
        top = store.search(q, 3, views="model")[0]
        assert top[0].id == item.id and top[0].view == "model" and top[0].path == photo
        assert top[0].score > 0.999 and all(h.view == "model" for h in top)
        both = store.search(q, 8, views=BOTH)[0]
        assert len(both) == 8 and len({h.id for h in both}) == 8  # each item once, at its best photo
        assert both[0].path == photo
        product = store.search(q, 8)[0]  # default: product shots only
        assert {h.view for h in product} == {"product"} and len(product) == 8
        assert [h.path for h in product] == [store.get_items([h.id])[h.id]["img_path"] for h in product]


def test_per_item_score_is_the_best_photo(both_index, demo, small_encoder):
    store = IndexStore.open(both_index, small_encoder)
    q = np.random.default_rng(1).normal(size=(1, store.dim)).astype(np.float32)
    hits = store.search(q, 8, views=BOTH)[0]
    for h in hits:
        iid = store._int_of[h.id]
        mine = store._vec_ids[store._vec_items == iid]
        best = max(float(store.index.reconstruct(int(v)) @ q[0]) for v in mine)
        assert h.score == pytest.approx(best, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_filters_with_views(both_index, demo, small_encoder):
    store = IndexStore.open(both_index, small_encoder)
    group, value = next((g, v) for g, v in demo.items[0].labels.items() if v and g == "category")
    matching = {it.id for it in demo.items if it.labels.get(group) == value}
    q = _embed(small_encoder, demo.root / demo.items[0].model_img_paths[0])
    hits = store.search(q, 8, {group: value}, views="model")[0]
    assert {h.id for h in hits} == matching and all(h.view == "model" for h in hits)


def test_index_without_model_photos_refuses_the_model_view(demo, small_encoder, tmp_path):
    store = build(demo, tmp_path / "p", small_encoder, BuildConfig(**FAST))
    assert store.views == ("product",) and store.vector_count == 8
    q = _embed(small_encoder, demo.image_path(demo.items[0]))
    with pytest.raises(MissingViewError, match=r"no model photos \(indexed views: product\).*--views product,model"):
        store.search(q, 3, views="model")
    with pytest.raises(ViewError, match="views: product, model"):
        store.search(q, 3, views=["back"])


def test_add_and_remove_with_views(demo, small_encoder, tmp_path):
    first = dataclasses.replace(demo, items=demo.items[:5], issues=[])
    rest = dataclasses.replace(demo, items=demo.items[5:], issues=[])
    out = tmp_path / "idx"
    build(first, out, small_encoder, BuildConfig(views=BOTH, **FAST))
    store = IndexStore.open(out, small_encoder)
    assert store.vector_count == 25
    res = store.add(rest, engine_cfg=EngineConfig(num_workers=0), progress=False)  # gets both views too
    assert res == {"added": 3, "replaced": 0, "count": 8} and store.vector_count == 40
    new = demo.items[6]
    q = _embed(small_encoder, demo.root / new.model_img_paths[2])
    assert store.search(q, 1, views="model")[0][0].path == new.model_img_paths[2]
    assert store.remove([new.id]) == 1
    again = IndexStore.open(out, small_encoder)
    for s in (store, again):
        assert s.vector_count == 35 and s.index.ntotal == 35 and new.id not in s
        assert new.id not in {h.id for h in s.search(q, 7, views=BOTH)[0]}
    assert again.manifest["vectors"] == 35 and again.manifest["count"] == 7
    # replacing an item replaces all of its photos
    res = again.add(dataclasses.replace(demo, items=demo.items[:2], issues=[]),
                    engine_cfg=EngineConfig(num_workers=0), progress=False)
    assert res == {"added": 0, "replaced": 2, "count": 7} and again.vector_count == 35 and again.index.ntotal == 35


def test_hnsw_removal_tombstones_every_photo(demo, small_encoder, tmp_path):
    store = build(demo, tmp_path / "h", small_encoder, BuildConfig(index="hnsw", views=BOTH, **FAST))
    gone = demo.items[2]
    q = _embed(small_encoder, demo.root / gone.model_img_paths[0])
    assert store.search(q, 1, views="model")[0][0].id == gone.id
    store.remove([gone.id])
    reopened = IndexStore.open(tmp_path / "h", small_encoder)
    for s in (store, reopened):
        for views in ("model", "product", BOTH):
            hits = s.search(q, 8, views=views)[0]
            assert gone.id not in {h.id for h in hits} and len(hits) == 7


def test_resume_reuses_the_model_photo_shards(demo, small_encoder, tmp_path, monkeypatch):
    out = tmp_path / "r"
    first = build(demo, out, small_encoder, BuildConfig(views=BOTH, keep_shards=True, **FAST))
    assert len(list((out / ".work" / "shards").glob("shard-*.npz"))) == 3  # 40 vectors in shards of 16
    import indexing.embed as embed

    def no_engine(name):
        raise AssertionError("every shard should have been reused")

    monkeypatch.setattr(embed, "get_engine", no_engine)
    second = build(demo, out, small_encoder, BuildConfig(views=BOTH, **FAST))
    v = second.index.reconstruct(int(second._vec_ids[-1]))
    assert np.allclose(v, first.index.reconstruct(int(first._vec_ids[-1])))


def test_old_folders_without_a_vectors_table_still_open(demo, small_encoder, tmp_path):
    import sqlite3

    out = tmp_path / "old"
    build(demo, out, small_encoder, BuildConfig(**FAST))
    m = json.loads((out / "manifest.json").read_text())
    m.pop("views")
    (out / "manifest.json").write_text(json.dumps(m))
    db = sqlite3.connect(out / m["files"]["meta"])
    db.execute("DROP TABLE vectors")
    db.commit()
    db.close()
    store = IndexStore.open(out, small_encoder)
    assert store.views == ("product",) and store.vector_count == 8
    q = _embed(small_encoder, demo.image_path(demo.items[4]))
    top = store.search(q, 1)[0][0]
    assert top.id == demo.items[4].id and top.path == demo.items[4].img_path


def test_ray_engine_with_views_equals_local(ray_session, demo, small_encoder, tmp_path, both_index):
    ray_store = build(demo, tmp_path / "ray", small_encoder, BuildConfig(engine="ray", views=BOTH, **FAST))
    local = IndexStore.open(both_index, small_encoder)
    assert ray_store.vector_count == local.vector_count == 40
    for v in local._vec_ids.tolist():
        assert np.allclose(ray_store.index.reconstruct(v), local.index.reconstruct(v), atol=1e-5)
    assert ray_store._vec_info == local._vec_info


def test_cli_build_and_search_views(demo, tmp_path, capsys):
    from indexing.__main__ import main

    out = tmp_path / "cli"
    assert main(["build", "--catalog", str(demo.root), "--out", str(out), "--views", "product,model",
                 "--image-size", "64", "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert "8 items; " in printed and "40 vectors (views product,model)" in printed
    photo = demo.items[1].model_img_paths[0]
    assert main(["search", "--index", str(out), "--image", str(demo.root / photo), "--views", "model",
                 "-k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["id"] == demo.items[1].id and hits[0]["view"] == "model" and hits[0]["matched_path"] == photo
    assert main(["search", "--index", str(out), "--image", str(demo.root / photo), "--views", "worn"]) == 2
    assert "unknown view 'worn'; views: product, model" in capsys.readouterr().err


def test_consistency_check_counts_the_vectors_of_every_view(both_index, small_encoder, tmp_path):
    """Opening refuses metadata that lost one model photo's row although FAISS still has its
    vector, and a manifest whose views leave out the model vectors; the message counts per view."""
    import shutil
    import sqlite3

    from indexing.store import InconsistentIndexError

    def tampered(name, change_db=None, change_manifest=None):
        out = tmp_path / name
        shutil.copytree(both_index, out)
        m = json.loads((out / "manifest.json").read_text())
        if change_db:
            db = sqlite3.connect(out / m["files"]["meta"])
            change_db(db)
            db.commit()
            db.execute("VACUUM")
            db.close()
        if change_manifest:
            change_manifest(m)
        m["sizes"] = {k: (out / f).stat().st_size for k, f in m["files"].items()}
        (out / "manifest.json").write_text(json.dumps(m))
        return out

    assert IndexStore.open(both_index, small_encoder).vector_count == 40
    lost = tampered("lost", change_db=lambda db: db.execute(
        "DELETE FROM vectors WHERE vec_id = (SELECT MAX(vec_id) FROM vectors WHERE view='model')"))
    with pytest.raises(InconsistentIndexError, match=r"holds 40 vectors, meta-\d+\.sqlite has 31 model vectors \+ 8 "
                                                     r"product vectors"):
        IndexStore.open(lost, small_encoder)
    narrowed = tampered("narrowed", change_manifest=lambda m: m.update(views=["product"]))
    with pytest.raises(InconsistentIndexError, match="has model vectors, manifest.json lists views product"):
        IndexStore.open(narrowed, small_encoder)
