"""Catalog -> training tensors, with a batch stream that resumes exactly.

Three kinds of training data, all built from a loaded :class:`catalog.Catalog`:

- :func:`attribute_data`: product photos with one label index per schema group (``-1`` for
  unknown), for StarGAN.
- :func:`paired_data`: product photo -> model photo pairs read from a pairs file (written by
  ``python -m generators.pairs``), for pix2pix.
- :func:`unpaired_data`: two image domains (e.g. unicolour vs striped products, or products vs
  model photos), for CycleGAN.

:class:`BatchStream` turns any of them into batches. Which rows form batch ``b`` and whether
they are flipped is a pure function of ``(seed, b)``, so a resumed run only needs the number
of batches consumed to continue exactly where it stopped, whatever workers prefetched.
Small catalogs are decoded once into a uint8 tensor (on the training device), so the model
never waits for JPEG decoding.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from catalog import Catalog, Schema
from catalog.images import square_on_white

PAIRS_FIELDS = ("id", "product_path", "model_path")


class DataError(ValueError):
    """Training data that cannot be used: names the file, line or field at fault."""


# --------------------------------------------------------------------------------------
# images and labels
# --------------------------------------------------------------------------------------


def to_square_rgb(im: Image.Image, size: int, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """RGB, padded to a square on white (product photos are on white) and resized."""
    return square_on_white(im, size, Image.BICUBIC, background)


def load_image_uint8(path: str | Path, size: int) -> torch.Tensor:
    """A file as a ``uint8`` tensor ``[3, size, size]``."""
    try:
        with Image.open(path) as im:
            im = to_square_rgb(im, size)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image: {exc}") from exc
    return pil_to_uint8(im)


def pil_to_uint8(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def uint8_to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 ``[0, 255]`` -> float ``[-1, 1]`` (the GANs' tanh range)."""
    return x.float().div_(127.5).sub_(1.0)


def float_to_uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round_().to(torch.uint8)


def label_indices(items: Sequence, schema: Schema) -> torch.Tensor:
    """``[N, G]`` class index per group, ``-1`` where the label is unknown."""
    out = torch.full((len(items), len(schema.names)), -1, dtype=torch.long)
    for i, it in enumerate(items):
        for j, g in enumerate(schema.names):
            v = it.labels.get(g)
            if v is not None:
                out[i, j] = schema.index(g, v)
    return out


def group_sizes(schema: Schema) -> list[int]:
    return [len(v) for v in schema.groups.values()]


