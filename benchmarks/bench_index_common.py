"""Helpers shared by the ``bench_index_*`` benchmarks: machine description and result writing."""

from __future__ import annotations

from pathlib import Path

from benchmarks.machine import RESULTS, describe_machine, write_result  # noqa: F401 - re-exported

REPO = Path(__file__).resolve().parents[1]
MYNTRA = REPO.parent / "shared" / "data" / "myntra-a"


def machine() -> dict:
    import faiss

    return describe_machine(faiss=faiss.__version__, faiss_gpus=int(getattr(faiss, "get_num_gpus", lambda: 0)()))
