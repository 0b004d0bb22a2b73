"""The retrieval pipeline, free of gRPC: decode -> modify (generators) -> encode -> search -> metadata.

The gRPC server (``retrieval.server``) is a thin layer over :class:`Pipeline`; the benchmarks
call the same object in-process to measure what the service adds.

Threads: all torch work runs on one model thread (torch uses its own intra-op threads, and
two forwards at once on a small CPU only fight over cores); image decoding, FAISS and SQLite
run on a small I/O pool. Nothing heavy runs on the event loop. A request that is alone in the
pipeline runs whole (decode, models, FAISS, metadata) in one visit to the model thread: with
nobody to overlap with or batch with, every hand-over between threads is pure latency.

Index swaps: a search takes the current :class:`IndexStore` reference once and uses it to
the end, and admin changes build a new store object and swap the reference, so an
in-flight search never sees a half-changed index.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import struct
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from catalog import Schema, UnsafePathError, open_inside
from catalog.images import DEFAULT_LIMITS, ImageLimits, ImageSizeError, flatten_on_white, open_bounded
from retrieval.batching import KeyedBatcher, MicroBatcher
from retrieval.config import ServerConfig

log = logging.getLogger(__name__)


# --- errors the server maps to status codes -----------------------------------------------
class RetrievalError(Exception):
    """Base of the errors whose message is safe to show to a client."""


class InvalidArgument(RetrievalError):
    pass


class NotFound(RetrievalError):
    pass


class Aborted(RetrievalError):
    """A change that could not be committed now (another writer holds the index); retry later."""


class FailedPrecondition(RetrievalError):
    """The request is well-formed but the state it names does not allow it (e.g. a catalog that
    would lose more rows than allowed, or an index folder to reload that is damaged)."""


class ModelFailure(RetrievalError):
    """A generator or the encoder failed; the client sees only this generic message."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"the {stage} model failed on this request; the error is in the server log")
        self.stage = stage


# --- request and result types -------------------------------------------------------------
@dataclass(frozen=True)
class AttributeEdit:
    group: str
    value: str
    strength: float = 1.0  # 0..1: how far to go (0 returns the query unchanged)


@dataclass(frozen=True)
class ToModel:
    """Product photo -> photo of the product worn by a model."""


@dataclass(frozen=True)
class ToProduct:
    """Photo of a person wearing a garment -> product photo of it on white."""


Modification = AttributeEdit | ToModel | ToProduct


@dataclass
class SearchQuery:
    image: bytes | None = None
    item_id: str | None = None
    modifications: list[Modification] = field(default_factory=list)
    top_k: int = 0
    filters: dict[str, list[str]] = field(default_factory=dict)
    return_modified_image: bool = False
    include_query_item: bool = False
    variants: int = 0  # diverse edits from a multi-modal generator, searched and fused (0 or 1: one)
    views: list[str] = field(default_factory=list)  # empty: product, or model after product_to_model


@dataclass
class SearchHit:
    id: str
    score: float
    item: dict[str, Any]
    view: str = "product"  # which photo of the item matched best, and its catalog-relative path
    path: str = ""


@dataclass
class SearchResult:
    hits: list[SearchHit]
    modified_png: bytes | None  # the (first) modified image
    timings: list[tuple[str, float]]
    index_version: str
    modified_pngs: list[bytes] = field(default_factory=list)  # every variant, when there are several


@dataclass
class Timer:
    stages: list[tuple[str, float]] = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.stages.append((stage, (now - since) * 1000.0))
        return now

    def finish(self) -> list[tuple[str, float]]:
        return [*self.stages, ("total", (time.perf_counter() - self.t0) * 1000.0)]


# --- client values in messages ---------------------------------------------------------------
MAX_SHOWN = 64  # characters of a client-supplied value an error message repeats
MAX_FILTER_VALUES = 1000  # values per filter key


def shown(value: str, limit: int = MAX_SHOWN) -> str:
    """A client-supplied value for an error message: ``repr``, cut to ``limit`` characters.

    A status message travels in a header; echoing a 1 MB id whole turned every such error
    into RESOURCE_EXHAUSTED instead of the error it was.
    """
    value = str(value)
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


