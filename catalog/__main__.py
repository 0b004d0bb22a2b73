"""``python -m catalog {validate,infer-schema,one-hot}``: thin CLI over :mod:`catalog.format`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from catalog.format import CATALOG_FILE, CatalogError, load_catalog, read_rows, write_one_hot
from catalog.loading import (
    DEFAULT_MIN_COUNT,
    TooManySkippedError,
    add_catalog_options,
    check_skipped,
    open_catalog,
    options_from_args,
)
from catalog.schema import SCHEMA_FILE, SchemaError, infer_schema


def _validate(args: argparse.Namespace) -> int:
    """Exit 0 when the catalog loads, 1 when it loses more rows than --max-skipped allows (or any
    row with --strict); the summary and the skipped rows are printed either way."""
    options = options_from_args(args)
    cat = load_catalog(args.dir, check_images=not args.no_image_check, options=options)
    print(cat.summary())
    if cat.issues:
        shown = cat.issues if args.verbose else cat.issues[:20]
        print("  skipped rows:")
        for issue in shown:
            print(f"    {issue}")
        if len(shown) < len(cat.issues):
            print(f"    ... {len(cat.issues) - len(shown)} more (use --verbose)")
    print(f"validated {args.dir}: {cat.counts_line()}")
    try:
        check_skipped(cat, options.max_skipped)
    except TooManySkippedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.strict and cat.issues:
        print(f"error: {len(cat.issues)} bad rows in strict mode", file=sys.stderr)
        return 1
    return 0


def _infer(args: argparse.Namespace) -> int:
    header, rows = read_rows(Path(args.dir) / CATALOG_FILE)
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    missing = [g for g in groups if g not in header]
    if missing:
        print(f"error: --groups names columns not in {CATALOG_FILE}: {missing}; columns: {header}", file=sys.stderr)
        return 2
    dict_rows = [dict(zip(header, r, strict=False)) for _, r in rows]
    schema, counts = infer_schema(dict_rows, groups, min_count=args.min_count)
    out = Path(args.out) if args.out else Path(args.dir) / SCHEMA_FILE
    schema.save(out)
    for g in groups:
        dropped = {v: n for v, n in counts[g].items() if v not in schema.groups[g]}
        print(f"{g}: {len(schema.groups[g])} values kept" + (f", dropped (< {args.min_count}): {json.dumps(dropped)}" if dropped else ""))
    print(f"wrote {out}")
    return 0


def _one_hot(args: argparse.Namespace) -> int:
    cat = open_catalog(args.dir, options_from_args(args), check_images=False)
    out = Path(args.out) if args.out else Path(args.dir) / "img_attr.csv"
    write_one_hot(cat, out)
    print(f"wrote {out}: {len(cat.items)} rows x {cat.schema.num_values} attribute columns; {cat.counts_line()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m catalog", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="load a catalog and print a summary of kept and skipped rows")
    v.add_argument("dir")
    v.add_argument("--strict", action="store_true", help="exit non-zero if any row is bad")
    v.add_argument("--no-image-check", action="store_true", help="do not open every image")
    v.add_argument("--verbose", action="store_true", help="list every skipped row")
    add_catalog_options(v)
    v.set_defaults(func=_validate)
    s = sub.add_parser("infer-schema", help="write schema.json from the values present")
    s.add_argument("dir")
    s.add_argument("--groups", required=True, help="comma-separated attribute columns")
    s.add_argument("--min-count", type=int, default=DEFAULT_MIN_COUNT,
                   help=f"drop values seen fewer times (default {DEFAULT_MIN_COUNT})")
    s.add_argument("--out", help="where to write (default DIR/schema.json)")
    s.set_defaults(func=_infer)
    o = sub.add_parser("one-hot", help="write the thesis's img_attr.csv")
    o.add_argument("dir")
    o.add_argument("--out")
    add_catalog_options(o)
    o.set_defaults(func=_one_hot)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CatalogError, SchemaError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
