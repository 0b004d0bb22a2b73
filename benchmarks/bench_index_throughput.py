"""Indexing throughput vs the encoder's raw forward throughput, same batch size, in one run.

    python -m benchmarks.bench_index_throughput [--images 256] [--batch-size 32] [--image-size 224]

- raw: ``Encoder.embed_tensor`` on batches already in memory (the ceiling: model only);
- indexing: ``embed_paths`` over real JPEGs (myntra-a, else the demo catalog) with the local
  engine: DataLoader workers decode and resize while the model runs, shards are written as
  they complete. Goal: indexing >= 0.8x raw.
- optional ``--ray``: the same with the Ray engine on a local cluster (startup excluded).

Writes ``benchmarks/results/bench_index_throughput.json`` with the machine described.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

try:
    from benchmarks.bench_index_common import MYNTRA, machine, write_result
except ImportError:  # run as a script
    from bench_index_common import MYNTRA, machine, write_result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--catalog", type=Path, default=MYNTRA)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--ray", action="store_true")
    args = ap.parse_args()

    from catalog import load_catalog
    from indexing.embed import embed_paths
    from indexing.encoder import Encoder, EncoderConfig
    from indexing.engines import EngineConfig

    catalog = load_catalog(args.catalog, check_images=False)
    items = catalog.items[: args.images]
    ids = [it.id for it in items]
    paths = [str(catalog.image_path(it)) for it in items]
    n = len(ids)
    enc = Encoder.builtin(EncoderConfig(image_size=args.image_size), device="auto")
    result = {"benchmark": "bench_index_throughput", "machine": machine(), "catalog": str(args.catalog),
              "images": n, "batch_size": args.batch_size, "image_size": args.image_size, "device": str(enc.device),
              "encoder": enc.encoder_id, "runs": {}}

    # warm-up (allocator, oneDNN kernels)
    enc.embed_tensor(torch.randn(args.batch_size, 3, args.image_size, args.image_size))

    def raw() -> float:
        x = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
        t = time.perf_counter()
        done = 0
        while done < n:
            enc.embed_tensor(x[: min(args.batch_size, n - done)])
            done += args.batch_size
        return n / (time.perf_counter() - t)

    def indexing(workers: int, engine: str = "local") -> float:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            v = embed_paths(enc, ids, paths, Path(tmp), engine,
                            EngineConfig(batch_size=args.batch_size, num_workers=workers), shard_size=256,
                            progress=False)
            dt = time.perf_counter() - t
        assert v.shape == (n, enc.dim) and np.isfinite(v).all()
        return n / dt

    # interleave raw and indexing runs so load changes on a shared machine hit both alike
    raw_runs = [raw()]
    for w in args.workers:
        ips = indexing(w)
        raw_runs.append(raw())
        result["runs"][f"local_workers{w}"] = {"images_per_s": round(ips, 2)}
        print(f"local engine, {w} workers: {ips:.1f} img/s")
    if args.ray:
        import ray

        ray.init(num_cpus=max(2, len(args.workers)), include_dashboard=False, log_to_driver=False)
        indexing(0, "ray")  # warm: actor start-up and imports are a one-off cost
        ips = indexing(0, "ray")
        raw_runs.append(raw())
        ray.shutdown()
        result["runs"]["ray"] = {"images_per_s": round(ips, 2)}
        print(f"ray engine: {ips:.1f} img/s")
    raw_ips = float(np.median(raw_runs))
    result["raw_forward_images_per_s"] = round(raw_ips, 2)
    result["raw_forward_runs"] = [round(r, 2) for r in raw_runs]
    for run in result["runs"].values():
        run["ratio_vs_raw"] = round(run["images_per_s"] / raw_ips, 3)
    best = max(result["runs"].values(), key=lambda r: r["ratio_vs_raw"])
    result["best_ratio_vs_raw"] = best["ratio_vs_raw"]
    result["goal"] = ">= 0.8x raw forward throughput"
    print(f"raw forward: {raw_ips:.1f} img/s; best indexing ratio {best['ratio_vs_raw']:.2f}")
    write_result("bench_index_throughput", result)


if __name__ == "__main__":
    main()
