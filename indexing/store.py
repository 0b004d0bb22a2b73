"""IndexStore: a FAISS index, the catalog rows in SQLite, and a manifest, as one folder.

Folder layout (generation ``G`` increases with every commit)::

    manifest.json          the commit point: names the files of the live generation, their sizes
                           and counts
    index-G.faiss          FAISS index holding int64 ids (add_with_ids)
    meta-G.sqlite          catalog rows: items(int_id, id, ...), labels(grp, value, int_id),
                           vectors(vec_id, int_id, view, path): which photo each FAISS vector
                           is, tombstones(vec_id), kv(generation, next_int_id)
    .lock                  the cross-process write lock (:mod:`indexing.lock`)

A commit (:meth:`IndexStore.save`, a build) takes the folder's write lock, picks a generation
number above every generation the folder has ever shown (the manifest's and any file's, even
a half-written one), writes that generation's files under their new names, and only then
replaces ``manifest.json`` atomically. The live generation's files are never written to, so a
writer killed at any step leaves the old generation loadable (or, for a first build, a
folder that refuses to load); older generations and leftovers are deleted after the switch.
A store opened from disk commits only if the folder is still at the generation it was opened
at (else :class:`ConcurrentUpdateError`); :meth:`IndexStore.open_for_update` holds the lock
from open to commit, which is how the CLI and the server change an index.

Opening checks that the files agree before anything is served: each file's size against the
manifest, the metadata's generation against the manifest's, the manifest's item count against
the metadata rows, and the FAISS vector count against the rows that own a vector (one
``vectors`` row per live photo of every view, plus HNSW tombstones), and the views the
``vectors`` rows name against the manifest's ``views``. A mismatch refuses to load with a
message naming the files.

In memory the SQLite database is a private in-memory copy, so searches never touch the disk
and a store object can be mutated (``add``/``remove``) and saved as a new generation while
the server keeps serving the previous object; the server swaps whole objects.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

from catalog import Catalog, Schema, atomic_path, atomic_write_text
from indexing.faiss_index import (
    IndexSpec,
    add_vectors,
    apply_search_params,
    gpu_search_index,
    num_gpus,
    remove_ids,
    search_parameters,
)
from indexing.lock import DEFAULT_TIMEOUT_S, folder_lock

if TYPE_CHECKING:  # the encoder imports torch; a store is opened without it (CLI remove, readers)
    from indexing.encoder import Encoder

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = 1
FILTER_FIELDS = ("brand",)  # item columns usable as filters besides the schema groups
DAMAGED = "the folder is damaged: restore it from a backup or rebuild the index"
# Which photos of an item are embedded: the product shot and/or every model photo. Each vector
# carries its item and its view; a search over several views returns each item once, with the
# photo that scored best.
VIEWS = ("product", "model")
DEFAULT_VIEWS = ("product",)

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS items (
    int_id INTEGER PRIMARY KEY,
    id TEXT UNIQUE NOT NULL,
    catalog_root TEXT NOT NULL,
    img_path TEXT NOT NULL,
    name TEXT, brand TEXT, product_url TEXT, img_url TEXT,
    row_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_brand ON items(brand);
CREATE TABLE IF NOT EXISTS labels (
    grp TEXT NOT NULL, value TEXT NOT NULL, int_id INTEGER NOT NULL,
    PRIMARY KEY (grp, value, int_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tombstones (int_id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS vectors (
    vec_id INTEGER PRIMARY KEY, int_id INTEGER NOT NULL, view TEXT NOT NULL, path TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS vectors_item ON vectors(int_id);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class IndexStoreError(RuntimeError):
    """An index folder that cannot be used as asked (incomplete, read-only, unknown ids...)."""


class InconsistentIndexError(IndexStoreError):
    """The files of an index folder disagree (counts, sizes, generations); the message names them."""


class ConcurrentUpdateError(IndexStoreError):
    """Another writer committed to the folder after this store was opened from it."""


class EncoderMismatchError(IndexStoreError):
    """The index was built with a different encoder than the one offered to search it."""


class FilterError(ValueError):
    """A search filter naming an unknown attribute group or value."""


class ViewError(ValueError):
    """A view name that does not exist (the message names the allowed views)."""


class MissingViewError(IndexStoreError):
    """A view that exists but was not indexed in this folder (e.g. no model photos)."""


@dataclass(frozen=True)
class Hit:
    """One item of a result: its best-scoring photo's score, view and catalog-relative path."""

    id: str
    score: float
    view: str = "product"
    path: str = ""


def parse_views(views: str | Iterable[str] | None, default: Sequence[str] = DEFAULT_VIEWS) -> tuple[str, ...]:
    """``"product,model"`` or a list -> a checked tuple in the canonical order; empty: ``default``."""
    if views is None:
        return tuple(default)
    items = [v.strip() for v in (views.split(",") if isinstance(views, str) else views)]
    items = [v for v in items if v]
    if not items:
        return tuple(default)
    bad = [v for v in items if v not in VIEWS]
    if bad:
        raise ViewError(f"unknown view {bad[0]!r}; views: {', '.join(VIEWS)}")
    return tuple(v for v in VIEWS if v in items)


