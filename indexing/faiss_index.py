"""FAISS index choice, construction, and search-parameter tuning.

Choice follows the FAISS guidelines ("Guidelines to choose an index"):
- below ~50k vectors an exact ``Flat`` index is fast enough and has perfect recall;
- up to a few million, an inverted file (IVF-Flat, nlist ~ 4-16 sqrt(N)) or an HNSW graph;
  ``auto`` picks IVF-Flat because it supports removals, GPU search and filtered search
  natively; ``--index hnsw`` is there for CPU-only serving with the best recall/QPS;
- beyond that, vectors no longer fit in RAM raw, so OPQ rotation + IVF + product quantisation,
  with the PQ shortlist re-ranked by a finer code (``IndexRefine``: SQ8 by default, or the raw
  float vectors) -- PQ alone caps recall@10 far below 0.95 on embedding-like data.

All indexes use inner product on L2-normalised vectors (cosine similarity) and carry the
store's int64 ids (``add_with_ids``). ``nprobe``/``efSearch`` (and the refine ``k_factor``) are
tuned on held-out queries to the cheapest setting that reaches the recall@10 target against
exact search.

The refined ivfpq index is ``IndexIDMap2(IndexRefine(OPQ+IVF-PQ, SQ8|Flat))``: ``IndexRefine``
addresses its refine codes by position, so the base IVF holds positions and the IDMap2 on top
maps them to store ids. FAISS implements neither ``remove_ids`` for ``IndexRefine`` nor id
selectors passed at its top level (they are silently ignored), so :func:`remove_ids` and
:func:`search_parameters` handle those here.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field

import faiss
import numpy as np

log = logging.getLogger(__name__)

KINDS = ("auto", "flat", "hnsw", "ivf", "ivfpq")
REFINES = ("sq8", "flat", "none")  # ivfpq re-ranking codes: d bytes, 4d bytes, none
FLAT_MAX = 50_000
IVF_MAX = 2_000_000


class IndexConfigError(ValueError):
    """An index kind or parameter that cannot work for the data given."""


@dataclass
class IndexSpec:
    kind: str  # flat | hnsw | ivf | ivfpq
    dim: int
    metric: str = "inner_product"
    params: dict = field(default_factory=dict)  # build-time: nlist, M, pq_m, opq_dim, ...
    search: dict = field(default_factory=dict)  # search-time: nprobe / efSearch
    tuning: dict = field(default_factory=dict)  # how search params were chosen (recall, queries)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> IndexSpec:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def _pq_m(dim: int) -> int:
    """Sub-quantiser count: ~8-16 dims per sub-vector, a divisor of the (OPQ) output dim."""
    for m in (64, 48, 32, 24, 16, 8, 4, 2, 1):
        if dim % m == 0 and dim // m >= 4:
            return m
    return 1


def choose_spec(n: int, dim: int, kind: str = "auto", nlist: int | None = None, refine: str = "sq8") -> IndexSpec:
    """The index kind and build parameters for ``n`` vectors of ``dim`` dimensions.

    ``refine`` (ivfpq only) re-ranks the PQ shortlist: ``sq8`` keeps one byte per dimension
    (near-exact ranking at a quarter of the raw size), ``flat`` the float vectors (exact),
    ``none`` only the PQ codes (smallest, but recall@10 stays well below 0.95).
    """
    if kind not in KINDS:
        raise IndexConfigError(f"unknown index kind {kind!r}; choose one of: {', '.join(KINDS)}")
    if refine not in REFINES:
        raise IndexConfigError(f"unknown refine {refine!r}; choose one of: {', '.join(REFINES)}")
    if kind == "auto":
        kind = "flat" if n < FLAT_MAX else "ivf" if n < IVF_MAX else "ivfpq"
    if kind == "flat":
        return IndexSpec("flat", dim)
    if kind == "hnsw":
        return IndexSpec("hnsw", dim, params={"M": 32, "efConstruction": 80})
    # nlist ~ 4*sqrt(N) for IVF-Flat, 16*sqrt(N) for the compressed index; keep >= 39 points per
    # centroid so k-means has enough data to train.
    factor = 4 if kind == "ivf" else 16
    nl = nlist or int(2 ** round(math.log2(max(1.0, factor * math.sqrt(max(n, 1))))))
    nl = max(1, min(nl, n // 39 if n >= 39 else 1))
    params: dict = {"nlist": nl}
    if kind == "ivfpq":
        opq_dim = dim if dim <= 256 else 256
        opq_dim -= opq_dim % 4
        m = _pq_m(opq_dim)
        params.update({"opq_dim": opq_dim, "pq_m": m, "nbits": 8, "opq_iter": 20, "refine": refine})
        if n < 256:
            raise IndexConfigError(f"ivfpq needs at least 256 vectors to train its codebooks, have {n}")
    return IndexSpec(kind, dim, params=params)


def _empty_index(spec: IndexSpec) -> faiss.Index:
    d, p = spec.dim, spec.params
    ip = faiss.METRIC_INNER_PRODUCT
    if spec.kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(d))
    if spec.kind == "hnsw":
        h = faiss.IndexHNSWFlat(d, int(p.get("M", 32)), ip)
        h.hnsw.efConstruction = int(p.get("efConstruction", 80))
        return faiss.IndexIDMap2(h)
    if spec.kind == "ivf":
        index = faiss.index_factory(d, f"IVF{p['nlist']},Flat", ip)
    elif spec.kind == "ivfpq":
        index = faiss.index_factory(d, f"OPQ{p['pq_m']}_{p['opq_dim']},IVF{p['nlist']},PQ{p['pq_m']}x{p.get('nbits', 8)}", ip)
        # OPQ alternates rotation and PQ training; 50 rounds (FAISS default) is slow on small
        # machines and the rotation has converged well before.
        faiss.downcast_VectorTransform(index.chain.at(0)).niter = int(p.get("opq_iter", 20))
        # The factory turns on polysemous training (a slow annealing of code order) which only
        # pays off with polysemous Hamming filtering, which we do not use.
        faiss.downcast_index(faiss.extract_index_ivf(index)).do_polysemous_training = False
        refine = p.get("refine", "none")
        if refine != "none":
            # The base IVF holds positions (IndexRefine looks its codes up by position), so it
            # needs no direct map; reconstruct() reads the refine codes, which are finer.
            if refine == "flat":
                codes = faiss.IndexFlat(d, ip)
            elif refine == "sq8":
                codes = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, ip)
            else:
                raise IndexConfigError(f"unknown refine {refine!r}; choose one of: {', '.join(REFINES)}")
            wrapper = faiss.IndexRefine(index, codes)
            wrapper.k_factor = 1.0
            return faiss.IndexIDMap2(wrapper)
    else:
        raise IndexConfigError(f"unknown index kind {spec.kind!r}")
    # A hash-table direct map lets the index reconstruct and remove by arbitrary int64 id.
    faiss.extract_index_ivf(index).set_direct_map_type(faiss.DirectMap.Hashtable)
    return index


def refine_of(index: faiss.Index) -> faiss.IndexRefine | None:
    """The ``IndexRefine`` under an ``IndexIDMap2``, or None for every other index."""
    if isinstance(index, faiss.IndexIDMap2):
        inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexRefine):
            return inner
    return None


def remove_ids(index: faiss.Index, ids: np.ndarray) -> int:
    """Remove vectors by store id; for refined indexes keep base, refine codes and id map aligned.

    ``IndexRefine`` has no ``remove_ids``. Removing positions from the flat refine codes shifts
    every later vector down, so the base IVF's stored positions are renumbered the same way
    (``new = old - removed positions below old``) and the IDMap2's id map is compacted.
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    refine = refine_of(index)
    if refine is None:
        return int(index.remove_ids(faiss.IDSelectorBatch(ids)))
    id_map = faiss.vector_to_array(index.id_map)
    gone = np.flatnonzero(np.isin(id_map, ids))
    if len(gone) == 0:
        return 0
    sel = faiss.IDSelectorBatch(gone.astype(np.int64))
    n_codes = refine.refine_index.remove_ids(sel)
    base = faiss.downcast_index(refine.base_index)
    n_base = base.remove_ids(sel)
    if n_codes != len(gone) or n_base != len(gone):
        raise RuntimeError(f"refine index removed {n_codes}, base {n_base}, of {len(gone)} positions")
    ivf = faiss.extract_index_ivf(base)
    invlists = faiss.downcast_InvertedLists(ivf.invlists)
    if not isinstance(invlists, faiss.ArrayInvertedLists):
        raise RuntimeError(f"cannot renumber {type(invlists).__name__} lists (on-disk indexes are read-only)")
    code_size = invlists.code_size
    for list_no in range(ivf.nlist):
        size = invlists.list_size(list_no)
        if size == 0:
            continue
        old = faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy()
        codes = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * code_size).copy()
        new = np.ascontiguousarray(old - np.searchsorted(gone, old), dtype=np.int64)
        invlists.update_entries(list_no, 0, size, faiss.swig_ptr(new), faiss.swig_ptr(codes))
    keep = np.delete(id_map, gone)
    faiss.copy_array_to_vector(keep, index.id_map)
    index.ntotal = refine.ntotal = len(keep)
    index.construct_rev_map()  # walks the first ntotal entries: set ntotal first
    return len(gone)


