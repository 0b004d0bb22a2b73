"""The default encoder recipe: a parts head trained on cached frozen features.

Why not fine-tune the trunk: on 2 CPU cores every trunk pass over a catalog costs minutes, and
the ImageNet features already know category; what they lack is colour, which they were
trained to ignore. So the trunk runs **once** per training image, its pooled features are
cached (garment-weighted GeM of several stages, early ones for colour and texture, late ones
for shape, plus a colour histogram of the garment, see :mod:`indexing.pooling`), and only a
head is trained on them: seconds per epoch. With ``attention`` (the default), the trunk's
stage-5, 11 and 16 maps are cached too, and each attribute block also learns where in the
photo its attribute is (:mod:`indexing.attention`): a worn shirt's colour is not the colour of
the jeans and the skin around it. With ``flip_augment`` (the default; ``--no-flip`` turns it
off) the trunk also runs once over each training photo's mirror image, and the final fit reads
the photos and their mirror images: left and right swapped is the same garment, and no colour
changes, so no colour invariance is taught. It lifts P@10 on myntra-a (both 0.370 -> 0.383) for
about 1.8x the training time: 14.8 min on myntra-a, within the recipe's 20 (docs/indexing.md).

The head (:class:`indexing.encoder.PartsHead`) writes the embedding as weighted unit-length
blocks: one softmax block per attribute group (default: category and colour; the cosine of two
items is then a weighted sum of how alike their predicted category and colour distributions
are). Each group's block is trained with cross-entropy. Options measured in
``benchmarks/bench_index_quality.py``: a joint block (outer product of two groups, whose
similarity is the product of theirs), a multi-similarity loss on the whole embedding with
positives that agree on every group, and a free "look" block trained by that loss. The
block weights and the softmax temperature are then chosen on a validation slice of the
*training* items (a hash split, so the held-out items never decide anything), and the head is
retrained on all training items with them.

Nothing is lost: the cached features are written in shards as they finish (``indexing.embed``)
in ``.OUT.work`` next to the output folder; a killed run resumes from them, and the head's
training is deterministic, so the result equals an uninterrupted run. The encoder folder is
written atomically (``Encoder.save``), so a partial folder never loads.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from catalog import Catalog, atomic_write_text, load_catalog
from catalog.split import holdout_split
from indexing.attention import maps_dim
from indexing.encoder import Encoder, EncoderConfig, PartsHead
from indexing.train_encoder import label_matrix, multi_similarity_loss, pair_masks

log = logging.getLogger(__name__)

PREFERRED_GROUPS = ("category", "color")


@dataclass
class HeadTrainConfig:
    """The good settings, measured on myntra-a (docs/indexing.md); a user passing nothing gets them."""

    groups: list[str] | None = None  # attribute blocks; default: category,color if the schema has them, else all
    image_size: int = 224
    pool_stages: list[int] = field(default_factory=lambda: [5, 11, 16, 17])
    foreground: bool = True
    colour_bins: list[int] | None = field(default_factory=lambda: [8, 8, 8])
    colour_space: str = "rgb"
    colour_stats: bool = False  # garment L/a/b/chroma quantiles too (pooling.colour_stats)
    attention: int = 2  # attention maps per attribute block (indexing.attention); 0: global pooling only
    joint: bool = False  # + the joint block of the first two groups (measured: no gain, 18x the size)
    look_dim: int = 0  # > 0: a free block trained by the metric loss only
    epochs: int = 30
    batch_size_head: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-2
    label_smoothing: float = 0.0  # 0.1 measured worse: flatter softmax blocks rank worse
    flip_augment: bool = True  # + each training photo's mirror image in the final fit (docs/indexing.md)
    ms_weight: float = 0.0  # multi-similarity loss on the whole embedding (positives agree on all groups)
    tune: bool = True  # choose block weights and temperature on a validation slice of the training items
    weights: dict[str, float] | None = None  # fixed block weights (by part name) when tune is False
    temperature: float = 1.0  # softmax temperature when tune is False
    val_fraction: float = 0.2
    holdout: float = 0.0  # fraction of items kept out of training (catalog.split hash)
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 32  # trunk passes while caching
    num_workers: int = 1
    name: str = ""
    keep_cache: bool = False  # keep .OUT.work (the cached features) after success


def default_groups(catalog: Catalog) -> list[str]:
    names = catalog.schema.names
    return list(PREFERRED_GROUPS) if all(g in names for g in PREFERRED_GROUPS) else list(names)


def feature_config(cfg: HeadTrainConfig) -> EncoderConfig:
    """The frozen part of the encoder: what is cached, and what the head reads at query time."""
    return EncoderConfig(image_size=cfg.image_size, pool_stages=list(cfg.pool_stages), foreground=cfg.foreground,
                         colour_bins=list(cfg.colour_bins) if cfg.colour_bins else None,
                         colour_space=cfg.colour_space, colour_stats=cfg.colour_stats, attention=cfg.attention,
                         kind="features", name="lite0-features")


def work_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.parent / f".{out.name}.work"


def cache_features(catalog: Catalog, rows: np.ndarray, cfg: HeadTrainConfig, work: Path,
                   mirror: bool = False) -> np.ndarray:
    """``(len(rows), feat_dim)`` L2-normalised pooled features (the head's input), resumable;
    of the photos' mirror images with ``mirror`` (in their own shards)."""
    from indexing.embed import embed_paths
    from indexing.engines import EngineConfig

    enc = Encoder.builtin(feature_config(cfg), device=cfg.device)
    ids = [catalog.items[i].id for i in rows]
    paths = [str(catalog.image_path(catalog.items[i])) for i in rows]
    return embed_paths(enc, ids, paths, work / ("features_mirrored" if mirror else "features"), "local",
                       EngineConfig(batch_size=cfg.batch_size, num_workers=cfg.num_workers, mirror=mirror),
                       shard_size=512)


def part_specs(catalog: Catalog, groups: list[str], cfg: HeadTrainConfig,
               weights: dict[str, float] | None = None, temperature: float = 1.0) -> list[dict]:
    specs: list[dict] = [{"name": g, "values": list(catalog.schema.values(g)), "temperature": temperature}
                         for g in groups]
    if cfg.joint and len(groups) >= 2:
        specs.append({"name": f"{groups[0]}*{groups[1]}", "joint": groups[:2]})
    if cfg.look_dim:
        specs.append({"name": "look", "dim": cfg.look_dim})
    for s in specs:
        s["weight"] = float((weights or {}).get(s["name"], 1.0))
    return specs


def attention_spec(cfg: HeadTrainConfig) -> dict | None:
    """The parts head's attention settings for this recipe (None: no attention)."""
    if not cfg.attention:
        return None
    probe = Encoder(feature_config(cfg), weights="random")
    return {"heads": cfg.attention, "channels": list(probe.map_channels or ())}


def fit_head(x: torch.Tensor, labels: torch.Tensor, specs: list[dict], cfg: HeadTrainConfig,
             desc: str = "training head", attention: dict | None = None) -> tuple[PartsHead, list[dict]]:
    """Train a :class:`PartsHead` on features ``x`` ``[N, D]`` and labels ``[N, G]`` (-1 unknown).

    With ``attention``, the last columns of ``x`` are the flattened trunk maps. Deterministic for
    a given seed, so a rerun after a kill gives the same head.
    """
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    in_dim = x.shape[1] - (maps_dim(tuple(attention["channels"])) if attention else 0)  # type: ignore[arg-type]
    head = PartsHead(in_dim, specs, attention)
    with torch.no_grad():
        head.mean.copy_(x[:, :in_dim].mean(0))
        head.scale.copy_(1.0 / (x[:, :in_dim].std(0) + 1e-3))
    head.train()
    attr = [i for i, k in enumerate(head.kinds) if k == "attribute"]
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, -(-len(x) // cfg.batch_size_head))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.1)
    history = []
    for epoch in tqdm(range(cfg.epochs), desc=desc, unit="epoch", dynamic_ncols=True, leave=False):
        order = torch.randperm(len(x), generator=gen)
        sums = {"ce": 0.0, "ms": 0.0}
        for a in range(0, len(x), cfg.batch_size_head):
            b = order[a : a + cfg.batch_size_head]
            raw = head.logits(x[b])
            ce = x.new_zeros(())
            for j, i in enumerate(attr):
                y = labels[b, j]
                if (y >= 0).any():
                    ce = ce + F.cross_entropy(raw[head.names[i]], y, ignore_index=-1,
                                              label_smoothing=cfg.label_smoothing)
            loss = ce / max(1, len(attr))
            if cfg.ms_weight or cfg.look_dim:
                pos, neg = pair_masks(labels[b])
                ms = multi_similarity_loss(head.combine(head.parts(raw)), pos, neg)
                loss = loss + max(cfg.ms_weight, 1.0 if cfg.look_dim and not cfg.ms_weight else 0.0) * ms
                sums["ms"] += ms.item()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            sums["ce"] += ce.item() / max(1, len(attr))
        history.append({"epoch": epoch + 1, **{k: round(v / steps_per_epoch, 4) for k, v in sums.items()}})
    head.eval()
    for p in head.parameters():
        p.requires_grad_(False)
    return head, history


def precision_at_k(vectors: np.ndarray, labels: np.ndarray, k: int = 10) -> list[float]:
    """P@k per group (columns of ``labels``) and for all groups together; each item queries the rest.

    Items with an unknown label count as non-matching for that group.
    """
    k = min(k, len(vectors) - 1)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    same = (labels[top] == labels[:, None, :]) & (labels[:, None, :] >= 0)  # [N, k, G]
    return [float(same[..., j].mean()) for j in range(labels.shape[1])] + [float(same.all(-1).mean())]


def head_logits(head: PartsHead, x: torch.Tensor, batch: int = 256) -> dict[str, torch.Tensor]:
    """:meth:`PartsHead.logits` in batches (the attention pools' activations are large)."""
    with torch.inference_mode():
        chunks = [head.logits(x[a : a + batch]) for a in range(0, len(x), batch)]
    return {n: torch.cat([c[n] for c in chunks]) for n in chunks[0]}


WEIGHT_GRID = (0.0, 0.35, 0.7, 1.0)
TEMPERATURES = (0.5, 1.0, 2.0)


def tune_weights(head: PartsHead, x: torch.Tensor, labels: np.ndarray) -> tuple[dict[str, float], float, float]:
    """Block weights and softmax temperature maximising mean P@10 (each group, and all together).

    Measured on validation items the head was not trained on. Returns (weights, temperature, score).
    """
    raw = head_logits(head, x)
    best: tuple[float, dict[str, float], float] = (-1.0, {}, 1.0)
    for t in TEMPERATURES:
        parts = head.parts(raw, {n: t for n, k in zip(head.names, head.kinds, strict=True) if k == "attribute"})
        for w in itertools.product(WEIGHT_GRID, repeat=len(parts)):
            if not any(w) or (max(w) != 1.0):  # scale-free: the largest weight is 1
                continue
            v = head.combine(parts, list(w)).numpy()
            score = float(np.mean(precision_at_k(v, labels)))
            if score > best[0] + 1e-9:
                best = (score, dict(zip(head.names, w, strict=True)), t)
    return best[1], best[2], best[0]


def train_head_encoder(catalog: Catalog, out: str | Path, cfg: HeadTrainConfig | None = None,
                       features: np.ndarray | None = None,
                       mirrored: np.ndarray | None = None) -> tuple[Encoder, dict]:
    """Train the default encoder and save its folder at ``out``; returns it and a training report.

    ``features``: the head's input for *all* catalog items, precomputed with
    :func:`feature_config` (e.g. shared with a benchmark); otherwise the training items'
    features are computed and cached here. ``mirrored``: the same for the items' mirror
    images (only the training items' rows are read), used with ``cfg.flip_augment``;
    without it they are computed and cached here.
    """
    cfg = cfg or HeadTrainConfig()
    out = Path(out)
    groups = cfg.groups or default_groups(catalog)
    for g in groups:
        catalog.schema.check_group(g)
    ids = [it.id for it in catalog.items]
    train_idx, test_idx = holdout_split(ids, cfg.holdout, cfg.seed)
    if len(train_idx) < 4:
        raise ValueError(f"{len(train_idx)} training items: too few to train an encoder")
    labels = label_matrix(catalog, groups)
    work = work_dir(out)
    t0 = time.time()
    if features is not None:
        if len(features) != len(ids):
            raise ValueError(f"features for {len(features)} items, catalog has {len(ids)}")
        x_np = features[train_idx]
    else:
        x_np = cache_features(catalog, train_idx, cfg, work)
    xm_np = None
    if cfg.flip_augment:
        if mirrored is None:
            xm_np = cache_features(catalog, train_idx, cfg, work, mirror=True)
        elif len(mirrored) != len(ids):
            raise ValueError(f"mirrored features for {len(mirrored)} items, catalog has {len(ids)}")
        else:
            xm_np = mirrored[train_idx]
    t_cache = time.time() - t0
    x = torch.from_numpy(np.ascontiguousarray(x_np, dtype=np.float32))
    y = torch.from_numpy(labels[train_idx])
    xm = None if xm_np is None else torch.from_numpy(np.ascontiguousarray(xm_np, dtype=np.float32))

    t1 = time.time()
    attention = attention_spec(cfg)
    weights, temperature, val_score = cfg.weights, cfg.temperature, None
    if cfg.tune:
        fit_rows, val_rows = holdout_split([ids[i] for i in train_idx], cfg.val_fraction, cfg.seed + 1)
        if len(val_rows) < 11 or len(fit_rows) < 4:
            log.warning("too few items to tune block weights on a validation slice; using equal weights")
        else:
            # tuned on the photos alone (the measured recipe; the mirror images would double its cost)
            probe, _ = fit_head(x[fit_rows], y[fit_rows], part_specs(catalog, groups, cfg), cfg, "head (validation)",
                                attention)
            weights, temperature, val_score = tune_weights(probe, x[val_rows], labels[train_idx][val_rows])
            log.info("tuned block weights %s, temperature %s (validation mean P@10 %.3f)",
                     weights, temperature, val_score)
    specs = part_specs(catalog, groups, cfg, weights, temperature)
    x_fit, y_fit = (x, y) if xm is None else (torch.cat([x, xm]), torch.cat([y, y]))  # + the mirror images
    head, history = fit_head(x_fit, y_fit, specs, cfg, attention=attention)
    t_train = time.time() - t1

    enc_cfg = feature_config(cfg)
    enc_cfg.kind, enc_cfg.parts = "head", specs
    enc_cfg.name = cfg.name or f"lite0-parts-{'-'.join(groups)}"
    encoder = Encoder(enc_cfg)  # weights=None: the built-in ImageNet trunk, as cached
    assert isinstance(encoder.proj, PartsHead)
    encoder.proj.load_state_dict(head.state_dict())
    report = {
        "recipe": "head", "catalog": str(catalog.root), "catalog_checksum": catalog.checksum(), "items": len(ids),
        "train_items": int(len(train_idx)), "heldout_items": int(len(test_idx)),
        "head_rows": len(x_fit), "groups": groups,
        "parts": [{k: v for k, v in s.items() if k != "values"} for s in specs],
        "validation_mean_p10": None if val_score is None else round(val_score, 4),
        "cache_s": round(t_cache, 1), "train_s": round(t_train, 1), "history": history,
        "config": asdict(cfg),
    }
    encoder.config.info = {"trained_on": report["catalog"], "catalog_checksum": report["catalog_checksum"],
                           "recipe": "head", "groups": groups, "train_items": report["train_items"],
                           "heldout_fraction": cfg.holdout, "seed": cfg.seed, "flip_augment": cfg.flip_augment,
                           "block_weights": {s["name"]: s["weight"] for s in specs}, "temperature": temperature}
    encoder.save(out)
    atomic_write_text(out / "train_report.json", json.dumps(report, indent=2) + "\n")
    if features is None and not cfg.keep_cache:
        shutil.rmtree(work, ignore_errors=True)
    return encoder.to_device(cfg.device), report


def train_demo_encoder(catalog_dir: str | Path, out: str | Path, device: str = "cpu") -> tuple[Encoder, bool]:
    """The demo's encoder: the default recipe on the demo catalog (seconds on a few hundred photos).

    Returns ``(encoder, trained)``; an encoder already at ``out`` trained on this very catalog
    (same checksum) is loaded instead of retrained, so a rerun of the demo costs nothing.
    """
    catalog = load_catalog(catalog_dir)
    out = Path(out)
    if (out / "encoder.json").is_file():
        try:
            enc = Encoder.load(out, device)
            if enc.config.info.get("catalog_checksum") == catalog.checksum():
                return enc, False
        except Exception as exc:  # a stale or corrupt folder is simply retrained
            log.info("retraining the demo encoder: %s", exc)
    enc, _ = train_head_encoder(catalog, out, HeadTrainConfig(device=device, name="demo-parts"))
    return enc, True