@dataclass(frozen=True)
class VectorEntry:
    """One photo to embed for an item: ``item`` is its position in ``catalog.items``."""

    item: int
    view: str
    path: str  # relative to the catalog folder, as in the CSV


def view_entries(catalog: Catalog, views: Sequence[str]) -> list[VectorEntry]:
    """The photos ``views`` asks for, in catalog order: each item's product shot, then its model photos."""
    out: list[VectorEntry] = []
    for i, item in enumerate(catalog.items):
        if "product" in views:
            out.append(VectorEntry(i, "product", item.img_path))
        if "model" in views:
            out += [VectorEntry(i, "model", p) for p in item.model_img_paths]
    return out


def entry_key(catalog: Catalog, entry: VectorEntry) -> str:
    """The key a vector's embedding shard records: the item id for its product shot (as before
    views existed, so older shards still resume), ``id@view:path`` for any other photo."""
    item_id = catalog.items[entry.item].id
    return item_id if entry.view == "product" else f"{item_id}@{entry.view}:{entry.path}"


def _shown(value: str, limit: int = 64) -> str:
    """A caller's value in an error message, cut: a 1 MB id must not make a 1 MB message."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def new_metadata_db() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.executescript(_SCHEMA_SQL)
    return db


def insert_items(db: sqlite3.Connection, catalog: Catalog, int_ids: Sequence[int]) -> None:
    root = str(Path(catalog.root).resolve())
    groups = catalog.schema.names
    rows, labels = [], []
    for item, iid in zip(catalog.items, int_ids, strict=True):
        row = item.to_row(groups)
        rows.append((int(iid), item.id, root, item.img_path, item.name, item.brand, item.product_url,
                     item.img_url, json.dumps(row, ensure_ascii=False)))
        labels += [(g, v, int(iid)) for g, v in item.labels.items() if v]
    db.executemany("INSERT INTO items VALUES (?,?,?,?,?,?,?,?,?)", rows)
    db.executemany("INSERT INTO labels VALUES (?,?,?)", labels)


def insert_vectors(db: sqlite3.Connection, rows: Iterable[tuple[int, int, str, str]]) -> None:
    """``(vec_id, item int_id, view, path)`` rows: which photo each FAISS vector is."""
    db.executemany("INSERT INTO vectors VALUES (?,?,?,?)", [(int(a), int(b), v, p) for a, b, v, p in rows])


def assign_vector_ids(catalog: Catalog, entries: Sequence[VectorEntry], start: int) -> tuple[np.ndarray, np.ndarray]:
    """(item int ids, vector ids): items get ``start..start+N-1``; a product vector shares its
    item's id (so a product-only index is numbered exactly as before views), other vectors
    follow after the items."""
    item_ids = np.arange(start, start + len(catalog.items), dtype=np.int64)
    vec_ids = np.empty(len(entries), np.int64)
    nxt = start + len(catalog.items)
    for j, e in enumerate(entries):
        if e.view == "product":
            vec_ids[j] = item_ids[e.item]
        else:
            vec_ids[j] = nxt
            nxt += 1
    return item_ids, vec_ids


def ensure_vectors_table(db: sqlite3.Connection) -> None:
    """Folders written before views existed: every item's id is its product vector's id."""
    have = db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='vectors'").fetchone()
    if have:
        return
    db.executescript(_SCHEMA_SQL)
    db.execute("INSERT INTO vectors SELECT int_id, int_id, 'product', img_path FROM items")
    db.commit()


def merge_schema(a: Mapping[str, Sequence[str]], b: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    out = {g: list(v) for g, v in a.items()}
    for g, vals in b.items():
        cur = out.setdefault(g, [])
        cur += [v for v in vals if v not in cur]
    return out


class IndexStore:
    """Search a catalog by vector, with attribute filters; thread-safe; add/remove/save."""

    def __init__(self, folder: str | Path, manifest: dict, index: faiss.Index, db: sqlite3.Connection,
                 encoder=None, read_only: bool = False, base_generation: int | None = None) -> None:
        """``base_generation``: the on-disk generation this store was read from (None for a new
        store, whose first :meth:`save` replaces whatever the folder holds: a rebuild)."""
        self.folder = Path(folder)
        self.manifest = manifest
        self.index = index
        self.spec = IndexSpec.from_dict(manifest["index"])
        self.db = db
        self.encoder = encoder
        self.read_only = read_only
        self.base_generation = base_generation
        self._holds_write_lock = False  # inside open_for_update: save() commits under that lock
        self._lock = threading.RLock()
        self._gpu_index = None
        self._reload_caches()
        apply_search_params(self.index, self.spec)
        self._maybe_gpu()

    # --- opening ------------------------------------------------------------------------------------
    @classmethod
    def open(cls, index_dir: str | Path, encoder=None, mmap: bool = False) -> IndexStore:
        """Load the live generation of an index folder, after checking that its files agree.

        Refuses an encoder whose checksum differs from the manifest's. ``mmap=True``
        memory-maps the FAISS file instead of reading it (read-only store); on-disk IVF indexes
        (built with ``--ondisk``) are always memory-mapped. A writer may commit (and delete the
        files being opened) while this reads: then the new manifest is read and opening retried.
        """
        folder = Path(index_dir)
        for attempt in range(3):
            manifest = read_manifest(folder)
            if encoder is not None:
                check_encoder(manifest, encoder, folder)
            try:
                return cls._open_generation(folder, manifest, encoder, mmap)
            except IndexStoreError:
                moved = _generation_on_disk(folder) != manifest.get("generation")
                if not moved or attempt == 2:
                    raise
                log.info("%s: a writer committed while opening generation %s; opening the new one",
                         folder, manifest.get("generation"))
        raise AssertionError("unreachable")

    @classmethod
    def _open_generation(cls, folder: Path, manifest: dict, encoder, mmap: bool) -> IndexStore:
        ondisk = bool(manifest.get("ondisk"))
        flags = 0
        if ondisk:
            flags = faiss.IO_FLAG_ONDISK_SAME_DIR
        elif mmap:
            flags = faiss.IO_FLAG_MMAP
        names = dict(manifest["files"])
        for key, name in names.items():
            path = folder / name
            if not path.is_file():
                raise InconsistentIndexError(f"{folder}: {MANIFEST} names {name}, which is missing; {DAMAGED}")
            want = (manifest.get("sizes") or {}).get(key)
            if want is not None and path.stat().st_size != want:
                raise InconsistentIndexError(
                    f"{folder}: {name} is {path.stat().st_size} bytes but {MANIFEST} (generation "
                    f"{manifest.get('generation')}) says {want}; {DAMAGED}")
        index_path, meta_path = folder / names["index"], folder / names["meta"]
        try:
            index = faiss.read_index(str(index_path), flags)
        except RuntimeError as exc:
            raise InconsistentIndexError(f"{index_path}: not a readable FAISS index: {str(exc)[:200]}") from None
        if index.d != manifest["dim"]:
            raise InconsistentIndexError(f"{index_path}: dimension {index.d} but {MANIFEST} says {manifest['dim']}")
        db = sqlite3.connect(":memory:", check_same_thread=False)
        try:
            src = sqlite3.connect(f"file:{meta_path}?mode=ro", uri=True)
            try:
                src.backup(db)
            finally:
                src.close()
            ensure_vectors_table(db)
            check_consistency(folder, manifest, index, db)
        except sqlite3.DatabaseError as exc:
            raise InconsistentIndexError(f"{meta_path}: not a readable metadata database: {exc}") from None
        return cls(folder, manifest, index, db, encoder, read_only=ondisk or mmap,
                   base_generation=int(manifest.get("generation", 0)))

    @classmethod
    @contextlib.contextmanager
    def open_for_update(cls, index_dir: str | Path, encoder=None, timeout_s: float | None = DEFAULT_TIMEOUT_S,
                        on_wait: Callable[[str], None] | None = None) -> Iterator[IndexStore]:
        """Hold the folder's write lock, open its live generation and yield the store.

        Every :meth:`save` (and ``add``/``remove``, which save) inside the block commits under
        that lock, so no other writer can commit in between: read, change and commit are one
        step, and two writers (this CLI and a server, say) queue instead of losing an update.
        Keep the block short: embed new items before it (:meth:`embed_catalog`). ``on_wait`` is
        told once when another writer holds the lock (default: a log warning).
        """
        folder = Path(index_dir)
        read_manifest(folder)  # a clear error for a missing or unfinished folder, before locking it
        with folder_lock(folder, timeout_s, on_wait):
            store = cls.open(folder, encoder)
            store._holds_write_lock = True
            try:
                yield store
            finally:
                store._holds_write_lock = False

    def _reload_caches(self) -> None:
        rows = self.db.execute("SELECT int_id, id FROM items").fetchall()
        self._str_of = {int(i): s for i, s in rows}
        self._int_of = {s: int(i) for i, s in rows}
        self._tombstones = np.array([r[0] for r in self.db.execute("SELECT int_id FROM tombstones")], np.int64)
        vec = self.db.execute("SELECT vec_id, int_id, view, path FROM vectors ORDER BY vec_id").fetchall()
        self._vec_ids = np.array([r[0] for r in vec], np.int64)
        self._vec_items = np.array([r[1] for r in vec], np.int64)
        self._vec_views = np.array([VIEWS.index(r[2]) if r[2] in VIEWS else -1 for r in vec], np.int8)
        self._vec_info = {int(r[0]): (int(r[1]), r[2], r[3]) for r in vec}
        # most vectors one item has in each view: how many vectors to fetch for k distinct items
        self._per_item = {}
        for code, view in enumerate(VIEWS):
            items = self._vec_items[self._vec_views == code]
            self._per_item[view] = int(np.bincount(items - items.min()).max()) if len(items) else 0

    def _maybe_gpu(self) -> None:
        """A GPU copy for unfiltered searches when FAISS sees a GPU (CPU copy stays the source of truth)."""
        self._gpu_index = None
        if num_gpus() == 0 or self.spec.kind == "hnsw" or self.manifest.get("ondisk") or self.count == 0:
            return
        try:
            self._gpu_index = gpu_search_index(self.index, self.spec)
        except Exception as exc:  # not every index type has a GPU version
            log.info("GPU search unavailable for %s: %s", self.spec.kind, exc)

    # --- properties ---------------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return len(self._str_of)

    def __len__(self) -> int:
        return self.count

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def schema(self) -> Schema:
        return Schema.from_dict({"groups": self.manifest.get("schema", {})})

    def ids(self) -> list[str]:
        return list(self._int_of)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._int_of

    @property
    def views(self) -> tuple[str, ...]:
        """The views this folder has vectors for (``("product",)`` for folders before views)."""
        return tuple(self.manifest.get("views") or DEFAULT_VIEWS)

    @property
    def vector_count(self) -> int:
        return len(self._vec_ids)

    def check_views(self, views: str | Iterable[str] | None) -> tuple[str, ...]:
        """The asked views, checked: unknown names raise :class:`ViewError`, views this folder
        did not index raise :class:`MissingViewError` saying how to add them."""
        want = parse_views(views)
        missing = [v for v in want if v not in self.views]
        if missing:
            raise MissingViewError(
                f"this index has no {missing[0]} photos (indexed views: {', '.join(self.views)}); "
                f"rebuild it with: python -m indexing build --views {','.join(sorted(set(self.views) | set(want), key=VIEWS.index))} ...")
        return want

    # --- filters ------------------------------------------------------------------------------------
    def _allowed(self, filters: Mapping[str, str | Sequence[str]]) -> np.ndarray:
        groups = self.manifest.get("schema", {})
        allowed: set[int] | None = None
        for key, want in filters.items():
            values = [want] if isinstance(want, str) else list(want)
            if not values:
                raise FilterError(f"filter {_shown(key)} lists no values")
            if key in groups:
                bad = [v for v in values if v not in groups[key]]
                if bad:
                    raise FilterError(f"filter {_shown(key)}={_shown(bad[0])}: unknown value; "
                                      f"allowed: {', '.join(groups[key])}")
                q = f"SELECT int_id FROM labels WHERE grp=? AND value IN ({','.join('?' * len(values))})"
                got = {r[0] for r in self.db.execute(q, [key, *values])}
            elif key in FILTER_FIELDS:
                q = f"SELECT int_id FROM items WHERE {key} IN ({','.join('?' * len(values))})"
                got = {r[0] for r in self.db.execute(q, values)}
            else:
                raise FilterError(f"unknown filter {_shown(key)}; filter on: {', '.join([*groups, *FILTER_FIELDS])}")
            allowed = got if allowed is None else allowed & got
        return np.array(sorted(allowed or ()), np.int64)

    def count_matching(self, filters: Mapping[str, str | Sequence[str]]) -> int:
        with self._lock:
            return len(self._allowed(filters))

    # --- search -------------------------------------------------------------------------------------
    def search(self, vectors: np.ndarray, k: int = 10,
               filters: Mapping[str, str | Sequence[str]] | None = None,
               views: str | Sequence[str] | None = None) -> list[list[Hit]]:
        """Top-``k`` items per query vector (cosine similarity), optionally filtered.

        ``views`` picks the photos searched (default: the product shots); an item with several
        matching photos appears once, scored by its best photo, and the hit names that photo.
        Filters AND across keys and OR within a key's list. With a filter, the FAISS search
        runs with an ``IDSelectorBatch`` of the matching vectors; when the approximate index
        returns fewer than ``min(k, matches)`` items (the matches sit in unprobed lists or
        graph regions), the query falls back to exact search over the matching vectors, so
        ``k`` results come back whenever ``k`` items match.
        """
        q = np.ascontiguousarray(np.atleast_2d(np.asarray(vectors, np.float32)))
        if q.shape[1] != self.dim:
            raise ValueError(f"query vectors have dimension {q.shape[1]}, index has {self.dim}")
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        want = self.check_views(views)
        with self._lock:
            if self.count == 0:
                return [[] for _ in q]
            allowed_items = self._allowed(filters) if filters else None
            every_view = set(want) >= {VIEWS[c] for c in np.unique(self._vec_views).tolist() if c >= 0}
            if allowed_items is None and every_view:
                allowed = None  # every vector: no selector needed
                n_items = self.count
            else:
                mask = np.isin(self._vec_views, [VIEWS.index(v) for v in want])
                if allowed_items is not None:
                    mask &= np.isin(self._vec_items, allowed_items)
                allowed = self._vec_ids[mask]
                n_items = len(np.unique(self._vec_items[mask]))
            if allowed is not None and len(self._tombstones):
                allowed = np.setdiff1d(allowed, self._tombstones)
            if allowed is not None and len(allowed) == 0:
                return [[] for _ in q]
            n_vectors = self.vector_count if allowed is None else len(allowed)
            # k distinct items are guaranteed among the top k * (most photos per item) vectors
            fetch = min(n_vectors, k * max(1, sum(self._per_item[v] for v in want)))
            expect = min(k, n_items)
            scores, ids = self._faiss_search(q, fetch, allowed)
            out = []
            for i in range(len(q)):
                row = [(int(j), float(s)) for j, s in zip(ids[i], scores[i], strict=True) if j >= 0]
                hits = self._per_item_best(row, k)
                if len(hits) < expect:
                    hits = self._per_item_best(self._exact(q[i], fetch, allowed), k)
                out.append(hits)
            return out

    def _per_item_best(self, row: list[tuple[int, float]], k: int) -> list[Hit]:
        """Vector hits (best first) -> the first ``k`` distinct items, each with its best photo."""
        hits: list[Hit] = []
        seen: set[int] = set()
        for vec_id, score in row:
            item, view, path = self._vec_info[vec_id]
            if item in seen:
                continue
            seen.add(item)
            hits.append(Hit(self._str_of[item], score, view, path))
            if len(hits) == k:
                break
        return hits

    def _faiss_search(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if allowed is None and len(self._tombstones) == 0 and self._gpu_index is not None:
            return self._gpu_index.search(q, k)
        sel = inner = None  # keep both referenced: SWIG selectors do not own what they wrap
        if allowed is not None:
            sel = faiss.IDSelectorBatch(allowed)
        elif len(self._tombstones):
            inner = faiss.IDSelectorBatch(self._tombstones)
            sel = faiss.IDSelectorNot(inner)
        params = search_parameters(self.spec, sel, self.index)
        if params is None:
            return self.index.search(q, k)
        result = self.index.search(q, k, params=params)
        del inner
        return result

    def _exact(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        if self.manifest.get("ondisk"):
            return self._scan_all_lists(query, k, allowed)
        ids = allowed if allowed is not None else np.setdiff1d(self._vec_ids, self._tombstones)
        best_s = np.zeros(0, np.float32)
        best_i = np.zeros(0, np.int64)
        for a in range(0, len(ids), 65_536):
            chunk = ids[a : a + 65_536]
            vecs = np.stack([self.index.reconstruct(int(j)) for j in chunk])
            s = vecs @ query
            best_s, best_i = np.concatenate([best_s, s]), np.concatenate([best_i, chunk])
            top = np.argsort(-best_s, kind="stable")[:k]
            best_s, best_i = best_s[top], best_i[top]
        return [(int(j), float(s)) for j, s in zip(best_i, best_s, strict=True)]

    def _scan_all_lists(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        """On-disk IVF has no direct map to reconstruct from: probe every list instead."""
        keep = allowed if allowed is not None else np.setdiff1d(self._vec_ids, self._tombstones)
        sel = faiss.IDSelectorBatch(keep)
        params = faiss.SearchParametersIVF(sel=sel, nprobe=int(self.spec.params["nlist"]))
        scores, ids = self.index.search(query[None, :], k, params=params)
        return [(int(j), float(s)) for j, s in zip(ids[0], scores[0], strict=True) if j >= 0]

    def reconstruct(self, item_id: str, view: str = "product") -> np.ndarray:
        """The stored vector of an item's first photo in ``view`` (exact for flat/hnsw/ivf and
        ivfpq+flat refine; SQ8 or PQ decoded for ivfpq with sq8 / no refine)."""
        with self._lock:
            if item_id not in self._int_of:
                raise KeyError(f"unknown id {item_id!r}")
            iid = self._int_of[item_id]
            mine = self._vec_ids[(self._vec_items == iid) & (self._vec_views == VIEWS.index(view))]
            if not len(mine):
                raise KeyError(f"item {item_id!r} has no {view} vector in this index")
            return self.index.reconstruct(int(mine[0]))

    def vectors_of(self, item_id: str) -> list[tuple[str, str]]:
        """``(view, path)`` of every photo of an item that has a vector, in id order."""
        with self._lock:
            iid = self._int_of[item_id]
            return [(self._vec_info[int(v)][1], self._vec_info[int(v)][2]) for v in self._vec_ids[self._vec_items == iid]]

    # --- metadata -----------------------------------------------------------------------------------
    def get_items(self, ids: Iterable[str]) -> dict[str, dict]:
        """Catalog rows by item id: the CSV row fields (list columns as lists) plus ``labels``
        ``{group: value|None}``, the absolute ``image`` path and ``catalog_root``. Unknown ids are left out."""
        ids = list(ids)
        out: dict[str, dict] = {}
        with self._lock:
            groups = list(self.manifest.get("schema", {}))
            for a in range(0, len(ids), 500):
                chunk = ids[a : a + 500]
                q = f"SELECT id, catalog_root, row_json FROM items WHERE id IN ({','.join('?' * len(chunk))})"
                for sid, root, row_json in self.db.execute(q, chunk):
                    row = json.loads(row_json)
                    for col in ("model_img_urls", "model_img_paths", "attributes"):
                        if isinstance(row.get(col), str):
                            row[col] = json.loads(row[col] or "[]")
                    row["labels"] = {g: (row.get(g) or None) for g in groups}
                    row["image"] = str(Path(root) / row["img_path"])
                    row["catalog_root"] = root
                    out[sid] = row
        return out

    # --- mutation -----------------------------------------------------------------------------------
    def _check_writable(self) -> None:
        if self.read_only:
            kind = "an on-disk (memory-mapped) index" if self.manifest.get("ondisk") else "opened with mmap=True"
            raise IndexStoreError(f"{self.folder}: {kind} is read-only; rebuild it to change its items")

    def _next_int_id(self) -> int:
        row = self.db.execute("SELECT value FROM kv WHERE key='next_int_id'").fetchone()
        return int(row[0]) if row else 0

    def add_vectors(self, catalog: Catalog, vectors: np.ndarray, entries: Sequence[VectorEntry] | None = None) -> dict:
        """Add (or replace, by id) the catalog's items with precomputed vectors. Not saved until :meth:`save`.

        ``vectors[j]`` is the photo ``entries[j]``; without ``entries`` they are the photos of
        every view the index has, in :func:`view_entries` order (what :meth:`embed_catalog`
        returns; for a product-only index, one vector per item, its product shot).
        """
        self._check_writable()
        if entries is None:
            entries = view_entries(catalog, self.views)
        if vectors.shape != (len(entries), self.dim):
            raise ValueError(f"vectors shape {vectors.shape}, expected ({len(entries)}, {self.dim}): one per "
                             f"photo of views {','.join(sorted({e.view for e in entries}, key=VIEWS.index)) or 'none'}")
        with self._lock:
            replaced = [it.id for it in catalog.items if it.id in self._int_of]
            if replaced:
                self._remove_locked(replaced)
            item_ids, vec_ids = assign_vector_ids(catalog, entries, self._next_int_id())
            add_vectors(self.index, vectors, vec_ids)
            insert_items(self.db, catalog, item_ids.tolist())
            insert_vectors(self.db, ((v, item_ids[e.item], e.view, e.path) for v, e in zip(vec_ids, entries, strict=True)))
            nxt = int(max(item_ids.max(initial=-1), vec_ids.max(initial=-1))) + 1
            self.db.execute("INSERT OR REPLACE INTO kv VALUES ('next_int_id', ?)", (str(max(nxt, self._next_int_id())),))
            self.db.commit()
            self.manifest["schema"] = merge_schema(self.manifest.get("schema", {}), catalog.schema.groups)
            self.manifest.setdefault("catalogs", []).append({**catalog.provenance(), "added": utc_now()})
            self._reload_caches()
            self.manifest["count"] = self.count
            self.manifest["vectors"] = int(self.index.ntotal)
            self._maybe_gpu()
        return {"added": len(catalog.items) - len(replaced), "replaced": len(replaced), "count": self.count}

    def embed_catalog(self, catalog: Catalog, encoder=None, engine: str = "local", engine_cfg=None,
                      shard_size: int = 2048, progress: bool = True,
                      shard_dir: str | Path | None = None) -> np.ndarray:
        """Vectors of the catalog's items with the index's encoder; changes nothing, takes no lock.

        Embedding is sharded and resumable like a build (shards under ``.work-add/``).
        """
        from indexing.embed import embed_paths

        encoder = encoder or self.encoder
        if encoder is None:
            raise IndexStoreError("adding needs the index's encoder: IndexStore.open(dir, encoder=...) "
                                  "or add(..., encoder=)")
        check_encoder(self.manifest, encoder, self.folder)
        entries = view_entries(catalog, self.views)  # the new items get every view the index has
        ids = [entry_key(catalog, e) for e in entries]
        paths = [str(catalog.root / e.path) for e in entries]
        work = Path(shard_dir) if shard_dir else self.folder / ".work-add" / catalog.checksum()
        return embed_paths(encoder, ids, paths, work, engine, engine_cfg, shard_size, progress)

    def add(self, catalog: Catalog, encoder=None, engine: str = "local", engine_cfg=None,
            shard_size: int = 2048, progress: bool = True, shard_dir: str | Path | None = None) -> dict:
        """Embed the catalog's items with the index's encoder and add them (same id: replace); then save."""
        vectors = self.embed_catalog(catalog, encoder, engine, engine_cfg, shard_size, progress, shard_dir)
        result = self.add_vectors(catalog, vectors)
        self.save()
        _rmtree(Path(shard_dir) if shard_dir else self.folder / ".work-add" / catalog.checksum())
        return result

    def remove(self, ids: Iterable[str], missing_ok: bool = False) -> int:
        """Remove items by id from the index and the metadata, then save. Returns how many."""
        self._check_writable()
        ids = list(dict.fromkeys(ids))
        with self._lock:
            unknown = [i for i in ids if i not in self._int_of]
            if unknown and not missing_ok:
                raise IndexStoreError(f"unknown ids (not in the index): {', '.join(_shown(i) for i in unknown[:20])}"
                                      + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""))
            n = self._remove_locked([i for i in ids if i in self._int_of])
        self.save()
        return n

    def _remove_locked(self, ids: list[str]) -> int:
        if not ids:
            return 0
        int_ids = np.array([self._int_of[i] for i in ids], np.int64)
        vec_ids = self._vec_ids[np.isin(self._vec_items, int_ids)]  # every photo of these items
        if self.spec.kind == "hnsw":
            # HNSW graphs cannot delete nodes; removed ids are excluded at search time instead.
            self.db.executemany("INSERT OR IGNORE INTO tombstones VALUES (?)", [(int(i),) for i in vec_ids])
        else:
            removed = remove_ids(self.index, vec_ids)
            if removed != len(vec_ids):
                raise IndexStoreError(f"FAISS removed {removed} of {len(vec_ids)} vectors; index and metadata disagree")
        for a in range(0, len(int_ids), 500):
            chunk = [int(i) for i in int_ids[a : a + 500]]
            marks = ",".join("?" * len(chunk))
            self.db.execute(f"DELETE FROM items WHERE int_id IN ({marks})", chunk)
            self.db.execute(f"DELETE FROM labels WHERE int_id IN ({marks})", chunk)
            self.db.execute(f"DELETE FROM vectors WHERE int_id IN ({marks})", chunk)
        self.db.commit()
        self._reload_caches()
        self.manifest["count"] = self.count
        self.manifest["vectors"] = int(self.index.ntotal)
        self._maybe_gpu()
        return len(int_ids)

    def save(self) -> None:
        """Commit the store as a new generation of its folder (see the module docstring).

        Takes the folder's write lock unless the store already holds it (:meth:`open_for_update`).
        A store read from disk refuses to commit over a generation some other writer committed
        since (:class:`ConcurrentUpdateError`): its change would silently drop theirs.
        """
        self._check_writable()
        with self._lock:
            if self._holds_write_lock:
                self._commit()
            else:
                with folder_lock(self.folder):
                    self._commit()

    def _commit(self) -> None:
        folder = self.folder
        on_disk = _generation_on_disk(folder)
        if self.base_generation is not None and on_disk != self.base_generation:
            raise ConcurrentUpdateError(
                f"{folder}: another writer committed generation {on_disk} after this store was opened at "
                f"generation {self.base_generation}; its change would be lost. Reopen the index and redo the "
                "change (IndexStore.open_for_update holds the lock from open to commit)")
        gen = next_generation(folder, self.manifest)
        files = {"index": f"index-{gen:06d}.faiss", "meta": f"meta-{gen:06d}.sqlite"}
        self.db.execute("INSERT OR REPLACE INTO kv VALUES ('generation', ?)", (str(gen),))
        self.db.commit()
        with atomic_path(folder / files["index"]) as tmp:
            faiss.write_index(self.index, str(tmp))
        write_metadata(self.db, folder / files["meta"])
        manifest = dict(self.manifest, generation=gen, files=files, count=self.count,
                        vectors=int(self.index.ntotal), updated=utc_now())
        manifest["sizes"] = {k: (folder / name).stat().st_size for k, name in files.items()}
        write_manifest(folder, manifest)  # the commit point
        self.manifest = manifest
        self.base_generation = gen
        remove_other_generations(folder, set(files.values()))


# --- generations and consistency ------------------------------------------------------------------------
_GENERATION_FILE = re.compile(r"(?:index|meta|lists)-(\d+)\.(?:faiss|sqlite|ivfdata)")


def _generation_on_disk(folder: Path) -> int | None:
    """The generation ``manifest.json`` names now (None: no readable manifest)."""
    try:
        return int(json.loads((folder / MANIFEST).read_text()).get("generation", 0))
    except (OSError, ValueError, AttributeError):
        return None


def next_generation(folder: Path, manifest: Mapping | None = None) -> int:
    """A generation number above every one the folder shows: its manifest's, ``manifest``'s,
    and any file's, including half-written temp files of a writer that was killed."""
    seen = [_generation_on_disk(folder) or 0, int((manifest or {}).get("generation", 0))]
    if folder.is_dir():
        seen += [int(m.group(1)) for p in folder.iterdir() if (m := _GENERATION_FILE.search(p.name))]
    return max(seen) + 1


