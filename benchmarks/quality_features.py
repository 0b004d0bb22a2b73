"""One trunk pass per image for :mod:`benchmarks.bench_index_quality`: every pooled feature at once.

Running EfficientNet-Lite0 over a real catalog is the slow part of the quality benchmark on a
2-core machine. The built-in encoder (plain GeM of the last stage) and every variant of the
trained encoders (garment-weighted GeM of several stages, colour histograms, colour quantiles)
read the same trunk activations at the same input size, so one pass gives all of them. The
benchmark checks the shortcut against end-to-end ``Encoder.embed_images`` on a few photos.

Shards of ``SHARD`` items are written atomically as they finish (``catalog.atomic_path``); a
rerun reuses every shard whose ids and feature key match, so a killed run resumes.
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from catalog import atomic_path
from indexing.attention import MAP_STAGES, flatten_maps
from indexing.data import ImageListDataset, Mirrored, make_loader
from indexing.encoder import Encoder, EncoderConfig
from indexing.pooling import colour_histogram, colour_stats, foreground_weights, weighted_gem

STAGES = (3, 5, 8, 11, 16, 17)
SHARD = 512
KEY = "v2:lite0:224:gem3:fg" + ",".join(map(str, STAGES)) + ":rgb888:lab488:stats:64:maps"


def features_batch(encoder: Encoder, x: torch.Tensor) -> dict[str, np.ndarray]:
    """All features of one preprocessed batch (the built-in encoder's preprocessing)."""
    x01 = x * encoder.preprocessor().std + encoder.preprocessor().mean
    w = foreground_weights(x01)
    out: dict[str, np.ndarray] = {}
    maps: dict[int, torch.Tensor] = {}
    h = x.contiguous(memory_format=torch.channels_last)
    for i, stage in enumerate(encoder.trunk.stages):
        h = stage(h)
        if i in STAGES:
            out[f"fg{i}"] = F.normalize(weighted_gem(h, w, 3.0), dim=1).numpy()
        if i in MAP_STAGES:
            maps[i] = h
    # the attention heads' input; float16 halves the shards (bin numbers < 2048 stay exact)
    out["maps"] = flatten_maps(maps, w, x01).half().numpy()
    out["gem17"] = F.normalize(encoder.pool(h).float(), dim=1).numpy()
    small = F.interpolate(x01.float(), size=(64, 64), mode="area")
    out["rgb888"] = colour_histogram(small, (8, 8, 8), 64, "rgb").numpy()
    out["lab488"] = colour_histogram(small, (4, 8, 8), 64, "lab").numpy()
    out["stats"] = colour_stats(small, 64).numpy()
    return out


def _load(path: Path, ids: list[str], key: str) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key or list(z["ids"]) != ids:
                return None
            return {k: z[k] for k in z.files if k not in ("key", "ids")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def extract(ids: list[str], paths: list[str], work: Path, batch_size: int = 32,
            workers: int = 1, reverse: bool = False, mirror: bool = False) -> tuple[dict[str, np.ndarray], float]:
    """``({feature name: (N, d) float32}, seconds)`` for the images, resuming from the shards in ``work``.

    ``seconds`` is the time the trunk pass took over all shards, including those computed by an
    earlier (killed) run: each shard stores its own. ``reverse`` walks the shards from the end,
    so a second process can share the work on an otherwise busy machine. ``mirror``: of the
    photos' mirror images (the head recipe's flip augmentation), in shards keyed apart.
    """
    work.mkdir(parents=True, exist_ok=True)
    encoder = Encoder.builtin(EncoderConfig(image_size=224), device="cpu")
    key = KEY + (":mirror" if mirror else "")
    preprocess = Mirrored(encoder.preprocessor()) if mirror else encoder.preprocessor()
    parts: dict[int, dict[str, np.ndarray]] = {}
    bar = tqdm(total=len(ids), desc="trunk features (224 px)", unit="img", dynamic_ncols=True)
    starts = list(enumerate(range(0, len(ids), SHARD)))
    for k, a in reversed(starts) if reverse else starts:
        sid, spath = ids[a : a + SHARD], paths[a : a + SHARD]
        path = work / f"features-{k:05d}.npz"
        got = _load(path, sid, key)
        if got is None:
            t = time.perf_counter()
            chunks: list[dict[str, np.ndarray]] = []
            loader = make_loader(ImageListDataset(sid, spath, preprocess), batch_size, workers)
            with torch.inference_mode():
                for _, x in loader:
                    chunks.append(features_batch(encoder, x))
                    bar.update(len(x))
            got = {n: np.concatenate([c[n] for c in chunks]) for n in chunks[0]}
            got["seconds"] = np.array([time.perf_counter() - t])
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, key=key, ids=np.asarray(sid, dtype=str), **got)
        else:
            bar.update(len(sid))
        parts[k] = got
    bar.close()
    ordered = [parts[k] for k in sorted(parts)]
    seconds = float(sum(p.pop("seconds")[0] for p in ordered))
    return {n: np.concatenate([p[n] for p in ordered]) for n in ordered[0]}, seconds
