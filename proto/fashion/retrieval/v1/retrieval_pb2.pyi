from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Query(_message.Message):
    __slots__ = ("image", "item_id")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    item_id: str
    def __init__(self, image: _Optional[bytes] = ..., item_id: _Optional[str] = ...) -> None: ...

class AttributeEdit(_message.Message):
    __slots__ = ("group", "value", "strength")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    group: str
    value: str
    strength: float
    def __init__(self, group: _Optional[str] = ..., value: _Optional[str] = ..., strength: _Optional[float] = ...) -> None: ...

class ProductToModel(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelToProduct(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Modification(_message.Message):
    __slots__ = ("edit", "product_to_model", "model_to_product")
    EDIT_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_TO_MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_TO_PRODUCT_FIELD_NUMBER: _ClassVar[int]
    edit: AttributeEdit
    product_to_model: ProductToModel
    model_to_product: ModelToProduct
    def __init__(self, edit: _Optional[_Union[AttributeEdit, _Mapping]] = ..., product_to_model: _Optional[_Union[ProductToModel, _Mapping]] = ..., model_to_product: _Optional[_Union[ModelToProduct, _Mapping]] = ...) -> None: ...

class FilterValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("query", "modifications", "top_k", "filters", "return_modified_image", "include_query_item", "variants", "views")
    class FiltersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FilterValues
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FilterValues, _Mapping]] = ...) -> None: ...
    QUERY_FIELD_NUMBER: _ClassVar[int]
    MODIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    RETURN_MODIFIED_IMAGE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_QUERY_ITEM_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    VIEWS_FIELD_NUMBER: _ClassVar[int]
    query: Query
    modifications: _containers.RepeatedCompositeFieldContainer[Modification]
    top_k: int
    filters: _containers.MessageMap[str, FilterValues]
    return_modified_image: bool
    include_query_item: bool
    variants: int
    views: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, query: _Optional[_Union[Query, _Mapping]] = ..., modifications: _Optional[_Iterable[_Union[Modification, _Mapping]]] = ..., top_k: _Optional[int] = ..., filters: _Optional[_Mapping[str, FilterValues]] = ..., return_modified_image: _Optional[bool] = ..., include_query_item: _Optional[bool] = ..., variants: _Optional[int] = ..., views: _Optional[_Iterable[str]] = ...) -> None: ...

class ItemMetadata(_message.Message):
    __slots__ = ("id", "name", "brand", "product_url", "image_url", "image_path", "attributes", "tags", "model_image_urls")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_URL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PATH_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_IMAGE_URLS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    brand: str
    product_url: str
    image_url: str
    image_path: str
    attributes: _containers.ScalarMap[str, str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    model_image_urls: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., brand: _Optional[str] = ..., product_url: _Optional[str] = ..., image_url: _Optional[str] = ..., image_path: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., tags: _Optional[_Iterable[str]] = ..., model_image_urls: _Optional[_Iterable[str]] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("id", "score", "item", "rank", "view", "matched_image_path")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    MATCHED_IMAGE_PATH_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: float
    item: ItemMetadata
    rank: int
    view: str
    matched_image_path: str
    def __init__(self, id: _Optional[str] = ..., score: _Optional[float] = ..., item: _Optional[_Union[ItemMetadata, _Mapping]] = ..., rank: _Optional[int] = ..., view: _Optional[str] = ..., matched_image_path: _Optional[str] = ...) -> None: ...

class StageTiming(_message.Message):
    __slots__ = ("stage", "ms")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    MS_FIELD_NUMBER: _ClassVar[int]
    stage: str
    ms: float
    def __init__(self, stage: _Optional[str] = ..., ms: _Optional[float] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "modified_image", "timings", "index_version", "modified_images")
    HITS_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_IMAGE_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_IMAGES_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    modified_image: bytes
    timings: _containers.RepeatedCompositeFieldContainer[StageTiming]
    index_version: str
    modified_images: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., modified_image: _Optional[bytes] = ..., timings: _Optional[_Iterable[_Union[StageTiming, _Mapping]]] = ..., index_version: _Optional[str] = ..., modified_images: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ModifyRequest(_message.Message):
    __slots__ = ("query", "modifications", "variants")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    MODIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    query: Query
    modifications: _containers.RepeatedCompositeFieldContainer[Modification]
    variants: int
    def __init__(self, query: _Optional[_Union[Query, _Mapping]] = ..., modifications: _Optional[_Iterable[_Union[Modification, _Mapping]]] = ..., variants: _Optional[int] = ...) -> None: ...

class ModifyResponse(_message.Message):
    __slots__ = ("image", "timings", "images")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    timings: _containers.RepeatedCompositeFieldContainer[StageTiming]
    images: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, image: _Optional[bytes] = ..., timings: _Optional[_Iterable[_Union[StageTiming, _Mapping]]] = ..., images: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetItemRequest(_message.Message):
    __slots__ = ("id", "include_image")
    ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    include_image: bool
    def __init__(self, id: _Optional[str] = ..., include_image: _Optional[bool] = ...) -> None: ...

class GetItemResponse(_message.Message):
    __slots__ = ("item", "image")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    item: ItemMetadata
    image: bytes
    def __init__(self, item: _Optional[_Union[ItemMetadata, _Mapping]] = ..., image: _Optional[bytes] = ...) -> None: ...

class ListAttributesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AttributeGroup(_message.Message):
    __slots__ = ("name", "values", "editable_values")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    EDITABLE_VALUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    values: _containers.RepeatedScalarFieldContainer[str]
    editable_values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ..., editable_values: _Optional[_Iterable[str]] = ...) -> None: ...