def num_gpus() -> int:
    try:
        return int(faiss.get_num_gpus())
    except AttributeError:  # CPU-only faiss build
        return 0


class GpuRefineSearch:
    """Unfiltered search of a refined ivfpq index with the OPQ+IVF-PQ stage on the GPU(s).

    The FAISS GPU cloner cannot run ``IndexRefine``'s re-ranking on a GPU copy of the refine
    codes, so only the base goes to the GPU; a second ``IndexRefine`` shares the CPU refine
    codes and GPU positions are mapped to store ids here. Rebuilt after every add/remove.
    """

    def __init__(self, index: faiss.Index, spec: IndexSpec) -> None:
        refine = refine_of(index)
        if refine is None:
            raise IndexConfigError("GpuRefineSearch needs an ivfpq index with a refine stage")
        options = faiss.GpuMultipleClonerOptions()
        options.useFloat16 = True  # PQ64 float32 lookup tables can exceed shared memory; re-ranking is exact
        self._cpu = index  # owns the refine codes the wrapper reads
        self._gpu_base = faiss.index_cpu_to_all_gpus(refine.base_index, options)
        faiss.GpuParameterSpace().set_index_parameter(self._gpu_base, "nprobe", int(spec.search.get("nprobe", 1)))
        self._wrapper = faiss.IndexRefine(self._gpu_base, refine.refine_index)
        self._wrapper.k_factor = float(spec.search.get("k_factor", 1))
        self._id_map = faiss.vector_to_array(index.id_map)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, pos = self._wrapper.search(q, k)
        return scores, np.where(pos >= 0, self._id_map[np.maximum(pos, 0)], -1)


