"""Recall@10 vs exact search, queries/s, build time and bytes/vector for each index type.

    python -m benchmarks.bench_index_ann [--dim 256] [--sizes 100000 1000000] [--queries 1000]
        [--kinds flat hnsw ivf ivfpq] [--refine sq8 flat none]

Vectors are synthetic (a mixture of Gaussian clusters, L2-normalised, like CNN embeddings of
a catalog with many near-duplicates); queries are drawn from the same mixture but are not in
the index. Each index is tuned with :func:`indexing.faiss_index.tune_search` (the same code a
build runs) to the smallest nprobe/efSearch reaching recall@10 >= 0.95 on held-out catalog
vectors, then measured on the separate queries.

2-core budget (noted in the JSON): IVF k-means trains on a sample of at most
``--max-train`` vectors; at 1M the IVF list count is capped by ``--max-nlist``; HNSW is
skipped at sizes whose projected build time exceeds ``--hnsw-budget-s``.
ivfpq rows are named ``ivfpq+REFINE``: the PQ shortlist re-ranked with SQ8 codes, the float
vectors, or not at all; bytes/vector is the serialised index (PQ codes, ids, refine codes, id
map) over N, so the refine stage's memory is counted.
Updates ``benchmarks/results/bench_index_ann.json`` in place: rows measured in this run replace
the same rows; other rows (and sizes) are kept, each with the machine of its own run.
"""

from __future__ import annotations

import argparse
import json
import time

import faiss
import numpy as np

try:
    from benchmarks.bench_index_common import RESULTS, machine, write_result
except ImportError:  # run as a script
    from bench_index_common import RESULTS, machine, write_result


def mixture(n: int, d: int, clusters: int, seed: int, centres: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if centres is None:
        centres = rng.normal(size=(clusters, d)).astype(np.float32)
    out = np.empty((n, d), np.float32)
    spread = np.random.default_rng(0).uniform(0.5, 1.0, size=len(centres)).astype(np.float32)
    for a in range(0, n, 100_000):
        b = min(n, a + 100_000)
        c = rng.integers(0, len(centres), b - a)
        x = centres[c] + spread[c, None] * rng.normal(size=(b - a, d)).astype(np.float32)
        out[a:b] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out, centres


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--kinds", nargs="+", default=["flat", "hnsw", "ivf", "ivfpq"])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--tune-queries", type=int, default=300)
    ap.add_argument("--max-train", type=int, default=65_536)
    ap.add_argument("--max-nlist", type=int, default=1024)
    ap.add_argument("--pq-train", type=int, default=32_768, help="OPQ + PQ codebook training sample")
    ap.add_argument("--hnsw-budget-s", type=float, default=600)
    ap.add_argument("--refine", nargs="+", default=["sq8"], choices=["sq8", "flat", "none"],
                    help="ivfpq re-ranking stages to measure (one row each)")
    args = ap.parse_args()

    from indexing.faiss_index import (
        build_index,
        choose_spec,
        exact_neighbours,
        recall_at_k,
        refine_of,
        tune_search,
    )

    path = RESULTS / "bench_index_ann.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    this_machine = machine()
    result = {"benchmark": "bench_index_ann", "machine": this_machine, "dim": args.dim, "queries": args.queries,
              "faiss_threads": faiss.omp_get_max_threads(), "target_recall_at_10": 0.95,
              "notes": [f"IVF trained on <= {args.max_train} sampled vectors, OPQ+IVF-PQ on <= {args.pq_train}",
                        f"nlist capped at {args.max_nlist} (guideline 4-16 sqrt(N) is not trainable in budget on 2 cores)",
                        "synthetic Gaussian-mixture vectors, queries not in the index",
                        "ivfpq+REFINE: PQ shortlist of k*k_factor re-ranked with SQ8 / float codes (IndexRefine); "
                        "nprobe and k_factor tuned together for the lowest distance work reaching the target",
                        "rows kept from earlier runs carry that run's 'machine'; rows without one were measured in this run"],
              "sizes": previous.get("sizes", {}) if previous.get("dim") == args.dim else {}}
    if previous.get("machine"):  # kept rows remember the run (and its load) that measured them
        for entry in result["sizes"].values():
            for row in entry.get("kinds", {}).values():
                row.setdefault("machine", previous["machine"])
    hnsw_rate = None  # seconds per vector measured at the first size
    for n in args.sizes:
        xb, centres = mixture(n, args.dim, max(100, n // 100), seed=1)
        xq, _ = mixture(args.queries, args.dim, 0, seed=2, centres=centres)
        ids = np.arange(n, dtype=np.int64)
        t = time.perf_counter()
        truth = exact_neighbours(xb, xq, 10)
        exact_s = time.perf_counter() - t
        entry = result["sizes"].setdefault(str(n), {"kinds": {}})
        entry["exact_ground_truth_s"] = round(exact_s, 2)
        runs = [(k, None) for k in args.kinds if k != "ivfpq"]
        runs += [("ivfpq", r) for r in args.refine] if "ivfpq" in args.kinds else []
        for kind, refine in runs:
            name = kind if refine is None else f"{kind}+{refine}"
            if kind == "hnsw" and hnsw_rate is not None and hnsw_rate * n > args.hnsw_budget_s:
                entry["kinds"][name] = {"skipped": f"projected build {hnsw_rate * n:.0f}s > budget {args.hnsw_budget_s:.0f}s"}
                print(n, name, entry["kinds"][name])
                continue
            spec = choose_spec(n, args.dim, kind, refine=refine or "sq8")
            if "nlist" in spec.params:
                spec.params["nlist"] = min(spec.params["nlist"], args.max_nlist)
            if kind == "ivfpq":
                spec.params["opq_iter"] = 10
            t = time.perf_counter()
            index = build_index(spec, xb, ids, max_train=args.pq_train if kind == "ivfpq" else args.max_train)
            build_s = time.perf_counter() - t
            if kind == "hnsw" and hnsw_rate is None:
                hnsw_rate = build_s / n
            t = time.perf_counter()
            tune_search(index, spec, xb, ids, target=0.95, sample=args.tune_queries)
            tune_s = time.perf_counter() - t
            index.search(xq[:10], 10)
            t = time.perf_counter()
            _, found = index.search(xq, 10)
            qs = time.perf_counter() - t
            size = len(faiss.serialize_index(index))
            row = {"params": spec.params, "search": spec.search, "recall_at_10": round(recall_at_k(found, truth, 10), 4),
                   "tuning_recall_at_10": spec.tuning.get("recall_at_10"), "qps": round(args.queries / qs, 1),
                   "build_s": round(build_s, 2), "tune_s": round(tune_s, 2), "bytes_per_vector": round(size / n, 1),
                   "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            if refine_of(index) is not None:
                row["refine_bytes_per_vector"] = int(refine_of(index).refine_index.sa_code_size())
            entry["kinds"][name] = row
            print(n, name, row)
            write_result("bench_index_ann", result)
            del index
    write_result("bench_index_ann", result)


if __name__ == "__main__":
    main()
