"""Form bodies and file uploads.

`Form()` parameters (→ `application/x-www-form-urlencoded` with a `Body_...` schema), a
pydantic model as a form (`Annotated[Model, Form()]`), `bytes = File()`, `UploadFile`,
`list[UploadFile]`, an optional file beside form fields, and a file with a path parameter (all
→ `multipart/form-data`), plus two plain JSON operations so the document is not all uploads.
"""

from typing import Annotated, Optional

from fastapi import FastAPI, File, Form, UploadFile
from pydantic import BaseModel, Field


class ProfileForm(BaseModel):
    display_name: Annotated[str, Field(min_length=1, max_length=32)]
    bio: Optional[str] = None
    newsletter: bool = False


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"


class FileInfo(BaseModel):
    name: str
    size: int
    content_type: Optional[str] = None


app = FastAPI(title="Corpus: forms", version="1.0.0")


@app.post("/login", response_model=Token)
def login(
    username: Annotated[str, Form()],
    password: Annotated[str, Form(min_length=8)],
    remember: Annotated[bool, Form()] = False,
    scopes: Annotated[list[str], Form()] = [],
) -> Token:
    raise NotImplementedError


@app.post("/profile", response_model=ProfileForm)
def update_profile(profile: Annotated[ProfileForm, Form()]) -> ProfileForm:
    return profile


@app.post("/files", response_model=FileInfo)
def create_file(file: Annotated[bytes, File(description="Raw bytes")]) -> FileInfo:
    raise NotImplementedError


@app.post("/uploadfile", response_model=FileInfo)
def create_upload_file(file: UploadFile) -> FileInfo:
    raise NotImplementedError


@app.post("/uploadfiles", response_model=list[FileInfo])
def create_upload_files(
    files: Annotated[list[UploadFile], File(description="Several files")],
    note: Annotated[Optional[str], Form()] = None,
) -> list[FileInfo]:
    return []


@app.put("/users/{user_id}/avatar", response_model=FileInfo)
def put_avatar(
    user_id: int,
    caption: Annotated[str, Form(max_length=140)],
    avatar: Optional[UploadFile] = None,
) -> FileInfo:
    raise NotImplementedError


@app.get("/files/{name}", response_model=FileInfo)
def get_file_info(name: str) -> FileInfo:
    raise NotImplementedError


@app.delete("/files/{name}", status_code=204)
def delete_file(name: str) -> None:
    return None
