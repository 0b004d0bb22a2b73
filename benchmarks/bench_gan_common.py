"""Helpers shared by the ``bench_gan_*`` benchmarks: machine description, data, result writing."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.machine import MYNTRA, REPO, RESULTS, describe_machine, write_result  # noqa: F401 - re-exported


def machine() -> dict:
    return describe_machine(time=time.strftime("%Y-%m-%dT%H:%M:%S"))


def benchmark_catalog(products: int = 64) -> tuple[Path, str]:
    """The real myntra-a sample when present, else a freshly rendered demo catalog."""
    if (MYNTRA / "catalog.csv").is_file():
        return MYNTRA, "myntra-a"
    from crawler.demo.render import render_catalog

    out = Path(tempfile.mkdtemp(prefix="bench_gan_demo_"))
    render_catalog(out, products=products, seed=0)
    return out, f"demo ({products} products, seed 0)"
