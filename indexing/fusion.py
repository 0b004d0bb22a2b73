"""Reciprocal rank fusion: one ranking out of several rankings of the same gallery.

A multi-modal edit ("this, but floral") gives several query images, each searched on its
own. Their rankings are fused by reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR
2009): an item's score is ``sum over rankings of 1 / (k + rank)`` (rank from 1, ``k`` = 60 as
in the paper), so an item that several variants rank high beats one that a single variant
ranks first. It needs no calibration of the similarity scores, which differ from query to
query. Used by the service (``SearchRequest.variants``) and by the evaluation of fused search.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

RRF_K = 60
T = TypeVar("T", bound=Hashable)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[T]], k: int = RRF_K) -> list[tuple[T, float]]:
    """``[(item, fused score)]``, best first. Ties go to the item with the better best rank, then
    to the one seen first, so the result is deterministic."""
    if k < 0:
        raise ValueError(f"k must be >= 0; got {k}")
    score: dict[T, float] = {}
    best: dict[T, int] = {}
    first: dict[T, int] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            score[item] = score.get(item, 0.0) + 1.0 / (k + rank)
            best[item] = min(best.get(item, rank), rank)
            first.setdefault(item, len(first))
    return sorted(score.items(), key=lambda kv: (-kv[1], best[kv[0]], first[kv[0]]))
