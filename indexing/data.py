"""Catalog images as a PyTorch dataset, decoded and resized in DataLoader worker processes.

Decoding JPEGs and resizing is the part of indexing that is not the model; running it in
``num_workers`` processes overlaps it with the forward pass of the previous batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

from indexing.encoder import Preprocess


class ImageLoadError(RuntimeError):
    """An image that cannot be decoded; names the item id and path."""


class Mirrored:
    """A preprocess of the photo's mirror image (left and right swapped). Picklable, like the one it wraps.

    Why: a training augmentation that changes no colour. The head recipe (unless ``--no-flip``)
    caches the trunk's features of each training photo and of its mirror image, so the head
    learns that a sleeve on the left is the same as one on the right, and nothing about colour.
    """

    def __init__(self, preprocess: Preprocess) -> None:
        self.preprocess = preprocess

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.preprocess(ImageOps.mirror(img))


class ImageListDataset(Dataset):
    """``(position, tensor)`` for each image path; the position lets callers re-align results."""

    def __init__(self, ids: Sequence[str], paths: Sequence[str | Path], preprocess: Preprocess | Mirrored) -> None:
        if len(ids) != len(paths):
            raise ValueError(f"{len(ids)} ids but {len(paths)} paths")
        self.ids = list(ids)
        self.paths = [str(p) for p in paths]
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        try:
            with Image.open(self.paths[i]) as im:
                return i, self.preprocess(im)
        except Exception as exc:
            raise ImageLoadError(f"item {self.ids[i]!r}: cannot read image {self.paths[i]}: {exc}") from exc


def default_workers() -> int:
    """Leave a core to the model: on 2 cores a second decode process slows indexing down."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def make_loader(
    dataset: Dataset, batch_size: int, num_workers: int, pin_memory: bool = False
) -> DataLoader:
    """Ordered loader (``shuffle=False``): shard boundaries depend on the order being stable."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )


def catalog_id_paths(catalog) -> tuple[list[str], list[str]]:
    """Item ids and absolute image paths of a :class:`catalog.Catalog`, in catalog order."""
    ids = [it.id for it in catalog.items]
    paths = [str(catalog.image_path(it)) for it in catalog.items]
    return ids, paths
