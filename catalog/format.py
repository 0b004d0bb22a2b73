"""The catalog format: a folder with ``catalog.csv``, product images and optional ``schema.json``.

Written dialect (what :func:`write_catalog` and :class:`CatalogWriter` produce):
UTF-8, comma separated, ``"`` quoting where needed, ``\\n`` line ends, one header row.
List-valued columns (``model_img_urls``, ``model_img_paths``, ``attributes``) hold JSON
arrays. Readers also accept ``;`` separated files (the thesis's CSVs are).

Loading never crashes on a bad row and never drops one silently: each bad row is recorded
as a :class:`RowIssue` with its line number and reason, and skipped. Which schema a catalog
without ``schema.json`` gets, and when a command refuses a large loss, is decided in one place:
:mod:`catalog.loading`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from catalog.atomic import atomic_write_text
from catalog.images import DEFAULT_LIMITS, ImageLimits
from catalog.schema import Schema

if TYPE_CHECKING:
    from catalog.loading import LoadOptions

CATALOG_FILE = "catalog.csv"

# Columns of the thesis's scraped dataset, in the order the writer emits them.
BASE_COLUMNS = [
    "id", "img_path", "img_url", "model_img_urls", "product_url", "brand", "name", "attributes",
]
LIST_COLUMNS = ("model_img_urls", "model_img_paths", "attributes")
THESIS_ATTR_COLUMNS = ["category", "color", "length", "sleeve_length", "fit", "pattern", "neckline"]

# Reasons a row is skipped; stable strings so summaries and tests can count them.
MISSING_IMAGE = "missing image"
UNREADABLE_IMAGE = "unreadable image"
BAD_IMAGE_SIZE = "image size outside limits"
VALUE_OUTSIDE_SCHEMA = "value outside schema"
DUPLICATE_ID = "duplicate id"
PATH_ESCAPES = "path escapes catalog folder"
WRONG_COLUMN_COUNT = "wrong column count"
MISSING_FIELD = "missing required field"
BAD_LIST = "bad list value"


class CatalogError(ValueError):
    """A catalog that cannot be used at all (no CSV, no header, strict mode violations)."""


class UnsafePathError(PermissionError):
    """A catalog file path that leads outside the catalog folder, or to something not a plain file."""


@dataclass
class Item:
    """One product of a catalog.

    ``labels`` holds one value per schema group; ``None`` means unknown (an empty cell).
    ``extra`` keeps columns that are neither base columns nor schema groups, so a
    round trip through the catalog keeps everything a shop provided.
    """

    id: str
    img_path: str
    img_url: str = ""
    model_img_urls: list[str] = field(default_factory=list)
    product_url: str = ""
    brand: str = ""
    name: str = ""
    attributes: list[str] = field(default_factory=list)
    labels: dict[str, str | None] = field(default_factory=dict)
    model_img_paths: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)

    def label(self, group: str) -> str | None:
        return self.labels.get(group)

    def to_row(self, groups: Iterable[str]) -> dict[str, str]:
        row = {
            "id": self.id,
            "img_path": self.img_path,
            "img_url": self.img_url,
            "model_img_urls": json.dumps(self.model_img_urls, ensure_ascii=False),
            "product_url": self.product_url,
            "brand": self.brand,
            "name": self.name,
            "attributes": json.dumps(self.attributes, ensure_ascii=False),
        }
        for g in groups:
            row[g] = self.labels.get(g) or ""
        row["model_img_paths"] = json.dumps(self.model_img_paths, ensure_ascii=False)
        row.update(self.extra)
        return row


@dataclass(frozen=True)
class RowIssue:
    """Why a row was skipped. ``line`` is the 1-based line number in ``catalog.csv``;
    ``value`` is the offending cell for a value outside the schema."""

    line: int
    reason: str
    detail: str
    id: str = ""
    field: str = ""
    value: str = ""

    def __str__(self) -> str:
        where = f"line {self.line}"
        if self.id:
            where += f" (id {self.id})"
        if self.field:
            where += f", field {self.field!r}"
        return f"{where}: {self.reason}: {self.detail}"


@dataclass
class Catalog:
    """A loaded catalog: the rows that passed, the schema, and what was skipped and why.

    ``schema_source`` says where the schema came from (``--schema``, ``schema.json``, the
    thesis vocabulary, inferred from which columns), for summaries and index manifests.
    """

    root: Path
    schema: Schema
    items: list[Item]
    issues: list[RowIssue] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    blanked: list[RowIssue] = field(default_factory=list)
    schema_source: str = "given by the caller"

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def by_id(self) -> dict[str, Item]:
        return {it.id: it for it in self.items}

    def image_path(self, item: Item) -> Path:
        return self.root / item.img_path

    def model_image_paths(self, item: Item) -> list[Path]:
        return [self.root / p for p in item.model_img_paths]

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(i.reason for i in self.issues).most_common())

    @property
    def total_rows(self) -> int:
        """Data rows read: each one was either kept or skipped (with exactly one issue)."""
        return len(self.items) + len(self.issues)

    def counts_line(self) -> str:
        """The kept / skipped / total part of every batch command's summary line."""
        line = f"kept {len(self.items):,} / skipped {len(self.issues):,} / total {self.total_rows:,} rows"
        if self.blanked:
            line += f" ({len(self.blanked):,} cells outside the schema kept as unknown)"
        return line

    def provenance(self) -> dict:
        """What an index manifest or a run config records about the catalog it used."""
        return {"root": str(Path(self.root).resolve()), "checksum": self.checksum(), "items": len(self.items),
                "skipped": len(self.issues), "total_rows": self.total_rows, "schema_source": self.schema_source}

    def value_counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for g in self.schema.names:
            c = Counter(it.labels.get(g) or "(unknown)" for it in self.items)
            out[g] = dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))
        return out

    def summary(self) -> str:
        lines = [
            f"catalog {self.root}",
            f"  schema: {self.schema_source}",
            f"  rows total:   {self.total_rows}",
            f"  rows kept:    {len(self.items)}",
            f"  rows skipped: {len(self.issues)}",
        ]
        for reason, n in self.skipped_by_reason().items():
            lines.append(f"    {reason}: {n}")
        if self.blanked:
            lines.append(f"  cells outside the schema kept as unknown: {len(self.blanked)}")
        lines.append(f"  attribute groups ({len(self.schema.names)}):")
        for g, counts in self.value_counts().items():
            vals = ", ".join(f"{v}={n}" for v, n in counts.items())
            lines.append(f"    {g}: {vals}")
        return "\n".join(lines)

    def checksum(self) -> str:
        """Content hash of the kept rows (not the image bytes): identifies a catalog version."""
        import hashlib

        h = hashlib.sha256()
        groups = self.schema.names
        for it in sorted(self.items, key=lambda i: i.id):
            h.update(json.dumps(it.to_row(groups), sort_keys=True, ensure_ascii=False).encode())
        return h.hexdigest()[:16]