class ListAttributesResponse(_message.Message):
    __slots__ = ("groups", "product_to_model", "generators", "index_size", "index_version", "model_to_product", "views")
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_TO_MODEL_FIELD_NUMBER: _ClassVar[int]
    GENERATORS_FIELD_NUMBER: _ClassVar[int]
    INDEX_SIZE_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_TO_PRODUCT_FIELD_NUMBER: _ClassVar[int]
    VIEWS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[AttributeGroup]
    product_to_model: bool
    generators: _containers.RepeatedCompositeFieldContainer[GeneratorInfo]
    index_size: int
    index_version: str
    model_to_product: bool
    views: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, groups: _Optional[_Iterable[_Union[AttributeGroup, _Mapping]]] = ..., product_to_model: _Optional[bool] = ..., generators: _Optional[_Iterable[_Union[GeneratorInfo, _Mapping]]] = ..., index_size: _Optional[int] = ..., index_version: _Optional[str] = ..., model_to_product: _Optional[bool] = ..., views: _Optional[_Iterable[str]] = ...) -> None: ...

class GeneratorInfo(_message.Message):
    __slots__ = ("name", "kind", "groups", "product_to_model", "multi_modal", "continuous", "model_to_product")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_TO_MODEL_FIELD_NUMBER: _ClassVar[int]
    MULTI_MODAL_FIELD_NUMBER: _ClassVar[int]
    CONTINUOUS_FIELD_NUMBER: _ClassVar[int]
    MODEL_TO_PRODUCT_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    product_to_model: bool
    multi_modal: bool
    continuous: bool
    model_to_product: bool
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ..., product_to_model: _Optional[bool] = ..., multi_modal: _Optional[bool] = ..., continuous: _Optional[bool] = ..., model_to_product: _Optional[bool] = ...) -> None: ...

class SampleItemsRequest(_message.Message):
    __slots__ = ("count", "seed")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    count: int
    seed: int
    def __init__(self, count: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class SampleItemsResponse(_message.Message):
    __slots__ = ("items", "index_version")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ItemMetadata]
    index_version: str
    def __init__(self, items: _Optional[_Iterable[_Union[ItemMetadata, _Mapping]]] = ..., index_version: _Optional[str] = ...) -> None: ...

class AddItemsRequest(_message.Message):
    __slots__ = ("catalog_dir", "ids", "max_skipped")
    CATALOG_DIR_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    MAX_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    catalog_dir: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    max_skipped: float
    def __init__(self, catalog_dir: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., max_skipped: _Optional[float] = ...) -> None: ...

class AddItemsResponse(_message.Message):
    __slots__ = ("added", "replaced", "index_size", "index_version", "skipped")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    INDEX_SIZE_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    added: int
    replaced: int
    index_size: int
    index_version: str
    skipped: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, added: _Optional[int] = ..., replaced: _Optional[int] = ..., index_size: _Optional[int] = ..., index_version: _Optional[str] = ..., skipped: _Optional[_Iterable[str]] = ...) -> None: ...

class RemoveItemsRequest(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RemoveItemsResponse(_message.Message):
    __slots__ = ("removed", "not_found", "index_size", "index_version")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    INDEX_SIZE_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    removed: int
    not_found: _containers.RepeatedScalarFieldContainer[str]
    index_size: int
    index_version: str
    def __init__(self, removed: _Optional[int] = ..., not_found: _Optional[_Iterable[str]] = ..., index_size: _Optional[int] = ..., index_version: _Optional[str] = ...) -> None: ...

class ReloadRequest(_message.Message):
    __slots__ = ("index_dir",)
    INDEX_DIR_FIELD_NUMBER: _ClassVar[int]
    index_dir: str
    def __init__(self, index_dir: _Optional[str] = ...) -> None: ...

class ReloadResponse(_message.Message):
    __slots__ = ("index_size", "index_version", "index_dir")
    INDEX_SIZE_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    INDEX_DIR_FIELD_NUMBER: _ClassVar[int]
    index_size: int
    index_version: str
    index_dir: str
    def __init__(self, index_size: _Optional[int] = ..., index_version: _Optional[str] = ..., index_dir: _Optional[str] = ...) -> None: ...