def remove_other_generations(folder: Path, keep: set[str]) -> None:
    """Delete generation files not in ``keep`` and temp files left by killed writers (under the lock)."""
    for p in folder.iterdir():
        stale_generation = _GENERATION_FILE.fullmatch(p.name) and p.name not in keep
        leftover_tmp = p.name.startswith(".") and p.name.endswith(".tmp")
        if (stale_generation or leftover_tmp) and p.is_file():
            p.unlink(missing_ok=True)


def write_metadata(db: sqlite3.Connection, path: Path) -> None:
    """The in-memory metadata database as a file, atomically."""
    with atomic_path(path) as tmp:
        tmp.unlink()
        dst = sqlite3.connect(tmp)
        try:
            db.backup(dst)
        finally:
            dst.close()


VECTOR_ROWS = ("vectors", "tombstones")  # the metadata tables whose rows each own one FAISS vector


def vector_rows(db: sqlite3.Connection) -> dict[str, int]:
    """Rows per table that owns FAISS vectors: every vector belongs to exactly one of them.

    That is one ``vectors`` row per live photo (an item's product shot and, with the "model"
    view, each of its model photos), plus the HNSW tombstones (HNSW cannot delete: a removed
    photo's vector stays in the graph until a rebuild).
    """
    return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in VECTOR_ROWS}


