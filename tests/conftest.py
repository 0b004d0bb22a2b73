"""Shared fixtures: demo catalogs rendered by the project's own renderer (no downloads)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

# ../shared/data/myntra-a next to the checkout; $MYNTRA_A_DIR points a worktree elsewhere at it
MYNTRA_DIR = Path(os.environ.get("MYNTRA_A_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "myntra-a")


@pytest.fixture(scope="session")
def make_demo_catalog(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Render (once per arguments) a demo catalog and return its folder."""
    from crawler.demo.render import render_catalog

    cache: dict[tuple, Path] = {}

    def make(products: int = 24, seed: int = 0, **kwargs) -> Path:
        key = (products, seed, tuple(sorted(kwargs.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"demo_{products}_{seed}")
            render_catalog(out, products=products, seed=seed, **kwargs)
            cache[key] = out
        return cache[key]

    return make


@pytest.fixture(scope="session")
def demo_catalog_dir(make_demo_catalog: Callable[..., Path]) -> Path:
    return make_demo_catalog(24, 0)


@pytest.fixture(scope="session")
def myntra_dir() -> Path:
    if not (MYNTRA_DIR / "catalog.csv").is_file():
        pytest.skip(f"real sample not present at {MYNTRA_DIR}")
    return MYNTRA_DIR
