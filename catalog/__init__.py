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
from catalog.schema import SCHEMA_FILE, Schema, SchemaError, infer_schema

__all__ = [
    "CATALOG_FILE", "SCHEMA_FILE", "Catalog", "CatalogError", "CatalogWriter", "ImageLimits", "ImageSizeError",
    "Item", "RowIssue", "Schema", "SchemaError", "UnsafePathError", "atomic_path", "atomic_write_bytes",
    "atomic_write_text", "infer_schema", "load_catalog", "open_inside", "read_inside", "write_catalog",
    "write_one_hot",
]
