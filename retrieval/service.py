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
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from catalog import Schema
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


class FailedPrecondition(RetrievalError):
    """The request is well-formed but the state it names does not allow it (e.g. a catalog that
    would lose more rows than allowed)."""


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
    modified_png: bytes | None
    timings: list[tuple[str, float]]
    index_version: str


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


# --- images -------------------------------------------------------------------------------
def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Bytes -> RGB image, refusing empty, undecodable and oversized (bomb) images.

    The pixel count is checked from the header before any pixel is decoded, so a small
    file that would expand to gigabytes is refused at no cost.
    """
    if not data:
        raise InvalidArgument("query image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w <= 0 or h <= 0:
                raise InvalidArgument(f"query image has no pixels ({w}x{h})")
            if w * h > max_pixels:
                raise InvalidArgument(
                    f"query image is {w}x{h} = {w * h} pixels, over the server's limit of {max_pixels} pixels"
                )
            im = ImageOps.exif_transpose(im)
            return to_rgb(im)
    except InvalidArgument:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidArgument(f"query image is too large to decode safely: {exc}") from None
    except UnidentifiedImageError:
        raise InvalidArgument(
            f"query image ({len(data)} bytes) is not a decodable image; send JPEG, PNG, WebP, GIF or BMP bytes"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidArgument(f"query image ({len(data)} bytes) could not be decoded: {exc}") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB, with transparency composited onto white (catalog photos have white backgrounds)."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im, mask=im.getchannel("A"))
        return bg
    return im.convert("RGB")


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
            to_product=bool(caps.get("to_product", False)),
        )


@dataclass(frozen=True)
class Step:
    """One generator call of a plan: consecutive edits on one generator share one forward."""

    editor: int
    edits: tuple[tuple[str, str], ...] = ()  # empty: a translation, ``translate``
    translate: str = "to_model"  # to_model (product -> model photo) or to_product (model -> product photo)

    @property
    def label(self) -> str:
        return ",".join(f"{g}={v}" for g, v in self.edits) if self.edits else self.translate


def plan_modifications(
    mods: Sequence[Modification], editors: Sequence[LoadedEditor], max_mods: int
) -> list[Step]:
    """Route each modification to a generator that can make it, checking everything first.

    Consecutive attribute edits that go to the same generator and touch different groups
    become one call (StarGAN-style generators take a full target label), which costs one
    forward instead of several and keeps the image from degrading through repeated passes.
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
            raise InvalidArgument(f"modification {i}: unknown attribute group {mod.group!r}; editable groups: {allowed}")
        idx = next((k for k, e in enumerate(editors) if mod.value in e.groups.get(mod.group, ())), None)
        if idx is None:
            raise InvalidArgument(
                f"modification {i}: unknown value {mod.value!r} for group {mod.group!r}; "
                f"allowed: {', '.join(editable[mod.group])}"
            )
        prev = steps[-1] if steps else None
        if (prev is not None and prev.edits and prev.editor == idx and editors[idx].multi_group
                and mod.group not in dict(prev.edits)):
            steps[-1] = Step(idx, (*prev.edits, (mod.group, mod.value)))
        else:
            steps.append(Step(idx, ((mod.group, mod.value),)))
    return steps


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


def item_image_path(row: dict[str, Any]) -> Path:
    """Absolute path of an item's product image, from an ``IndexStore.get_items`` row."""
    if row.get("image"):
        return Path(row["image"])
    return Path(row.get("catalog_root") or ".") / str(row.get("img_path", ""))


