"""Command line: ``python -m indexing {build,add,remove,search,info,train-encoder,export-encoder}``.

Thin layer over :mod:`indexing.build`, :mod:`indexing.store` and :mod:`indexing.train_encoder`.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from catalog import (
    Catalog,
    Schema,
    add_catalog_options,
    atomic_write_text,
    open_catalog,
    options_from_args,
)


def _add_catalog_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--catalog", type=Path, required=required, help="catalog folder (catalog.csv + images)")
    add_catalog_options(p)


def _load_catalog(args: argparse.Namespace, root: Path, default_schema: Schema | None = None) -> Catalog:
    """The catalog by the shared rule (catalog.loading); a loss over --max-skipped raises CatalogError."""
    cat = open_catalog(root, options_from_args(args, default_schema))
    print(f"catalog {root}: {cat.counts_line()}; schema: {cat.schema_source}", file=sys.stderr)
    if cat.issues:
        print(f"  rows skipped: {cat.skipped_by_reason()}", file=sys.stderr)
        for issue in cat.issues[:5]:
            print(f"  {issue}", file=sys.stderr)
    return cat


def _encoder_for_index(index_dir: Path, override: str | None, device: str):
    """The encoder an index was built with: ``--encoder`` if given, else the one the manifest names."""
    from indexing.store import encoder_for_index

    return encoder_for_index(index_dir, override, device)


def cmd_build(args: argparse.Namespace) -> None:
    from indexing.build import BuildConfig, build
    from indexing.encoder import Encoder, EncoderConfig
    from indexing.store import parse_views

    views = parse_views(args.views)
    catalog = _load_catalog(args, args.catalog)
    if args.encoder:
        encoder = Encoder.load(args.encoder, args.device)
    else:
        encoder = Encoder.builtin(EncoderConfig(image_size=args.image_size), device=args.device)
    cfg = BuildConfig(index=args.index, engine=args.engine, batch_size=args.batch_size, num_workers=args.workers,
                      shard_size=args.shard_size, ray_address=args.ray_address, nlist=args.nlist, refine=args.refine,
                      target_recall=args.target_recall, ondisk=args.ondisk, keep_shards=args.keep_shards, views=views)
    store = build(catalog, args.out, encoder, cfg)
    m = store.manifest
    print(f"built {args.out}: {m['count']} items; {catalog.counts_line()}; {m['index']['kind']} {m['index']['params']} "
          f"search {m['index']['search']} (recall@10 {m['index']['tuning'].get('recall_at_10')}), "
          f"encoder {m['encoder']['id']}; {m.get('vectors', m['count'])} vectors (views {','.join(views)})")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_add(args: argparse.Namespace) -> None:
    """Embed first (no lock: may take long), then open the live generation, add, commit, all under the lock."""
    from indexing.engines import EngineConfig
    from indexing.store import IndexStore

    encoder = _encoder_for_index(args.index, args.encoder, args.device)
    current = IndexStore.open(args.index, encoder)  # read only: for the schema and the embedding
    # a catalog without schema.json keeps the index's vocabulary when it fits it
    catalog = _load_catalog(args, args.catalog, default_schema=current.schema)
    engine_cfg = EngineConfig(batch_size=args.batch_size, num_workers=args.workers, ray_address=args.ray_address)
    vectors = current.embed_catalog(catalog, engine=args.engine, engine_cfg=engine_cfg)
    del current
    with IndexStore.open_for_update(args.index, encoder, args.lock_timeout, _say) as store:
        res = store.add_vectors(catalog, vectors)
        store.save()
        gen = store.manifest["generation"]
        vectors_now, views = store.vector_count, store.views
    shutil.rmtree(args.index / ".work-add" / catalog.checksum(), ignore_errors=True)
    print(f"{args.index}: added {res['added']}, replaced {res['replaced']}, now {res['count']} items; "
          f"{catalog.counts_line()} (generation {gen}); {vectors_now} vectors (views {','.join(views)})")


def cmd_remove(args: argparse.Namespace) -> None:
    from indexing.store import IndexStore

    ids = list(args.ids or [])
    if args.ids_file:
        ids += [line.strip() for line in Path(args.ids_file).read_text().splitlines() if line.strip()]
    if not ids:
        raise SystemExit("remove: give --ids ID [ID ...] or --ids-file FILE")
    with IndexStore.open_for_update(args.index, timeout_s=args.lock_timeout, on_wait=_say) as store:
        n = store.remove(ids, missing_ok=args.missing_ok)
    print(f"{args.index}: removed {n}, now {store.count} items (generation {store.manifest['generation']})")


def parse_filters(specs: list[str] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for spec in specs or []:
        if "=" not in spec:
            raise SystemExit(f"--filter {spec!r}: expected GROUP=VALUE[,VALUE...]")
        key, values = spec.split("=", 1)
        out.setdefault(key.strip(), []).extend(v.strip() for v in values.split(",") if v.strip())
    return out


def cmd_search(args: argparse.Namespace) -> None:
    from PIL import Image

    from indexing.store import IndexStore

    encoder = _encoder_for_index(args.index, args.encoder, args.device)
    store = IndexStore.open(args.index, encoder)
    with Image.open(args.image) as im:
        query = encoder.embed_images([im])
    hits = store.search(query, args.k, parse_filters(args.filter) or None, views=args.views)[0]
    items = store.get_items([h.id for h in hits])
    groups = list(store.manifest.get("schema", {}))
    if args.json:
        print(json.dumps([{"rank": r + 1, "id": h.id, "score": round(h.score, 5), "view": h.view,
                           "matched_path": h.path, **items.get(h.id, {})}
                          for r, h in enumerate(hits)], indent=2, ensure_ascii=False))
        return
    header = ["rank", "id", "score", *groups, "name", "view", "matched photo"]
    rows = [[str(r + 1), h.id, f"{h.score:.4f}", *[(items[h.id]["labels"].get(g) or "-") for g in groups],
             items[h.id].get("name", "")[:40], h.view, h.path] for r, h in enumerate(hits)]
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=False)]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if not hits:
        print("(no results)")


def cmd_info(args: argparse.Namespace) -> None:
    from indexing.store import read_manifest

    print(json.dumps(read_manifest(args.index), indent=2, ensure_ascii=False))


def cmd_train_encoder(args: argparse.Namespace) -> None:
    catalog = _load_catalog(args, args.catalog)
    split = lambda s: [g.strip() for g in s.split(",") if g.strip()] if s else None  # noqa: E731
    if args.recipe == "head":
        from indexing.train_head import HeadTrainConfig, train_head_encoder

        if args.base or args.train_stages is not None or args.dim is not None or args.metric_groups:
            raise SystemExit("--base, --train-stages, --dim and --metric-groups belong to "
                             "--recipe finetune; the head recipe's blocks are --groups")
        hcfg = HeadTrainConfig(groups=split(args.groups), image_size=args.image_size or HeadTrainConfig.image_size,
                               epochs=args.epochs or HeadTrainConfig.epochs, holdout=args.holdout, seed=args.seed,
                               device=args.device, batch_size=args.batch_size, num_workers=args.workers,
                               name=args.name, keep_cache=args.keep_cache, flip_augment=not args.no_flip,
                               attention=HeadTrainConfig.attention if args.attention is None else args.attention)
        encoder, report = train_head_encoder(catalog, args.out, hcfg)
        seconds = report["cache_s"] + report["train_s"]
    else:
        from indexing.train_encoder import TrainConfig, train_encoder

        if args.attention is not None or args.keep_cache:
            raise SystemExit("--attention and --keep-cache belong to --recipe head")

        cfg = TrainConfig(groups=split(args.groups), metric_groups=split(args.metric_groups), base=args.base,
                          image_size=args.image_size or TrainConfig.image_size,
                          train_stages=TrainConfig.train_stages if args.train_stages is None else args.train_stages,
                          proj_dim=args.dim or TrainConfig.proj_dim, epochs=args.epochs or TrainConfig.epochs,
                          holdout=args.holdout, seed=args.seed, device=args.device, batch_size=args.batch_size,
                          num_workers=args.workers, flip_augment=not args.no_flip, name=args.name)
        encoder, report = train_encoder(catalog, args.out, cfg)
        seconds = report["cache_s"] + report["train_s"]
    # the schema the heads were trained with, and where it came from (the run's record)
    atomic_write_text(Path(args.out) / "train_catalog.json", json.dumps(
        {**catalog.provenance(), "schema": catalog.schema.to_dict()}, indent=2, ensure_ascii=False) + "\n")
    print(f"saved {args.out}: {encoder.encoder_id}, dim {encoder.dim}; recipe {args.recipe}; trained on "
          f"{report['train_items']} items ({report['heldout_items']} held out) in {seconds:.0f}s; "
          f"catalog {catalog.counts_line()}")


def cmd_export_encoder(args: argparse.Namespace) -> None:
    """A pretrained encoder folder (optionally with PCA-whitening fitted on a catalog)."""
    from indexing.build import BuildConfig, embed_catalog
    from indexing.encoder import Encoder, EncoderConfig, with_pca

    cfg = EncoderConfig(backbone=args.backbone, image_size=args.image_size, pooling=args.pooling, gem_p=args.gem_p)
    if args.backbone != "efficientnet-lite0":
        from indexing.backbones import IMAGENET_MEAN, IMAGENET_STD

        cfg.mean, cfg.std = IMAGENET_MEAN, IMAGENET_STD
    encoder = Encoder(cfg, weights=args.weights).to_device(args.device)
    encoder.checksum = encoder.compute_checksum()
    if args.pca:
        if not args.catalog:
            raise SystemExit("--pca needs --catalog to fit on")
        catalog = _load_catalog(args, args.catalog)
        with tempfile.TemporaryDirectory() as tmp:
            pooled = embed_catalog(catalog, encoder, Path(tmp), BuildConfig(batch_size=args.batch_size,
                                                                           num_workers=args.workers))
        encoder = with_pca(encoder, pooled, args.pca, whiten=not args.no_whiten)
    encoder.to("cpu")
    encoder.save(args.out)
    print(f"saved {args.out}: {encoder.encoder_id}, dim {encoder.dim}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m indexing", description="Embed catalogs and build FAISS indexes.")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)

    def runtime(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
        p.add_argument("--batch-size", type=int, default=64)
        p.add_argument("--workers", type=int, default=None,
                       help="DataLoader decode processes (default: CPUs - 1, at most 4)")

    def engine(p: argparse.ArgumentParser) -> None:
        p.add_argument("--engine", default="local", choices=["local", "ray"])
        p.add_argument("--ray-address", help="existing Ray cluster (default: running session or a local one)")

    p = sub.add_parser("build", help="embed a catalog and build an index folder (resumable)")
    _add_catalog_args(p)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--encoder", help="encoder folder (default: built-in ImageNet EfficientNet-Lite0)")
    p.add_argument("--image-size", type=int, default=224, help="input size of the built-in encoder")
    p.add_argument("--index", default="auto", choices=["auto", "flat", "hnsw", "ivf", "ivfpq"])
    p.add_argument("--nlist", type=int, help="IVF lists (default ~4*sqrt(N) for ivf, 16*sqrt(N) for ivfpq)")
    p.add_argument("--refine", default="sq8", choices=["sq8", "flat", "none"],
                   help="ivfpq: re-rank the PQ shortlist with 8-bit scalar codes (d bytes/vector), "
                        "the float vectors (4d bytes) or not at all (recall capped by PQ)")
    p.add_argument("--target-recall", type=float, default=0.95, help="recall@10 vs exact that tuning aims for")
    p.add_argument("--shard-size", type=int, default=2048)
    p.add_argument("--ondisk", action="store_true", help="IVF lists merged on disk and memory-mapped (huge catalogs)")
    p.add_argument("--keep-shards", action="store_true")
    p.add_argument("--views", default="product",
                   help="photos to embed per item: product (the product shot), model (every model photo) "
                        "or product,model; each vector keeps its item and view")
    runtime(p)
    engine(p)
    p.set_defaults(func=cmd_build)

    def lock_timeout(p: argparse.ArgumentParser) -> None:
        p.add_argument("--lock-timeout", type=float, default=600.0,
                       help="seconds to wait while another writer (build, add, remove, a server) holds the index")

    p = sub.add_parser("add", help="embed another catalog's items into an index (same ids are replaced)")
    p.add_argument("--index", type=Path, required=True)
    _add_catalog_args(p)
    p.add_argument("--encoder", help="encoder folder (default: the one the index manifest names)")
    lock_timeout(p)
    runtime(p)
    engine(p)
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("remove", help="remove items by id")
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--ids", nargs="+")
    p.add_argument("--ids-file", help="file with one id per line")
    p.add_argument("--missing-ok", action="store_true", help="ignore ids that are not in the index")
    lock_timeout(p)
    p.set_defaults(func=cmd_remove)

    p = sub.add_parser("search", help="search the index with an image")
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--filter", action="append", metavar="GROUP=VALUE[,VALUE]", help="repeatable; AND across groups")
    p.add_argument("--encoder", help="encoder folder (default: the one the index manifest names)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--views", help="photos to search: product and/or model, comma-separated (default: product)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("info", help="print an index's manifest")
    p.add_argument("--index", type=Path, required=True)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("train-encoder", help="train an encoder on the catalog's attribute groups",
                       description="Default recipe 'head': a parts head (a softmax block for category and one for colour) "
                                   "on cached frozen multi-stage + colour features; 'finetune': the older recipe "
                                   "that fine-tunes the last trunk stages.")
    _add_catalog_args(p)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--recipe", default="head", choices=["head", "finetune"],
                   help="head: parts head on cached features (default); finetune: train the last trunk stages")
    p.add_argument("--groups", help="comma-separated attribute groups (default: head: category,color when the "
                                    "schema has them, else every group; finetune: every group)")
    p.add_argument("--image-size", type=int, help="input size (default: head 224, finetune 160)")
    p.add_argument("--epochs", type=int, help="training epochs (default: head 30, finetune 12)")
    p.add_argument("--holdout", type=float, default=0.0, help="fraction of items kept out of training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="")
    p.add_argument("--keep-cache", action="store_true", help="head: keep the cached features (.OUT.work) after success")
    p.add_argument("--attention", type=int, help="head: learned attention maps per attribute block, 0 for global "
                                                 "pooling only (default: 2)")
    p.add_argument("--base", help="finetune: encoder folder to start from (default: built-in EfficientNet-Lite0)")
    p.add_argument("--metric-groups", help="finetune: positives agree on all of these (default: --groups)")
    p.add_argument("--train-stages", type=int, help="finetune: trailing trunk stages to train (default 2)")
    p.add_argument("--dim", type=int, help="finetune: embedding dim (default 256)")
    p.add_argument("--no-flip", action="store_true",
                   help="no mirror images: head: fit the training photos alone, not also their mirror images "
                        "(about half the training time; P@10 both 0.383 -> 0.370 on myntra-a); "
                        "finetune: no horizontal-flip augmentation")
    runtime(p)
    p.set_defaults(func=cmd_train_encoder)

    p = sub.add_parser("export-encoder", help="write a pretrained encoder folder (any backbone, optional PCA)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--backbone", default="efficientnet-lite0", help="efficientnet-lite0 or a torchvision model name")
    p.add_argument("--weights", help="local state_dict file (required for torchvision backbones)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--pooling", default="gem", choices=["gem", "avg"])
    p.add_argument("--gem-p", type=float, default=3.0)
    p.add_argument("--pca", type=int, help="project to this dim with PCA fitted on --catalog")
    p.add_argument("--no-whiten", action="store_true")
    _add_catalog_args(p, required=False)
    runtime(p)
    p.set_defaults(func=cmd_export_encoder)
    return ap


# Errors whose message is the whole story for a CLI user (printed, exit 2), by module. Only
# modules already imported are looked at: an error class of a module that was never imported
# cannot have been raised, and ``remove`` need not import torch just to name EncoderError.
USER_ERRORS = {
    "catalog.format": ("CatalogError",), "catalog.schema": ("SchemaError",),
    "indexing.encoder": ("EncoderError",), "indexing.backbones": ("BackboneError",),
    "indexing.store": ("IndexStoreError", "FilterError", "ViewError"), "indexing.lock": ("IndexLockTimeout",),
}


def _user_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [FileNotFoundError]
    for module, names in USER_ERRORS.items():
        if module in sys.modules:
            found += [getattr(sys.modules[module], n) for n in names]
    return tuple(found)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if "workers" in args and args.workers is None:
        from indexing.data import default_workers  # imports torch: only for the commands that embed

        args.workers = default_workers()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except Exception as exc:
        if not isinstance(exc, _user_errors()):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