def gpu_search_index(index: faiss.Index, spec: IndexSpec):
    """A GPU copy (or view) of ``index`` with the tuned search parameters, for unfiltered search."""
    if refine_of(index) is not None:
        return GpuRefineSearch(index, spec)
    gpu = faiss.index_cpu_to_all_gpus(index)
    for key, value in spec.search.items():
        faiss.GpuParameterSpace().set_index_parameter(gpu, key, value)
    return gpu


def train_index(spec: IndexSpec, sample: np.ndarray, use_gpu: bool | None = None) -> faiss.Index:
    """An empty, trained index. IVF k-means runs on the GPU(s) when present."""
    index = _empty_index(spec)
    if index.is_trained:
        return index
    use_gpu = num_gpus() > 0 if use_gpu is None else use_gpu
    ivf = faiss.extract_index_ivf(index)
    if use_gpu:
        ivf.clustering_index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatL2(ivf.d))
    t = time.time()
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    if use_gpu:
        ivf.clustering_index = None
    log.info("trained %s on %d vectors in %.1fs", spec.kind, len(sample), time.time() - t)
    return index


def training_sample(vectors: np.ndarray, spec: IndexSpec, seed: int = 0, max_per_list: int = 256,
                    max_train: int | None = None) -> np.ndarray:
    """A random sample big enough for k-means (and PQ codebooks) but bounded in size."""
    nlist = int(spec.params.get("nlist", 1))
    cap = max(nlist * max_per_list, 65_536 if spec.kind == "ivfpq" else 0)
    if max_train:
        cap = min(cap, max_train)
    if len(vectors) <= cap:
        return vectors
    rng = np.random.default_rng(seed)
    return vectors[np.sort(rng.choice(len(vectors), cap, replace=False))]


