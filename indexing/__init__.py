"""Embed catalog images and index them with FAISS, on one machine or a Ray cluster.

Public interface (what the retrieval service uses):
- :class:`indexing.encoder.Encoder` - ``load``, ``preprocess``, ``embed_tensor``, ``embed_images``;
- :class:`indexing.store.IndexStore` - ``open``, ``search``, ``get_items``, ``add``, ``remove``.

The names are imported on first use: ``import indexing.store`` (the CLI's ``remove``, a
reader of an index) then costs FAISS only, not torch (seconds on a small machine).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "Encoder": "indexing.encoder", "EncoderConfig": "indexing.encoder", "EncoderError": "indexing.encoder",
    "EncoderMismatchError": "indexing.store", "FilterError": "indexing.store", "Hit": "indexing.store",
    "IndexStore": "indexing.store", "IndexStoreError": "indexing.store",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'indexing' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)
