"""Fixtures for the indexing tests: small catalogs, a small-input encoder, one Ray session."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from catalog import Item, Schema, write_catalog

COLOURS = {"red": (200, 30, 30), "blue": (30, 40, 200), "green": (30, 160, 60), "black": (20, 20, 20)}
CATEGORIES = ("dresses", "pants", "tops")
SCHEMA = Schema({"category": CATEGORIES, "color": tuple(COLOURS)})


def make_catalog(root: Path, n: int, seed: int, size: int = 72, prefix: str = "") -> Path:
    """A catalog of garment-like shapes: the category decides the shape, the colour its fill."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    rng = random.Random(seed)
    items = []
    for i in range(n):
        colour, cat = list(COLOURS)[i % 4], CATEGORIES[(i // 4) % 3]
        fill = tuple(max(0, min(255, v + rng.randint(-30, 30))) for v in COLOURS[colour])
        im = Image.new("RGB", (size, size + rng.choice([0, 8])), (255, 255, 255))
        d = ImageDraw.Draw(im)
        x0, y0 = rng.randint(4, 16), rng.randint(4, 14)
        if cat == "dresses":
            d.polygon([(size // 2, y0), (x0, size - 4), (size - x0, size - 4)], fill=fill)
        elif cat == "pants":
            d.rectangle([x0, y0, size // 2 - 3, size - 4], fill=fill)
            d.rectangle([size // 2 + 3, y0, size - x0, size - 4], fill=fill)
        else:
            d.rectangle([x0, y0, size - x0, size // 2 + 8], fill=fill)
        rel = f"images/{prefix}{i:04d}.jpg"
        im.save(root / rel, quality=92)
        items.append(Item(id=f"{prefix}{seed}-{i:04d}", img_path=rel, name=f"{colour} {cat} {i}",
                          brand=("acme", "zeta")[i % 2], labels={"category": cat, "color": colour}))
    write_catalog(root, items, SCHEMA)
    return root


@pytest.fixture(scope="session")
def small_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_catalog(tmp_path_factory.mktemp("cat_a"), 36, seed=1)


@pytest.fixture(scope="session")
def extra_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_catalog(tmp_path_factory.mktemp("cat_b"), 12, seed=2, prefix="b")


@pytest.fixture(scope="session")
def small_encoder():
    """The built-in ImageNet EfficientNet-Lite0 at 64 px (fast on CPU, same code path)."""
    from indexing.encoder import Encoder, EncoderConfig

    return Encoder.builtin(EncoderConfig(image_size=64), device="cpu")


@pytest.fixture(scope="session")
def small_encoder_dir(small_encoder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_encoder.save(tmp_path_factory.mktemp("enc") / "lite0_64")


@pytest.fixture(scope="session")
def ray_session():
    """One local 2-CPU Ray cluster for the whole test session (startup costs seconds)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def catalog_factory():
    """``make_catalog`` for tests that need a catalog of their own size."""
    return make_catalog


@pytest.fixture(scope="session", autouse=True)
def single_thread_faiss():
    """One FAISS (OpenMP) thread for these tiny indexes: on a busy 2-core machine OpenMP's
    spin-waiting threads made the ivfpq tests ~15x slower (14 s vs 0.9 s measured)."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)
