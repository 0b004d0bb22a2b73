"""Helpers shared by the ``bench_gan_*`` benchmarks: machine description, data, result writing."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MYNTRA = REPO.parent / "shared" / "data" / "myntra-a"


def machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem_gib = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "memory_gib": mem_gib,
        "load_avg_1_5_15": load, "python": platform.python_version(), "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "os": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def benchmark_catalog(products: int = 64) -> tuple[Path, str]:
    """The real myntra-a sample when present, else a freshly rendered demo catalog."""
    if (MYNTRA / "catalog.csv").is_file():
        return MYNTRA, "myntra-a"
    from crawler.demo.render import render_catalog

    out = Path(tempfile.mkdtemp(prefix="bench_gan_demo_"))
    render_catalog(out, products=products, seed=0)
    return out, f"demo ({products} products, seed 0)"


def write_result(name: str, result: dict) -> Path:
    from catalog import atomic_write_text

    path = RESULTS / f"{name}.json"
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return path
