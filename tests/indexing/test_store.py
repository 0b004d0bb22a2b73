"""Index folders: build, search, filters, add, remove, reload, encoder mismatch, atomic generations."""

from __future__ import annotations

import dataclasses
import json
import threading

import numpy as np
import pytest
from PIL import Image

from catalog import load_catalog
from indexing.build import BuildConfig, build
from indexing.encoder import Encoder, EncoderConfig
from indexing.engines import EngineConfig
from indexing.store import EncoderMismatchError, FilterError, IndexStore, IndexStoreError

FAST = dict(num_workers=0, batch_size=8, shard_size=16, progress=False)


@pytest.fixture(scope="module")
def flat_index(small_catalog, small_encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("idx") / "flat"
    build(load_catalog(small_catalog), out, small_encoder, BuildConfig(**FAST))
    return out


def _query(encoder, catalog_dir, rel):
    with Image.open(catalog_dir / rel) as im:
        return encoder.embed_images([im])


def test_build_writes_complete_folder(flat_index, small_encoder):
    m = json.loads((flat_index / "manifest.json").read_text())
    assert m["count"] == 36 and m["dim"] == 1280 and m["metric"] == "inner_product"
    assert m["index"]["kind"] == "flat"  # auto: < 50k vectors
    assert m["encoder"]["checksum"] == small_encoder.checksum and m["encoder"]["id"] == small_encoder.encoder_id
    assert m["catalog_checksum"] and m["created"] and m["schema"]["color"] == ["red", "blue", "green", "black"]
    assert sorted(p.name for p in flat_index.iterdir()) == [".lock", "index-000001.faiss", "manifest.json",
                                                            "meta-000001.sqlite"]


def test_self_retrieval_every_item_ranks_first(flat_index, small_encoder, small_catalog):
    store = IndexStore.open(flat_index, small_encoder)
    cat = load_catalog(small_catalog)
    q = small_encoder.embed_images([Image.open(cat.image_path(it)) for it in cat.items])
    hits = store.search(q, 3)
    assert [h[0].id for h in hits] == [it.id for it in cat.items]
    assert all(h[0].score > 0.999 and len(h) == 3 for h in hits)
    rows = store.get_items(["1-0005"])
    assert rows["1-0005"]["labels"] == {"category": "pants", "color": "blue"}
    assert rows["1-0005"]["image"].endswith("images/0005.jpg")


def test_encoder_mismatch_and_incomplete_folder_refused(flat_index, tmp_path):
    other = Encoder.builtin(EncoderConfig(image_size=72), device="cpu")
    with pytest.raises(EncoderMismatchError, match="was built with encoder"):
        IndexStore.open(flat_index, other)
    half = tmp_path / "half"
    (half / ".work" / "shards").mkdir(parents=True)
    with pytest.raises(IndexStoreError, match="did not finish"):
        IndexStore.open(half)
    with pytest.raises(IndexStoreError, match="not an index folder"):
        IndexStore.open(tmp_path / "nothing")


def test_filters_return_k_matching(flat_index, small_encoder, small_catalog):
    store = IndexStore.open(flat_index, small_encoder)
    q = _query(small_encoder, small_catalog, "images/0000.jpg")  # a red dress
    items = store.get_items(store.ids())
    for flt, k in [({"color": "blue"}, 5), ({"color": ["blue", "green"], "category": "pants"}, 6), ({"brand": "zeta"}, 10)]:
        hits = store.search(q, k, flt)[0]
        want = [i for i, r in items.items()
                if all(r["labels"].get(g, r.get(g)) in ([v] if isinstance(v, str) else v) for g, v in flt.items())]
        assert len(hits) == min(k, len(want))
        assert {h.id for h in hits} <= set(want)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    few = store.search(q, 10, {"color": "blue", "category": "dresses"})[0]
    assert len(few) == store.count_matching({"color": "blue", "category": "dresses"}) == 3
    with pytest.raises(FilterError, match="unknown filter 'size'"):
        store.search(q, 5, {"size": "m"})
    with pytest.raises(FilterError, match="allowed: red, blue, green, black"):
        store.search(q, 5, {"color": "purple"})


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_index_filtered_search_falls_back_to_exact(small_catalog, small_encoder, tmp_path, kind):
    cat = load_catalog(small_catalog)
    store = build(cat, tmp_path / kind, small_encoder, BuildConfig(index=kind, nlist=4, **FAST))
    assert store.manifest["index"]["kind"] == kind
    if kind == "ivf":  # make the approximate search miss: probe one list of four
        store.spec.search = {"nprobe": 1}
        store.index.nprobe = 1
    q = _query(small_encoder, small_catalog, "images/0001.jpg")
    vecs = np.stack([store.reconstruct(i) for i in store.ids()])
    for flt in ({"color": "green"}, {"category": "tops", "color": "black"}):
        hits = store.search(q, 8, flt)[0]
        allowed = [i for i, r in store.get_items(store.ids()).items()
                   if all(r["labels"][g] == v for g, v in flt.items())]
        exact = [store.ids()[j] for j in np.argsort(-(vecs @ q[0]))]
        assert [h.id for h in hits] == [i for i in exact if i in allowed][:8]


def test_add_remove_reload(small_catalog, extra_catalog, small_encoder, tmp_path):
    out = tmp_path / "idx"
    build(load_catalog(small_catalog), out, small_encoder, BuildConfig(**FAST))
    store = IndexStore.open(out, small_encoder)
    res = store.add(load_catalog(extra_catalog), engine_cfg=EngineConfig(num_workers=0), progress=False)
    assert res == {"added": 12, "replaced": 0, "count": 48}
    q = _query(small_encoder, extra_catalog, "images/b0003.jpg")
    assert store.search(q, 1)[0][0].id == "b2-0003"
    assert store.remove(["b2-0003", "1-0000"]) == 2
    assert store.search(q, 1)[0][0].id != "b2-0003"
    with pytest.raises(IndexStoreError, match="unknown ids"):
        store.remove(["nope"])
    again = IndexStore.open(out, small_encoder)  # what a server Reload sees
    assert again.count == 46 and "b2-0003" not in again and "b2-0004" in again
    assert again.get_items(["b2-0004"])["b2-0004"]["image"].startswith(str(extra_catalog.resolve()))
    m = again.manifest
    assert m["generation"] == 3 and len(m["catalogs"]) == 2 and m["count"] == 46
    assert sorted(p.name for p in out.iterdir() if p.suffix in (".faiss", ".sqlite")) == [
        "index-000003.faiss", "meta-000003.sqlite"]
    # re-adding an id replaces it instead of duplicating it
    res = again.add(load_catalog(extra_catalog), engine_cfg=EngineConfig(num_workers=0), progress=False)
    assert res["replaced"] == 11 and res["added"] == 1 and again.count == 47


def test_hnsw_remove_uses_tombstones(small_catalog, small_encoder, tmp_path):
    store = build(load_catalog(small_catalog), tmp_path / "h", small_encoder, BuildConfig(index="hnsw", **FAST))
    q = _query(small_encoder, small_catalog, "images/0007.jpg")
    assert store.search(q, 1)[0][0].id == "1-0007"
    store.remove(["1-0007"])
    reopened = IndexStore.open(tmp_path / "h", small_encoder)
    for s in (store, reopened):
        hits = s.search(q, 36)[0]
        assert "1-0007" not in {h.id for h in hits} and len(hits) == 35


def test_concurrent_searches_match_serial(flat_index, small_encoder):
    store = IndexStore.open(flat_index, small_encoder)
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(40, store.dim)).astype(np.float32)
    serial = [store.search(q[None], 5, {"color": "red"} if i % 2 else None)[0] for i, q in enumerate(queries)]
    results: dict[int, list] = {}

    def work(i):
        results[i] = store.search(queries[i][None], 5, {"color": "red"} if i % 2 else None)[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(queries))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(queries))] == serial


