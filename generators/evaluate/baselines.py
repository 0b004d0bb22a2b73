"""Non-learned editors that a GAN must beat to earn its place.

:class:`LabColourShift` recolours a garment without any training: it moves the garment's
pixels in CIE LAB so that their mean becomes the target colour's mean, learned from the
training catalog. Shading and texture survive (every pixel moves by the same offset), the
background does not move. It has the :class:`generators.inference.Editor` interface, so
evaluations and benchmarks run it next to the GANs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from catalog import Catalog
from catalog.images import flatten_on_white
from generators.options import MaskEditOptions
from indexing.pooling import foreground_weights


def garment_mask(rgb: np.ndarray) -> np.ndarray:
    """Boolean mask of the pixels that differ from the photo's background (its border's median)."""
    x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255.0
    w = foreground_weights(x, floor=0.0)[0, 0].numpy()
    return w >= 0.5


def _photo(catalog: Catalog, item: Any, size: int) -> np.ndarray:
    """uint8 RGB ``[size, size, 3]``, flattened on white."""
    with Image.open(catalog.image_path(item)) as im:
        return np.asarray(flatten_on_white(im).resize((size, size), Image.BILINEAR))


def _to_tensor(im: Image.Image) -> torch.Tensor:
    """``[1, 3, H, W]`` in ``[-1, 1]``, flattened on white."""
    return torch.from_numpy(np.asarray(flatten_on_white(im), np.float32) / 127.5 - 1).permute(2, 0, 1)[None]


def _to_image(x: torch.Tensor) -> Image.Image:
    """The first image of ``x`` (``[B, 3, H, W]`` in ``[-1, 1]``) as PIL."""
    return Image.fromarray(((x[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8))


def labelled_photos(catalog: Catalog, items: Sequence[Any] | None, group: str, size: int):
    """``(uint8 RGB photo at size x size, value)`` for each of ``items`` with a known ``group`` value."""
    for it in items if items is not None else catalog.items:
        if it.labels.get(group):
            yield _photo(catalog, it, size), it.labels[group]


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


class LabColourShift:
    """Recolour by a LAB translation of the garment's pixels to the target colour's mean."""

    name = "lab-shift"

    def __init__(self, means: Mapping[str, Sequence[float]], group: str = "color") -> None:
        self.means = {v: np.asarray(m, np.float32) for v, m in means.items()}
        self.group = group

    @classmethod
    def fit(cls, catalog: Catalog, items: Sequence[Any] | None = None, group: str = "color",
            size: int = 128) -> LabColourShift:
        """Mean LAB colour of the garment pixels per value of ``group``, over ``items`` (training ones)."""
        sums: dict[str, list[np.ndarray]] = {}
        for rgb, v in labelled_photos(catalog, items, group, size):
            m = garment_mask(rgb)
            if m.sum() < 16:
                continue
            sums.setdefault(v, []).append(_lab(rgb)[m].mean(0))
        if not sums:
            raise ValueError(f"no training photo has a known {group!r} value to learn colour means from")
        return cls({v: np.mean(a, axis=0) for v, a in sums.items()}, group)

    def capabilities(self) -> dict[str, Any]:
        return {"model": self.name, "edit": {"groups": {self.group: sorted(self.means)}, "multi_group": False},
                "to_model": False, "full_resolution": True}

    def edit(self, images: Sequence[Image.Image], changes: Mapping[str, str], source_labels=None,
             strength: float = 1.0) -> list[Image.Image]:
        if set(changes) != {self.group}:
            raise ValueError(f"{self.name} edits only {self.group!r}; got {dict(changes)}")
        target = self.means[changes[self.group]]
        out = []
        for im in images:
            rgb = np.asarray(flatten_on_white(im))
            m = garment_mask(rgb)
            lab = _lab(rgb)
            if m.sum() >= 16:
                lab[m] += strength * (target - lab[m].mean(0))
            back = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
            out.append(Image.fromarray((back.clip(0, 1) * 255).round().astype(np.uint8)))
        return out


class PaletteShift:
    """Recolour by moving the garment's dominant colour to the target's (:mod:`generators.models.palette`).

    The non-learned first step of the masked editor's colour edits, run alone: the benchmark
    shows what the learned part adds on top of it.
    """

    name = "palette-shift"

    def __init__(self, palette: Mapping[str, Sequence[float]], group: str = "color") -> None:
        self.values = sorted(palette)
        self.palette = torch.tensor([list(palette[v]) for v in self.values], dtype=torch.float32)
        self.group = group

    @classmethod
    def fit(cls, catalog: Catalog, items: Sequence[Any] | None = None, group: str = "color",
            size: int = 96) -> PaletteShift:
        """Median dominant colour per value of ``group`` over ``items`` (the training ones)."""
        from generators.models.palette import fit_palette

        pairs = list(labelled_photos(catalog, items, group, size))
        if not pairs:
            raise ValueError(f"no training photo has a known {group!r} value to learn colours from")
        names = sorted({v for _, v in pairs})
        x = torch.from_numpy(np.stack([rgb for rgb, _ in pairs])).permute(0, 3, 1, 2).contiguous()
        idx = torch.tensor([names.index(v) for _, v in pairs])
        pal = fit_palette(x, idx, len(names))
        return cls({v: pal[i].tolist() for i, v in enumerate(names)}, group)

    def capabilities(self) -> dict[str, Any]:
        return {"model": self.name, "edit": {"groups": {self.group: list(self.values)}, "multi_group": False},
                "to_model": False, "full_resolution": True}

    def edit(self, images: Sequence[Image.Image], changes: Mapping[str, str], source_labels=None,
             strength: float = 1.0) -> list[Image.Image]:
        from generators.models.palette import palette_shift

        if set(changes) != {self.group}:
            raise ValueError(f"{self.name} edits only {self.group!r}; got {dict(changes)}")
        target = self.palette[self.values.index(changes[self.group])][None]
        return [_to_image(palette_shift(_to_tensor(im), target, strength=strength)) for im in images]




class SilhouetteShift:
    """Reshape by moving the garment's outline to the target value's mean silhouette
    (:mod:`generators.models.silhouette`), for every group given: hems by stretching, sleeves
    from an exemplar bank, widths by the mean templates, as the editors' step does.

    The non-learned first step of the masked editor's shape edits, run alone.
    """

    name = "silhouette-shift"

    def __init__(self, anchors: Sequence[str], groups: Mapping[str, Sequence[str]],
                 templates: Mapping[str, torch.Tensor], counts: Mapping[str, torch.Tensor],
                 banks: Mapping[str, torch.Tensor] | None = None) -> None:
        self.anchors = list(anchors)
        self.groups = {g: list(v) for g, v in groups.items()}
        self.templates = dict(templates)
        self.counts = dict(counts)
        self.banks = dict(banks or {})

    @classmethod
    def fit(cls, catalog: Catalog, items: Sequence[Any] | None, groups: Sequence[str], anchor: str = "category",
            size: int = 96, exemplars: int = 24) -> SilhouetteShift:
        """Mean garment mask per (``anchor`` value, group value) over ``items`` (the training ones),
        and up to ``exemplars`` masks of each for the bank."""
        from generators.models.silhouette import fit_exemplars, fit_silhouettes

        items = list(items if items is not None else catalog.items)
        anchors = sorted({it.labels.get(anchor) for it in items if it.labels.get(anchor)})
        if not anchors:
            raise ValueError(f"no training photo has a known {anchor!r} value to fit silhouettes per")
        rows = [it.labels for it in items]
        x = torch.from_numpy(np.stack([_photo(catalog, it, size) for it in items])).permute(0, 3, 1, 2).contiguous()
        a = torch.tensor([anchors.index(r[anchor]) if r.get(anchor) in anchors else -1 for r in rows])
        values, templates, counts, banks = {}, {}, {}, {}
        for g in groups:
            names = sorted({r[g] for r in rows if r.get(g)})
            if not names:
                raise ValueError(f"no training photo has a known {g!r} value to fit silhouettes on")
            v = torch.tensor([names.index(r[g]) if r.get(g) in names else -1 for r in rows])
            values[g] = names
            templates[g], counts[g] = fit_silhouettes(x, a, v, len(anchors), len(names))
            if exemplars and g in EXEMPLAR_GROUPS:
                banks[g] = fit_exemplars(x, a, v, len(anchors), len(names), exemplars)
        return cls(anchors, values, templates, counts, banks)

    def capabilities(self) -> dict[str, Any]:
        return {"model": self.name, "edit": {"groups": self.groups, "multi_group": True},
                "to_model": False, "full_resolution": True}

    def edit(self, images: Sequence[Image.Image], changes: Mapping[str, str], source_labels=None,
             strength: float = 1.0) -> list[Image.Image]:
        from generators.models.silhouette import hem_stretch, silhouette_shift

        unknown = set(changes) - set(self.groups)
        if unknown:
            raise ValueError(f"{self.name} edits {sorted(self.groups)}; got {sorted(unknown)}")
        out = []
        for im in images:
            x = _to_tensor(im)
            for g, v in changes.items():
                t = torch.tensor([self.groups[g].index(v)])
                if g in STRETCH_GROUPS:  # as the editors' step does
                    x = hem_stretch(x, self.templates[g], self.counts[g], t, strength)
                else:
                    x = silhouette_shift(x, self.templates[g], self.counts[g], t, strength, bank=self.banks.get(g))
            out.append(_to_image(x))
        return out


SHAPE_GROUPS = tuple(MaskEditOptions().silhouette_groups)  # the groups a silhouette says something about
STRETCH_GROUPS = tuple(MaskEditOptions().stretch_groups)  # of those, the ones whose hem is stretched
EXEMPLAR_GROUPS = tuple(MaskEditOptions().silhouette_exemplar_groups)  # and those grown from an exemplar bank


def non_learned_baselines(catalog: Catalog, items: Sequence[Any], edited: Sequence[str] | None = None,
                          color: str = "color", anchor: str = "category") -> dict[str, Any]:
    """The non-learned editors for the groups of ``edited`` (default: all) that ``catalog`` has,
    fitted on ``items`` (the training split), by name: both colour shifts for ``color``, the
    silhouette shift for the shape groups."""
    groups = [g for g in (edited if edited is not None else catalog.schema.names) if g in catalog.schema.groups]
    out: dict[str, Any] = {}
    if color in groups:
        out[LabColourShift.name] = LabColourShift.fit(catalog, items, color)
        out[PaletteShift.name] = PaletteShift.fit(catalog, items, color)
    shape = [g for g in SHAPE_GROUPS if g in groups]
    if shape and anchor in catalog.schema.groups:
        out[SilhouetteShift.name] = SilhouetteShift.fit(catalog, items, shape, anchor)
    return out