def build_index(
    spec: IndexSpec, vectors: np.ndarray, ids: np.ndarray, use_gpu: bool | None = None, add_batch: int = 65_536,
    max_train: int | None = None,
) -> faiss.Index:
    sample = training_sample(vectors, spec, max_train=max_train)
    index = train_index(spec, sample, use_gpu) if len(vectors) else _empty_index(spec)
    add_vectors(index, vectors, ids, add_batch)
    return index


def add_vectors(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray, batch: int = 65_536) -> None:
    for a in range(0, len(vectors), batch):
        index.add_with_ids(np.ascontiguousarray(vectors[a : a + batch], dtype=np.float32),
                           np.ascontiguousarray(ids[a : a + batch], dtype=np.int64))


def set_search_param(index: faiss.Index, key: str, value: float) -> None:
    """``nprobe`` / ``efSearch`` through FAISS's ParameterSpace; ``k_factor`` on the IndexRefine."""
    if key == "k_factor":
        refine = refine_of(index)
        if refine is None:
            raise IndexConfigError("k_factor needs an ivfpq index with a refine stage")
        refine.k_factor = float(value)
        return
    faiss.ParameterSpace().set_index_parameter(index, key, value)


def apply_search_params(index: faiss.Index, spec: IndexSpec) -> None:
    for key, value in spec.search.items():
        set_search_param(index, key, value)


def search_parameters(spec: IndexSpec, selector: faiss.IDSelector | None,
                      index: faiss.Index | None = None) -> faiss.SearchParameters | None:
    """Per-call parameters (for a selector): tuned nprobe / efSearch / k_factor plus the id filter.

    For a refined index the selector goes to the base IVF, translated from store ids to
    positions through the IDMap2's id map: ``IndexRefine`` ignores a top-level selector. The
    returned object keeps references to the selectors it points at.
    """
    if selector is None:
        return None
    if index is not None and refine_of(index) is not None:
        translated = faiss.IDSelectorTranslated(index.id_map, selector)
        base = faiss.SearchParametersIVF(sel=translated, nprobe=int(spec.search.get("nprobe", 1)))
        params = faiss.IndexRefineSearchParameters(k_factor=float(spec.search.get("k_factor", 1)),
                                                   base_index_params=base)
        params.keep_alive = (translated, selector, base)  # SWIG pointers do not own their targets
        return params
    if spec.kind in ("ivf", "ivfpq"):
        return faiss.SearchParametersIVF(sel=selector, nprobe=int(spec.search.get("nprobe", 1)))
    if spec.kind == "hnsw":
        return faiss.SearchParametersHNSW(sel=selector, efSearch=int(spec.search.get("efSearch", 16)))
    return faiss.SearchParameters(sel=selector)


def exact_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row positions of the exact top-k by inner product (ground truth for tuning/benchmarks)."""
    _, idx = faiss.knn(np.ascontiguousarray(queries, np.float32), np.ascontiguousarray(vectors, np.float32),
                       k, faiss.METRIC_INNER_PRODUCT)
    return idx


def recall_at_k(found_ids: np.ndarray, true_ids: np.ndarray, k: int) -> float:
    hits = sum(len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found_ids, true_ids, strict=True))
    return hits / (k * len(true_ids))


def held_out_queries(n: int, sample: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    return np.sort(rng.choice(n, min(sample, n), replace=False))


def _without_self(ids: np.ndarray, self_ids: np.ndarray, k: int) -> np.ndarray:
    """Drop each query's own id (it is in the index) and keep k: the query is held out."""
    out = np.full((len(ids), k), -1, np.int64)
    for i, (row, me) in enumerate(zip(ids, self_ids, strict=True)):
        row = row[row != me][:k]
        out[i, : len(row)] = row
    return out


K_FACTORS = (32, 16, 8, 4, 2, 1)  # refine shortlist sizes tried, as multiples of k


