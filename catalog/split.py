"""A deterministic train / held-out split of catalog items, shared by every trainer.

The split is a hash of each item's id, so it does not change when rows are reordered, added
or removed, and an encoder and an editor trained with the same fraction hold out the same
products: an evaluation can then use products that neither model has seen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def holdout_mask(ids: Sequence[str], fraction: float, seed: int = 0) -> np.ndarray:
    """``True`` for the ids held out: a ``fraction`` of them, chosen by ``sha1(seed:id)``."""
    if fraction <= 0:
        return np.zeros(len(ids), dtype=bool)
    h = np.array([int(hashlib.sha1(f"{seed}:{i}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF for i in ids])
    return h < fraction


def holdout_split(ids: Sequence[str], fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, held-out indices) into ``ids``."""
    test = holdout_mask(ids, fraction, seed)
    return np.flatnonzero(~test), np.flatnonzero(test)
