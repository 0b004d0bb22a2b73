"""The inference API the retrieval service calls: load any checkpoint, edit images.

    editor = load_editor("generators/demo_checkpoints/stargan_demo64.pt", device="auto")
    editor.capabilities()   # {"model": "stargan", "edit": {"groups": {...}}, "to_model": False, ...}
    out = editor.edit(images, {"color": "blue", "sleeve_length": "short"})
    worn = load_editor("generators/demo_checkpoints/pix2pix_demo64.pt").to_model(images)

Images are a ``list[PIL.Image]`` (any size and mode; padded to a square on white and resized
to the model's resolution) or a float tensor ``[B, 3, H, W]`` in ``[-1, 1]``. The result has
the same type, at the model's resolution. Work is batched, in eval mode, without gradients.

StarGAN needs each input's own labels for the groups an edit does not name (they must stay as
they are). The checkpoint's discriminator classifier reads them from the image, so only the
image is needed; callers that know the labels (a catalog item) may pass ``source_labels``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from catalog import Schema
from generators.checkpoint import load_checkpoint
from generators.datasets import (
    float_to_uint8,
    group_sizes,
    one_hot,
    pil_to_uint8,
    to_square_rgb,
    uint8_to_float,
)
from generators.options import Config

INFERENCE_NETS: dict[str, tuple[str, ...]] = {
    "stargan": ("G", "D"),
    "pix2pix": ("G",),
    "cyclegan": ("G_A", "G_B"),
}

ImagesIn = Sequence[Image.Image] | Image.Image | torch.Tensor


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


def _build_nets(model: str, cfg: Config, schema: Schema) -> dict[str, torch.nn.Module]:
    if model == "stargan":
        from generators.stargan import build_stargan_nets

        g, d = build_stargan_nets(cfg, schema)
        return {"G": g, "D": d}
    if model == "pix2pix":
        from generators.pix2pix import build_pix2pix_generator

        return {"G": build_pix2pix_generator(cfg)}
    if model == "cyclegan":
        from generators.cyclegan import build_cyclegan_generator

        return {"G_A": build_cyclegan_generator(cfg), "G_B": build_cyclegan_generator(cfg)}
    raise EditError(f"checkpoint model {model!r} is not one of {', '.join(INFERENCE_NETS)}")


class Editor:
    """A loaded generator (+ StarGAN's classifier) ready to edit batches of images."""

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
        self.nets = _build_nets(self.model, self.cfg, self.schema)
        for name, net in self.nets.items():
            if name not in ckpt["nets"]:
                raise EditError(f"{source}: checkpoint lacks network {name!r}")
            net.load_state_dict(ckpt["nets"][name])  # fp16 weights are cast to fp32 here
            net.to(device).eval()
            net.requires_grad_(False)
        self.sizes = group_sizes(self.schema)

    # --- what it can do ------------------------------------------------------------------------
    def _cycle_edits(self) -> list[tuple[dict[str, str], str]]:
        """CycleGAN: (the labels an edit must ask for, the generator that does it)."""
        a, b = self.meta.get("domain_a", {}), self.meta.get("domain_b", {})
        out = []
        if a.get("kind") == b.get("kind") == "product":
            if b.get("where"):
                out.append((dict(b["where"]), "G_A"))
            if a.get("where"):
                out.append((dict(a["where"]), "G_B"))
        return out

    def _to_model_net(self) -> str | None:
        if self.model == "pix2pix":
            return "G"
        if self.model == "cyclegan":
            a, b = self.meta.get("domain_a", {}), self.meta.get("domain_b", {})
            if a.get("kind") == "product" and b.get("kind") == "model":
                return "G_A"
            if a.get("kind") == "model" and b.get("kind") == "product":
                return "G_B"
        return None

    def capabilities(self) -> dict[str, Any]:
        edit: dict[str, Any] | None = None
        if self.model == "stargan":
            edit = {"groups": {g: list(v) for g, v in self.schema.groups.items()}, "multi_group": True,
                    "unnamed_groups": "kept (read from the image by the classifier)"}
        elif self.model == "cyclegan" and self._cycle_edits():
            groups: dict[str, list[str]] = {}
            for where, _ in self._cycle_edits():
                for g, v in where.items():
                    groups.setdefault(g, []).append(v)
            edit = {"groups": groups, "multi_group": False,
                    "edits": [where for where, _ in self._cycle_edits()]}
        return {
            "model": self.model, "checkpoint": self.source, "step": self.step,
            "image_size": self.image_size, "device": str(self.device),
            "edit": edit, "to_model": self._to_model_net() is not None,
        }

    # --- input / output --------------------------------------------------------------------------
    def _to_tensor(self, images: ImagesIn) -> tuple[torch.Tensor, str, torch.device | None]:
        if isinstance(images, torch.Tensor):
            x = images
            if x.dim() != 4 or x.size(1) != 3:
                raise EditError(f"images tensor must be [B, 3, H, W]; got shape {tuple(x.shape)}")
            if not x.is_floating_point():
                raise EditError(f"images tensor must be float in [-1, 1]; got dtype {x.dtype}")
            if x.numel() and (float(x.min()) < -1.01 or float(x.max()) > 1.01):
                raise EditError(f"images tensor values must be in [-1, 1]; got [{float(x.min()):.3f}, {float(x.max()):.3f}]")
            src_device = x.device
            x = x.to(self.device, torch.float32)
            if x.shape[-2:] != (self.image_size, self.image_size):
                x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                                  align_corners=False, antialias=True).clamp_(-1, 1)
            return x, "tensor", src_device
        single = isinstance(images, Image.Image)
        seq = [images] if single else list(images)
        for i, im in enumerate(seq):
            if not isinstance(im, Image.Image):
                raise EditError(f"images[{i}] is a {type(im).__name__}; expected PIL.Image or a float tensor")
        if not seq:
            return torch.empty(0, 3, self.image_size, self.image_size, device=self.device), "list", None
        batch = torch.stack([pil_to_uint8(to_square_rgb(im, self.image_size)) for im in seq]).to(self.device)
        return uint8_to_float(batch), "single" if single else "list", None

    @staticmethod
    def _from_tensor(y: torch.Tensor, kind: str, src_device: torch.device | None):
        if kind == "tensor":
            return y.to(src_device)
        arr = float_to_uint8(y).permute(0, 2, 3, 1).cpu().numpy()
        out = [Image.fromarray(a) for a in arr]
        return out[0] if kind == "single" else out

    def _run(self, net: str, x: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        outs = []
        with torch.inference_mode():
            for i in range(0, x.size(0), self.batch_size):
                args = [t[i:i + self.batch_size] for t in extra]
                outs.append(self.nets[net](x[i:i + self.batch_size], *args).float())
        return torch.cat(outs) if outs else x

    # --- StarGAN ---------------------------------------------------------------------------------
    def _check_changes(self, changes: Mapping[str, str]) -> None:
        if not isinstance(changes, Mapping) or not changes:
            raise EditError("edit needs at least one {group: value}; "
                            f"groups: {', '.join(self.capabilities()['edit']['groups'])}")
        groups = self.capabilities()["edit"]["groups"]
        for g, v in changes.items():
            if g not in groups:
                raise EditError(f"unknown attribute group {g!r} for this {self.model} checkpoint; "
                                f"it edits: {', '.join(groups)}")
            if v not in groups[g]:
                raise EditError(f"value {v!r} is not allowed for group {g!r}; allowed: {', '.join(groups[g])}")

    def predict_labels(self, images: ImagesIn) -> list[dict[str, str]]:
        """StarGAN only: each image's value per group, as the checkpoint's classifier reads it."""
        if self.model != "stargan":
            raise EditError(f"predict_labels needs a stargan checkpoint; this one is {self.model}")
        x, _, _ = self._to_tensor(images)
        idx = self._predict_idx(x)
        names = self.schema.names
        return [{g: self.schema.groups[g][int(k)] for g, k in zip(names, row, strict=True)} for row in idx]

    def _predict_idx(self, x: torch.Tensor) -> torch.Tensor:
        from generators.stargan import predict_labels

        logits = []
        with torch.inference_mode():
            for i in range(0, x.size(0), self.batch_size):
                logits.append(self.nets["D"].classify(x[i:i + self.batch_size]).float())
        if not logits:
            return torch.empty(0, len(self.sizes), dtype=torch.long)
        return predict_labels(torch.cat(logits), self.sizes).cpu()

    def edit(
        self, images: ImagesIn, changes: Mapping[str, str],
        source_labels: Sequence[Mapping[str, str | None]] | None = None,
    ):
        """Change the named groups to the given values; all other groups stay as they are."""
        caps = self.capabilities()
        if caps["edit"] is None:
            what = "it only supports to_model (product -> model photo)" if caps["to_model"] else "it supports no edits"
            raise EditError(f"this {self.model} checkpoint edits no attributes; {what}")
        self._check_changes(changes)
        x, kind, src_device = self._to_tensor(images)
        if x.size(0) == 0:
            return self._from_tensor(x, kind, src_device)
        if self.model == "cyclegan":
            for where, net in self._cycle_edits():
                if dict(changes) == where:
                    return self._from_tensor(self._run(net, x), kind, src_device)
            raise EditError(f"this cyclegan checkpoint does exactly these edits: "
                            f"{[w for w, _ in self._cycle_edits()]}; got {dict(changes)}")
        labels = self._predict_idx(x)
        if source_labels is not None:
            if len(source_labels) != x.size(0):
                raise EditError(f"source_labels has {len(source_labels)} entries for {x.size(0)} images")
            for i, known in enumerate(source_labels):
                for g, v in (known or {}).items():
                    if v is None or g not in self.schema.groups:
                        continue
                    if v not in self.schema.groups[g]:
                        raise EditError(f"source_labels[{i}][{g!r}] = {v!r} is not allowed; "
                                        f"allowed: {', '.join(self.schema.groups[g])}")
                    labels[i, self.schema.names.index(g)] = self.schema.index(g, v)
        for g, v in changes.items():
            labels[:, self.schema.names.index(g)] = self.schema.index(g, v)
        c = one_hot(labels, self.sizes).to(self.device)
        return self._from_tensor(self._run("G", x, c), kind, src_device)

    def to_model(self, images: ImagesIn):
        """Product photo -> photo of a person wearing it (pix2pix, or a product<->model CycleGAN)."""
        net = self._to_model_net()
        if net is None:
            raise EditError(f"this {self.model} checkpoint cannot do to_model (product -> model photo); "
                            "load a pix2pix checkpoint or a CycleGAN trained on product <-> model domains")
        x, kind, src_device = self._to_tensor(images)
        if x.size(0) == 0:
            return self._from_tensor(x, kind, src_device)
        return self._from_tensor(self._run(net, x), kind, src_device)


def load_editor(checkpoint_path: str | Path, device: str | torch.device = "auto", batch_size: int = 16) -> Editor:
    """Any checkpoint of this project (training or inference-only, fp32 or fp16) -> Editor."""
    dev = resolve_device(device)
    ckpt = load_checkpoint(checkpoint_path, map_location="cpu")
    if ckpt["model"] not in INFERENCE_NETS:
        raise EditError(f"{checkpoint_path}: model {ckpt['model']!r} is not one of {', '.join(INFERENCE_NETS)}")
    return Editor(ckpt, dev, batch_size=batch_size, source=str(checkpoint_path))
