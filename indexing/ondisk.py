"""The FAISS recipe for catalogs too big for one machine's RAM ("Indexing 1G vectors").

1. Train the coarse quantizer (and PQ codebooks) on a sample of the vectors.
2. Add each shard of vectors to its own copy of the trained, empty index, in parallel (Ray
   tasks when a cluster is available, else one after the other), and write each as a block.
3. Merge the blocks' inverted lists into a single ``.ivfdata`` file with
   ``faiss.contrib.ondisk.merge_ondisk``.

The resulting index is read with ``IO_FLAG_ONDISK_SAME_DIR``: its inverted lists stay on disk
and are memory-mapped, so a server can open an index larger than its RAM.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np
from faiss.contrib.ondisk import merge_ondisk

from catalog import atomic_path
from indexing.faiss_index import IndexSpec, train_index, training_sample

log = logging.getLogger(__name__)


class OnDiskError(ValueError):
    """An index kind that cannot be stored on disk (only IVF indexes have inverted lists)."""


def add_block(trained: bytes, vectors: np.ndarray, ids: np.ndarray, out: str) -> str:
    """Add one shard to a copy of the trained index and write it; runs in a worker or a Ray task."""
    index = faiss.deserialize_index(np.frombuffer(trained, dtype=np.uint8))
    index.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.ascontiguousarray(ids, np.int64))
    with atomic_path(out) as tmp:
        faiss.write_index(index, str(tmp))
    return out


def build_ondisk(
    spec: IndexSpec,
    vectors: np.ndarray,
    ids: np.ndarray,
    work_dir: str | Path,
    index_path: str | Path,
    ivfdata_path: str | Path,
    block_size: int = 100_000,
    use_ray: bool = False,
) -> faiss.Index:
    """Train on a sample, add blocks in parallel, merge on disk; writes ``index_path`` + ``ivfdata_path``."""
    if spec.kind not in ("ivf", "ivfpq"):
        raise OnDiskError(f"--ondisk needs an IVF index (ivf or ivfpq), not {spec.kind!r}")
    if spec.params.get("refine", "none") != "none":
        # Re-ranking codes would live in RAM and IndexRefine needs positional ids, which the
        # per-block merge does not keep: on-disk ivfpq holds PQ codes only (recall is capped).
        log.warning("--ondisk ivfpq: no %s refine stage; recall@10 is limited by PQ", spec.params["refine"])
        spec.params["refine"] = "none"
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    trained = train_index(spec, training_sample(vectors, spec))
    # Blocks are merged list by list; a direct map would not survive the merge.
    faiss.extract_index_ivf(trained).set_direct_map_type(faiss.DirectMap.NoMap)
    blob = faiss.serialize_index(trained).tobytes()
    bounds = [(a, min(a + block_size, len(vectors))) for a in range(0, len(vectors), block_size)]
    outs = [str(work_dir / f"block-{k:05d}.index") for k in range(len(bounds))]
    if use_ray:
        import ray

        task = ray.remote(add_block)
        blob_ref = ray.put(blob)
        refs = [task.remote(blob_ref, vectors[a:b], ids[a:b], out) for (a, b), out in zip(bounds, outs, strict=True)]
        ray.get(refs)
    else:
        for (a, b), out in zip(bounds, outs, strict=True):
            add_block(blob, vectors[a:b], ids[a:b], out)
    t1 = time.time()
    index = faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8))
    Path(ivfdata_path).unlink(missing_ok=True)
    merge_ondisk(index, outs, str(ivfdata_path))
    with atomic_path(index_path) as tmp:
        faiss.write_index(index, str(tmp))
    for out in outs:
        Path(out).unlink(missing_ok=True)
    log.info("on-disk %s: %d vectors, %d blocks, add %.1fs, merge %.1fs", spec.kind, len(vectors), len(bounds),
             t1 - t0, time.time() - t1)
    # Reopen the way a server will: lists memory-mapped from the same folder.
    return faiss.read_index(str(index_path), faiss.IO_FLAG_ONDISK_SAME_DIR)


def ivfdata_files(folder: Path) -> Sequence[Path]:
    return sorted(folder.glob("lists-*.ivfdata"))
