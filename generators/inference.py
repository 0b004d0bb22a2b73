"""The inference API the retrieval service calls: load any checkpoint, edit images.

    editor = load_editor("generators/demo_checkpoints/maskedit_demo.pt", device="auto")  # or a run folder
    editor.capabilities()   # {"model": "maskedit", "edit": {"groups": {...}}, "to_model": False, ...}
    out = editor.edit(images, {"color": "blue", "sleeve_length": "short"})
    worn = load_editor("generators/demo_checkpoints/cutout_demo.pt").to_model(images)  # and .to_product(photos)

Images are a ``list[PIL.Image]`` (any size and mode) or a float tensor ``[B, 3, H, W]`` in
``[-1, 1]``; the result has the same type. Full-resolution models (maskedit) return each
image at its own size: a photo is padded to a square on white, edited, and cropped back.
The other models work at their training resolution and return images of that size. Work is
batched, in eval mode, without gradients.

The model-specific part lives in each model's module (:mod:`generators.models`); this module
checks requests, converts images and batches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from catalog import Schema
from catalog.images import flatten_on_white, pad_to_square
from generators.checkpoint import load_checkpoint
from generators.datasets import float_to_uint8, pil_to_uint8, to_square_rgb, uint8_to_float
from generators.models import REGISTRY, UnknownModel, inference_class
from generators.options import Config

ImagesIn = Sequence[Image.Image] | Image.Image | torch.Tensor
MAX_SIDE = 1024  # full-resolution models: larger photos are scaled down to this side first


class EditError(ValueError):
    """An edit this checkpoint cannot do; the message names what it can do."""


def resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EditError(f"device {device!r}: CUDA is not available on this machine")
    return dev


@dataclass
class _Batch:
    """Images as model input, and how to give them back in the caller's form."""

    x: list[torch.Tensor]  # one [1, 3, S, S] per image (full resolution) or one [B, 3, S, S] tensor
    kind: str  # "tensor", "list" or "single"
    sizes: list[tuple[int, int]]  # original (w, h) per PIL image, to crop the padding off again
    device: torch.device | None = None


