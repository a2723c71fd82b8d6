"""Responses, status codes, methods and operation metadata.

204 without a body (`status_code=204`), 201, 202 beside a 200 of another model
(`responses={200: {"model": ...}}`: two success body types), 307 (`RedirectResponse`),
custom statuses (`responses={465: {"model": ErrorModel, "description": ...}, 404:
{"description": "no body"}}`), a `"5XX"` range and a `default` response, a response header,
`response_model=None` with a `Response` return, `PlainTextResponse`, `HTMLResponse`, a binary
`image/png` response, `response_description`, `summary`/`description`/docstrings, `tags`
with tag metadata, `deprecated=True`, HEAD, PATCH, OPTIONS and PUT, an explicit
`operation_id`, a route hidden with `include_in_schema=False`, `openapi_extra`, a webhook
(top-level `webhooks`, 3.1 only), and 3.1 info fields (`summary`, license `identifier`,
contact, servers).
"""

from typing import Optional

from fastapi import FastAPI, Response, status
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from pydantic import BaseModel


class Item(BaseModel):
    id: int
    name: str
    description: Optional[str] = None


class ItemUpdate(BaseModel):
    name: Optional[str] = None
    description: Optional[str] = None


class ErrorModel(BaseModel):
    detail: str
    code: Optional[str] = None


class JobAccepted(BaseModel):
    job_id: str
    status_url: str


class JobResult(BaseModel):
    job_id: str
    output: str


class Event(BaseModel):
    id: int
    type: str


tags_metadata = [
    {"name": "items", "description": "Operations on items."},
    {"name": "jobs", "description": "Long-running work.", "externalDocs": {"url": "https://example.com/jobs"}},
]

app = FastAPI(
    title="Corpus: responses",
    version="2.0.0",
    summary="Status codes and response shapes",
    description="A FastAPI app written to exercise response shapes.",
    contact={"name": "Maintainers", "email": "dev@example.com"},
    license_info={"name": "Apache 2.0", "identifier": "Apache-2.0"},
    servers=[{"url": "https://api.example.com", "description": "Production"}],
    openapi_tags=tags_metadata,
)


@app.get(
    "/items/{item_id}",
    response_model=Item,
    tags=["items"],
    responses={
        465: {"model": ErrorModel, "description": "A custom error with a JSON body"},
        404: {"description": "no body"},
    },
)
def read_item(item_id: int) -> Item:
    """Read one item.

    The docstring becomes the description.
    """
    raise NotImplementedError


@app.head("/items/{item_id}", tags=["items"], response_class=Response)
def head_item(item_id: int) -> Response:
    return Response()


@app.patch("/items/{item_id}", response_model=Item, tags=["items"], summary="Update some fields")
def patch_item(item_id: int, update: ItemUpdate) -> Item:
    raise NotImplementedError


@app.put("/items/{item_id}", response_model=Item, tags=["items"], response_description="The stored item")
def put_item(item_id: int, item: Item) -> Item:
    return item


@app.delete("/items/{item_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["items"])
def delete_item(item_id: int) -> None:
    return None


@app.post("/items", response_model=Item, status_code=201, tags=["items"])
def create_item(item: Item) -> Item:
    return item


@app.options("/items", tags=["items"])
def items_options() -> Response:
    return Response(headers={"Allow": "GET, POST, OPTIONS"})


@app.get("/items", response_model=list[Item], tags=["items"], deprecated=True)
def list_items_old() -> list[Item]:
    return []


@app.post(
    "/jobs",
    response_model=JobAccepted,
    status_code=202,
    tags=["jobs"],
    responses={200: {"model": JobResult, "description": "Finished at once"}},
)
def start_job() -> JobAccepted:
    raise NotImplementedError


@app.get(
    "/jobs/{job_id}",
    response_model=JobResult,
    tags=["jobs"],
    responses={
        "5XX": {"model": ErrorModel, "description": "Server trouble"},
        "default": {"model": ErrorModel, "description": "Anything else"},
        200: {"headers": {"X-Rate-Limit-Remaining": {"schema": {"type": "integer"}, "description": "Calls left"}}},
    },
)
def get_job(job_id: str) -> JobResult:
    raise NotImplementedError


@app.get("/go", response_class=RedirectResponse, status_code=307)
def go() -> RedirectResponse:
    return RedirectResponse("https://example.com")


@app.get("/raw", response_model=None)
def raw() -> Response:
    return Response(content=b"raw", media_type="application/octet-stream")


@app.get("/text", response_class=PlainTextResponse)
def text() -> str:
    return "hello"


@app.get("/page", response_class=HTMLResponse)
def page() -> str:
    return "<p>hello</p>"


@app.get(
    "/image/{name}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "A PNG image"}},
)
def image(name: str) -> Response:
    return Response(content=b"", media_type="image/png")


@app.get("/health", operation_id="healthCheck", summary="Liveness probe")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/internal", include_in_schema=False)
def internal() -> dict[str, str]:
    return {}


@app.post(
    "/extra",
    openapi_extra={"x-internal-note": "kept by FastAPI", "x-rate-limit": 10},
)
def extra_metadata(item: Item) -> Item:
    return item


@app.webhooks.post("item-created")
def item_created(body: Event) -> None:
    """Sent when an item is created."""
