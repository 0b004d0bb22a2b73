"""``python -m retrieval``: ``serve`` the gRPC API, or talk to a server (``search`` and more).

Examples::

    python -m retrieval serve --index runs/index --generators ckpt/stargan.pt ckpt/pix2pix.pt [--http-port 8080]
    python -m retrieval search --server localhost:50051 --image q.jpg --edit color=blue \\
        --edit sleeve_length=short -k 10 --save-modified modified.png
    python -m retrieval search --item ID --edit length=long --strength 0.5        # a slider (fader)
    python -m retrieval search --item ID --edit pattern=floral --variants 4 \\
        --save-modified floral.png                                                # diverse edits (munit), fused
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from retrieval.config import ADMIN_TOKEN_ENV, BatchingConfig, ConfigError, ServerConfig, load_config

MiB = 1024 * 1024


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the gRPC server (and, with --http-port, the HTTP API and web page)")
    p.add_argument("--config", help="TOML or JSON file with ServerConfig keys; flags override it")
    p.add_argument("--index", dest="index_dir", help="index folder (built by python -m indexing)")
    p.add_argument("--generators", nargs="+", metavar="CKPT", help="generator checkpoints to load")
    p.add_argument("--encoder", help="encoder checkpoint (default: the ImageNet-pretrained encoder)")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--host", help="address to bind (default 127.0.0.1; 0.0.0.0 or [::] for all)")
    p.add_argument("--port", type=int, help="port (default 50051; 0 picks a free one)")
    p.add_argument("--http-port", type=int,
                   help="also serve the HTTP/JSON API, the web page and /metrics on this port (0: a free one)")
    p.add_argument("--tls-cert", help="PEM certificate chain: serve TLS")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--admin-token-file", help=f"file holding the admin bearer token (or set ${ADMIN_TOKEN_ENV})")
    p.add_argument("--max-message-mb", type=float, help="largest request/response in MiB (default 16)")
    p.add_argument("--max-image-pixels", type=int, help="refuse larger images (default 16,000,000)")
    p.add_argument("--max-image-side", type=int, help="refuse images with a longer side, in pixels (default 8192)")
    p.add_argument("--max-aspect-ratio", type=float, help="refuse images longer than wide (or wider than long) "
                   "by more than this (default 10)")
    p.add_argument("--batching", choices=["auto", "on", "off"], help="micro-batching (auto: on; batches of 16 on CUDA, 4 on CPU)")
    p.add_argument("--max-batch", type=int, help="largest micro-batch (default: 16 on CUDA, 4 on CPU)")
    p.add_argument("--max-wait-ms", type=float, help="how long a micro-batch waits to fill (default 2 ms)")
    p.add_argument("--grace", type=float, dest="grace_s", help="seconds in-flight RPCs get on shutdown")
    p.add_argument("--drain-delay", type=float, dest="drain_delay_s", help="seconds NOT_SERVING before stopping")
    p.add_argument("--torch-threads", type=int, help="torch intra-op threads")
    p.set_defaults(func=cmd_serve)


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    cfg = load_config(args.config) if args.config else ServerConfig()
    for key in ("index_dir", "generators", "encoder", "device", "host", "port", "http_port", "tls_cert", "tls_key",
                "max_image_pixels", "max_image_side", "max_aspect_ratio", "grace_s", "drain_delay_s",
                "torch_threads"):
        value = getattr(args, key)
        if value is not None:
            setattr(cfg, key, value)
    if args.max_message_mb is not None:
        cfg.max_message_bytes = int(args.max_message_mb * MiB)
    if args.admin_token_file:
        cfg.admin_token = Path(args.admin_token_file).read_text(encoding="utf-8").strip()
    b = cfg.batching if isinstance(cfg.batching, BatchingConfig) else BatchingConfig(**cfg.batching)
    if args.batching is not None:
        b.enabled = {"auto": None, "on": True, "off": False}[args.batching]
    if args.max_batch is not None:
        b.max_batch = args.max_batch
    if args.max_wait_ms is not None:
        b.max_wait_ms = args.max_wait_ms
    cfg.batching = b
    return cfg.validate()


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
    except (ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from retrieval.server import run_server

    return run_server(cfg)


def _add_client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default="localhost:50051", help="HOST:PORT (default localhost:50051)")
    p.add_argument("--tls-ca", help="PEM root certificate to verify a TLS server")
    p.add_argument("--timeout", type=float, default=60.0, help="deadline per call in seconds")


def _client(args: argparse.Namespace, admin: bool = False):
    from retrieval.client import RetrievalClient

    token = None
    if admin:
        token = os.environ.get(ADMIN_TOKEN_ENV)
        if getattr(args, "admin_token_file", None):
            token = Path(args.admin_token_file).read_text(encoding="utf-8").strip()
    return RetrievalClient(args.server, tls_ca=args.tls_ca, admin_token=token, timeout=args.timeout)


def _add_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search with an image or item id, optionally modified")
    _add_client_args(p)
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--image", help="query image file")
    q.add_argument("--item", help="query by catalog item id")
    p.add_argument("--edit", dest="mods", action="append", default=[], metavar="GROUP=VALUE",
                   help="attribute edit, applied in the order given (repeatable)")
    p.add_argument("--to-model", dest="mods", action="append_const", const="to_model",
                   help="translate the product photo into a model photo (at this point of the order)")
    p.add_argument("--to-product", dest="mods", action="append_const", const="to_product",
                   help="translate a photo of a person wearing the garment into a product photo")
    p.add_argument("--views", default="", metavar="VIEW[,VIEW]",
                   help="photos to search: product and/or model (default: product; model after --to-model "
                        "when the index has model photos)")
    p.add_argument("-k", "--top-k", type=int, default=10)
    p.add_argument("--filter", action="append", default=[], metavar="GROUP=VALUE[,VALUE]",
                   help="only items with one of these values (repeatable)")
    p.add_argument("--strength", type=float, metavar="S",
                   help="how far every --edit goes, 0..1 (default 1: the full edit; 0 keeps the query)")
    p.add_argument("--variants", type=int, default=0, metavar="N",
                   help="ask a multi-modal generator for N diverse edits; each is searched and the rankings fused")
    p.add_argument("--save-modified", metavar="PNG",
                   help="write the modified query image here (with --variants: PNG_1.png, PNG_2.png, ...)")
    p.add_argument("--json", action="store_true", help="print the response as JSON")
    p.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from catalog import atomic_write_bytes
    from retrieval.client import format_hits, parse_filters

    try:
        filters = parse_filters(args.filter)
        with _client(args) as client:
            resp = client.search(
                image=args.image, item_id=args.item, modifications=args.mods, top_k=args.top_k,
                filters=filters, return_modified_image=bool(args.save_modified),
                strength=args.strength, variants=args.variants,
                views=[v.strip() for v in args.views.split(",") if v.strip()],
            )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    saved = []
    if args.save_modified:
        if len(resp.modified_images) > 1:
            stem = Path(args.save_modified)
            for i, png in enumerate(resp.modified_images, start=1):
                saved.append(str(stem.with_name(f"{stem.stem}_{i}{stem.suffix or '.png'}")))
                atomic_write_bytes(saved[-1], png)
        else:
            atomic_write_bytes(args.save_modified, resp.modified_image)
            saved.append(args.save_modified)
    if args.json:
        d = MessageToDict(resp, preserving_proto_field_name=True)
        d.pop("modified_image", None)
        d.pop("modified_images", None)
        print(json.dumps(d, indent=2, ensure_ascii=False))
    else:
        print(format_hits(resp))
        if saved:
            print(f"modified query image{'s' if len(saved) > 1 else ''}: {', '.join(saved)}")
    return 0


def _add_small(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attributes", help="list attribute groups and the edits the server can make")
    _add_client_args(p)
    p.set_defaults(func=cmd_attributes)
    p = sub.add_parser("health", help="print the server's health status (exit 1 unless SERVING)")
    _add_client_args(p)
    p.set_defaults(func=cmd_health)
    p = sub.add_parser("reload", help="admin: re-open the index (optionally from another folder)")
    _add_client_args(p)
    p.add_argument("--admin-token-file")
    p.add_argument("--index", default="", help="index folder on the server")
    p.set_defaults(func=cmd_admin, admin="reload")
    p = sub.add_parser("add-items", help="admin: add a catalog folder's items to the index")
    _add_client_args(p)
    p.add_argument("--admin-token-file")
    p.add_argument("--catalog", required=True, help="catalog folder on the server")
    p.add_argument("--id", dest="ids", action="append", default=[], help="only these ids (repeatable)")
    p.add_argument("--max-skipped", type=float, default=None, metavar="FRACTION",
                   help="largest share of the catalog's rows that may be skipped (server default 0.05)")
    p.set_defaults(func=cmd_admin, admin="add")
    p = sub.add_parser("remove-items", help="admin: remove items from the index")
    _add_client_args(p)
    p.add_argument("--admin-token-file")
    p.add_argument("ids", nargs="+")
    p.set_defaults(func=cmd_admin, admin="remove")


def cmd_attributes(args: argparse.Namespace) -> int:
    with _client(args) as client:
        resp = client.list_attributes()
    print(f"index: {resp.index_size} items (version {resp.index_version}); "
          f"product_to_model: {'yes' if resp.product_to_model else 'no'}; "
          f"model_to_product: {'yes' if resp.model_to_product else 'no'}; views: {', '.join(resp.views) or 'product'}")
    for g in resp.groups:
        print(f"  {g.name}: {', '.join(g.values)}")
        print(f"    editable: {', '.join(g.editable_values) or '-'}")
    for gen in resp.generators:
        print(f"  generator {gen.name} ({gen.kind}): groups {', '.join(gen.groups) or '-'}"
              f"{', product_to_model' if gen.product_to_model else ''}"
              f"{', model_to_product' if gen.model_to_product else ''}"
              f"{', multi-modal (--variants)' if gen.multi_modal else ''}"
              f"{', continuous (--strength)' if gen.continuous else ''}")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.health()
    print(status)
    return 0 if status == "SERVING" else 1


def cmd_admin(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    try:
        with _client(args, admin=True) as client:
            if args.admin == "reload":
                resp = client.reload(args.index or None)
            elif args.admin == "add":
                resp = client.add_items(args.catalog, args.ids, args.max_skipped)
            else:
                resp = client.remove_items(args.ids)
    except grpc.RpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    print(json.dumps(MessageToDict(resp, preserving_proto_field_name=True), indent=2))
    if args.admin == "add":
        kept = resp.added + resp.replaced
        print(f"kept {kept:,} / skipped {len(resp.skipped):,} / total {kept + len(resp.skipped):,} rows; "
              f"index now {resp.index_size:,} items", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m retrieval", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog="\n".join(__doc__.splitlines()[2:]),
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_serve(sub)
    _add_search(sub)
    _add_small(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
