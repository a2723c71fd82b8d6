"""Query, path, header and cookie parameters.

Constraints on each (`ge`/`gt`/`le`, `min_length`/`max_length`, `pattern`, `multiple_of`),
optional parameters (anyOf with null), defaults, `list[str]` query and header parameters,
`Literal`, `Enum` and `IntEnum` parameters, `UUID`/`datetime`/`date`/`Decimal`/`bool`,
`Query(alias=...)`, `Query(deprecated=True)`, `include_in_schema=False`, titles, descriptions
and examples, a `{file_path:path}` converter, header underscore conversion
(`x_token` → `x-token`) and `convert_underscores=False`, pydantic models as query, header
and cookie parameters (`Annotated[Model, Query()]`), parameters from a shared dependency
(`Depends`), an API-key header security scheme, and a DELETE.
"""

from datetime import date, datetime
from decimal import Decimal
from enum import Enum, IntEnum
from typing import Annotated, Literal, Optional, Union
from uuid import UUID

from fastapi import Cookie, Depends, FastAPI, Header, Path, Query, Security
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field


class ModelName(str, Enum):
    alexnet = "alexnet"
    resnet = "resnet"
    lenet = "lenet"


class Level(IntEnum):
    DEBUG = 10
    INFO = 20
    WARNING = 30


class FilterParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: Annotated[int, Field(gt=0, le=100)] = 100
    offset: Annotated[int, Field(ge=0)] = 0
    order_by: Literal["created_at", "updated_at"] = "created_at"
    tags: list[str] = []


class CommonHeaders(BaseModel):
    host: str
    save_data: bool
    if_modified_since: Optional[str] = None
    traceparent: Optional[str] = None
    x_tag: list[str] = []


class Cookies(BaseModel):
    session_id: str
    fatebook_tracker: Optional[str] = None


class SearchResult(BaseModel):
    query: Optional[str]
    page: int
    size: int
    hits: list[str]


class Pagination(BaseModel):
    skip: int
    limit: int


def pagination(
    skip: Annotated[int, Query(ge=0, description="Rows to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Pagination:
    return Pagination(skip=skip, limit=limit)


api_key = APIKeyHeader(name="X-API-Key", description="Your API key")

app = FastAPI(title="Corpus: params", version="1.0.0")


@app.get("/search", response_model=SearchResult)
def search(
    q: Annotated[
        Optional[str],
        Query(min_length=3, max_length=50, pattern=r"^[a-z ]+$", title="Query", examples=["red shoes"]),
    ] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    size: Annotated[int, Query(gt=0, le=100)] = 20,
    ratio: Annotated[float, Query(gt=0, multiple_of=0.25)] = 1.0,
    tags: Annotated[list[str], Query(description="Repeat for several")] = [],
    ids: Annotated[Optional[list[int]], Query()] = None,
    sort: Literal["asc", "desc"] = "asc",
    model: Optional[ModelName] = None,
    level: Level = Level.INFO,
    since: Optional[datetime] = None,
    day: Optional[date] = None,
    budget: Optional[Decimal] = None,
    exact: bool = False,
    item_query: Annotated[Optional[str], Query(alias="item-query")] = None,
    legacy: Annotated[Optional[str], Query(deprecated=True)] = None,
    hidden: Annotated[Optional[str], Query(include_in_schema=False)] = None,
    either: Union[int, str, None] = None,
) -> SearchResult:
    raise NotImplementedError


@app.get("/users/{user_id}/files/{file_path:path}")
def read_user_file(
    user_id: Annotated[int, Path(ge=1, title="User id", description="Numeric user id")],
    file_path: str,
    version: Annotated[Optional[int], Query(ge=0)] = None,
) -> dict[str, str]:
    return {}


@app.get("/models/{model_name}")
def get_model(model_name: ModelName) -> dict[str, str]:
    return {}


@app.get("/levels/{level}/{request_id}/{code}")
def get_level(
    level: Level,
    request_id: Annotated[UUID, Path(description="Request id")],
    code: Annotated[str, Path(min_length=2, max_length=8, pattern=r"^[A-Z]+$")],
) -> dict[str, int]:
    return {}


@app.get("/headers")
def read_headers(
    x_request_id: Annotated[UUID, Header()],
    user_agent: Annotated[Optional[str], Header()] = None,
    x_token: Annotated[Optional[list[str]], Header()] = None,
    x_retries: Annotated[int, Header(ge=0, le=5)] = 0,
    strange_header: Annotated[Optional[str], Header(convert_underscores=False)] = None,
) -> dict[str, str]:
    return {}


@app.get("/cookies")
def read_cookies(
    tracker: Annotated[str, Cookie(min_length=8)],
    session: Annotated[Optional[str], Cookie()] = None,
    visits: Annotated[int, Cookie(ge=0)] = 0,
) -> dict[str, str]:
    return {}


@app.get("/filters")
def list_filtered(filters: Annotated[FilterParams, Query()]) -> list[str]:
    return []


@app.get("/common-headers")
def read_common_headers(headers: Annotated[CommonHeaders, Header()]) -> CommonHeaders:
    return headers


@app.get("/cookie-model")
def read_cookie_model(cookies: Annotated[Cookies, Cookie()]) -> Cookies:
    return cookies


@app.get("/rows")
def list_rows(
    page: Annotated[Pagination, Depends(pagination)],
    key: Annotated[str, Security(api_key)],
) -> Pagination:
    return page


@app.delete("/rows/{row_id}")
def delete_row(
    row_id: Annotated[int, Path(gt=0)],
    key: Annotated[str, Security(api_key)],
    force: bool = False,
) -> dict[str, bool]:
    return {"deleted": True}