def refine_cost(spec: IndexSpec, n: int, nprobe: int, k_factor: float, k: int = 10) -> float:
    """Distance work per query: PQ codes scanned x sub-quantisers + re-ranked vectors x dim."""
    p = spec.params
    scanned = nprobe * max(1.0, n / int(p["nlist"])) * int(p.get("pq_m", 1))
    return scanned + k * k_factor * spec.dim


def tune_search(
    index: faiss.Index, spec: IndexSpec, vectors: np.ndarray, ids: np.ndarray,
    target: float = 0.95, k: int = 10, sample: int = 500, seed: int = 0,
) -> IndexSpec:
    """Cheapest nprobe / efSearch (and refine k_factor) whose recall@k vs exact search reaches ``target``.

    Queries are catalog vectors with their own entry removed from both result lists, so each
    acts as a held-out query drawn from the catalog's own distribution. A single parameter
    takes its smallest passing value; a refined ivfpq index searches (nprobe, k_factor) pairs
    for the lowest :func:`refine_cost` that passes.
    """
    if spec.kind == "flat" or len(vectors) <= k + 1:
        spec.search, spec.tuning = {}, {"recall_at_10": 1.0, "exact": True}
        return spec
    qpos = held_out_queries(len(vectors), sample, seed)
    queries, self_ids = np.ascontiguousarray(vectors[qpos], np.float32), ids[qpos]
    truth = _without_self(ids[exact_neighbours(vectors, queries, k + 1)], self_ids, k)

    def measure(settings: dict) -> dict:
        for key, value in settings.items():
            set_search_param(index, key, value)
        t = time.perf_counter()
        _, found = index.search(queries, k + 1)
        dt = time.perf_counter() - t
        rec = recall_at_k(_without_self(found, self_ids, k), truth, k)
        return {**settings, "recall_at_10": round(rec, 4), "qps": round(len(queries) / max(dt, 1e-9), 1)}

    if spec.kind == "hnsw":
        key, grid = "efSearch", [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
    else:
        nlist = int(spec.params["nlist"])
        key, grid = "nprobe", sorted({min(nlist, v) for v in (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, nlist)})
    if refine_of(index) is not None:
        return _tune_refine(index, spec, grid, measure, target, len(vectors), k, len(queries))
    curve = []
    chosen, best = grid[-1], 0.0
    for value in grid:
        row = measure({key: value})
        curve.append(row)
        best = row["recall_at_10"]
        if best >= target:
            chosen = value
            break
    if best < target:
        log.warning("%s: recall@%d %.3f < target %.2f even at %s=%s", spec.kind, k, best, target, key, chosen)
    set_search_param(index, key, chosen)
    spec.search = {key: chosen}
    spec.tuning = {"target": target, "recall_at_10": round(best, 4), "queries": len(queries), "curve": curve}
    return spec


def _tune_refine(index: faiss.Index, spec: IndexSpec, grid: list[int], measure, target: float, n: int, k: int,
                 n_queries: int) -> IndexSpec:
    """Largest k_factor first finds the smallest workable nprobe; each smaller k_factor then only
    tries nprobe values from there up while they stay cheaper than the best pair found so far."""
    curve: list[dict] = []
    best: dict | None = None
    start = 0
    for kf in K_FACTORS:
        for i in range(start, len(grid)):
            cost = refine_cost(spec, n, grid[i], kf, k)
            if best is not None and cost >= best["cost"]:
                break
            row = measure({"nprobe": grid[i], "k_factor": kf})
            row["cost"] = round(cost)
            curve.append(row)
            if row["recall_at_10"] >= target:
                best = row
                start = i  # a smaller shortlist never needs fewer lists
                break
        else:  # no nprobe reached the target: a smaller shortlist will not either
            break
    if best is None:
        top = max(curve, key=lambda r: r["recall_at_10"])
        log.warning("ivfpq+refine: recall@%d %.3f < target %.2f even at nprobe=%s k_factor=%s", k,
                    top["recall_at_10"], target, top["nprobe"], top["k_factor"])
        best = top
    spec.search = {"nprobe": best["nprobe"], "k_factor": best["k_factor"]}
    apply_search_params(index, spec)
    spec.tuning = {"target": target, "recall_at_10": best["recall_at_10"], "queries": n_queries,
                   "cost": "per query: nprobe * N/nlist * pq_m + k * k_factor * dim", "curve": curve}
    return spec
