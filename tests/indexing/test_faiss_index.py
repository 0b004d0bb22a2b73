"""Index choice (FAISS guidelines) and search-parameter tuning on synthetic clustered vectors."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from indexing.faiss_index import (
    IndexConfigError,
    apply_search_params,
    build_index,
    choose_spec,
    exact_neighbours,
    recall_at_k,
    refine_of,
    remove_ids,
    search_parameters,
    tune_search,
)


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(4, n // 50), d))
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_auto_follows_guidelines():
    assert choose_spec(10_000, 256).kind == "flat"
    ivf = choose_spec(400_000, 256)
    assert ivf.kind == "ivf" and 4 * 632 / 2 <= ivf.params["nlist"] <= 16 * 632  # ~4 sqrt(N), power of two
    pq = choose_spec(5_000_000, 1280)
    assert pq.kind == "ivfpq" and pq.params["opq_dim"] == 256 and 256 % pq.params["pq_m"] == 0
    assert choose_spec(1000, 64, "hnsw").params["M"] == 32
    with pytest.raises(IndexConfigError, match="choose one of"):
        choose_spec(10, 8, "lsh")
    with pytest.raises(IndexConfigError, match="at least 256"):
        choose_spec(100, 8, "ivfpq")
    assert pq.params["refine"] == "sq8"  # re-ranked by default
    with pytest.raises(IndexConfigError, match="unknown refine 'pq'"):
        choose_spec(5_000_000, 256, "ivfpq", refine="pq")


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_tuning_reaches_target_recall(kind):
    x = clustered(3000, 32)
    ids = np.arange(100, 3100, dtype=np.int64)  # ids are not positions
    spec = choose_spec(len(x), 32, kind, nlist=64 if kind == "ivf" else None)
    index = build_index(spec, x, ids)
    tune_search(index, spec, x, ids, target=0.95, sample=200)
    assert spec.tuning["recall_at_10"] >= 0.95
    key = "efSearch" if kind == "hnsw" else "nprobe"
    assert key in spec.search
    # independent check on fresh queries near the data
    rng = np.random.default_rng(5)
    q = x[rng.choice(len(x), 100)] + 0.05 * rng.normal(size=(100, 32)).astype(np.float32)
    truth = ids[exact_neighbours(x, q, 10)]
    _, found = index.search(q, 10)
    assert recall_at_k(found, truth, 10) >= 0.9
    if kind == "ivf":  # the smallest passing value was chosen, not the largest
        assert spec.search["nprobe"] < 64


def test_ivfpq_without_refine_reports_its_recall_cap():
    x = clustered(3000, 32)
    ids = np.arange(3000, dtype=np.int64)
    spec = choose_spec(len(x), 32, "ivfpq", nlist=32, refine="none")
    spec.params.update(nbits=4, opq_iter=5)  # small codebooks: enough training points, fast
    index = build_index(spec, x, ids)
    tune_search(index, spec, x, ids, sample=100)
    assert index.ntotal == 3000
    assert 0.3 < spec.tuning["recall_at_10"] <= 1.0  # PQ caps recall; the curve shows where
    assert spec.tuning["curve"][-1]["nprobe"] == spec.search["nprobe"]


@pytest.mark.parametrize("refine", ["sq8", "flat"])
def test_ivfpq_refine_reaches_target_and_stays_in_sync(refine):
    """Tuning finds (nprobe, k_factor); add, remove, filters and a save/load round trip keep the
    base IVF positions, the refine codes and the id map aligned."""
    x = clustered(3000, 32)
    ids = np.arange(100, 3100, dtype=np.int64)  # ids are not positions
    spec = choose_spec(len(x), 32, "ivfpq", nlist=32, refine=refine)
    spec.params.update(nbits=4, opq_iter=5)
    index = build_index(spec, x, ids)
    assert refine_of(index) is not None and index.ntotal == 3000
    tune_search(index, spec, x, ids, sample=150)
    assert set(spec.search) == {"nprobe", "k_factor"} and spec.tuning["recall_at_10"] >= 0.95
    pq_only = faiss.IndexRefineSearchParameters(k_factor=1, base_index_params=faiss.SearchParametersIVF(nprobe=32))
    q0 = x[::30]
    pq_recall = recall_at_k(index.search(q0, 10, params=pq_only)[1], ids[exact_neighbours(x, q0, 10)], 10)
    assert pq_recall < 0.9  # PQ alone, every list probed: the refine stage is what reaches the target

    gone = ids[::3]  # remove a third, spread over every list
    assert remove_ids(index, gone) == 1000 and index.ntotal == 2000
    assert remove_ids(index, gone[:5]) == 0
    keep = np.setdiff1d(ids, gone)
    xk = x[keep - 100]
    q = xk[::20]
    truth = keep[exact_neighbours(xk, q, 10)]
    _, found = index.search(q, 10)
    assert not np.isin(found, gone).any() and recall_at_k(found, truth, 10) >= 0.9
    assert np.allclose(np.stack([index.reconstruct(int(i)) for i in keep]), xk, atol=0.01)

    allowed = keep[keep % 2 == 0]
    params = search_parameters(spec, faiss.IDSelectorBatch(allowed), index)
    _, filt = index.search(q, 10, params=params)
    assert np.isin(filt[filt >= 0], allowed).all() and (filt >= 0).sum() >= 0.9 * filt.size
    xa = x[allowed - 100]
    assert recall_at_k(filt, allowed[exact_neighbours(xa, q, 10)], 10) >= 0.85

    index.add_with_ids(x[gone - 100], gone)  # new vectors go after the renumbered ones
    _, found = index.search(x[gone[:100] - 100], 10)
    assert (found[:, 0] == gone[:100]).mean() >= 0.95
    again = faiss.deserialize_index(faiss.serialize_index(index))
    apply_search_params(again, spec)
    assert refine_of(again).k_factor == spec.search["k_factor"]
    assert np.array_equal(again.search(q, 10)[1], index.search(q, 10)[1])