def sniff_delimiter(header_line: str) -> str:
    """``;`` if the header uses it, else ``,`` (the two dialects the thesis data came in)."""
    return ";" if header_line.count(";") > header_line.count(",") else ","


def _parse_list(value: str) -> list[str]:
    value = (value or "").strip()
    if not value:
        return []
    parsed = json.loads(value)
    if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
        raise ValueError("expected a JSON array of strings")
    return parsed


def _safe_relpath(root: Path, rel: str) -> Path | None:
    """Resolved path of ``rel`` inside ``root``, or None when it escapes the folder."""
    if not rel or os.path.isabs(rel):
        return None
    full = (root / rel).resolve()
    try:
        full.relative_to(root.resolve())
    except ValueError:
        return None
    return full


def open_inside(root: str | Path, rel: str) -> BinaryIO:
    """Open the catalog file ``rel`` for reading, refusing anything outside ``root``.

    Checked when the file is opened, not when the catalog was loaded: a symlink placed in
    the catalog folder later (pointing at ``/etc/...``) is refused. ``rel`` is resolved
    (symlinks that stay inside ``root`` are fine), and the resolved path is then opened one
    component at a time from ``root`` without following any link (``O_NOFOLLOW``), so a
    link swapped in between the check and the open is refused too. FIFOs, devices and
    folders are refused (``O_NONBLOCK`` keeps a FIFO from blocking the open). Raises
    :class:`UnsafePathError` (a ``PermissionError``) or ``FileNotFoundError``.
    """
    root_real = Path(root).resolve(strict=True)
    if not rel or os.path.isabs(rel):
        raise UnsafePathError(f"{rel!r} is not a relative path inside the catalog folder {root}")
    full = (root_real / rel).resolve(strict=True)
    try:
        parts = full.relative_to(root_real).parts
    except ValueError:
        raise UnsafePathError(f"{rel!r} leads outside the catalog folder {root} (to {full})") from None
    if not parts:
        raise UnsafePathError(f"{rel!r} is the catalog folder itself, not a file")
    fd = os.open(root_real, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            sub = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = sub
        try:
            file_fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        except OSError as exc:
            raise UnsafePathError(f"{rel!r} in {root} changed while being opened: {exc.strerror}") from None
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(file_fd).st_mode):
        os.close(file_fd)
        raise UnsafePathError(f"{rel!r} in {root} is not a regular file")
    return os.fdopen(file_fd, "rb")