def test_demo_catalog_build_and_self_retrieval(request, small_encoder, tmp_path):
    pytest.importorskip("crawler.demo.render", reason="demo renderer not available yet")
    demo = request.getfixturevalue("demo_catalog_dir")
    cat = load_catalog(demo)
    store = build(cat, tmp_path / "demo", small_encoder, BuildConfig(**FAST))
    q = small_encoder.embed_images([Image.open(cat.image_path(it)) for it in cat.items])
    assert [h[0].id for h in store.search(q, 1)] == [it.id for it in cat.items]
    group, value = next((g, v) for g, v in cat.items[0].labels.items() if v)
    hits = store.search(q[:1], 5, {group: value})[0]
    assert hits and all(store.get_items([h.id])[h.id]["labels"][group] == value for h in hits)


def test_ivfpq_refine_store_add_remove_filter_reload(tmp_path, catalog_factory):
    """The store's code paths on an ``IndexIDMap2(IndexRefine(OPQ+IVF-PQ, SQ8))`` index (400 synthetic
    vectors); faiss-level sync of both refine kinds is in test_faiss_index.py."""
    from types import SimpleNamespace

    from indexing.faiss_index import choose_spec, train_index, tune_search
    from indexing.store import new_manifest, new_metadata_db

    cat = load_catalog(catalog_factory(tmp_path / "cat", 400, seed=3, size=40))
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 32))
    x = centres[rng.integers(0, 8, 400)] + 0.7 * rng.normal(size=(400, 32))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    spec = choose_spec(400, 32, "ivfpq", nlist=8)
    spec.params.update(nbits=4, opq_iter=5)
    enc = SimpleNamespace(encoder_id="synthetic@0", checksum="0" * 64, source="test", dim=32,
                          config=SimpleNamespace(to_dict=dict))
    store = IndexStore(tmp_path / "pq", new_manifest(enc, spec, cat), train_index(spec, x), new_metadata_db())
    store.add_vectors(cat, x)
    tune_search(store.index, spec, x, np.arange(400), sample=100)
    store.spec, store.manifest["index"] = spec, spec.to_dict()
    store.save()
    ids = [it.id for it in cat.items]
    assert {"nprobe", "k_factor"} <= set(store.manifest["index"]["search"])
    assert [h[0].id for h in store.search(x[:40], 10)] == ids[:40]  # re-ranked scores are (near) exact

    blue = [i for i, it in enumerate(cat.items) if it.labels["color"] == "blue"]
    exact_blue = [ids[blue[j]] for j in np.argsort(-(x[blue] @ x[7]))[:5]]
    hits = store.search(x[7], 5, {"color": "blue"})[0]
    assert len({h.id for h in hits} & set(exact_blue)) >= 4 and all(h.id in {ids[i] for i in blue} for h in hits)

    gone = ids[::4]
    assert store.remove(gone) == 100 and store.index.ntotal == 300
    left = [i for i in range(400) if i % 4]
    assert [h[0].id for h in store.search(x[left[:40]], 10)] == [ids[i] for i in left[:40]]
    assert not {h.id for row in store.search(x[:60], 10) for h in row} & set(gone)
    reopened = IndexStore.open(tmp_path / "pq")
    assert reopened.count == 300 and reopened.index.ntotal == 300
    assert [[h.id for h in r] for r in reopened.search(x[:30], 10, {"category": "tops"})] == \
           [[h.id for h in r] for r in store.search(x[:30], 10, {"category": "tops"})]
    assert np.allclose(reopened.reconstruct(ids[1]), x[1], atol=0.02)
    # replacing by id (remove + add inside add_vectors) keeps everything aligned
    sub = dataclasses.replace(cat, items=cat.items[:8], issues=[])
    res = reopened.add_vectors(sub, x[:8])
    assert res == {"added": 2, "replaced": 6, "count": 302}
    assert [h[0].id for h in reopened.search(x[:8], 10)] == ids[:8]