def vectors_per_view(db: sqlite3.Connection) -> dict[str, int]:
    """Live vectors per view, from the metadata (for messages and the consistency check)."""
    return {v: n for v, n in db.execute("SELECT view, COUNT(*) FROM vectors GROUP BY view ORDER BY view")}


def check_consistency(folder: Path, manifest: Mapping, index: faiss.Index, db: sqlite3.Connection) -> None:
    """Refuse a generation whose FAISS file, metadata and manifest disagree (names the files).

    Checked: the metadata's own generation against the manifest's; the manifest's item
    ``count`` against the metadata's items; the FAISS vector count against the rows that own
    vectors (:func:`vector_rows`: a row per photo of every view, plus tombstones) and against
    the manifest's ``vectors``; the views of the ``vectors`` rows against the manifest's
    ``views``; every live item's vectors belonging to a live item.
    """
    files = manifest["files"]
    rows = vector_rows(db)
    owners = sum(rows.values())
    items = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    per_view = vectors_per_view(db)
    orphans = db.execute("SELECT COUNT(*) FROM vectors WHERE int_id NOT IN (SELECT int_id FROM items)").fetchone()[0]
    row = db.execute("SELECT value FROM kv WHERE key='generation'").fetchone()
    problems = []
    if row is not None and int(row[0]) != int(manifest.get("generation", 0)):
        problems.append(f"{files['meta']} belongs to generation {row[0]}, {MANIFEST} names generation "
                        f"{manifest.get('generation')}")
    if items != manifest["count"]:
        problems.append(f"{files['meta']} holds {items} items, {MANIFEST} says {manifest['count']}")
    if index.ntotal != owners:
        parts = [f"{n} {v} vectors" for v, n in per_view.items()] or ["0 vectors"]
        if rows["tombstones"]:
            parts.append(f"{rows['tombstones']} tombstones")
        problems.append(f"{files['index']} holds {index.ntotal} vectors, {files['meta']} has {' + '.join(parts)}")
    unknown_views = sorted(set(per_view) - set(manifest.get("views") or DEFAULT_VIEWS))
    if unknown_views:
        problems.append(f"{files['meta']} has {', '.join(unknown_views)} vectors, {MANIFEST} lists views "
                        f"{', '.join(manifest.get('views') or DEFAULT_VIEWS)}")
    if orphans:
        problems.append(f"{files['meta']} has {orphans} vectors of items it does not hold")
    if "vectors" in manifest and index.ntotal != manifest["vectors"]:
        problems.append(f"{files['index']} holds {index.ntotal} vectors, {MANIFEST} says {manifest['vectors']}")
    if problems:
        raise InconsistentIndexError(
            f"{folder} is inconsistent, refusing to load it: {'; '.join(problems)}; {DAMAGED}")