def index_encoder_source(index_dir: str | Path) -> str | None:
    """The encoder an index was built with, as recorded in its manifest (None: built-in)."""
    from indexing.encoder import BUILTIN
    from indexing.store import read_manifest

    source = read_manifest(Path(index_dir))["encoder"].get("source")
    return None if not source or source == BUILTIN else str(source)


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
        from indexing.encoder import Encoder
        from indexing.store import IndexStore

        if config.torch_threads:
            torch.set_num_threads(config.torch_threads)
        device = resolve_device(config.device)
        t0 = time.perf_counter()
        # the index's own encoder unless one is configured (the store refuses a mismatch)
        encoder = Encoder.load(config.encoder or index_encoder_source(config.index_dir), device)
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
    def _edit_fn(self, key: Step) -> Callable[[list[tuple[Image.Image, dict | None]]], list[Image.Image]]:
        handle = self.editors[key.editor]

        def run(items: list[tuple[Image.Image, dict | None]]) -> list[Image.Image]:
            import torch

            images = [im for im, _ in items]
            with torch.inference_mode():
                if not key.edits and key.translate == "to_product":
                    out = handle.editor.to_product(images)
                elif not key.edits:
                    out = handle.editor.to_model(images)
                elif handle.kind == "stargan" and any(labels for _, labels in items):
                    known = [{g: v for g, v in (labels or {}).items() if v in handle.groups.get(g, ())}
                             for _, labels in items]
                    out = handle.editor.edit(images, dict(key.edits), source_labels=known)
                else:
                    out = handle.editor.edit(images, dict(key.edits))
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
            if group in FILTER_FIELDS and values:
                out[group] = list(values)
                continue
            if group not in schema.groups:
                raise InvalidArgument(
                    f"filter on unknown attribute group {group!r}; filter on: {', '.join([*schema.names, *FILTER_FIELDS])}"
                )
            if not values:
                raise InvalidArgument(f"filter on {group!r} lists no values")
            for v in values:
                if v not in schema.groups[group]:
                    raise InvalidArgument(
                        f"filter {group}={v!r}: unknown value; allowed: {', '.join(schema.groups[group])}"
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
            raise NotFound(f"no item with id {item_id!r} in the index")
        return row

    def _load_item_image(self, store: Any, item_id: str) -> tuple[Image.Image, dict[str, str | None]]:
        row = self._read_item(store, item_id)
        path = item_image_path(row)
        try:
            with Image.open(path) as im:
                return to_rgb(im), dict(row.get("labels") or {})
        except OSError as exc:
            log.error("image of item %s at %s unreadable: %s", item_id, path, exc)
            raise NotFound(f"the image of item {item_id!r} is not available on the server") from None

    def _query_image(
        self, image: bytes | None, item_id: str | None, store: Any
    ) -> tuple[Image.Image, dict[str, str | None] | None]:
        if item_id:
            return self._load_item_image(store, item_id)
        if image is None:
            raise InvalidArgument("query is empty: send image bytes or a catalog item_id")
        return decode_image(image, self.config.max_image_pixels), None

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
    ) -> tuple[Image.Image, np.ndarray | None, float, float, float]:
        """Unbatched: every model call of one request in one visit to the model thread."""
        t0 = time.perf_counter()
        self._unbatched_requests += 1  # only the model thread writes it
        for step in steps:
            try:
                (image,) = self._edit_fn(step)([(image, labels)])
            except Exception as exc:
                raise self._model_error(exc, "generator", f"{self.editors[step.editor].name} {step.label}") from None
            if labels is not None:
                labels = {**labels, **dict(step.edits)}
        t1 = time.perf_counter()
        vec = None
        if encode:
            try:
                (vec,) = self._encode_batch([image])
            except Exception as exc:
                raise self._model_error(exc, "encoder", "a query") from None
        return image, vec, t0, (t1 - t0) * 1000.0, (time.perf_counter() - t1) * 1000.0

    async def run_models(
        self, image: Image.Image, labels: dict | None, steps: list[Step], encode: bool = True
    ) -> tuple[Image.Image, np.ndarray | None, list[tuple[str, float]]]:
        """Modifications then (optionally) the embedding; returns image, vector and stage timings.

        Batched, each generator call and the encoder are separate submissions, so requests
        with the same call can share a forward. Unbatched, the whole chain is one call on the
        model thread: fewer thread hand-overs per request.
        """
        if not self.batching:
            loop = asyncio.get_running_loop()
            submitted = time.perf_counter()
            image, vec, started, mod_ms, enc_ms = await loop.run_in_executor(
                self.model_executor, self._chain, image, labels, steps, encode
            )
            timings = [("model_queue", (started - submitted) * 1000.0)]
            timings += ([("modify", mod_ms)] if steps else []) + ([("encode", enc_ms)] if encode else [])
            return image, vec, timings
        timings = []
        t = time.perf_counter()
        if steps:
            image = await self.apply(image, steps, labels)
            timings.append(("modify", (time.perf_counter() - t) * 1000.0))
            t = time.perf_counter()
        vec = None
        if encode:
            vec = await self.embed(image)
            timings.append(("encode", (time.perf_counter() - t) * 1000.0))
        return image, vec, timings

    async def apply(
        self, image: Image.Image, steps: list[Step], labels: dict[str, str | None] | None = None
    ) -> Image.Image:
        """Run the planned generator calls in order, through the micro-batcher.

        A StarGAN edit keeps every group it is not asked to change, so it needs the image's
        current labels: for a catalog item they are known (and updated edit by edit); for an
        uploaded photo the generator's classifier reads them from the image.
        """
        for step in steps:
            try:
                image = await self.edit_batcher.submit(step, (image, labels))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise self._model_error(exc, "generator", f"{self.editors[step.editor].name} {step.label}") from None
            if labels is not None:
                labels = {**labels, **dict(step.edits)}
        return image

    async def embed(self, image: Image.Image) -> np.ndarray:
        try:
            return await self.encode_batcher.submit(image)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise self._model_error(exc, "encoder", "a query") from None

    def _search_and_fetch(
        self, store: Any, vec: np.ndarray, k: int, filters: dict[str, list[str]] | None, exclude: str | None,
        views: tuple[str, ...] = ("product",),
    ) -> tuple[list[SearchHit], float, float]:
        from indexing.store import FilterError

        t0 = time.perf_counter()
        try:
            (hits,) = store.search(vec[None, :], k + (1 if exclude else 0), filters or None, views=views)
        except FilterError as exc:
            raise InvalidArgument(str(exc)) from None
        t1 = time.perf_counter()
        hits = [h for h in hits if h.id != exclude][:k]
        rows = store.get_items([h.id for h in hits])
        # an item removed by a concurrent admin call has no row any more: leave it out
        out = [SearchHit(h.id, float(h.score), rows[h.id], h.view, h.path) for h in hits if h.id in rows]
        return out, (t1 - t0) * 1000.0, (time.perf_counter() - t1) * 1000.0

    # -- the RPCs ------------------------------------------------------------------------------
    def _alone(
        self, submitted: float, image: bytes | None, item_id: str | None, store: Any, steps: list[Step],
        search: tuple[int, dict[str, list[str]], str | None, tuple[str, ...]] | None, want_png: bool,
    ) -> tuple[list[SearchHit], bytes | None, list[tuple[str, float]]]:
        """A whole request in one visit to the model thread: decode, modifications, embedding,
        FAISS and metadata (``search`` = (k, filters, excluded id, views), or None for Modify), PNG."""
        t = time.perf_counter()
        stages = [("model_queue", (t - submitted) * 1000.0)]
        im, labels = self._query_image(image, item_id, store)
        now = time.perf_counter()
        stages.append(("decode", (now - t) * 1000.0))
        im, vec, _, mod_ms, enc_ms = self._chain(im, labels, steps, encode=search is not None)
        stages += ([("modify", mod_ms)] if steps else []) + ([("encode", enc_ms)] if search is not None else [])
        hits: list[SearchHit] = []
        if search is not None:
            hits, search_ms, meta_ms = self._search_and_fetch(store, vec, *search)
            stages += [("search", search_ms), ("metadata", meta_ms)]
        png = None
        if want_png:
            t = time.perf_counter()
            png = encode_png(im)
            stages.append(("png", (time.perf_counter() - t) * 1000.0))
        return hits, png, stages

    async def _run_alone(self, *args: Any) -> tuple[list[SearchHit], bytes | None, list[tuple[str, float]]]:
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

    async def search(self, q: SearchQuery) -> SearchResult:
        timer = Timer()
        k = self.check_top_k(q.top_k)
        filters = self.check_filters(q.filters)
        steps = plan_modifications(q.modifications, self.editors, self.config.max_modifications)
        store = self._store  # this search uses this index to the end, whatever swaps happen
        views = self.resolve_views(q.views, q.modifications, store)
        exclude = q.item_id if (q.item_id and not q.include_query_item) else None
        with self._admitted() as alone:
            if alone:
                hits, png, stages = await self._run_alone(
                    q.image, q.item_id, store, steps, (k, filters, exclude, views), q.return_modified_image)
                timer.stages += stages
                return SearchResult(hits, png, timer.finish(), store_version(store))
            t = timer.t0
            image, labels = await self.query_image(q.image, q.item_id, store)
            timer.add("decode", t)
            image, vec, model_timings = await self.run_models(image, labels, steps)
            timer.stages += model_timings
            hits, search_ms, meta_ms = await self._io(self._search_and_fetch, store, vec, k, filters, exclude, views)
            timer.stages += [("search", search_ms), ("metadata", meta_ms)]
            t = time.perf_counter()
            png = None
            if q.return_modified_image:
                png = await self._io(encode_png, image)
                timer.add("png", t)
            return SearchResult(hits, png, timer.finish(), store_version(store))

    async def modify(self, image: bytes | None, item_id: str | None, mods: list[Modification]) -> tuple[bytes, list]:
        timer = Timer()
        steps = plan_modifications(mods, self.editors, self.config.max_modifications)
        store = self._store
        with self._admitted() as alone:
            if alone:
                _, png, stages = await self._run_alone(image, item_id, store, steps, None, True)
                timer.stages += stages
                return png, timer.finish()
            image_obj, labels = await self.query_image(image, item_id, store)
            timer.add("decode", timer.t0)
            image_obj, _, model_timings = await self.run_models(image_obj, labels, steps, encode=False)
            timer.stages += model_timings
            t = time.perf_counter()
            png = await self._io(encode_png, image_obj)
            timer.add("png", t)
            return png, timer.finish()

    async def get_item(self, item_id: str, include_image: bool) -> tuple[dict[str, Any], bytes | None]:
        if not item_id:
            raise InvalidArgument("id is empty")
        store = self._store
        row = await self._io(self._read_item, store, item_id)
        data = None
        if include_image:
            path = item_image_path(row)
            try:
                data = await self._io(path.read_bytes)
            except OSError:
                log.error("image of item %s at %s unreadable", item_id, path)
                raise NotFound(f"the image of item {item_id!r} is not available on the server") from None
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
        async with self._lock():
            target = index_dir or self._index_dir
            if not Path(target).is_dir():
                raise NotFound(f"index folder {target} does not exist on the server")
            try:
                new = await self._io(self._open_store, target)
            except RetrievalError:
                raise
            except Exception as exc:
                log.exception("reload of %s failed", target)
                raise InvalidArgument(f"cannot open index {target}: {exc}") from None
            self._store, self._index_dir = new, target
            log.info("index reloaded from %s: %d items", target, store_size(new))
            return new

    async def add_items(self, catalog_dir: str, ids: Sequence[str],
                        max_skipped: float | None = None) -> tuple[dict[str, int], list[str], Any]:
        """Add (or replace by id) a catalog's items; returns ({added, replaced}, skipped rows, new store).

        The catalog is loaded by the shared rule (``catalog.loading``) with the index's schema as
        the default vocabulary; when more than ``max_skipped`` of its rows (of the requested
        ``ids``, when given) would be skipped, nothing is added and :class:`FailedPrecondition`
        names the reasons and how to raise the limit.
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
                raise InvalidArgument(f"catalog_dir {catalog_dir}: {exc}") from None
            if ids:
                wanted = set(ids)
                kept = {it.id for it in cat.items}
                missing = wanted - kept - {i.id for i in cat.issues}
                if missing:
                    raise NotFound(f"ids not in catalog {catalog_dir}: {', '.join(sorted(missing)[:20])}")
                cat = dataclasses.replace(cat, items=[it for it in cat.items if it.id in wanted],
                                          issues=[i for i in cat.issues if i.id in wanted and i.id not in kept])
            try:
                check_skipped(cat, options.max_skipped, advice=add_items_advice)
            except TooManySkippedError as exc:
                raise FailedPrecondition(str(exc)) from None
            skipped = [str(i) for i in cat.issues]

            def add() -> tuple[Any, dict[str, int]]:
                from indexing.engines import EngineConfig

                new = self._open_store(self._index_dir)
                # decode in this thread: no DataLoader processes forked from a gRPC server
                result = new.add(cat, engine_cfg=EngineConfig(num_workers=0), progress=False)
                return new, {"added": int(result["added"]), "replaced": int(result["replaced"])}

            if not cat.items:
                raise InvalidArgument(f"catalog_dir {catalog_dir} has no usable items ({len(skipped)} rows skipped)")
            new, counts = await self._io(add)
            self._store = new
            log.info("added %s from %s: index has %d items", counts, catalog_dir, store_size(new))
            return counts, skipped, new

    async def remove_items(self, ids: Sequence[str]) -> tuple[int, list[str], Any]:
        if not ids:
            raise InvalidArgument("ids is empty")
        async with self._lock():
            def remove() -> tuple[Any, list[str]]:
                new = self._open_store(self._index_dir)
                present = set(new.get_items(list(ids)))
                missing = [i for i in ids if i not in present]
                if present:
                    new.remove(sorted(present))
                return new, missing

            new, missing = await self._io(remove)
            self._store = new
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