def one_hot(labels: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Concatenated one-hot groups; an unknown (``-1``) group is all zeros ("unspecified")."""
    parts = []
    for j, n in enumerate(sizes):
        col = labels[:, j]
        oh = torch.zeros(labels.size(0), n, device=labels.device)
        known = col >= 0
        oh[known, col[known]] = 1.0
        parts.append(oh)
    return torch.cat(parts, dim=1)


# --------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------


@dataclass
class TrainData:
    """Image fields (e.g. ``image``; ``a``/``b``) as path lists, plus optional labels.

    ``paired``: all fields have the same length and row ``i`` of each belongs together.
    Unpaired fields are shuffled independently; an epoch is as long as the longest field.
    """

    fields: dict[str, list[Path]]
    image_size: int
    labels: torch.Tensor | None = None  # [N, G] rows of the first field (StarGAN)
    paired: bool = True
    ids: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, paths in self.fields.items():
            if not paths:
                raise DataError(f"training field {name!r} has no images")
        if self.paired and len({len(p) for p in self.fields.values()}) > 1:
            raise DataError("paired fields must have the same length")

    def __len__(self) -> int:
        return max(len(p) for p in self.fields.values())

    def epoch_rows(self, seed: int, epoch: int, min_len: int) -> torch.Tensor:
        """``[L, n_fields]`` row index of each field for every sample of ``epoch``."""
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        length = max(len(self), min_len)

        def perm_of(n: int) -> torch.Tensor:
            reps = [torch.randperm(n, generator=g) for _ in range(-(-length // n))]
            return torch.cat(reps)[:length]

        if self.paired:
            rows = perm_of(len(self))
            return rows.unsqueeze(1).expand(-1, len(self.fields)).clone()
        return torch.stack([perm_of(len(p)) for p in self.fields.values()], dim=1)


def attribute_data(cat: Catalog, schema: Schema, image_size: int, max_items: int | None = None) -> TrainData:
    """Product photos with label indices for the groups of ``schema`` (StarGAN)."""
    items = cat.items[:max_items] if max_items else cat.items
    if not items:
        raise DataError(f"catalog {cat.root} has no usable items")
    for g in schema.names:
        if g not in cat.schema.groups:
            raise DataError(f"group {g!r} is not in the catalog's schema; groups: {', '.join(cat.schema.names)}")
        missing = set(schema.values(g)) - set(cat.schema.values(g))
        if missing:
            raise DataError(f"group {g!r}: values {sorted(missing)} not in the catalog's schema")
    labels = label_indices(items, schema)
    known = (labels >= 0).any(dim=0)
    if not bool(known.any()):
        raise DataError(f"catalog {cat.root}: no item has a label in any of the groups {schema.names}")
    return TrainData(
        fields={"image": [cat.image_path(it) for it in items]},
        image_size=image_size, labels=labels, paired=True, ids={"image": [it.id for it in items]},
    )


@dataclass(frozen=True)
class Pair:
    id: str
    product_path: Path
    model_path: Path
    meta: dict = field(default_factory=dict, compare=False)


def read_pairs(path: str | Path, catalog_root: str | Path | None = None, check_files: bool = True) -> list[Pair]:
    """Read a pairs file (``.jsonl`` or ``.csv``; see docs/generators.md).

    Relative image paths are resolved against ``catalog_root``. Every error names the line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pairs file {path}: no such file")
    root = Path(catalog_root) if catalog_root is not None else path.parent
    text = path.read_text(encoding="utf-8-sig")
    records: list[tuple[int, dict]] = []
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = [f for f in PAIRS_FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"pairs file {path}: header lacks {missing}; needs {list(PAIRS_FIELDS)}")
        for rec in reader:
            records.append((reader.line_num, dict(rec)))
    elif path.suffix.lower() in (".jsonl", ".json"):
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"pairs file {path}, line {n}: not valid JSON: {exc}") from exc
            if not isinstance(rec, dict):
                raise DataError(f"pairs file {path}, line {n}: expected a JSON object")
            records.append((n, rec))
    else:
        raise DataError(f"pairs file {path}: extension must be .jsonl or .csv")
    pairs: list[Pair] = []
    seen: dict[str, int] = {}
    for n, rec in records:
        for f in PAIRS_FIELDS:
            if not str(rec.get(f) or "").strip():
                raise DataError(f"pairs file {path}, line {n}: field {f!r} is missing or empty")
        pid = str(rec["id"]).strip()
        if pid in seen:
            raise DataError(f"pairs file {path}, line {n}: id {pid!r} already on line {seen[pid]}")
        seen[pid] = n
        prod, model = (Path(str(rec[k]).strip()) for k in ("product_path", "model_path"))
        prod = prod if prod.is_absolute() else root / prod
        model = model if model.is_absolute() else root / model
        if check_files:
            for f, p in (("product_path", prod), ("model_path", model)):
                if not p.is_file():
                    raise DataError(f"pairs file {path}, line {n}: field {f!r}: {p} does not exist")
        meta = {k: v for k, v in rec.items() if k not in PAIRS_FIELDS}
        pairs.append(Pair(pid, prod, model, meta))
    if not pairs:
        raise DataError(f"pairs file {path}: no pairs")
    return pairs


def paired_data(pairs: Sequence[Pair], image_size: int, max_items: int | None = None,
                reverse: bool = False) -> TrainData:
    """product (``a``) -> model photo (``b``) pairs (pix2pix); ``reverse``: model photo -> product."""
    pairs = list(pairs)[:max_items] if max_items else list(pairs)
    src, dst = [p.product_path for p in pairs], [p.model_path for p in pairs]
    if reverse:
        src, dst = dst, src
    return TrainData(
        fields={"a": src, "b": dst},
        image_size=image_size, paired=True, ids={"a": [p.id for p in pairs], "b": [p.id for p in pairs]},
    )


@dataclass(frozen=True)
class Domain:
    """A CycleGAN image domain: product or model photos of the items matching ``where``."""

    kind: str  # "product" or "model"
    where: dict[str, str]

    def describe(self) -> str:
        cond = ",".join(f"{g}={v}" for g, v in self.where.items())
        return f"{self.kind}:{cond}" if cond else self.kind


