"""Unions, recursion, tuples and generics in JSON bodies.

A discriminated union (`Annotated[Union[Cat, Dog], Field(discriminator="kind")]`: `oneOf` +
`discriminator` with a `mapping`, `const` tags) as a whole request body, a list member and an
optional field; plain unions (`Union[int, str]`, with and without None) as fields and as a
response model; a recursive model (`Node.children: list[Node]`) and mutual recursion; tuples
(`tuple[int, str]` → `prefixItems`, `tuple[float, float]`, `tuple[int, ...]` → `items`) as
fields and as a body; a generic model (`Page[Cat]` → `Page_Cat_`).
"""

from typing import Annotated, Generic, Literal, Optional, TypeVar, Union

from fastapi import Body, FastAPI
from pydantic import BaseModel, Field


class Cat(BaseModel):
    kind: Literal["cat"]
    name: str
    lives: Annotated[int, Field(ge=0, le=9)] = 9


class Dog(BaseModel):
    kind: Literal["dog"]
    name: str
    good: bool = True


class Parrot(BaseModel):
    kind: Literal["parrot"]
    name: str
    words: list[str] = []


Pet = Annotated[Union[Cat, Dog, Parrot], Field(discriminator="kind")]


class Owner(BaseModel):
    name: str
    pets: list[Pet] = []
    favourite: Optional[Pet] = None


class Node(BaseModel):
    value: int
    label: Optional[str] = None
    children: list["Node"] = []


class Department(BaseModel):
    name: str
    members: list["Employee"] = []


class Employee(BaseModel):
    name: str
    department: Optional[Department] = None


class Measurement(BaseModel):
    pair: tuple[int, str]
    point: tuple[float, float]
    series: tuple[int, ...]
    reading: Union[int, float, str]
    maybe: Union[int, str, None] = None
    bounds: Optional[tuple[int, int]] = None


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    next_cursor: Optional[str] = None


app = FastAPI(title="Corpus: unions", version="1.0.0")


@app.post("/pets", response_model=Pet)
def create_pet(pet: Pet) -> Pet:
    return pet


@app.get("/pets/cats", response_model=Page[Cat])
def list_cats() -> Page[Cat]:
    raise NotImplementedError


@app.post("/owners", response_model=Owner)
def create_owner(owner: Owner) -> Owner:
    return owner


@app.post("/tree", response_model=Node)
def echo_tree(node: Node) -> Node:
    return node


@app.get("/tree/{depth}", response_model=list[Node])
def build_forest(depth: int) -> list[Node]:
    return []


@app.post("/departments", response_model=Department)
def create_department(department: Department) -> Department:
    return department


@app.post("/measurements", response_model=Measurement)
def record_measurement(measurement: Measurement) -> Measurement:
    return measurement


@app.post("/pair", response_model=tuple[int, str])
def echo_pair(pair: Annotated[tuple[int, str], Body()]) -> tuple[int, str]:
    return pair


@app.get("/value", response_model=Union[int, str])
def read_value() -> Union[int, str]:
    return 0
