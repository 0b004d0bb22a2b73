"""The catalog format and attribute schema shared by every package of the project."""

from catalog.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from catalog.format import (
    CATALOG_FILE,
    Catalog,
    CatalogError,
    CatalogWriter,
    Item,
    RowIssue,
    UnsafePathError,
    load_catalog,
    open_inside,
    read_inside,
    write_catalog,
    write_one_hot,
)
from catalog.images import ImageLimits, ImageSizeError
from catalog.loading import (
    LoadOptions,
    TooManySkippedError,
    add_catalog_options,
    check_skipped,
    open_catalog,
    options_from_args,
)
from catalog.schema import SCHEMA_FILE, Schema, SchemaError, infer_schema

__all__ = [
    "CATALOG_FILE", "SCHEMA_FILE", "Catalog", "CatalogError", "CatalogWriter", "ImageLimits", "ImageSizeError",
    "Item", "LoadOptions", "RowIssue", "Schema", "SchemaError", "TooManySkippedError", "UnsafePathError",
    "add_catalog_options", "atomic_path", "atomic_write_bytes", "atomic_write_text", "check_skipped",
    "infer_schema", "load_catalog", "open_catalog", "open_inside", "options_from_args", "read_inside",
    "write_catalog", "write_one_hot",
]