def parse_domain(spec: str, schema: Schema) -> Domain:
    """``product``, ``product:pattern=stripes``, ``model``, ``model:category=dresses``."""
    kind, _, cond = spec.partition(":")
    kind = kind.strip()
    if kind not in ("product", "model"):
        raise DataError(f"domain {spec!r}: must start with 'product' or 'model' (e.g. product:pattern=stripes)")
    where: dict[str, str] = {}
    for part in filter(None, (c.strip() for c in cond.split(","))):
        g, eq, v = part.partition("=")
        if not eq:
            raise DataError(f"domain {spec!r}: condition {part!r} must be group=value")
        try:
            schema.check_value(g.strip(), v.strip())
        except ValueError as exc:
            raise DataError(f"domain {spec!r}: {exc}") from exc
        where[g.strip()] = v.strip()
    return Domain(kind, where)


def domain_paths(
    cat: Catalog, dom: Domain, pairs: Sequence[Pair] | None = None, max_items: int | None = None
) -> tuple[list[Path], list[str]]:
    """Image paths of a domain; model photos come from the pairs file when one is given."""
    items = [it for it in cat.items if all(it.labels.get(g) == v for g, v in dom.where.items())]
    items = items[:max_items] if max_items else items
    paths: list[Path] = []
    ids: list[str] = []
    if dom.kind == "product":
        for it in items:
            paths.append(cat.image_path(it))
            ids.append(it.id)
    elif pairs is not None:
        by_id = {p.id: p for p in pairs}
        for it in items:
            if it.id in by_id:
                paths.append(by_id[it.id].model_path)
                ids.append(it.id)
    else:
        for it in items:
            for p in cat.model_image_paths(it):
                paths.append(p)
                ids.append(it.id)
    if not paths:
        raise DataError(f"domain {dom.describe()!r} has no images in catalog {cat.root}")
    return paths, ids


def unpaired_data(
    cat: Catalog, dom_a: Domain, dom_b: Domain, image_size: int,
    pairs: Sequence[Pair] | None = None, max_items: int | None = None,
) -> TrainData:
    pa, ia = domain_paths(cat, dom_a, pairs, max_items)
    pb, ib = domain_paths(cat, dom_b, pairs, max_items)
    return TrainData(fields={"a": pa, "b": pb}, image_size=image_size, paired=False, ids={"a": ia, "b": ib})


# --------------------------------------------------------------------------------------
# the batch stream
# --------------------------------------------------------------------------------------


