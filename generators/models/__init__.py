"""The generator models, chosen by name (``python -m generators.train --model NAME``).

Each model lives in its own module with two classes: a training ``Solver`` (its networks,
optimisers and train step; :mod:`generators.models.base`) and an inference class that
:class:`generators.inference.Editor` wraps. Adding a model is one module and one line here.
Modules are imported on first use, so ``--help`` and the service never pay for the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any


@dataclass(frozen=True)
class ModelEntry:
    module: str
    solver: str
    inference: str
    summary: str


REGISTRY: dict[str, ModelEntry] = {
    "maskedit": ModelEntry("generators.models.maskedit", "MaskEditSolver", "MaskEditInference",
                           "attribute editor: masked residual at full resolution, pretrained judges (recommended)"),
    "stargan": ModelEntry("generators.models.stargan", "StarGANSolver", "StarGANInference",
                          "attribute editor of the thesis (kept as the benchmark's baseline)"),
    "pix2pix": ModelEntry("generators.models.pix2pix", "Pix2PixSolver", "Pix2PixInference",
                          "product photo -> model photo, trained on pairs"),
    "cyclegan": ModelEntry("generators.models.cyclegan", "CycleGANSolver", "CycleGANInference",
                           "unpaired translation between two catalog domains"),
    "munit": ModelEntry("generators.models.munit", "MunitSolver", "MunitInference",
                        "multi-modal translation between two domains: several diverse edits per request"),
    "fader": ModelEntry("generators.models.fader", "FaderSolver", "FaderInference",
                        "attribute sliders: continuous edits of every schema group (strength 0..1)"),
    "cutout": ModelEntry("generators.models.cutout", "CutoutSolver", "CutoutInference",
                         "worn photos both ways: the garment cut out by the pose (model -> product), "
                         "a product dressed on the catalog's mannequin (product -> model)"),
}


class UnknownModel(ValueError):
    pass


def entry(name: str) -> ModelEntry:
    if name not in REGISTRY:
        raise UnknownModel(f"unknown model {name!r}; models: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def solver_class(name: str) -> Any:
    e = entry(name)
    return getattr(import_module(e.module), e.solver)


def inference_class(name: str) -> Any:
    e = entry(name)
    return getattr(import_module(e.module), e.inference)
