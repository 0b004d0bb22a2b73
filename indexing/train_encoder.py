"""Fine-tune the encoder on the catalog's own attributes, so items sharing attributes come closer.

Objective (per batch of P attribute combinations x K items each):
- one cosine-classifier head per schema group on the embedding, cross-entropy with unknown
  labels masked out: the embedding must *encode* every attribute the shop labels;
- a multi-similarity loss (Wang et al., CVPR 2019) where two items are positives when they
  agree on every metric group (default: all heads' groups) and negatives when they differ in
  a group both know: the embedding's *geometry* must put matching items together.

CPU feasibility: the first stages of the trunk stay frozen (ImageNet low-level features
transfer well), their output is computed once per image and cached (float16), and only the
last ``train_stages`` stages, the GeM exponent and the projection are trained. With the
default settings a 3k-image catalog trains in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from catalog import Catalog, atomic_write_text
from catalog.split import holdout_split
from indexing.data import ImageListDataset, make_loader
from indexing.encoder import Encoder, EncoderConfig

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    groups: list[str] | None = None  # heads; default: every schema group
    metric_groups: list[str] | None = None  # positives agree on all of these; default: groups
    base: str | None = None  # base encoder folder; None = built-in EfficientNet-Lite0
    image_size: int = 160
    train_stages: int = 2  # trailing trunk stages trained (lite0: last MBConv block + head conv)
    proj_dim: int = 256
    epochs: int = 12
    batch_p: int = 32  # attribute combinations per batch
    batch_k: int = 4  # items per combination
    lr: float = 2e-3
    trunk_lr: float = 2e-4
    weight_decay: float = 1e-4
    ms_weight: float = 1.0
    ce_weight: float = 1.0
    head_scale: float = 16.0
    holdout: float = 0.0  # fraction of items kept out of training (by a hash of the id)
    seed: int = 0
    device: str = "auto"
    batch_size: int = 64  # feature caching
    num_workers: int = 2
    name: str = ""
    flip_augment: bool = True  # cache horizontally flipped copies too (2x caching cost)
    extra: dict = field(default_factory=dict)


def label_matrix(catalog: Catalog, groups: list[str]) -> np.ndarray:
    """``(N, G)`` class index per group, -1 where the label is unknown."""
    out = np.full((len(catalog.items), len(groups)), -1, np.int64)
    for i, it in enumerate(catalog.items):
        for j, g in enumerate(groups):
            v = it.labels.get(g)
            if v:
                out[i, j] = catalog.schema.index(g, v)
    return out


def multi_similarity_loss(emb: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                          alpha: float = 2.0, beta: float = 50.0, base: float = 0.5, margin: float = 0.1) -> torch.Tensor:
    """Multi-similarity loss with its hard-pair mining, on L2-normalised embeddings."""
    sim = emb @ emb.t()
    big = torch.finfo(sim.dtype).max
    min_pos = torch.where(pos, sim, torch.full_like(sim, big)).min(1, keepdim=True).values
    max_neg = torch.where(neg, sim, torch.full_like(sim, -big)).max(1, keepdim=True).values
    pos_keep = pos & (sim - margin < max_neg)
    neg_keep = neg & (sim + margin > min_pos)
    pos_term = torch.log1p((torch.exp(-alpha * (sim - base)) * pos_keep).sum(1)) / alpha
    neg_term = torch.log1p((torch.exp(beta * (sim - base)) * neg_keep).sum(1)) / beta
    valid = pos.any(1) & neg.any(1)
    if not valid.any():
        return emb.sum() * 0.0
    return (pos_term + neg_term)[valid].mean()


def pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positives agree on every metric group (all known); negatives differ where both know."""
    known = labels >= 0
    both = known[:, None, :] & known[None, :, :]
    equal = labels[:, None, :] == labels[None, :, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos = (both & equal).all(-1) & ~eye
    neg = (both & ~equal).any(-1)
    return pos, neg


class CosineHeads(nn.Module):
    def __init__(self, dim: int, sizes: list[int], scale: float) -> None:
        super().__init__()
        self.heads = nn.ModuleList([nn.Linear(dim, n, bias=False) for n in sizes])
        self.scale = scale

    def forward(self, emb: torch.Tensor) -> list[torch.Tensor]:
        return [self.scale * emb @ F.normalize(h.weight, dim=1).t() for h in self.heads]


def pk_batches(combo: np.ndarray, train_idx: np.ndarray, p: int, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of P x K batches over attribute combinations with >= 2 training items."""
    by_combo: dict[int, list[int]] = defaultdict(list)
    for i in train_idx:
        if combo[i] >= 0:
            by_combo[int(combo[i])].append(int(i))
    keys = [c for c, v in by_combo.items() if len(v) >= 2]
    if not keys:
        raise ValueError("no attribute combination has two training items; nothing to learn similarity from")
    steps = max(1, math.ceil(len(train_idx) / (p * k)))
    batches = []
    for _ in range(steps):
        chosen = rng.choice(keys, size=min(p, len(keys)), replace=False)
        idx = []
        for c in chosen:
            members = by_combo[int(c)]
            idx += rng.choice(members, size=k, replace=len(members) < k).tolist()
        batches.append(np.array(idx))
    return batches


@torch.no_grad()
def cache_prefix(encoder: Encoder, paths: list[str], ids: list[str], stop: int, cfg: TrainConfig,
                 flip: bool = False) -> torch.Tensor:
    """Output of the frozen trunk stages ``[0, stop)`` for every image, float16 on CPU."""
    loader = make_loader(ImageListDataset(ids, paths, encoder.preprocessor()), cfg.batch_size, cfg.num_workers)
    chunks = []
    desc = "caching frozen features" + (" (flipped)" if flip else "")
    for _, x in tqdm(loader, desc=desc, unit="batch", dynamic_ncols=True):
        if flip:
            x = torch.flip(x, dims=[3])
        x = x.to(encoder.device)
        if encoder.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        chunks.append(encoder.trunk(x, 0, stop).to("cpu", torch.float16))
    return torch.cat(chunks)


def frozen_stop(encoder: Encoder, train_stages: int) -> int:
    """Index of the first trained trunk stage (= number of frozen stages)."""
    n_stages = len(encoder.trunk.stages)
    if not 0 <= train_stages <= n_stages:
        raise ValueError(f"train_stages must be in 0..{n_stages}, got {train_stages}")
    return n_stages - train_stages


def train_encoder(catalog: Catalog, out: str | Path, cfg: TrainConfig | None = None,
                  prefix: torch.Tensor | None = None) -> tuple[Encoder, dict]:
    """Fine-tune and save an encoder folder at ``out``; returns it and a training report.

    ``prefix``: precomputed frozen-stage outputs for *all* catalog items (from
    :func:`cache_prefix` with the built-in encoder at ``cfg.image_size``), e.g. shared with
    an evaluation; otherwise the training items' features are computed here.
    """
    cfg = cfg or TrainConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    groups = cfg.groups or catalog.schema.names
    metric_groups = cfg.metric_groups or groups
    for g in [*groups, *metric_groups]:
        catalog.schema.check_group(g)
    base_cfg = Encoder.load(cfg.base, "cpu").config if cfg.base else EncoderConfig()
    enc_cfg = EncoderConfig(**{**base_cfg.to_dict(), "image_size": cfg.image_size, "proj_dim": cfg.proj_dim,
                               "kind": "finetuned", "name": cfg.name or f"{base_cfg.backbone}-ft{cfg.proj_dim}",
                               "info": {}})
    enc_cfg.mean, enc_cfg.std = tuple(enc_cfg.mean), tuple(enc_cfg.std)
    encoder = Encoder(enc_cfg, weights=None if not cfg.base else "random")
    if cfg.base:
        base = Encoder.load(cfg.base, "cpu")
        encoder.load_state_dict({k: v for k, v in base.state_dict().items() if not k.startswith("proj.")}, strict=False)
    encoder.to_device(cfg.device)
    stop = frozen_stop(encoder, cfg.train_stages)

    ids = [it.id for it in catalog.items]
    paths = [str(catalog.image_path(it)) for it in catalog.items]
    labels = label_matrix(catalog, groups)
    mlabels = label_matrix(catalog, metric_groups)
    full = (mlabels >= 0).all(1)
    _, combo = np.unique(mlabels, axis=0, return_inverse=True)
    combo = np.where(full, combo.reshape(-1), -1)
    train_idx, test_idx = holdout_split(ids, cfg.holdout, cfg.seed)

    t0 = time.time()
    # Only training items need cached features (held-out items are never seen here).
    sub_paths, sub_ids = [paths[i] for i in train_idx], [ids[i] for i in train_idx]
    if prefix is not None:
        if len(prefix) != len(ids):
            raise ValueError(f"prefix features for {len(prefix)} items, catalog has {len(ids)}")
        cache = [prefix[torch.from_numpy(train_idx)]]
    else:
        cache = [cache_prefix(encoder, sub_paths, sub_ids, stop, cfg)]
        if cfg.flip_augment:
            cache.append(cache_prefix(encoder, sub_paths, sub_ids, stop, cfg, flip=True))
    t_cache = time.time() - t0
    row_of = {int(i): r for r, i in enumerate(train_idx)}

    tail = nn.ModuleList(encoder.trunk.stages[stop:])
    for p in encoder.parameters():
        p.requires_grad_(False)
    for p in tail.parameters():
        p.requires_grad_(True)
    if encoder.config.pooling == "gem":
        encoder.pool.p.requires_grad_(True)
    assert encoder.proj is not None
    encoder.proj.requires_grad_(True)
    heads = CosineHeads(cfg.proj_dim, [len(catalog.schema.values(g)) for g in groups], cfg.head_scale).to(encoder.device)
    param_groups = [{"params": [*encoder.proj.parameters(), *heads.parameters(), *encoder.pool.parameters()],
                     "lr": cfg.lr}]
    if cfg.train_stages:
        param_groups.append({"params": list(tail.parameters()), "lr": cfg.trunk_lr})
    opt = torch.optim.AdamW(param_groups, weight_decay=cfg.weight_decay)
    epochs_batches = [pk_batches(combo, train_idx, cfg.batch_p, cfg.batch_k, rng) for _ in range(cfg.epochs)]
    total = sum(len(b) for b in epochs_batches)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in param_groups], total_steps=total, pct_start=0.15)
    lab_t = torch.from_numpy(labels).to(encoder.device)
    mlab_t = torch.from_numpy(mlabels).to(encoder.device)

    history = []
    bar = tqdm(total=total, desc="fine-tuning", unit="step", dynamic_ncols=True)
    encoder.eval()  # BatchNorm statistics stay frozen (small batches, cached inputs)
    for epoch, batches in enumerate(epochs_batches):
        sums = defaultdict(float)
        for batch in batches:
            rows = torch.tensor([row_of[int(i)] for i in batch])
            which = torch.randint(0, len(cache), (len(rows),)) if len(cache) > 1 else torch.zeros(len(rows), dtype=torch.long)
            x = torch.stack([cache[w][r] for w, r in zip(which.tolist(), rows.tolist(), strict=True)])
            x = x.to(encoder.device, torch.float32)
            emb = encoder(x, start_stage=stop)
            bi = torch.from_numpy(batch).to(encoder.device)
            ce = sum(F.cross_entropy(lg, lab_t[bi, j], ignore_index=-1) if (lab_t[bi, j] >= 0).any() else lg.sum() * 0
                     for j, lg in enumerate(heads(emb)))
            pos, neg = pair_masks(mlab_t[bi])
            ms = multi_similarity_loss(emb, pos, neg)
            loss = cfg.ce_weight * ce / len(groups) + cfg.ms_weight * ms
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            sums["loss"] += loss.item()
            sums["ce"] += float(ce.item() if torch.is_tensor(ce) else ce) / len(groups)
            sums["ms"] += ms.item()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        history.append({"epoch": epoch + 1, **{k: round(v / len(batches), 4) for k, v in sums.items()}})
        log.info("epoch %d: %s", epoch + 1, history[-1])
    bar.close()
    for p in encoder.parameters():
        p.requires_grad_(False)

    report = {
        "catalog": str(catalog.root), "catalog_checksum": catalog.checksum(), "items": len(ids),
        "train_items": int(len(train_idx)), "heldout_items": int(len(test_idx)),
        "heldout_ids_sha": _ids_digest([ids[i] for i in test_idx]),
        "groups": groups, "metric_groups": metric_groups, "frozen_stages": stop, "trained_stages": cfg.train_stages,
        "cache_s": round(t_cache, 1), "train_s": round(time.time() - t0 - t_cache, 1),
        "gem_p": round(float(encoder.pool.p), 3) if encoder.config.pooling == "gem" else None,
        "history": history, "config": {k: v for k, v in asdict(cfg).items() if k != "extra"},
    }
    encoder.config.info = {"trained_on": report["catalog"], "catalog_checksum": report["catalog_checksum"],
                           "groups": groups, "metric_groups": metric_groups, "train_items": report["train_items"],
                           "heldout_fraction": cfg.holdout, "seed": cfg.seed}
    encoder.to("cpu")
    encoder.save(out)
    atomic_write_text(Path(out) / "train_report.json", json.dumps(report, indent=2) + "\n")
    encoder.to_device(cfg.device)
    return encoder, report


def _ids_digest(ids: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]
