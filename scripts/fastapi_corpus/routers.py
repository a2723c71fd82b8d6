"""Routers and operation ids.

Two routers (`/v1/apps`, `/v1/cvms`) with functions of the same names (`list_items`,
`get_item`), so FastAPI's ids `{name}{path}_{method}` differ but collide once shortened to the
function name; a function registered on two paths (ids again collide once shortened); an
`api_route` with methods GET and POST (FastAPI gives both operations one id, with whichever
method its set yields first, and warns "Duplicate Operation ID"); a nested router, router-level
`tags`, `responses` and `deprecated`, and a router dependency that adds a header parameter to each
of its operations.
"""

from typing import Annotated, Optional

from fastapi import APIRouter, Depends, FastAPI, Header
from pydantic import BaseModel


class App(BaseModel):
    id: str
    name: str


class Cvm(BaseModel):
    id: str
    app_id: str
    status: str


class Problem(BaseModel):
    detail: str


def tenant(x_tenant: Annotated[str, Header(min_length=1)]) -> str:
    return x_tenant


apps = APIRouter(prefix="/v1/apps", tags=["apps"])
cvms = APIRouter(
    prefix="/v1/cvms",
    tags=["cvms"],
    dependencies=[Depends(tenant)],
    responses={409: {"model": Problem, "description": "Conflict"}},
)
legacy = APIRouter(prefix="/legacy", tags=["legacy"], deprecated=True)
cvm_logs = APIRouter(prefix="/{cvm_id}/logs", tags=["logs"])


@apps.get("", response_model=list[App])
def list_items(limit: int = 10) -> list[App]:
    return []


@apps.get("/{item_id}", response_model=App)
def get_item(item_id: str) -> App:
    raise NotImplementedError


@cvms.get("", response_model=list[Cvm])
def list_items(app_id: Optional[str] = None) -> list[Cvm]:  # noqa: F811 (same name on purpose)
    return []


@cvms.get("/{item_id}", response_model=Cvm)
def get_item(item_id: str) -> Cvm:  # noqa: F811
    raise NotImplementedError


@cvm_logs.get("", response_model=list[str])
def list_logs(cvm_id: str, tail: int = 100) -> list[str]:
    return []


cvms.include_router(cvm_logs)


@legacy.get("/status")
@legacy.get("/ping")
def status() -> dict[str, str]:
    return {"status": "ok"}


@legacy.api_route("/echo", methods=["GET", "POST"])
def echo() -> dict[str, str]:
    return {}


app = FastAPI(title="Corpus: routers", version="1.0.0")
app.include_router(apps)
app.include_router(cvms)
app.include_router(legacy)
