"""Index choice (FAISS guidelines) and search-parameter tuning on synthetic clustered vectors."""

from __future__ import annotations

import numpy as np
import pytest

from indexing.faiss_index import (
    IndexConfigError,
    build_index,
    choose_spec,
    exact_neighbours,
    recall_at_k,
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


def test_ivfpq_builds_and_reports_recall():
    x = clustered(3000, 32)
    ids = np.arange(3000, dtype=np.int64)
    spec = choose_spec(len(x), 32, "ivfpq", nlist=32)
    spec.params.update(nbits=4, opq_iter=5)  # small codebooks: enough training points, fast
    index = build_index(spec, x, ids)
    tune_search(index, spec, x, ids, sample=100)
    assert index.ntotal == 3000
    assert 0.3 < spec.tuning["recall_at_10"] <= 1.0  # PQ caps recall; the curve shows where
    assert spec.tuning["curve"][-1]["nprobe"] == spec.search["nprobe"]
