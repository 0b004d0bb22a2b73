"""GANs that modify a shopper's query photo before the search.

- StarGAN (:mod:`generators.models.stargan`): one model edits every attribute group of a catalog's
  schema (colour, length, sleeve length, fit, pattern, neckline, ...), several at once.
- pix2pix (:mod:`generators.models.pix2pix`): product photo -> photo of a person wearing it, on pairs.
- CycleGAN (:mod:`generators.models.cyclegan`): unpaired domains (pattern add/remove, product -> model).

Train with ``python -m generators.train``; serve with :func:`generators.inference.load_editor`.
Imports stay lazy so that ``import generators`` costs nothing.
"""

from __future__ import annotations

from pathlib import Path

DEMO_CHECKPOINTS = Path(__file__).resolve().parent / "demo_checkpoints"


def __getattr__(name: str):
    if name in ("load_editor", "Editor", "EditError"):
        from generators import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'generators' has no attribute {name!r}")


__all__ = ["DEMO_CHECKPOINTS", "EditError", "Editor", "load_editor"]