class _BatchPlan:
    """Rows and flips of batch number ``b``: a pure function of (seed, b)."""

    def __init__(self, data: TrainData, batch_size: int, seed: int, flip: bool) -> None:
        self.data, self.batch_size, self.seed, self.flip = data, batch_size, seed, flip
        self.per_epoch = max(len(data), batch_size) // batch_size
        self._epoch: tuple[int, torch.Tensor] | None = None

    def rows(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, off = divmod(b, self.per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, self.data.epoch_rows(self.seed, epoch, self.batch_size))
        rows = self._epoch[1][off * self.batch_size:(off + 1) * self.batch_size]
        if self.flip:
            g = torch.Generator().manual_seed(self.seed * 7_919 + b * 2 + 1)
            flips = torch.rand(self.batch_size, generator=g) < 0.5
        else:
            flips = torch.zeros(self.batch_size, dtype=torch.bool)
        return rows, flips


def _flip(x: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    if bool(flips.any()):
        x = x.clone()
        x[flips] = x[flips].flip(-1)
    return x


class _DecodeBatches(torch.utils.data.Dataset):
    """Decodes batch ``b`` from files; used by DataLoader workers when not cached."""

    def __init__(self, plan: _BatchPlan) -> None:
        self.plan = plan

    def __len__(self) -> int:  # effectively unbounded; the sampler decides
        return 2**62

    def __getitem__(self, b: int) -> dict[str, torch.Tensor]:
        rows, flips = self.plan.rows(b)
        data = self.plan.data
        out: dict[str, torch.Tensor] = {}
        for k, (name, paths) in enumerate(data.fields.items()):
            imgs = torch.stack([load_image_uint8(paths[int(r)], data.image_size) for r in rows[:, k]])
            out[name] = _flip(imgs, flips)
        if data.labels is not None:
            out["labels"] = data.labels[rows[:, 0]]
        return out


class BatchStream:
    """Endless, resumable batches of float images in ``[-1, 1]`` on ``device``.

    ``cache=True`` decodes every image once into a uint8 tensor kept on the device (when it
    fits ``cache_max_mb``); otherwise DataLoader workers decode ahead in pinned memory.
    """

    def __init__(
        self, data: TrainData, batch_size: int, seed: int, device: torch.device, *, flip: bool = True,
        cache: bool = True, cache_max_mb: int = 2048, num_workers: int = -1, pin_memory: bool = True,
        channels_last: bool = False, progress: bool = False,
    ) -> None:
        self.data = data
        self.device = device
        self.plan = _BatchPlan(data, batch_size, seed, flip)
        self.consumed = 0
        self.channels_last = channels_last
        self.pin_memory = pin_memory and device.type == "cuda"
        self.num_workers = min(4, os.cpu_count() or 1) if num_workers < 0 else num_workers
        n_images = sum(len(p) for p in data.fields.values())
        mb = n_images * 3 * data.image_size**2 / 2**20
        self.cached: dict[str, torch.Tensor] | None = None
        if cache and mb <= cache_max_mb:
            self.cached = self._decode_all(progress)
        self._iter: Iterator | None = None

    def _decode_all(self, progress: bool) -> dict[str, torch.Tensor]:
        from tqdm import tqdm

        out = {}
        for name, paths in self.data.fields.items():
            t = torch.empty(len(paths), 3, self.data.image_size, self.data.image_size, dtype=torch.uint8)
            for i, p in enumerate(tqdm(paths, desc=f"decode {name}", disable=not progress, leave=False)):
                t[i] = load_image_uint8(p, self.data.image_size)
            out[name] = t.to(self.device)
        return out

    # --- resumable position ---------------------------------------------------------------
    def state_dict(self) -> dict[str, int]:
        return {"batches": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.close()
        self.consumed = int(state["batches"])

    @property
    def epoch(self) -> float:
        return self.consumed / self.plan.per_epoch

    # --- batches --------------------------------------------------------------------------
    def next(self) -> dict[str, torch.Tensor]:
        if self.cached is not None:
            raw = self._cached_batch(self.consumed)
        else:
            if self._iter is None:
                self._iter = iter(self._loader(self.consumed))
            raw = next(self._iter)
        self.consumed += 1
        return self._to_device(raw)

    def _cached_batch(self, b: int) -> dict[str, torch.Tensor]:
        rows, flips = self.plan.rows(b)
        out = {}
        flips_d = flips.to(self.device)
        for k, (name, t) in enumerate(self.cached.items()):
            out[name] = _flip(t[rows[:, k].to(self.device)], flips_d)
        if self.data.labels is not None:
            out["labels"] = self.data.labels[rows[:, 0]]
        return out

    def _loader(self, start: int) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            _DecodeBatches(self.plan), batch_size=None, sampler=range(start, 2**62),
            num_workers=self.num_workers, pin_memory=self.pin_memory,
            prefetch_factor=4 if self.num_workers > 0 else None,
            persistent_workers=False,
        )

    def _to_device(self, raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        for k, v in raw.items():
            v = v.to(self.device, non_blocking=True)
            if v.dtype == torch.uint8:
                v = uint8_to_float(v).contiguous(memory_format=fmt)
            out[k] = v
        return out

    def all_images(self, name: str) -> torch.Tensor:
        """Every image of field ``name`` as uint8 ``[N, 3, S, S]`` (from the cache when there is one)."""
        if self.cached is not None:
            return self.cached[name]
        return torch.stack([load_image_uint8(p, self.data.image_size) for p in self.data.fields[name]])

    def fixed_batch(self, n: int) -> dict[str, torch.Tensor]:
        """The first ``n`` rows, unflipped: the same sample-grid inputs for the whole run."""
        n = min(n, len(self.data))
        out: dict[str, torch.Tensor] = {}
        for name, paths in self.data.fields.items():
            idx = [i % len(paths) for i in range(n)]
            if self.cached is not None:
                out[name] = self.cached[name][torch.tensor(idx, device=self.device)]
            else:
                out[name] = torch.stack([load_image_uint8(paths[i], self.data.image_size) for i in idx])
        if self.data.labels is not None:
            out["labels"] = self.data.labels[:n]
        return self._to_device(out)

    def close(self) -> None:
        self._iter = None
