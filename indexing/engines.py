"""Embedding engines: where the forward passes run.

Both engines take image paths in a fixed order and yield ``(positions, vectors)`` batches;
``embed.py`` turns those into resumable shards, so the engine never decides what is done.

- ``local``: one process, a DataLoader with worker processes for decoding, the model on
  the chosen device.
- ``ray``: Ray Data. Decoding runs as CPU tasks, the model in a pool of encoder actors
  (one GPU each where the cluster has GPUs). The catalog's image paths must be readable
  from every node (shared storage), as for any Ray Data job reading files.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from indexing.data import ImageListDataset, Mirrored, default_workers, make_loader
from indexing.encoder import Encoder, EncoderConfig, Preprocess

log = logging.getLogger(__name__)


@dataclass
class EngineConfig:
    batch_size: int = 64
    num_workers: int = field(default_factory=default_workers)  # DataLoader decode processes (local engine)
    ray_address: str | None = None  # None: connect to a running session or start a local cluster
    ray_actors: int | None = None  # encoder actors; default: one per GPU, else max(1, CPUs // 2)
    mirror: bool = False  # embed each photo's mirror image (a training augmentation, indexing.data.Mirrored)


def preprocessor(encoder: Encoder, cfg: EngineConfig) -> Preprocess | Mirrored:
    """The encoder's preprocessing, of the mirror image where ``cfg.mirror`` asks for it."""
    pre = encoder.preprocessor()
    return Mirrored(pre) if cfg.mirror else pre


def local_engine(
    encoder: Encoder, ids: Sequence[str], paths: Sequence[str], cfg: EngineConfig
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    ds = ImageListDataset(ids, paths, preprocessor(encoder, cfg))
    loader = make_loader(ds, cfg.batch_size, cfg.num_workers, pin_memory=encoder.device.type == "cuda")
    for pos, batch in loader:
        yield pos.numpy(), encoder.embed_tensor(batch).numpy()


# --- Ray -------------------------------------------------------------------------------------------
def encoder_blob(encoder: Encoder) -> bytes:
    """The encoder as bytes (config + weights), so actors on other nodes need no shared folder."""
    buf = io.BytesIO()
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    torch.save({"config": encoder.config.to_dict(), "state": state, "checksum": encoder.checksum}, buf)
    return buf.getvalue()


def encoder_from_blob(blob: bytes, device: str) -> Encoder:
    data = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    enc = Encoder(EncoderConfig.from_dict(data["config"]), weights="random")
    enc.load_state_dict(data["state"])
    enc.checksum = enc.compute_checksum()
    if enc.checksum != data["checksum"]:
        raise RuntimeError("encoder changed in transit to a Ray actor (checksum mismatch)")
    return enc.to_device(device)


def _decode(batch: dict[str, np.ndarray], preprocess: Preprocess | Mirrored) -> dict[str, np.ndarray]:
    """Ray Data stage: read and preprocess images (stateless CPU tasks)."""
    from PIL import Image

    arrays = []
    for path in batch["path"]:
        with Image.open(str(path)) as im:
            arrays.append(preprocess(im).numpy())
    return {"pos": batch["pos"], "pixels": np.stack(arrays)}


class _EncoderActor:
    """Ray Data actor: holds one encoder and embeds preprocessed batches."""

    def __init__(self, blob_ref: list) -> None:
        import ray

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.encoder = encoder_from_blob(ray.get(blob_ref[0]), device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vec = self.encoder.embed_tensor(torch.from_numpy(np.ascontiguousarray(batch["pixels"]))).numpy()
        return {"pos": batch["pos"], "vec": vec}


def ray_engine(
    encoder: Encoder, ids: Sequence[str], paths: Sequence[str], cfg: EngineConfig
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    import ray

    started = False
    if not ray.is_initialized():
        ray.init(address=cfg.ray_address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        actors = cfg.ray_actors or (gpus if gpus else max(1, int(resources.get("CPU", 2)) // 2))
        blob_ref = ray.put(encoder_blob(encoder))
        items = [{"pos": i, "path": str(p)} for i, p in enumerate(paths)]
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // cfg.batch_size, 200)) or 1)
        ds = ds.map_batches(_decode, fn_kwargs={"preprocess": preprocessor(encoder, cfg)},
                            batch_size=cfg.batch_size, batch_format="numpy")
        ds = ds.map_batches(_EncoderActor, fn_constructor_kwargs={"blob_ref": [blob_ref]},
                            batch_size=cfg.batch_size, batch_format="numpy", concurrency=actors,
                            num_gpus=1 if gpus else 0, num_cpus=1)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            yield np.asarray(batch["pos"]), np.asarray(batch["vec"], dtype=np.float32)
    finally:
        if started:
            ray.shutdown()


ENGINES = {"local": local_engine, "ray": ray_engine}


def get_engine(name: str):
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")
    return ENGINES[name]
