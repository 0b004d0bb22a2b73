"""Sharded, resumable embedding of a list of images.

Items are cut into fixed-size shards in catalog order. Each finished shard is written
atomically as ``shard-NNNNN.npz`` holding its ids, a content hash of each item's image file,
its vectors and the encoder checksum. A rerun loads every shard whose ids, image contents and
encoder still match and embeds only the rest, so a killed build resumes where it stopped and
ends with exactly the vectors of an uninterrupted one, and a product photo replaced under the
same id and file name (``--keep-shards``, ``add`` of an updated catalog) is embedded again.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from catalog import atomic_path
from indexing.encoder import Encoder
from indexing.engines import EngineConfig, get_engine

log = logging.getLogger(__name__)


def shard_path(shard_dir: Path, k: int) -> Path:
    return shard_dir / f"shard-{k:05d}.npz"


def content_digest(path: str | Path) -> str:
    """Hash of a file's bytes (what the vector depends on); "" when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()[:32]
    except OSError:
        return ""


def _load_shard(path: Path, ids: Sequence[str], digests: Sequence[str], checksum: str) -> np.ndarray | None:
    """The shard's vectors if it is complete and belongs to these ids, image contents and encoder."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["encoder"]) != checksum or list(z["ids"]) != list(ids) or list(z["digests"]) != list(digests):
                return None
            vec = z["vectors"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None  # unreadable, or written before shards held digests: embed again
    return vec if vec.shape[0] == len(ids) else None


def _write_shard(path: Path, ids: Sequence[str], digests: Sequence[str], vectors: np.ndarray, checksum: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, ids=np.asarray(ids, dtype=str), digests=np.asarray(digests, dtype=str),
                 vectors=vectors.astype(np.float32), encoder=checksum)


def embed_paths(
    encoder: Encoder,
    ids: Sequence[str],
    paths: Sequence[str],
    shard_dir: str | Path,
    engine: str = "local",
    engine_cfg: EngineConfig | None = None,
    shard_size: int = 2048,
    progress: bool = True,
) -> np.ndarray:
    """Vectors ``(len(ids), encoder.dim)`` for the images, reusing finished shards in ``shard_dir``.

    Every image file is hashed first (reading the files is cheap next to embedding them), so
    a shard is reused only for the very bytes it was computed from, by the same encoder, of the
    photo or of its mirror image as ``engine_cfg.mirror`` asks.
    """
    engine_cfg = engine_cfg or EngineConfig()
    key = encoder.checksum + (":mirror" if engine_cfg.mirror else "")
    shard_dir = Path(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    n = len(ids)
    digests = [content_digest(p) for p in tqdm(paths, desc="hashing images", unit="img", disable=not progress,
                                                dynamic_ncols=True, leave=False)]
    out = np.zeros((n, encoder.dim), np.float32)
    bounds = [(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]
    todo: list[int] = []
    for k, (a, b) in enumerate(bounds):
        vec = _load_shard(shard_path(shard_dir, k), ids[a:b], digests[a:b], key)
        if vec is None:
            todo.append(k)
        else:
            out[a:b] = vec
    done_items = n - sum(b - a for k, (a, b) in enumerate(bounds) if k in set(todo))
    if done_items:
        log.info("resuming: %d of %d shards already embedded", len(bounds) - len(todo), len(bounds))
    if not todo:
        return out

    # Positions (into ids) of the items still to embed, shard by shard.
    todo_pos = np.concatenate([np.arange(*bounds[k]) for k in todo])
    remaining = {k: bounds[k][1] - bounds[k][0] for k in todo}
    shard_of = np.searchsorted([b for _, b in bounds], todo_pos, side="right")
    run = get_engine(engine)
    bar = tqdm(total=n, initial=done_items, unit="img", desc=f"embedding ({engine})", disable=not progress,
               dynamic_ncols=True, smoothing=0.1)
    try:
        for pos, vec in run(encoder, [ids[i] for i in todo_pos], [paths[i] for i in todo_pos], engine_cfg):
            glob = todo_pos[pos]
            out[glob] = vec
            bar.update(len(pos))
            for k, cnt in zip(*np.unique(shard_of[pos], return_counts=True), strict=True):
                remaining[int(k)] -= int(cnt)
                if remaining[int(k)] == 0:
                    a, b = bounds[int(k)]
                    _write_shard(shard_path(shard_dir, int(k)), ids[a:b], digests[a:b], out[a:b], key)
    finally:
        bar.close()
    unfinished = [k for k, r in remaining.items() if r]
    if unfinished:
        raise RuntimeError(f"engine {engine!r} returned too few vectors: shards {unfinished} incomplete")
    return out
