"""``python -m retrieval.demo_web [--out demo_out] [--http-port 8080]`` (``make demo-web``): the demo's
catalog, index and generators behind the web page, running until Ctrl-C.

The catalog and the index are the ones ``make demo`` builds (made here if missing, reused if
there); the server is ``python -m retrieval serve`` with ``--http-port``, so the page, the JSON
API, ``/docs`` and ``/metrics`` are on http://127.0.0.1:8080/ and gRPC on a free port.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from retrieval.demo import (
    DEMO_CHECKPOINTS,
    ROOT,
    DemoOptions,
    _read_line_with,
    _say,
    _stop,
    build_index,
    demo_generators,
    make_catalog,
)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_demo(opts: DemoOptions, host: str, http_port: int, grpc_port: int) -> int:
    """Prepare (or reuse) the catalog and index, run the server until Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, _interrupt)  # a plain `kill` stops the server too
    opts.out.mkdir(parents=True, exist_ok=True)
    index_dir = build_index(make_catalog(opts), opts)
    generators = opts.generators or demo_generators()
    log_path = opts.out / "server_web.log"
    cmd = [sys.executable, "-m", "retrieval", "serve", "--index", str(index_dir), "--host", host,
           "--port", str(grpc_port), "--http-port", str(http_port), "--generators", *map(str, generators)]
    _say(f"starting the server with generators {', '.join(p.name for p in generators)} (log: {log_path})")
    with open(log_path, "w") as log_fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=log_fh, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        words = _read_line_with(proc, ("LISTENING",), timeout=120).split()
        url = words[2] if len(words) > 2 else f"http://{host}:{http_port}/"
        _say(f"the page: {url}   (API docs: {url}docs, metrics: {url}metrics; gRPC on {words[1]})")
        _say("Ctrl-C stops the server")
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(proc)  # SIGTERM: the server drains and exits


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m retrieval.demo_web", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="the demo's folder (shared with make demo)")
    p.add_argument("--products", type=int, default=DemoOptions.products)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crawl", choices=["auto", "yes", "no"], default="auto",
                   help="crawl the demo shop with the crawler (auto: when it is installed) or render it")
    p.add_argument("--generators", nargs="+", type=Path, metavar="CKPT",
                   help=f"generator checkpoints (default: {DEMO_CHECKPOINTS.relative_to(ROOT)}/*.pt)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--http-port", type=int, default=8080, help="port of the page and the HTTP API (default 8080)")
    p.add_argument("--port", type=int, default=0, help="gRPC port (default: a free one)")
    args = p.parse_args(argv)
    opts = DemoOptions(out=args.out, products=args.products, seed=args.seed, crawl=args.crawl,
                       generators=args.generators)
    return serve_demo(opts, args.host, args.http_port, args.port)


if __name__ == "__main__":
    sys.exit(main())
