"""What every benchmark result records about where it ran, and how it is written.

Numbers from a shared 2-core machine swing with the load of other processes, so the load
average goes in with the hardware and library versions: a reader can tell a quiet run from
a busy one.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MYNTRA = REPO.parent / "shared" / "data" / "myntra-a"

_PACKAGES = ("torch", "torchvision", "faiss-gpu", "numpy", "opencv-python-headless", "grpcio", "playwright", "ray")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def describe_machine(**extra: object) -> dict:
    """Hardware, software and current load; ``extra`` adds benchmark-specific fields."""
    mem_gib = None
    with contextlib.suppress(ValueError, OSError):
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    packages = {}
    for name in _PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            packages[name] = version(name)
    info: dict[str, object] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "os": platform.platform(),
        "packages": packages,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    with contextlib.suppress(ImportError):
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    info.update(extra)
    return info


def write_result(name_or_path: str | Path, result: dict) -> Path:
    """Write ``result`` as JSON atomically: a bare name goes to ``benchmarks/results/NAME.json``."""
    from catalog import atomic_write_text

    path = Path(name_or_path)
    if path.suffix != ".json":
        path = RESULTS / f"{name_or_path}.json"
    atomic_write_text(path, json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return path