def _damage(folder, kind):
    """One way a folder's files can disagree; returns the file names the refusal must mention."""
    import faiss

    m = json.loads((folder / "manifest.json").read_text())
    index_file, meta_file = m["files"]["index"], m["files"]["meta"]
    if kind == "index from another generation":  # the killed-rebuild mix: same names, other content
        index = faiss.read_index(str(folder / index_file))
        index.remove_ids(faiss.IDSelectorBatch(np.array([0, 1], np.int64)))
        faiss.write_index(index, str(folder / index_file))
        return [index_file]
    if kind == "same sizes, fewer vectors":  # an older manifest without sizes: the counts catch it
        index = faiss.read_index(str(folder / index_file))
        index.remove_ids(faiss.IDSelectorBatch(np.array([0], np.int64)))
        faiss.write_index(index, str(folder / index_file))
        m.pop("sizes")
        (folder / "manifest.json").write_text(json.dumps(m))
        return [index_file, meta_file]
    if kind == "metadata of another generation":
        import sqlite3

        db = sqlite3.connect(folder / meta_file)
        db.execute("UPDATE kv SET value='7' WHERE key='generation'")
        db.commit()
        db.close()
        m["sizes"]["meta"] = (folder / meta_file).stat().st_size
        (folder / "manifest.json").write_text(json.dumps(m))
        return [meta_file, "generation 7"]
    if kind == "manifest count":
        m["count"] += 1
        (folder / "manifest.json").write_text(json.dumps(m))
        return [meta_file, "manifest.json"]
    if kind == "missing file":
        (folder / meta_file).unlink()
        return [meta_file]
    if kind == "not a FAISS file":
        (folder / index_file).write_bytes(b"x" * (folder / index_file).stat().st_size)
        return [index_file]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["index from another generation", "same sizes, fewer vectors",
                                  "metadata of another generation", "manifest count", "missing file",
                                  "not a FAISS file"])
def test_open_refuses_a_folder_whose_files_disagree(flat_index, tmp_path, kind):
    import shutil

    from indexing.store import InconsistentIndexError

    folder = tmp_path / "damaged"
    shutil.copytree(flat_index, folder)
    names = _damage(folder, kind)
    with pytest.raises(InconsistentIndexError) as err:
        IndexStore.open(folder)
    assert all(n in str(err.value) for n in names), str(err.value)