def read_inside(root: str | Path, rel: str) -> bytes:
    """The bytes of catalog file ``rel`` (see :func:`open_inside`)."""
    with open_inside(root, rel) as fh:
        return fh.read()


def _image_problem(path: Path, limits: ImageLimits) -> tuple[str, str] | None:
    """(reason, detail) when the file is not a usable image, from its header; None when it is."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            problem = limits.problem(*im.size)
            if problem is not None:
                return BAD_IMAGE_SIZE, problem
            im.verify()
        return None
    except Exception as exc:  # PIL raises many types for bad data
        return UNREADABLE_IMAGE, f"not a readable image ({type(exc).__name__}: {str(exc)[:120]})"


def read_rows(path: str | Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Raw header and rows with their 1-based line numbers (quoted newlines kept together)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    first = text.split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(first))
    rows: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    for record in reader:
        line = reader.line_num  # last physical line of this record
        if header is None:
            header = [h.strip() for h in record]
            continue
        if not record or all(not c.strip() for c in record):
            continue
        rows.append((line, record))
    if header is None:
        raise CatalogError(f"{path}: empty file, no header row")
    return header, rows


def load_catalog(
    root: str | Path,
    schema: Schema | None = None,
    check_images: bool = True,
    strict: bool = False,
    unknown_values: str | None = None,
    options: LoadOptions | None = None,
    image_limits: ImageLimits = DEFAULT_LIMITS,
) -> Catalog:
    """Load a catalog folder, skipping and reporting bad rows.

    Without ``schema``, the schema is chosen by :func:`catalog.loading.choose_schema` with
    ``options`` (default: :class:`catalog.loading.LoadOptions()`): ``--schema``/``--infer-schema``
    if given, else the folder's ``schema.json``, else the thesis vocabulary if the catalog
    fits it, else a schema inferred from its attribute columns. This function never refuses a
    loss; commands go through :func:`catalog.loading.open_catalog`, which does.
    ``check_images`` opens every image header (catches truncated or non-image files);
    switch it off for speed when the images were just written by this project.
    ``strict`` raises :class:`CatalogError` listing every issue instead of skipping.
    ``unknown_values`` decides what a value outside the schema does: ``"skip"`` skips the row
    as bad; ``"unknown"`` keeps the row with that cell unknown, which suits a schema inferred
    with a minimum count, where rare values are dropped on purpose. Default: ``options``'s,
    else ``"unknown"`` for an inferred schema and ``"skip"`` otherwise. Either way each such
    cell is reported (as an issue, or in ``Catalog.blanked``).
    ``image_limits`` (with ``check_images``): an image whose header declares a size outside
    them (too many pixels, too long a side, a strip-like aspect ratio) is a bad row too, so
    no later step pads or decodes it.
    """
    if unknown_values is None and options is not None:
        unknown_values = options.unknown_values
    if unknown_values not in (None, "skip", "unknown"):
        raise ValueError(f"unknown_values must be 'skip' or 'unknown', got {unknown_values!r}")
    root = Path(root)
    csv_path = root / CATALOG_FILE
    if not csv_path.is_file():
        raise CatalogError(f"{root}: no {CATALOG_FILE} in the catalog folder")
    header, rows = read_rows(csv_path)
    for required in ("id", "img_path"):
        if required not in header:
            raise CatalogError(f"{csv_path}: header has no {required!r} column (header: {header})")
    source = "given by the caller"
    if schema is None:
        from catalog.loading import LoadOptions, choose_schema  # catalog.loading imports this module

        choice = choose_schema(root, header, rows, options or LoadOptions())
        schema, source = choice.schema, choice.source
        if unknown_values is None:
            unknown_values = "unknown" if choice.inferred else "skip"
    unknown_values = unknown_values or "skip"
    known = set(BASE_COLUMNS) | {"model_img_paths"} | set(schema.names)
    extra_cols = [c for c in header if c not in known]

    items: list[Item] = []
    issues: list[RowIssue] = []
    blanked: list[RowIssue] = []
    seen: dict[str, int] = {}
    for line, record in rows:
        rid = record[header.index("id")].strip() if len(record) > header.index("id") else ""
        if len(record) != len(header):
            issues.append(RowIssue(line, WRONG_COLUMN_COUNT, f"{len(record)} columns, header has {len(header)}", rid))
            continue
        row = dict(zip(header, record, strict=True))
        if unknown_values == "unknown":
            for g in schema.names:
                v = (row.get(g) or "").strip()
                if v and v not in schema.groups[g]:
                    blanked.append(RowIssue(line, VALUE_OUTSIDE_SCHEMA, f"{v!r} treated as unknown", rid, g, v))
                    row[g] = ""
        issue = _check_row(root, row, line, schema, seen, check_images, image_limits)
        if issue:
            issues.append(issue)
            continue
        seen[rid] = line
        items.append(_row_to_item(row, schema, extra_cols))
    cat = Catalog(root=root, schema=schema, items=items, issues=issues, columns=header, blanked=blanked,
                  schema_source=source)
    if strict and issues:
        listing = "\n".join(f"  {i}" for i in issues[:50])
        more = f"\n  ... and {len(issues) - 50} more" if len(issues) > 50 else ""
        raise CatalogError(f"{csv_path}: {len(issues)} bad rows (strict mode):\n{listing}{more}")
    return cat


def _check_row(
    root: Path, row: dict[str, str], line: int, schema: Schema, seen: dict[str, int], check_images: bool,
    image_limits: ImageLimits = DEFAULT_LIMITS,
) -> RowIssue | None:
    rid = row["id"].strip()
    if not rid:
        return RowIssue(line, MISSING_FIELD, "empty id", "", "id")
    if rid in seen:
        return RowIssue(line, DUPLICATE_ID, f"id already used on line {seen[rid]}", rid, "id")
    for col in LIST_COLUMNS:
        if col in row:
            try:
                _parse_list(row[col])
            except (ValueError, json.JSONDecodeError) as exc:
                return RowIssue(line, BAD_LIST, f"{row[col][:60]!r}: {exc}", rid, col)
    for g in schema.names:
        v = (row.get(g) or "").strip()
        if v and v not in schema.groups[g]:
            return RowIssue(line, VALUE_OUTSIDE_SCHEMA, f"{v!r} not in {list(schema.groups[g])}", rid, g, v)
    paths = [("img_path", row["img_path"].strip())]
    if row.get("model_img_paths"):
        paths += [("model_img_paths", p) for p in _parse_list(row["model_img_paths"])]
    for col, rel in paths:
        if not rel:
            return RowIssue(line, MISSING_FIELD, "empty image path", rid, col)
        full = _safe_relpath(root, rel)
        if full is None:
            return RowIssue(line, PATH_ESCAPES, repr(rel), rid, col)
        if not full.is_file():
            return RowIssue(line, MISSING_IMAGE, f"{rel} does not exist", rid, col)
        if check_images:
            problem = _image_problem(full, image_limits)
            if problem is not None:
                reason, detail = problem
                return RowIssue(line, reason, f"{rel}: {detail}", rid, col)
    return None


def _row_to_item(row: dict[str, str], schema: Schema, extra_cols: list[str]) -> Item:
    return Item(
        id=row["id"].strip(),
        img_path=row["img_path"].strip(),
        img_url=row.get("img_url", ""),
        model_img_urls=_parse_list(row.get("model_img_urls", "")),
        product_url=row.get("product_url", ""),
        brand=row.get("brand", ""),
        name=row.get("name", ""),
        attributes=_parse_list(row.get("attributes", "")),
        labels={g: ((row.get(g) or "").strip() or None) for g in schema.names},
        model_img_paths=_parse_list(row.get("model_img_paths", "")),
        extra={c: row[c] for c in extra_cols},
    )


def catalog_columns(schema: Schema, extra: Iterable[str] = ()) -> list[str]:
    """Header written for ``schema``: base columns, one per group, model_img_paths, extras."""
    cols = list(BASE_COLUMNS) + list(schema.names) + ["model_img_paths"]
    return cols + [c for c in extra if c not in cols]


def _encode(columns: list[str], rows: Iterable[dict[str, str]], header: bool) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, delimiter=",", lineterminator="\n", extrasaction="raise")
    if header:
        w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in columns})
    return buf.getvalue()


def write_catalog(root: str | Path, items: Iterable[Item], schema: Schema, write_schema: bool = True) -> Path:
    """Write ``catalog.csv`` (atomically) and, by default, ``schema.json``."""
    root = Path(root)
    items = list(items)
    extra = sorted({k for it in items for k in it.extra})
    cols = catalog_columns(schema, extra)
    atomic_write_text(root / CATALOG_FILE, _encode(cols, (it.to_row(schema.names) for it in items), True))
    if write_schema:
        schema.save(root / "schema.json")
    return root / CATALOG_FILE


class CatalogWriter:
    """Appends rows one at a time, durably: each row is flushed and fsynced when written.

    The crawler writes a product's images first and its row last, so a crawl killed at any
    point leaves only complete rows. A partial trailing line (killed mid-write) is cut off
    when the writer reopens the file.
    """

    def __init__(self, root: str | Path, schema: Schema, extra_columns: Iterable[str] = ()) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.path = self.root / CATALOG_FILE
        if self.path.exists() and self.path.stat().st_size > 0:
            self._truncate_partial_line()
            header, _ = read_rows(self.path)
            self.columns = header
        else:
            self.columns = catalog_columns(schema, extra_columns)
            atomic_write_text(self.path, _encode(self.columns, [], True))
        self._fh = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()

    def _truncate_partial_line(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(self.path, "rb+") as fh:
                fh.truncate(cut)

    def existing_ids(self) -> set[str]:
        _, rows = read_rows(self.path)
        idx = self.columns.index("id")
        return {r[idx] for _, r in rows if len(r) > idx}

    def write(self, item: Item) -> None:
        self._fh.write(_encode(self.columns, [item.to_row(self.schema.names)], False))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> CatalogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def one_hot_table(cat: Catalog) -> tuple[list[str], list[list[str]]]:
    """The thesis's ``img_attr.csv``: image path plus one 0/1 column per group value.

    An unknown value gives all zeros in its group, so a consumer can tell unknown from a
    negative label.
    """
    cols = ["img_path"] + cat.schema.one_hot_columns()
    rows = []
    for it in cat.items:
        r = [it.img_path]
        for g, vals in cat.schema.groups.items():
            v = it.labels.get(g)
            r += ["1" if v == x else "0" for x in vals]
        rows.append(r)
    return cols, rows


def write_one_hot(cat: Catalog, out: str | Path) -> Path:
    cols, rows = one_hot_table(cat)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    w.writerows(rows)
    atomic_write_text(out, buf.getvalue())
    return Path(out)
