"""Pydantic v2 field types in JSON request and response bodies.

`Optional[...]` and `X | None` (anyOf with null), `Literal` (one value: const; several: enum),
`Enum` and `IntEnum`, `dict[str, Any]`, `dict[str, int]`, `dict[Enum, int]` and
`dict[IntEnum, int]` (`propertyNames`; in a model of their own, `Stock`), `set[str]`
(uniqueItems), `datetime`, `date`, `UUID`, `Decimal`, `bytes`, defaults,
`examples` on fields, `Field(alias=...)`, model `json_schema_extra`, `Annotated` constraints
(gt/le/ge/lt, exclusive bounds, multiple_of, min_length/max_length, pattern, min/max items),
and one model used both as a body and as a response whose two schemas differ (`Decimal`,
`computed_field`), so FastAPI emits `Item-Input` and `Item-Output`. Methods GET, POST, PUT,
PATCH, HEAD.
"""

from datetime import date, datetime
from decimal import Decimal
from enum import Enum, IntEnum
from typing import Annotated, Any, Literal, Optional
from uuid import UUID

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, computed_field


class Color(str, Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Priority(IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3


class Dimensions(BaseModel):
    width: Annotated[float, Field(gt=0, le=100, description="Width in cm")]
    height: Annotated[float, Field(ge=0, lt=1000, multiple_of=0.5)]


class Item(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
                    "name": "widget",
                    "SKU": "WID-0001",
                    "price": "9.99",
                    "created_at": "2024-01-01T00:00:00Z",
                }
            ]
        }
    )

    id: UUID
    name: Annotated[str, Field(min_length=1, max_length=64, examples=["widget", "gadget"])]
    sku: Annotated[str, Field(alias="SKU", pattern=r"^[A-Z]{3}-\d{4}$")]
    description: Optional[str] = None
    price: Annotated[Decimal, Field(max_digits=10, decimal_places=2)]
    quantity: Annotated[int, Field(ge=0, multiple_of=5)] = 0
    rating: Annotated[float, Field(gt=0, lt=5)] | None = None
    color: Color = Color.RED
    priority: Priority = Priority.MEDIUM
    kind: Literal["physical"] = "physical"
    status: Literal["draft", "active", "archived"] = "draft"
    tags: Annotated[set[str], Field(max_length=10)] = set()
    aliases: Annotated[list[str], Field(min_length=1)] = ["default"]
    attributes: dict[str, Any] = {}
    counts: dict[str, int] = {}
    released_on: date | None = None
    created_at: datetime
    thumbnail: bytes | None = None
    dimensions: Dimensions | None = None

    @computed_field
    @property
    def display_name(self) -> str:
        return f"{self.name} ({self.sku})"


class Stock(BaseModel):
    """Kept apart from `Item`: enum keys emit `propertyNames`, which OpenAPI 3.0 lacks."""

    by_color: dict[Color, int]
    by_priority: dict[Priority, int] = {}


class ItemPatch(BaseModel):
    name: Annotated[Optional[str], Field(min_length=1, max_length=64)] = None
    description: Optional[str] = None
    price: Optional[Decimal] = None
    color: Optional[Color] = None
    priority: Optional[Priority] = None
    tags: Optional[set[str]] = None


class Summary(BaseModel):
    total: Annotated[int, Field(ge=0)]
    by_color: dict[str, int]
    newest: Optional[datetime] = None
    oldest_release: Optional[date] = None


app = FastAPI(title="Corpus: models", version="1.0.0")


@app.post("/items", response_model=Item, status_code=201)
def create_item(item: Item) -> Item:
    return item


@app.get("/items", response_model=list[Item])
def list_items() -> list[Item]:
    return []


@app.get("/items/summary", response_model=Summary)
def items_summary() -> Summary:
    raise NotImplementedError


@app.get("/items/{item_id}", response_model=Item)
def read_item(item_id: UUID) -> Item:
    raise NotImplementedError


@app.head("/items/{item_id}")
def item_exists(item_id: UUID) -> None:
    return None


@app.patch("/items/{item_id}", response_model=Item)
def patch_item(item_id: UUID, patch: ItemPatch) -> Item:
    raise NotImplementedError


@app.get("/items/{item_id}/stock", response_model=Stock)
def read_stock(item_id: UUID) -> Stock:
    raise NotImplementedError


@app.put("/items/{item_id}/attributes", response_model=dict[str, int])
def replace_attributes(item_id: UUID, attributes: dict[str, Any]) -> dict[str, int]:
    return {}
