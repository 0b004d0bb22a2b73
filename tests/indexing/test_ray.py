"""Ray engine (Ray Data map_batches + encoder actors) equals the local engine; on-disk IVF recipe."""

from __future__ import annotations

import numpy as np
import pytest

from catalog import load_catalog
from indexing.build import BuildConfig, build
from indexing.embed import embed_paths
from indexing.engines import EngineConfig
from indexing.store import IndexStore, IndexStoreError


def test_ray_engine_equals_local(ray_session, small_catalog, small_encoder, tmp_path):
    cat = load_catalog(small_catalog)
    ids = [it.id for it in cat.items]
    paths = [str(cat.image_path(it)) for it in cat.items]
    cfg = EngineConfig(batch_size=8, num_workers=0, ray_actors=2)
    local = embed_paths(small_encoder, ids, paths, tmp_path / "local", "local", cfg, shard_size=16, progress=False)
    remote = embed_paths(small_encoder, ids, paths, tmp_path / "ray", "ray", cfg, shard_size=16, progress=False)
    assert remote.shape == local.shape == (36, 1280)
    np.testing.assert_allclose(remote, local, atol=1e-5)
    # same neighbours for every item
    assert (np.argsort(-(remote @ remote.T), axis=1)[:, :5] == np.argsort(-(local @ local.T), axis=1)[:, :5]).all()


def test_ondisk_ivf_with_ray_tasks(ray_session, small_catalog, small_encoder, tmp_path):
    cat = load_catalog(small_catalog)
    out = tmp_path / "ondisk"
    store = build(cat, out, small_encoder, BuildConfig(index="ivf", nlist=2, ondisk=True, engine="ray",
                                                       batch_size=8, num_workers=0, progress=False))
    files = sorted(p.name for p in out.iterdir())
    assert files == [".lock", "index-000001.faiss", "lists-000001.ivfdata", "manifest.json", "meta-000001.sqlite"]
    assert store.manifest["ondisk"] and store.read_only and store.count == 36
    reopened = IndexStore.open(out, small_encoder)  # lists memory-mapped from the folder
    exact = np.stack([v for v in small_encoder.embed_images([__import__("PIL").Image.open(cat.image_path(it))
                                                             for it in cat.items[:6]])])
    hits = reopened.search(exact, 1)
    assert [h[0].id for h in hits] == [it.id for it in cat.items[:6]]
    blue = reopened.search(exact[:1], 5, {"color": "blue"})[0]
    assert len(blue) == 5 and all(reopened.get_items([h.id])[h.id]["labels"]["color"] == "blue" for h in blue)
    with pytest.raises(IndexStoreError, match="read-only"):
        reopened.remove(["1-0000"])