# --- images -------------------------------------------------------------------------------
def decode_image(data: bytes, limits: ImageLimits) -> Image.Image:
    """Bytes -> RGB image, refusing empty, undecodable and oversized images.

    Pixel count, longest side and aspect ratio are checked from the header before any pixel
    is decoded (:class:`catalog.images.ImageLimits`), so a small file that would expand to
    gigabytes (a bomb), or a 100000x1 strip that padding to a square would blow up, is refused
    at no cost. What passes is decoded by :func:`catalog.images.open_bounded`: scaled down to
    the working size before any conversion, high bit depths (16-bit grey) to 8 bits,
    transparency on white.
    """
    if not data:
        raise InvalidArgument("query image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return open_bounded(io.BytesIO(data), limits)
    except ImageSizeError as exc:
        raise InvalidArgument(f"query {exc}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidArgument(f"query image is too large to decode safely: {exc}") from None
    except UnidentifiedImageError:
        raise InvalidArgument(
            f"query image ({len(data)} bytes) is not a decodable image; send JPEG, PNG, WebP, GIF or BMP bytes"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, ZeroDivisionError) as exc:
        raise InvalidArgument(f"query image ({len(data)} bytes) could not be decoded: {str(exc)[:200]}") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB, 8 bits, with transparency composited onto white (catalog photos have white backgrounds)."""
    return flatten_on_white(im)


def encode_png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


# --- generators -----------------------------------------------------------------------------
@dataclass
class LoadedEditor:
    """A loaded generator checkpoint and what it can do (from ``Editor.capabilities()``)."""

    name: str
    editor: Any
    kind: str
    groups: dict[str, tuple[str, ...]]
    to_model: bool
    multi_group: bool = True  # one call may change several groups (StarGAN); CycleGAN: one edit per call
    multi_modal: bool = False  # several diverse answers per edit (MUNIT): SearchRequest.variants
    continuous: bool = False  # strength is the model's own control (Fader, maskedit), not a blend
    to_product: bool = False  # model photo -> product photo

    @classmethod
    def from_editor(cls, name: str, editor: Any) -> LoadedEditor:
        caps = dict(editor.capabilities() or {})
        edit = caps.get("edit") or {}
        groups = {str(g): tuple(str(v) for v in vals) for g, vals in dict(edit.get("groups") or {}).items()}
        return cls(
            name=name,
            editor=editor,
            kind=str(caps.get("model") or type(editor).__name__),
            groups=groups,
            to_model=bool(caps.get("to_model", False)),
            multi_group=bool(edit.get("multi_group", True)),
            multi_modal=bool(caps.get("multi_modal", edit.get("multi_modal", False))),
            continuous=bool(caps.get("continuous", edit.get("continuous", False))),
            to_product=bool(caps.get("to_product", False)),
        )


@dataclass(frozen=True)
class Step:
    """One generator call of a plan: consecutive edits on one generator share one forward."""

    editor: int
    edits: tuple[tuple[str, str], ...] = ()  # empty: a translation, ``translate``
    strength: float = 1.0
    variants: int = 1  # > 1: a multi-modal generator makes this many images of each input
    translate: str = "to_model"  # to_model (product -> model photo) or to_product (model -> product photo)

    @property
    def label(self) -> str:
        text = ",".join(f"{g}={v}" for g, v in self.edits) if self.edits else self.translate
        if self.strength != 1.0:
            text += f"@{self.strength:g}"
        return text + (f" x{self.variants}" if self.variants > 1 else "")


def check_strength(i: int, strength: float) -> float:
    if not (isinstance(strength, (int, float)) and 0.0 <= strength <= 1.0):  # NaN fails both comparisons
        raise InvalidArgument(f"modification {i}: strength must be in 0..1 (unset means 1); got {strength}")
    return float(strength)


def plan_modifications(
    mods: Sequence[Modification], editors: Sequence[LoadedEditor], max_mods: int, variants: int = 1
) -> list[Step]:
    """Route each modification to a generator that can make it, checking everything first.

    Consecutive attribute edits that go to the same generator, touch different groups and have
    the same strength become one call (StarGAN-style generators take a full target label),
    which costs one forward instead of several and keeps the image from degrading through
    repeated passes.

    ``variants > 1``: the first edit that a multi-modal generator can make goes to it and
    becomes the step that makes the variants (every later step runs on each of them). When no
    loaded multi-modal generator can make any of the edits, :class:`FailedPrecondition`.
    """
    if len(mods) > max_mods:
        raise InvalidArgument(f"{len(mods)} modifications; at most {max_mods} are allowed per request")
    steps: list[Step] = []
    for i, mod in enumerate(mods):
        if isinstance(mod, ToModel):
            idx = next((k for k, e in enumerate(editors) if e.to_model), None)
            if idx is None:
                raise InvalidArgument(
                    f"modification {i}: product_to_model is not available: no loaded generator translates "
                    "product photos to model photos"
                )
            steps.append(Step(idx))
            continue
        if isinstance(mod, ToProduct):
            idx = next((k for k, e in enumerate(editors) if e.to_product), None)
            if idx is None:
                raise InvalidArgument(
                    f"modification {i}: model_to_product is not available: no loaded generator translates "
                    "model photos to product photos"
                )
            steps.append(Step(idx, translate="to_product"))
            continue
        if not mod.group:
            raise InvalidArgument(f"modification {i}: attribute edit has an empty group")
        editable = {g: vals for e in editors for g, vals in e.groups.items()}
        if mod.group not in editable:
            allowed = ", ".join(sorted(editable)) or "none (no attribute generator loaded)"
            raise InvalidArgument(f"modification {i}: unknown attribute group {shown(mod.group)}; "
                                  f"editable groups: {allowed}")
        strength = check_strength(i, mod.strength)
        able = [k for k, e in enumerate(editors) if mod.value in e.groups.get(mod.group, ())]
        if not able:
            raise InvalidArgument(
                f"modification {i}: unknown value {shown(mod.value)} for group {shown(mod.group)}; "
                f"allowed: {', '.join(editable[mod.group])}"
            )
        if variants > 1 and not any(st.variants > 1 for st in steps):
            multi = [k for k in able if editors[k].multi_modal]
            if multi:
                steps.append(Step(multi[0], ((mod.group, mod.value),), strength, variants))
                continue
        idx = able[0]
        prev = steps[-1] if steps else None
        if (prev is not None and prev.edits and prev.editor == idx and editors[idx].multi_group
                and mod.group not in dict(prev.edits) and prev.strength == strength and prev.variants == 1):
            steps[-1] = Step(idx, (*prev.edits, (mod.group, mod.value)), strength)
        else:
            steps.append(Step(idx, ((mod.group, mod.value),), strength))
    if variants > 1 and not any(st.variants > 1 for st in steps):
        edits = [m for m in mods if isinstance(m, AttributeEdit)]
        if not edits:
            raise InvalidArgument(f"variants = {variants} needs an attribute edit to make variants of")
        multi = [e for e in editors if e.multi_modal]
        can = "; ".join(f"{e.name} edits " + ", ".join(f"{g}: {'/'.join(v)}" for g, v in e.groups.items())
                        for e in multi) or "none is loaded"
        asked = ", ".join(f"{m.group}={m.value}" for m in edits)
        raise FailedPrecondition(
            f"variants = {variants} needs a multi-modal generator that can make one of the edits ({asked}); "
            f"multi-modal generators: {can}"
        )
    return steps


# --- fused search (variants) -------------------------------------------------------------------
FUSION_DEPTH = 2  # each variant contributes its top FUSION_DEPTH * k to the fusion


def fuse_hits(lists: Sequence[Sequence[Any]], k: int) -> list[SearchHit]:
    """Reciprocal rank fusion of several hit lists (one per variant): the top ``k``, each with its
    fused score ``sum 1 / (60 + rank)`` (:func:`indexing.fusion.reciprocal_rank_fusion`)."""
    from indexing.fusion import reciprocal_rank_fusion

    fused = reciprocal_rank_fusion([[h.id for h in hits] for hits in lists])[:k]
    # each item keeps the photo (view, path) of the variant that ranked it best
    best: dict[str, tuple[int, Any]] = {}
    for hits in lists:
        for rank, h in enumerate(hits):
            if h.id not in best or rank < best[h.id][0]:
                best[h.id] = (rank, h)
    return [SearchHit(i, score, {}, getattr(best[i][1], "view", "product"), getattr(best[i][1], "path", ""))
            for i, score in fused]


# --- the index --------------------------------------------------------------------------------
def store_size(store: Any) -> int:
    return len(store)


def store_views(store: Any) -> tuple[str, ...]:
    """The photo views an index holds (``("product",)`` for one built before views)."""
    return tuple(getattr(store, "views", ("product",)))


def store_version(store: Any) -> str:
    """Which index answered: folder name and save generation (changes with every add/remove)."""
    m = store.manifest
    return f"{Path(store.folder).name}@{m.get('generation', 0)}"


def read_item_image(row: dict[str, Any]) -> bytes:
    """The product image bytes of an ``IndexStore.get_items`` row, read through a path that
    must stay inside the item's catalog folder *now* (a symlink placed there after indexing
    is refused: :func:`catalog.open_inside`). Raises ``OSError``."""
    root = row.get("catalog_root")
    rel = str(row.get("img_path") or "")
    if not root:
        raise UnsafePathError("the index row has no catalog folder")
    with open_inside(root, rel) as fh:
        return fh.read()


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# --- the pipeline -----------------------------------------------------------------------------
class Pipeline:
    """Everything a request needs, loaded once; safe to call from many coroutines at once."""

    def __init__(
        self,
        config: ServerConfig,
        encoder: Any,
        store: Any,
        editors: Sequence[LoadedEditor],
        device: str,
        batching: bool | None = None,
    ) -> None:
        self.config = config
        self.encoder = encoder
        self.editors = list(editors)
        self.device = device
        self._store = store
        self._index_dir = config.index_dir
        self.model_executor = ThreadPoolExecutor(1, thread_name_prefix="model")
        self.io_executor = ThreadPoolExecutor(max(1, config.io_threads), thread_name_prefix="io")
        self._admin_lock: asyncio.Lock | None = None
        self._unbatched_requests = 0
        # requests inside search/modify now, and those of them on the staged (batchable) path;
        # written on the event loop only
        self._in_flight = 0
        self._staged = 0
        self.batching = config.batching.resolve(device) if batching is None else batching
        b = config.batching
        self.max_batch = b.resolve_max_batch(device)
        self.edit_batcher: KeyedBatcher[tuple[Image.Image, dict | None], Image.Image] = KeyedBatcher(
            self._edit_fn, self.model_executor, enabled=self.batching,
            max_batch=self.max_batch, max_wait_ms=b.max_wait_ms, name="generator", partners=self._partners,
        )
        self.encode_batcher: MicroBatcher[Image.Image, np.ndarray] = MicroBatcher(
            self._encode_batch, self.model_executor, enabled=self.batching,
            max_batch=self.max_batch, max_wait_ms=b.max_wait_ms, name="encoder", partners=self._partners,
        )

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, config: ServerConfig, batching: bool | None = None) -> Pipeline:
        """Load the encoder, the index and every generator (slow: call off the event loop)."""
        import torch

        from generators.inference import load_editor
        from indexing.store import IndexStore, encoder_for_index

        if config.torch_threads:
            torch.set_num_threads(config.torch_threads)
        device = resolve_device(config.device)
        t0 = time.perf_counter()
        # the index's own encoder unless one is configured (the store refuses a mismatch)
        encoder = encoder_for_index(config.index_dir, config.encoder, device)
        store = IndexStore.open(config.index_dir, encoder=encoder)
        editors = [LoadedEditor.from_editor(Path(p).name, load_editor(p, device)) for p in config.generators]
        log.info(
            "loaded encoder, index (%d items) and %d generators on %s in %.1f s",
            store_size(store), len(editors), device, time.perf_counter() - t0,
        )
        return cls(config, encoder, store, editors, device, batching)

    def _partners(self) -> int:
        """How many requests could share a micro-batch now: those on the staged path."""
        return self._staged

    def batch_stats(self) -> dict[str, dict[str, float]]:
        """How the model calls were grouped: batches, items, mean size, items dropped as expired."""
        out = {}
        for name, st in (("generator", self.edit_batcher.stats), ("encoder", self.encode_batcher.stats)):
            out[name] = {"batches": st.batches, "items": st.items, "mean_size": round(st.mean_size, 2),
                         "max_size": st.max_size, "dropped_expired": st.dropped}
        out["unbatched"] = {"requests": self._unbatched_requests}
        return out

    async def close(self) -> None:
        log.info("model calls: %s", self.batch_stats())
        await self.edit_batcher.close()
        await self.encode_batcher.close()
        self.model_executor.shutdown(wait=True)
        self.io_executor.shutdown(wait=True)

    # -- model calls (model thread) ----------------------------------------------------------
    def _edit_fn(self, key: Step) -> Callable[[list[tuple[Image.Image, dict | None]]], list[Any]]:
        """The generator call of ``key`` over a batch: one image per input, or a list of
        ``key.variants`` images per input for a multi-modal step."""
        handle = self.editors[key.editor]

        def run(items: list[tuple[Image.Image, dict | None]]) -> list[Any]:
            import torch

            images = [im for im, _ in items]
            kw: dict[str, Any] = {"strength": key.strength}
            # editors that read the input's own values (StarGAN, Fader) get a catalog item's known labels
            if handle.kind in ("stargan", "fader") and any(labels for _, labels in items):
                kw["source_labels"] = [{g: v for g, v in (labels or {}).items() if v in handle.groups.get(g, ())}
                                       for _, labels in items]
            with torch.inference_mode():
                if not key.edits and key.translate == "to_product":
                    return [to_rgb(im) for im in handle.editor.to_product(images)]
                if not key.edits:
                    return [to_rgb(im) for im in handle.editor.to_model(images)]
                if key.variants > 1:
                    out = handle.editor.edit_variants(images, dict(key.edits), key.variants, **kw)
                    return [[to_rgb(im) for im in variants] for variants in out]
                out = handle.editor.edit(images, dict(key.edits), **kw)
            return [to_rgb(im) for im in out]

        return run

    def _encode_batch(self, images: list[Image.Image]) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            x = torch.stack([self.encoder.preprocess(im) for im in images])
            emb = self.encoder.embed_tensor(x)  # moves to the encoder's device, returns CPU
        vec = emb.float().cpu().numpy().astype(np.float32, copy=True)
        vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
        return list(vec)

    # -- helpers -----------------------------------------------------------------------------
    @property
    def store(self) -> Any:
        return self._store

    @property
    def index_dir(self) -> str:
        return self._index_dir

    @property
    def schema(self) -> Schema:
        return self._store.schema

    def _lock(self) -> asyncio.Lock:
        if self._admin_lock is None:
            self._admin_lock = asyncio.Lock()
        return self._admin_lock

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.io_executor, fn, *args)

    def check_top_k(self, top_k: int) -> int:
        if top_k == 0:
            return self.config.default_top_k
        if not 1 <= top_k <= self.config.max_top_k:
            raise InvalidArgument(f"top_k must be in 1..{self.config.max_top_k} (0 for the default), got {top_k}")
        return top_k

    def check_filters(self, filters: dict[str, list[str]]) -> dict[str, list[str]]:
        from indexing.store import FILTER_FIELDS

        schema = self.schema
        out = {}
        for group, values in filters.items():
            if group not in FILTER_FIELDS and group not in schema.groups:
                raise InvalidArgument(
                    f"filter on unknown attribute group {shown(group)}; "
                    f"filter on: {', '.join([*schema.names, *FILTER_FIELDS])}"
                )
            if not values:
                raise InvalidArgument(f"filter on {shown(group)} lists no values; give at least one (values are ORed)")
            if len(values) > MAX_FILTER_VALUES:
                raise InvalidArgument(f"filter on {shown(group)} lists {len(values)} values; at most "
                                      f"{MAX_FILTER_VALUES} are allowed")
            if group in schema.groups:
                for v in values:
                    if v not in schema.groups[group]:
                        raise InvalidArgument(
                            f"filter {group}={shown(v)}: unknown value; allowed: {', '.join(schema.groups[group])}"
                        )
            out[group] = list(values)
        return out

    def resolve_views(self, views: Sequence[str], mods: Sequence[Modification], store: Any) -> tuple[str, ...]:
        """The views a search covers: the asked ones, checked against the index; empty: the
        product shots, or the model photos after a product_to_model (the last translation
        decides) when the index has them."""
        from indexing.store import MissingViewError, ViewError, parse_views

        try:
            want = parse_views([v for v in views if v.strip()], default=())
        except ViewError as exc:
            raise InvalidArgument(f"views: {exc}") from None
        if not want:
            last = next((m for m in reversed(mods) if isinstance(m, (ToModel, ToProduct))), None)
            want = ("model",) if isinstance(last, ToModel) and "model" in store_views(store) else ("product",)
        if not hasattr(store, "check_views"):  # a store without views holds product shots only
            if want != ("product",):
                raise FailedPrecondition("views: this index holds product photos only")
            return want
        try:
            return store.check_views(want)
        except MissingViewError as exc:
            raise FailedPrecondition(f"views: {exc}") from None

    def _read_item(self, store: Any, item_id: str) -> dict[str, Any]:
        row = store.get_items([item_id]).get(item_id)
        if row is None:
            raise NotFound(f"no item with id {shown(item_id)} in the index")
        return row

    def _item_image_bytes(self, item_id: str, row: dict[str, Any]) -> bytes:
        try:
            return read_item_image(row)
        except OSError as exc:
            log.error("image of item %s (%s in %s) refused or unreadable: %s", shown(item_id, 200),
                      row.get("img_path"), row.get("catalog_root"), exc)
            raise NotFound(f"the image of item {shown(item_id)} is not available on the server") from None

    def _load_item_image(self, store: Any, item_id: str) -> tuple[Image.Image, dict[str, str | None]]:
        row = self._read_item(store, item_id)
        data = self._item_image_bytes(item_id, row)
        try:
            return open_bounded(io.BytesIO(data), DEFAULT_LIMITS), dict(row.get("labels") or {})
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            log.error("image of item %s unreadable: %s", shown(item_id, 200), exc)
            raise NotFound(f"the image of item {shown(item_id)} is not available on the server") from None

    def _query_image(
        self, image: bytes | None, item_id: str | None, store: Any
    ) -> tuple[Image.Image, dict[str, str | None] | None]:
        if item_id:
            return self._load_item_image(store, item_id)
        if image is None:
            raise InvalidArgument("query is empty: send image bytes or a catalog item_id")
        return decode_image(image, self.config.image_limits()), None

    async def query_image(
        self, image: bytes | None, item_id: str | None, store: Any
    ) -> tuple[Image.Image, dict[str, str | None] | None]:
        """The query image, and for a catalog item its known labels (None for an uploaded photo)."""
        return await self._io(self._query_image, image, item_id, store)

    def _model_error(self, exc: Exception, stage: str, what: str) -> RetrievalError:
        """A model exception as the error the client may see (the details go to the log only)."""
        if isinstance(exc, RetrievalError):
            return exc
        if type(exc).__name__ == "EditError":  # the generator refused the edit itself
            return InvalidArgument(str(exc))
        log.error("%s failed on %s", stage, what, exc_info=exc)
        return ModelFailure(stage)

    def _chain(
        self, image: Image.Image, labels: dict | None, steps: list[Step], encode: bool
    ) -> tuple[list[Image.Image], list[np.ndarray] | None, float, float, float]:
        """Unbatched: every model call of one request in one visit to the model thread.

        Returns the modified images (one, or one per variant) and their vectors."""
        t0 = time.perf_counter()
        self._unbatched_requests += 1  # only the model thread writes it
        images = [image]
        for step in steps:
            try:
                out = self._edit_fn(step)([(im, labels) for im in images])
            except Exception as exc:
                raise self._model_error(exc, "generator", f"{self.editors[step.editor].name} {step.label}") from None
            images = [v for variants in out for v in variants] if step.variants > 1 else out
            if labels is not None:
                labels = {**labels, **dict(step.edits)}
        t1 = time.perf_counter()
        vecs = None
        if encode:
            try:
                vecs = self._encode_batch(images)
            except Exception as exc:
                raise self._model_error(exc, "encoder", "a query") from None
        return images, vecs, t0, (t1 - t0) * 1000.0, (time.perf_counter() - t1) * 1000.0

    async def run_models(
        self, image: Image.Image, labels: dict | None, steps: list[Step], encode: bool = True
    ) -> tuple[list[Image.Image], list[np.ndarray] | None, list[tuple[str, float]]]:
        """Modifications then (optionally) the embedding; returns the images (one per variant),
        their vectors and stage timings.

        Batched, each generator call and the encoder are separate submissions, so requests
        with the same call can share a forward. Unbatched, the whole chain is one call on the
        model thread: fewer thread hand-overs per request.
        """
        if not self.batching:
            loop = asyncio.get_running_loop()
            submitted = time.perf_counter()
            images, vecs, started, mod_ms, enc_ms = await loop.run_in_executor(
                self.model_executor, self._chain, image, labels, steps, encode
            )
            timings = [("model_queue", (started - submitted) * 1000.0)]
            timings += ([("modify", mod_ms)] if steps else []) + ([("encode", enc_ms)] if encode else [])
            return images, vecs, timings
        timings = []
        t = time.perf_counter()
        images = [image]
        if steps:
            images = await self.apply(image, steps, labels)
            timings.append(("modify", (time.perf_counter() - t) * 1000.0))
            t = time.perf_counter()
        vecs = None
        if encode:
            vecs = list(await asyncio.gather(*(self.embed(im) for im in images)))
            timings.append(("encode", (time.perf_counter() - t) * 1000.0))
        return images, vecs, timings

    async def apply(
        self, image: Image.Image, steps: list[Step], labels: dict[str, str | None] | None = None
    ) -> list[Image.Image]:
        """Run the planned generator calls in order, through the micro-batcher; returns the
        modified image, or one per variant after a multi-modal step.

        A StarGAN edit keeps every group it is not asked to change, so it needs the image's
        current labels: for a catalog item they are known (and updated edit by edit); for an
        uploaded photo the generator's classifier reads them from the image.
        """
        images = [image]
        for step in steps:
            try:
                out = await asyncio.gather(*(self.edit_batcher.submit(step, (im, labels)) for im in images))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise self._model_error(exc, "generator", f"{self.editors[step.editor].name} {step.label}") from None
            images = [v for variants in out for v in variants] if step.variants > 1 else list(out)
            if labels is not None:
                labels = {**labels, **dict(step.edits)}
        return images

    async def embed(self, image: Image.Image) -> np.ndarray:
        try:
            return await self.encode_batcher.submit(image)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise self._model_error(exc, "encoder", "a query") from None

    def _search_and_fetch(
        self, store: Any, vecs: Sequence[np.ndarray], k: int, filters: dict[str, list[str]] | None, exclude: str | None,
        views: tuple[str, ...] = ("product",),
    ) -> tuple[list[SearchHit], float, float]:
        """The top ``k``; several vectors (variants) are searched at once and fused (:func:`fuse_hits`)."""
        from indexing.store import FilterError

        t0 = time.perf_counter()
        depth = k if len(vecs) == 1 else FUSION_DEPTH * k
        try:
            lists = store.search(np.stack(list(vecs)), depth + (1 if exclude else 0), filters or None, views=views)
        except FilterError as exc:
            raise InvalidArgument(str(exc)) from None
        t1 = time.perf_counter()
        lists = [[h for h in hits if h.id != exclude][:depth] for hits in lists]
        hits = lists[0][:k] if len(lists) == 1 else fuse_hits(lists, k)
        rows = store.get_items([h.id for h in hits])
        # an item removed by a concurrent admin call has no row any more: leave it out
        out = [SearchHit(h.id, float(h.score), rows[h.id], h.view, h.path) for h in hits if h.id in rows]
        return out, (t1 - t0) * 1000.0, (time.perf_counter() - t1) * 1000.0

    # -- the RPCs ------------------------------------------------------------------------------
    def _alone(
        self, submitted: float, image: bytes | None, item_id: str | None, store: Any, steps: list[Step],
        search: tuple[int, dict[str, list[str]], str | None, tuple[str, ...]] | None, want_png: bool,
    ) -> tuple[list[SearchHit], list[bytes], list[tuple[str, float]]]:
        """A whole request in one visit to the model thread: decode, modifications, embedding,
        FAISS and metadata (``search`` = (k, filters, excluded id, views), or None for Modify),
        PNGs (one per variant)."""
        t = time.perf_counter()
        stages = [("model_queue", (t - submitted) * 1000.0)]
        im, labels = self._query_image(image, item_id, store)
        now = time.perf_counter()
        stages.append(("decode", (now - t) * 1000.0))
        images, vecs, _, mod_ms, enc_ms = self._chain(im, labels, steps, encode=search is not None)
        stages += ([("modify", mod_ms)] if steps else []) + ([("encode", enc_ms)] if search is not None else [])
        hits: list[SearchHit] = []
        if search is not None:
            hits, search_ms, meta_ms = self._search_and_fetch(store, vecs, *search)
            stages += [("search", search_ms), ("metadata", meta_ms)]
        pngs: list[bytes] = []
        if want_png:
            t = time.perf_counter()
            pngs = [encode_png(x) for x in images]
            stages.append(("png", (time.perf_counter() - t) * 1000.0))
        return hits, pngs, stages

    async def _run_alone(self, *args: Any) -> tuple[list[SearchHit], list[bytes], list[tuple[str, float]]]:
        return await asyncio.get_running_loop().run_in_executor(
            self.model_executor, self._alone, time.perf_counter(), *args)

    @contextlib.contextmanager
    def _admitted(self) -> Iterator[bool]:
        """Count the request in; yields whether it is alone (then it runs in one hop)."""
        self._in_flight += 1
        alone = self._in_flight == 1
        if not alone:
            self._staged += 1
        try:
            yield alone
        finally:
            self._in_flight -= 1
            if not alone:
                self._staged -= 1

    def check_variants(self, variants: int) -> int:
        """0 or 1: one image; more asks a multi-modal generator for that many (up to max_variants)."""
        if variants in (0, 1):
            return 1
        if not 2 <= variants <= self.config.max_variants:
            raise InvalidArgument(f"variants must be in 0..{self.config.max_variants} (0 or 1 for one image), got {variants}")
        return variants

    async def search(self, q: SearchQuery) -> SearchResult:
        timer = Timer()
        k = self.check_top_k(q.top_k)
        filters = self.check_filters(q.filters)
        variants = self.check_variants(q.variants)
        steps = plan_modifications(q.modifications, self.editors, self.config.max_modifications, variants)
        store = self._store  # this search uses this index to the end, whatever swaps happen
        views = self.resolve_views(q.views, q.modifications, store)
        exclude = q.item_id if (q.item_id and not q.include_query_item) else None
        with self._admitted() as alone:
            if alone:
                hits, pngs, stages = await self._run_alone(
                    q.image, q.item_id, store, steps, (k, filters, exclude, views), q.return_modified_image)
                timer.stages += stages
                return SearchResult(hits, pngs[0] if pngs else None, timer.finish(), store_version(store),
                                    pngs if len(pngs) > 1 else [])
            t = timer.t0
            image, labels = await self.query_image(q.image, q.item_id, store)
            timer.add("decode", t)
            images, vecs, model_timings = await self.run_models(image, labels, steps)
            timer.stages += model_timings
            hits, search_ms, meta_ms = await self._io(self._search_and_fetch, store, vecs, k, filters, exclude, views)
            timer.stages += [("search", search_ms), ("metadata", meta_ms)]
            t = time.perf_counter()
            pngs: list[bytes] = []
            if q.return_modified_image:
                pngs = await self._io(lambda: [encode_png(x) for x in images])
                timer.add("png", t)
            return SearchResult(hits, pngs[0] if pngs else None, timer.finish(), store_version(store),
                                pngs if len(pngs) > 1 else [])

    async def modify(self, image: bytes | None, item_id: str | None, mods: list[Modification],
                     variants: int = 0) -> tuple[list[bytes], list]:
        """The modified image as PNG (one per variant with ``variants`` > 1) and the stage timings."""
        timer = Timer()
        n = self.check_variants(variants)
        steps = plan_modifications(mods, self.editors, self.config.max_modifications, n)
        store = self._store
        with self._admitted() as alone:
            if alone:
                _, pngs, stages = await self._run_alone(image, item_id, store, steps, None, True)
                timer.stages += stages
                return pngs, timer.finish()
            image_obj, labels = await self.query_image(image, item_id, store)
            timer.add("decode", timer.t0)
            images, _, model_timings = await self.run_models(image_obj, labels, steps, encode=False)
            timer.stages += model_timings
            t = time.perf_counter()
            pngs = await self._io(lambda: [encode_png(x) for x in images])
            timer.add("png", t)
            return pngs, timer.finish()

    async def get_item(self, item_id: str, include_image: bool) -> tuple[dict[str, Any], bytes | None]:
        if not item_id:
            raise InvalidArgument("id is empty")
        store = self._store
        row = await self._io(self._read_item, store, item_id)
        data = await self._io(self._item_image_bytes, item_id, row) if include_image else None
        return row, data

    def capabilities(self) -> dict[str, Any]:
        schema = self.schema
        editable: dict[str, list[str]] = {}
        for e in self.editors:
            for g, vals in e.groups.items():
                editable.setdefault(g, [])
                editable[g] += [v for v in vals if v not in editable[g]]
        groups = [(g, list(vals), editable.get(g, [])) for g, vals in schema.groups.items()]
        groups += [(g, [], vals) for g, vals in editable.items() if g not in schema.groups]
        return {
            "groups": groups,
            "product_to_model": any(e.to_model for e in self.editors),
            "model_to_product": any(e.to_product for e in self.editors),
            "views": list(store_views(self._store)),
            "generators": self.editors,
            "index_size": store_size(self._store),
            "index_version": store_version(self._store),
        }

    # -- admin: changes build a new store object, then swap the reference --------------------
    def _open_store(self, index_dir: str) -> Any:
        from indexing.store import IndexStore

        return IndexStore.open(index_dir, encoder=self.encoder)

    async def reload(self, index_dir: str | None = None) -> Any:
        """Open the folder's live generation and swap it in; a damaged folder keeps the old index."""
        from indexing.store import IndexStoreError

        async with self._lock():
            target = index_dir or self._index_dir
            if not Path(target).is_dir():
                raise NotFound(f"index folder {shown(target, 300)} does not exist on the server")
            try:
                new = await self._io(self._open_store, target)
            except RetrievalError:
                raise
            except IndexStoreError as exc:
                log.error("reload of %s refused: %s", target, exc)
                raise FailedPrecondition(f"cannot open index {target}: {exc}; still serving "
                                         f"{store_version(self._store)}") from None
            except Exception as exc:
                log.exception("reload of %s failed", target)
                raise InvalidArgument(f"cannot open index {target}: {exc}") from None
            self._store, self._index_dir = new, target
            log.info("index reloaded from %s: %d items", target, store_size(new))
            return new

    def _commit_change(self, change: Callable[[Any], Any]) -> tuple[Any, Any]:
        """Run ``change(store)`` on the folder's live generation and commit it, under the folder's
        cross-process write lock (another server or ``python -m indexing`` may write it too)."""
        from indexing.lock import IndexLockTimeout
        from indexing.store import IndexStore, IndexStoreError

        try:
            with IndexStore.open_for_update(self._index_dir, self.encoder,
                                            timeout_s=self.config.index_lock_timeout_s) as new:
                result = change(new)
        except IndexLockTimeout as exc:
            raise Aborted(f"{exc}; nothing was changed, retry later") from None
        except IndexStoreError as exc:
            log.error("change to %s refused: %s", self._index_dir, exc)
            raise FailedPrecondition(f"cannot change index {self._index_dir}: {exc}") from None
        return new, result

    async def add_items(self, catalog_dir: str, ids: Sequence[str],
                        max_skipped: float | None = None) -> tuple[dict[str, int], list[str], Any]:
        """Add (or replace by id) a catalog's items; returns ({added, replaced}, skipped rows, new store).

        The catalog is loaded by the shared rule (``catalog.loading``) with the index's schema as
        the default vocabulary; when more than ``max_skipped`` of its rows (of the requested
        ``ids``, when given) would be skipped, nothing is added and :class:`FailedPrecondition`
        names the reasons and how to raise the limit. The new items are then embedded outside
        the index folder's write lock (the slow part), and added to the live generation and
        committed under it (:meth:`_commit_change`).
        """
        from catalog import (
            CatalogError,
            LoadOptions,
            SchemaError,
            TooManySkippedError,
            check_skipped,
            load_catalog,
        )

        try:
            options = LoadOptions(**({} if max_skipped is None else {"max_skipped": max_skipped}))
        except CatalogError as exc:
            raise InvalidArgument(f"max_skipped: {exc}") from None
        async with self._lock():
            # a catalog without schema.json keeps the index's vocabulary when it fits it
            options = dataclasses.replace(options, default_schema=self._store.schema)
            try:
                cat = await self._io(lambda: load_catalog(catalog_dir, options=options))
            except (CatalogError, SchemaError, OSError) as exc:
                raise InvalidArgument(f"catalog_dir {shown(catalog_dir, 300)}: {str(exc)[:500]}") from None
            if ids:
                wanted = set(ids)
                kept = {it.id for it in cat.items}
                missing = wanted - kept - {i.id for i in cat.issues}
                if missing:
                    listed = ", ".join(shown(i) for i in sorted(missing)[:20])
                    more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
                    raise NotFound(f"ids not in catalog {shown(catalog_dir, 300)}: {listed}{more}")
                cat = dataclasses.replace(cat, items=[it for it in cat.items if it.id in wanted],
                                          issues=[i for i in cat.issues if i.id in wanted and i.id not in kept])
            try:
                check_skipped(cat, options.max_skipped, advice=add_items_advice)
            except TooManySkippedError as exc:
                raise FailedPrecondition(str(exc)) from None
            skipped = [str(i) for i in cat.issues]

            def add() -> tuple[Any, dict[str, int]]:
                import shutil

                from indexing.engines import EngineConfig

                # decode in this thread: no DataLoader processes forked from a gRPC server
                vectors = self._store.embed_catalog(cat, self.encoder, engine_cfg=EngineConfig(num_workers=0),
                                                    progress=False)
                def commit(store: Any) -> dict:
                    result = store.add_vectors(cat, vectors)
                    store.save()
                    return result

                new, result = self._commit_change(commit)
                shutil.rmtree(Path(self._index_dir) / ".work-add" / cat.checksum(), ignore_errors=True)
                return new, {"added": int(result["added"]), "replaced": int(result["replaced"])}

            if not cat.items:
                raise InvalidArgument(f"catalog_dir {shown(catalog_dir, 300)} has no usable items "
                                      f"({len(skipped)} rows skipped)")
            new, counts = await self._io(add)
            self._store = new
            log.info("added %s from %s: index has %d items (%s)", counts, catalog_dir, store_size(new),
                     store_version(new))
            return counts, skipped, new

    async def remove_items(self, ids: Sequence[str]) -> tuple[int, list[str], Any]:
        if not ids:
            raise InvalidArgument("ids is empty")
        async with self._lock():
            def remove(store: Any) -> list[str]:
                present = set(store.get_items(list(ids)))
                if present:
                    store.remove(sorted(present))
                return [i for i in ids if i not in present]

            new, missing = await self._io(self._commit_change, remove)
            self._store = new
            log.info("removed %d ids: index has %d items (%s)", len(set(ids)) - len(set(missing)), store_size(new),
                     store_version(new))
            return len(set(ids)) - len(set(missing)), missing, new


def add_items_advice(cat: Any, share: float) -> list[tuple[str, str]]:
    """How an AddItems caller fixes or accepts a large loss (the request has no schema fields)."""
    from catalog.format import VALUE_OUTSIDE_SCHEMA
    from catalog.loading import accepting_share, schema_columns

    out = []
    reasons = cat.skipped_by_reason()
    if VALUE_OUTSIDE_SCHEMA in reasons:
        groups = ",".join(schema_columns(cat)) or "GROUPS"
        out.append(("add a schema.json", f"one that lists these values, in {cat.root} (python -m catalog "
                                         f"infer-schema {cat.root} --groups {groups} writes one)"))
    if set(reasons) - {VALUE_OUTSIDE_SCHEMA}:
        out.append(("fix the rows", f"python -m catalog validate {cat.root} --verbose lists every one"))
    if cat.items:
        x = accepting_share(share)
        out.append((f"raise the threshold: max_skipped = {x:g}",
                    f"in the AddItemsRequest (python -m retrieval add-items --max-skipped {x:g}) adds the "
                    f"{len(cat.items):,} rows that load"))
    return out
