"""``python -m crawler``: ``crawl`` a shop, or ``demo render`` / ``demo serve`` the built-in demo shop.

Each sub-command lives in its own module, which exposes ``add_arguments(parser)`` and
``run(args) -> int``; this file only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command -> module implementing it
COMMANDS = {
    ("crawl",): "crawler.crawl",
    ("demo", "render"): "crawler.demo.render",
    ("demo", "serve"): "crawler.demo.shop",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m crawler", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    demo = sub.add_parser("demo", help="the built-in demo shop").add_subparsers(dest="demo_cmd", required=True)
    for path, module_name in COMMANDS.items():
        parent = demo if path[0] == "demo" else sub
        module = importlib.import_module(module_name)
        p = parent.add_parser(path[-1], help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