class Editor:
    """A loaded generator ready to edit batches of images."""

    def __init__(self, ckpt: Mapping[str, Any], device: torch.device, batch_size: int = 16, source: str = "") -> None:
        self.model: str = ckpt["model"]
        self.source = source
        self.step = ckpt.get("step")
        self.cfg = Config.from_dict(ckpt["config"])
        self.schema = Schema.from_dict(ckpt["schema"])
        self.meta: dict[str, Any] = dict(ckpt.get("meta") or {})
        self.image_size = self.cfg.train.image_size
        self.device = device
        self.batch_size = batch_size
        try:
            self.impl = inference_class(self.model)(ckpt, self.cfg, self.schema, device)
        except KeyError as exc:
            raise EditError(f"{source}: checkpoint lacks network {exc.args[0]!r}") from None
        except RuntimeError as exc:
            raise EditError(f"{source}: weights do not fit the {self.model} model: {str(exc)[:300]}") from None
        self.full_resolution = bool(getattr(self.impl, "full_resolution", False))

    # --- what it can do ------------------------------------------------------------------------
    def _translations(self) -> dict[str, str]:
        fn = getattr(self.impl, "translations", None)
        return fn() if fn else {}

    def capabilities(self) -> dict[str, Any]:
        edit = self.impl.capabilities() if hasattr(self.impl, "capabilities") else None
        tr = self._translations()
        return {
            "model": self.model, "checkpoint": self.source, "step": self.step,
            "image_size": self.image_size, "full_resolution": self.full_resolution, "device": str(self.device),
            "edit": edit, "to_model": "to_model" in tr, "to_product": "to_product" in tr,
            # several diverse edits per request (edit_variants), and a strength that is a real
            # control of the model (maskedit, fader, masked munit) rather than a cross-fade
            "multi_modal": bool(edit and edit.get("multi_modal")), "continuous": bool(edit and edit.get("continuous")),
        }

    # --- input / output --------------------------------------------------------------------------
    def _to_batch(self, images: ImagesIn) -> _Batch:
        if isinstance(images, torch.Tensor):
            x = images
            if x.dim() != 4 or x.size(1) != 3:
                raise EditError(f"images tensor must be [B, 3, H, W]; got shape {tuple(x.shape)}")
            if not x.is_floating_point():
                raise EditError(f"images tensor must be float in [-1, 1]; got dtype {x.dtype}")
            if x.numel() and (float(x.min()) < -1.01 or float(x.max()) > 1.01):
                raise EditError(f"images tensor values must be in [-1, 1]; got [{float(x.min()):.3f}, {float(x.max()):.3f}]")
            src = x.device
            x = x.to(self.device, torch.float32)
            if not self.full_resolution and x.shape[-2:] != (self.image_size, self.image_size):
                x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                                  align_corners=False, antialias=True).clamp_(-1, 1)
            return _Batch([x], "tensor", [], src)
        single = isinstance(images, Image.Image)
        seq = [images] if single else list(images)
        for i, im in enumerate(seq):
            if not isinstance(im, Image.Image):
                raise EditError(f"images[{i}] is a {type(im).__name__}; expected PIL.Image or a float tensor")
        kind = "single" if single else "list"
        if not self.full_resolution:
            if not seq:
                return _Batch([torch.empty(0, 3, self.image_size, self.image_size, device=self.device)], kind, [])
            batch = torch.stack([pil_to_uint8(to_square_rgb(im, self.image_size)) for im in seq]).to(self.device)
            return _Batch([uint8_to_float(batch)], kind, [])
        xs, sizes = [], []
        for im in seq:
            im = flatten_on_white(im)
            if max(im.size) > MAX_SIDE:
                scale = MAX_SIDE / max(im.size)
                im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BICUBIC)
            sizes.append(im.size)
            sq = pad_to_square(im)
            if sq.width < self.image_size:  # tiny photos: work at least at the training size
                sq = sq.resize((self.image_size, self.image_size), Image.BICUBIC)
            xs.append(uint8_to_float(pil_to_uint8(sq)[None].to(self.device)))
        return _Batch(xs, kind, sizes)

    def _from_batch(self, ys: list[torch.Tensor], batch: _Batch, crop: bool = True):
        """``ys`` in the caller's form; ``crop=False`` keeps full-resolution outputs square (a
        translation to a product shot is not in the worn photo's frame)."""
        if batch.kind == "tensor":
            return torch.cat(ys).to(batch.device) if ys else batch.x[0].to(batch.device)
        out: list[Image.Image] = []
        for y in ys:
            arr = float_to_uint8(y).permute(0, 2, 3, 1).cpu().numpy()
            out += [Image.fromarray(a) for a in arr]
        if self.full_resolution and batch.sizes and crop:
            out = [_crop_back(im, size) for im, size in zip(out, batch.sizes, strict=True)]
        return out[0] if batch.kind == "single" else out

    def _run(self, fn, batch: _Batch, *per_image: Sequence[Any]) -> list[torch.Tensor]:
        """``fn(x_chunk, *chunks)`` over the batch: chunks of ``batch_size``, or one image at a time
        at full resolution (photos of different sizes do not stack)."""
        outs = []
        with torch.inference_mode():
            if len(batch.x) == 1 and batch.kind == "tensor" or not self.full_resolution:
                x = batch.x[0]
                for i in range(0, x.size(0), self.batch_size):
                    args = [a[i:i + self.batch_size] if a is not None else None for a in per_image]
                    outs.append(fn(x[i:i + self.batch_size], *args).float())
                return outs
            # group equal sizes, so a catalog of 256 px photos still runs in batches
            order: dict[tuple[int, ...], list[int]] = {}
            for i, t in enumerate(batch.x):
                order.setdefault(tuple(t.shape), []).append(i)
            results: list[torch.Tensor | None] = [None] * len(batch.x)
            for idx in order.values():
                for a in range(0, len(idx), self.batch_size):
                    part = idx[a:a + self.batch_size]
                    x = torch.cat([batch.x[i] for i in part])
                    args = [a_[part] if a_ is not None else None for a_ in per_image]
                    y = fn(x, *args).float()
                    rows = y.size(0) // len(part)  # 1, or n for edit_variants
                    for k, i in enumerate(part):
                        results[i] = y[k * rows:(k + 1) * rows]
            return [r for r in results if r is not None]

    # --- edits -------------------------------------------------------------------------------------
    def _check_changes(self, changes: Mapping[str, str], edit: dict) -> None:
        groups = edit["groups"]
        if not isinstance(changes, Mapping) or not changes:
            raise EditError(f"edit needs at least one {{group: value}}; groups: {', '.join(groups)}")
        for g, v in changes.items():
            if g not in groups:
                raise EditError(f"unknown attribute group {g!r} for this {self.model} checkpoint; "
                                f"it edits: {', '.join(groups)}")
            if v not in groups[g]:
                raise EditError(f"value {v!r} is not allowed for group {g!r}; allowed: {', '.join(groups[g])}")
        fixed = edit.get("edits")
        if fixed and dict(changes) not in fixed:
            raise EditError(f"this {self.model} checkpoint does exactly these edits: {fixed}; got {dict(changes)}")

    def _label_tensor(self, source_labels: Sequence[Mapping[str, str | None]], n: int) -> torch.Tensor:
        if len(source_labels) != n:
            raise EditError(f"source_labels has {len(source_labels)} entries for {n} images")
        out = torch.full((n, len(self.schema.names)), -1, dtype=torch.long)
        for i, known in enumerate(source_labels):
            for g, v in (known or {}).items():
                if v is None or g not in self.schema.groups:
                    continue
                if v not in self.schema.groups[g]:
                    raise EditError(f"source_labels[{i}][{g!r}] = {v!r} is not allowed; "
                                    f"allowed: {', '.join(self.schema.groups[g])}")
                out[i, self.schema.names.index(g)] = self.schema.index(g, v)
        return out

    def _check_edit(self, changes: Mapping[str, str], strength: float) -> dict[str, Any]:
        caps = self.capabilities()
        if caps["edit"] is None:
            what = "it only translates product <-> model photos" if caps["to_model"] or caps["to_product"] else "it supports no edits"
            raise EditError(f"this {self.model} checkpoint edits no attributes; {what}")
        self._check_changes(changes, caps["edit"])
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= float(strength) <= 1.0:
            raise EditError(f"strength must be a number in [0, 1]; got {strength!r}")
        return caps

    def edit(self, images: ImagesIn, changes: Mapping[str, str],
             source_labels: Sequence[Mapping[str, str | None]] | None = None, strength: float = 1.0):
        """Change the named groups to the given values; every other group stays as it is.

        ``strength`` in ``[0, 1]`` scales the change (0 returns the input): natively for the
        continuous models (fader slides its condition, maskedit and munit scale their masked
        change), as a blend of input and output for the others. ``source_labels`` (the known
        labels of catalog items) help editors that need the input's labels (StarGAN, fader);
        maskedit ignores them.
        """
        self._check_edit(changes, strength)
        batch = self._to_batch(images)
        n = sum(t.size(0) for t in batch.x)
        if n == 0:
            return self._from_batch([], batch)
        labels = self._label_tensor(source_labels, n) if source_labels is not None else None
        # per-image label rows must follow the image order of _run: it receives them by index
        ch = dict(changes)
        if labels is None:
            ys = self._run(lambda x: self.impl.edit(x, ch, strength=float(strength)), batch)
        else:
            ys = self._run(lambda x, lab: self.impl.edit(x, ch, source_labels=lab, strength=float(strength)),
                           batch, labels)
        return self._from_batch(ys, batch)

    def edit_variants(self, images: ImagesIn, changes: Mapping[str, str], n: int, strength: float = 1.0,
                      source_labels: Sequence[Mapping[str, str | None]] | None = None):
        """``n`` diverse answers to one edit (a multi-modal checkpoint, e.g. munit).

        Returns, per image, a list of ``n`` images (a tensor ``[B, 3, H, W]`` gives
        ``[B, n, 3, H, W]``; one PIL image gives one list). Variant 1 is what :meth:`edit`
        returns; the same request always gives the same variants.
        """
        caps = self._check_edit(changes, strength)
        if not caps["multi_modal"]:
            raise EditError(f"this {self.model} checkpoint is not multi-modal: it makes one image per edit; "
                            "load a munit checkpoint for variants")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise EditError(f"variants must be an integer >= 1; got {n!r}")
        batch = self._to_batch(images)
        total = sum(t.size(0) for t in batch.x)
        if total == 0:
            x = batch.x[0]
            return x.new_zeros(0, n, *x.shape[1:]).to(batch.device) if batch.kind == "tensor" else []
        labels = self._label_tensor(source_labels, total) if source_labels is not None else None
        ch = dict(changes)

        def run(x: torch.Tensor, lab: torch.Tensor | None = None) -> torch.Tensor:
            y = self.impl.edit_variants(x, ch, n, strength=float(strength), source_labels=lab)
            return y.flatten(0, 1)  # [B * n, 3, H, W]: each image's variants next to each other

        ys = self._run(run, batch) if labels is None else self._run(run, batch, labels)
        if batch.kind == "tensor":
            out = torch.cat(ys).to(batch.device)
            return out.view(-1, n, *out.shape[1:])
        flat = self._from_batch(ys, _Batch(batch.x, "list", [s for s in batch.sizes for _ in range(n)]))
        grouped = [flat[i * n:(i + 1) * n] for i in range(len(flat) // n)]
        return grouped[0] if batch.kind == "single" else grouped

    def predict_labels(self, images: ImagesIn) -> list[dict[str, str]]:
        """Each image's value per group, as the checkpoint's own classifier reads it."""
        if not hasattr(self.impl, "predict_labels"):
            raise EditError(f"predict_labels needs an attribute editor; this checkpoint is {self.model}")
        batch = self._to_batch(images)
        if not self.full_resolution:
            idx = torch.cat(self._run(lambda x: self.impl.predict_labels(x).float(), batch)).long() \
                if batch.x[0].size(0) else torch.empty(0, len(self.schema.names), dtype=torch.long)
        else:
            idx = torch.cat([self.impl.predict_labels(x) for x in batch.x]) if batch.x else \
                torch.empty(0, len(self.schema.names), dtype=torch.long)
        names = self.schema.names
        return [{g: self.schema.groups[g][int(k)] for g, k in zip(names, row, strict=True)} for row in idx]

    def _translate(self, images: ImagesIn, direction: str, what: str):
        tr = self._translations()
        if direction not in tr:
            raise EditError(f"this {self.model} checkpoint cannot do {direction} ({what}); "
                            f"it does: {', '.join(tr) or 'attribute edits only'}")
        batch = self._to_batch(images)
        if sum(t.size(0) for t in batch.x) == 0:
            return self._from_batch([], batch)
        return self._from_batch(self._run(lambda x: self.impl.translate(tr[direction], x), batch), batch,
                                crop=not getattr(self.impl, "square_output", False))

    def to_model(self, images: ImagesIn):
        """Product photo -> photo of a person wearing it."""
        return self._translate(images, "to_model", "product -> model photo")

    def to_product(self, images: ImagesIn):
        """Photo of a person wearing a garment -> product photo on white."""
        return self._translate(images, "to_product", "model -> product photo")


def _crop_back(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Undo :func:`pad_to_square` (and any resize of the square) for an image of ``size``."""
    w, h = size
    side = max(w, h)
    if im.size != (side, side):
        im = im.resize((side, side), Image.BICUBIC)
    left, top = (side - w) // 2, (side - h) // 2
    return im.crop((left, top, left + w, top + h)) if (w, h) != (side, side) else im


def load_editor(checkpoint_path: str | Path, device: str | torch.device = "auto", batch_size: int = 16) -> Editor:
    """Any checkpoint of this project or a run folder (its latest checkpoint) -> Editor."""
    dev = resolve_device(device)
    ckpt = load_checkpoint(checkpoint_path, map_location="cpu")
    if ckpt["model"] not in REGISTRY:
        raise EditError(f"{checkpoint_path}: model {ckpt['model']!r} is not one of {', '.join(REGISTRY)}")
    try:
        return Editor(ckpt, dev, batch_size=batch_size, source=str(checkpoint_path))
    except UnknownModel as exc:
        raise EditError(f"{checkpoint_path}: {exc}") from None
