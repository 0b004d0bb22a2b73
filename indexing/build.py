"""Build an index folder from a catalog: embed (resumable shards) -> FAISS -> SQLite -> manifest.

Work in progress lives in ``OUT/.work/`` (embedding shards, keyed by item id, image content
and encoder). The manifest is written last, so until a build completes the folder refuses to
load, and rerunning the same command reuses every finished shard whose images are unchanged.
A rebuild over an existing index commits like any writer (:meth:`IndexStore.save`): under the
folder's write lock, as a generation numbered above any the folder has shown, switched in by
replacing the manifest, so the old index stays loadable until the new one is whole, whatever
step the rebuild is killed at. A rebuild replaces the index with the catalog's items,
including any ``add``/``remove`` committed while it ran.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from catalog import Catalog
from indexing.data import default_workers
from indexing.embed import embed_paths
from indexing.encoder import Encoder
from indexing.engines import EngineConfig
from indexing.faiss_index import choose_spec, train_index, training_sample, tune_search
from indexing.store import (
    DEFAULT_VIEWS,
    IndexStore,
    VectorEntry,
    assign_vector_ids,
    entry_key,
    new_manifest,
    new_metadata_db,
    parse_views,
    utc_now,
    view_entries,
    write_manifest,
)

log = logging.getLogger(__name__)

WORK_DIR = ".work"


@dataclass
class BuildConfig:
    index: str = "auto"  # auto | flat | hnsw | ivf | ivfpq
    engine: str = "local"  # local | ray
    batch_size: int = 64
    num_workers: int = field(default_factory=default_workers)
    shard_size: int = 2048
    ray_address: str | None = None
    nlist: int | None = None
    refine: str = "sq8"  # ivfpq re-ranking codes: sq8 | flat | none
    target_recall: float = 0.95
    tune_queries: int = 500
    ondisk: bool = False
    keep_shards: bool = False
    progress: bool = True
    views: tuple[str, ...] = DEFAULT_VIEWS  # product and/or model: which photos of each item are embedded


def embed_catalog(catalog: Catalog, encoder: Encoder, shard_dir: Path, cfg: BuildConfig,
                  entries: list[VectorEntry] | None = None) -> np.ndarray:
    """One vector per entry (default: per item, its product shot), from resumable shards."""
    if entries is None:
        entries = view_entries(catalog, DEFAULT_VIEWS)
    ids = [entry_key(catalog, e) for e in entries]
    paths = [str(catalog.root / e.path) for e in entries]
    engine_cfg = EngineConfig(batch_size=cfg.batch_size, num_workers=cfg.num_workers, ray_address=cfg.ray_address)
    return embed_paths(encoder, ids, paths, shard_dir, cfg.engine, engine_cfg, cfg.shard_size, cfg.progress)


def build(catalog: Catalog, out: str | Path, encoder: Encoder, cfg: BuildConfig | None = None) -> IndexStore:
    """Build (or rebuild) the index folder ``out`` for ``catalog``; returns the opened store."""
    cfg = cfg or BuildConfig()
    out = Path(out)
    if not catalog.items:
        raise ValueError(f"catalog {catalog.root} has no usable items ({len(catalog.issues)} rows skipped)")
    views = parse_views(cfg.views)
    entries = view_entries(catalog, views)
    if not entries:
        raise ValueError(f"catalog {catalog.root}: no photos in views {', '.join(views)}")
    work = out / WORK_DIR
    t0 = time.time()
    vectors = embed_catalog(catalog, encoder, work / "shards", cfg, entries)
    t_embed = time.time() - t0
    item_ids, ids = assign_vector_ids(catalog, entries, 0)
    spec = choose_spec(len(vectors), encoder.dim, cfg.index, cfg.nlist, cfg.refine)
    log.info("index %s %s for %d vectors of dim %d", spec.kind, spec.params, len(vectors), encoder.dim)
    t1 = time.time()
    if cfg.ondisk:
        store = _build_ondisk(catalog, out, encoder, spec, vectors, ids, cfg, entries, item_ids, views)
    else:
        index = train_index(spec, training_sample(vectors, spec))
        store = IndexStore(out, new_manifest(encoder, spec, catalog, views=views), index, new_metadata_db(), encoder)
        store.add_vectors(catalog, vectors, entries)
        tune_search(store.index, spec, vectors, ids, cfg.target_recall, sample=cfg.tune_queries)
        store.spec = spec
        store.manifest["index"] = spec.to_dict()
        store.manifest["build"] = {"engine": cfg.engine, "embed_s": round(t_embed, 2),
                                   "index_s": round(time.time() - t1, 2), "device": str(encoder.device)}
        store.save()
    if not cfg.keep_shards:
        shutil.rmtree(work, ignore_errors=True)
    return store


def _build_ondisk(catalog: Catalog, out: Path, encoder: Encoder, spec, vectors: np.ndarray, ids: np.ndarray,
                  cfg: BuildConfig, entries: list[VectorEntry], item_ids: np.ndarray,
                  views: tuple[str, ...]) -> IndexStore:
    """On-disk IVF: the lists are merged straight into the new generation's files, under the lock."""
    from indexing.lock import folder_lock
    from indexing.ondisk import build_ondisk
    from indexing.store import (
        insert_items,
        insert_vectors,
        next_generation,
        remove_other_generations,
        write_metadata,
    )

    if cfg.engine == "ray":
        import ray

        if not ray.is_initialized():
            ray.init(address=cfg.ray_address, include_dashboard=False, log_to_driver=False)
    with folder_lock(out):
        gen = next_generation(out)
        files = {"index": f"index-{gen:06d}.faiss", "meta": f"meta-{gen:06d}.sqlite",
                 "ivfdata": f"lists-{gen:06d}.ivfdata"}
        index = build_ondisk(spec, vectors, ids, out / WORK_DIR / "blocks", out / files["index"],
                             out / files["ivfdata"], use_ray=cfg.engine == "ray")
        tune_search(index, spec, vectors, ids, cfg.target_recall, sample=cfg.tune_queries)
        db = new_metadata_db()
        insert_items(db, catalog, item_ids.tolist())
        insert_vectors(db, ((v, item_ids[e.item], e.view, e.path) for v, e in zip(ids, entries, strict=True)))
        next_id = int(max(ids.max(), item_ids.max())) + 1
        db.executemany("INSERT INTO kv VALUES (?, ?)", [("next_int_id", str(next_id)), ("generation", str(gen))])
        db.commit()
        write_metadata(db, out / files["meta"])
        manifest = new_manifest(encoder, spec, catalog, {"ondisk": True}, views=views)
        manifest.update(generation=gen, files=files, count=len(item_ids), vectors=int(index.ntotal),
                        updated=utc_now(), sizes={k: (out / name).stat().st_size for k, name in files.items()},
                        catalogs=[{**catalog.provenance(), "added": utc_now()}])
        write_manifest(out, manifest)  # the commit point
        remove_other_generations(out, set(files.values()))
    return IndexStore.open(out, encoder)