# --- manifest helpers ----------------------------------------------------------------------------------
def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        if folder.is_dir() and any(folder.iterdir()):
            raise IndexStoreError(f"{folder}: no {MANIFEST}: the build did not finish; rerun the same build command to resume it")
        raise IndexStoreError(f"{folder}: not an index folder (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise IndexStoreError(f"{path}: not valid JSON: {exc}") from exc
    for key in ("format", "encoder", "dim", "index", "count", "files"):
        if key not in manifest:
            raise IndexStoreError(f"{path}: missing field {key!r}")
    if manifest["format"] > FORMAT:
        raise IndexStoreError(f"{path}: format {manifest['format']} is newer than this code understands ({FORMAT})")
    return manifest


def write_manifest(folder: Path, manifest: dict) -> None:
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def check_encoder(manifest: dict, encoder, folder: Path) -> None:
    want = manifest["encoder"]
    if encoder.checksum != want["checksum"] or encoder.dim != manifest["dim"]:
        raise EncoderMismatchError(
            f"{folder} was built with encoder {want['id']} (checksum {want['checksum'][:12]}, dim {manifest['dim']}, "
            f"from {want.get('source', '?')}), but encoder {encoder.encoder_id} (checksum {encoder.checksum[:12]}, "
            f"dim {encoder.dim}) was given; use that encoder or rebuild the index"
        )


def encoder_for_index(index_dir: str | Path, override: str | Path | None = None, device: str = "auto") -> Encoder:
    """The encoder to search an index with: ``override`` if given, else the one its manifest names
    (the built-in one with the manifest's config, e.g. its input size, or the encoder folder)."""
    from indexing.encoder import BUILTIN, Encoder, EncoderConfig

    if override:
        return Encoder.load(override, device)
    enc = read_manifest(Path(index_dir))["encoder"]
    source = enc.get("source") or BUILTIN
    if source == BUILTIN:
        return Encoder.builtin(EncoderConfig.from_dict(enc["config"]), device=device)
    if not Path(source).is_dir():
        raise IndexStoreError(f"the encoder folder {source} that {index_dir} was built with is gone; "
                              "pass the encoder explicitly (--encoder PATH)")
    return Encoder.load(source, device)


def new_manifest(encoder, spec: IndexSpec, catalog: Catalog, extra: dict | None = None,
                 views: Sequence[str] = DEFAULT_VIEWS) -> dict:
    now = utc_now()
    return {
        "format": FORMAT,
        "generation": 0,
        "encoder": {"id": encoder.encoder_id, "checksum": encoder.checksum, "source": encoder.source,
                    "config": encoder.config.to_dict()},
        "dim": encoder.dim,
        "metric": spec.metric,
        "index": spec.to_dict(),
        "count": 0,
        "catalog_checksum": catalog.checksum(),
        "catalogs": [],
        "schema": {g: list(v) for g, v in catalog.schema.groups.items()},
        "created": now,
        "updated": now,
        "ondisk": False,
        "views": list(views),
        **(extra or {}),
    }


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
