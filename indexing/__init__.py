"""Embed catalog images and index them with FAISS, on one machine or a Ray cluster.

Public interface (what the retrieval service uses):
- :class:`indexing.encoder.Encoder` - ``load``, ``preprocess``, ``embed_tensor``, ``embed_images``;
- :class:`indexing.store.IndexStore` - ``open``, ``search``, ``get_items``, ``add``, ``remove``.
"""

from indexing.encoder import Encoder, EncoderConfig, EncoderError
from indexing.store import EncoderMismatchError, FilterError, Hit, IndexStore, IndexStoreError

__all__ = ["Encoder", "EncoderConfig", "EncoderError", "EncoderMismatchError", "FilterError", "Hit", "IndexStore",
           "IndexStoreError"]
