"""Helpers shared by the ``bench_index_*`` benchmarks: machine description and result writing."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MYNTRA = REPO.parent / "shared" / "data" / "myntra-a"


def machine() -> dict:
    import faiss
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
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "memory_gib": mem_gib,
            "python": platform.python_version(), "torch": torch.__version__, "faiss": faiss.__version__,
            "faiss_gpus": int(getattr(faiss, "get_num_gpus", lambda: 0)()),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "os": platform.platform()}


def write_result(name: str, result: dict) -> Path:
    from catalog import atomic_write_text

    path = RESULTS / f"{name}.json"
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return path
