#!/usr/bin/env python3
"""Regenerate tests/fixtures/specs/: OpenAPI 3.1 documents written by real FastAPI apps.

The apps are in scripts/fastapi_corpus/*.py, one document each, each covering a group of
shapes that pydantic v2 and FastAPI emit. The documents are `app.openapi()` unedited, as JSON
with indent 2 and a trailing newline; the README beside them is generated too.

Usage (maintainers; the tests read the committed files and stay offline):

    python3 scripts/fastapi-spec-corpus.py            # throwaway venv in a temp dir
    python3 scripts/fastapi-spec-corpus.py --venv DIR # create or reuse a venv at DIR
    python3 scripts/fastapi-spec-corpus.py --check    # regenerate elsewhere, diff, write nothing

Needs Python >= 3.11 (FastAPI's floor) and pip access to PyPI. Every package is pinned, and the
apps run with PYTHONHASHSEED=0 (FastAPI picks one method of a multi-method route from a set when
it names the operation), so a rerun reproduces the files byte for byte.
"""

import argparse
import difflib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import venv
import warnings
from pathlib import Path

# The whole installed set (`pip freeze` after installing the first three), pinned so that a
# transitive update cannot change the documents.
PINS = [
    "fastapi==0.165.0",
    "pydantic==2.14.4",
    "python-multipart==0.0.34",
    "pydantic_core==2.50.5",
    "starlette==1.10.0",
    "annotated-doc==0.0.7",
    "annotated-types==0.8.0",
    "anyio==4.16.0",
    "idna==3.20",
    "opentelemetry-api==1.45.2",
    "typing-inspection==0.4.5",
    "typing_extensions==4.16.0",
]

# Documents, in README order: tests/fixtures/specs/<name>.json from scripts/fastapi_corpus/<name>.py.
APPS = ["models", "unions", "params", "forms", "responses", "routers"]

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "specs"
COMMAND = "python3 scripts/fastapi-spec-corpus.py"


def pin(name):
    return next(p.split("==")[1] for p in PINS if p.split("==")[0] == name)


def render(doc):
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def readme(sections):
    lines = [
        "# FastAPI-generated OpenAPI 3.1 documents",
        "",
        "Written by `scripts/fastapi-spec-corpus.py` (do not edit by hand; rerun it):",
        "",
        "```sh",
        COMMAND,
        "```",
        "",
        f"FastAPI {pin('fastapi')}, pydantic {pin('pydantic')} (pydantic-core {pin('pydantic_core')}), "
        f"Starlette {pin('starlette')}, python-multipart {pin('python-multipart')}; "
        "the script pins every package it installs.",
        "Each document is `app.openapi()` of one small app in `scripts/fastapi_corpus/<name>.py`, unedited,",
        "as JSON with indent 2 and a trailing newline. `tests/it/spec_corpus.rs` runs the client generator",
        "over each of them.",
        "",
    ]
    for name, doc, caught in sections:
        lines.append(f"## `{name}.json`")
        lines.append("")
        lines.extend(doc.strip().splitlines())
        lines.append("")
        if caught:
            lines.append("FastAPI warned while writing it:")
            lines.append("")
            lines.extend(f"- {w}" for w in caught)
            lines.append("")
    return "\n".join(lines)


def dump(out):
    """Runs inside the venv: imports each app and writes its document."""
    from importlib.metadata import version

    for p in PINS:
        name, wanted = p.split("==")
        have = version(name)
        if have != wanted:
            sys.exit(f"{name} {have} is installed, the script pins {wanted}")
    if os.environ.get("PYTHONHASHSEED") != "0" and not os.environ.get("CORPUS_ANY_HASHSEED"):
        sys.exit("run with PYTHONHASHSEED=0 (the script does this for you)")
    sys.path.insert(0, str(SCRIPTS / "fastapi_corpus"))
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    for name in APPS:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = importlib.import_module(name)
            doc = module.app.openapi()
        (out / f"{name}.json").write_text(render(doc), encoding="utf-8")
        # FastAPI names the app's file by absolute path; keep the README machine-independent.
        messages = sorted({str(w.message).replace(f"{ROOT}{os.sep}", "") for w in caught})
        sections.append((name, module.__doc__ or "", messages))
    (out / "README.md").write_text(readme(sections), encoding="utf-8")


def make_venv(path):
    python = path / "bin" / "python"
    if not python.exists():
        venv.EnvBuilder(with_pip=True, clear=False).create(path)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input", *PINS],
        check=True,
    )
    return python


def run_in(python, out):
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    subprocess.run([str(python), __file__, "--dump", str(out)], check=True, env=env)


def compare(fresh, committed):
    names = sorted({p.name for p in fresh.iterdir()} | {p.name for p in committed.glob("*") if p.is_file()})
    same = True
    for name in names:
        a, b = committed / name, fresh / name
        old_bytes = a.read_bytes() if a.exists() else None
        new_bytes = b.read_bytes() if b.exists() else None
        if old_bytes != new_bytes:
            old = (old_bytes or b"").decode("utf-8").splitlines(keepends=True)
            new = (new_bytes or b"").decode("utf-8").splitlines(keepends=True)
            same = False
            sys.stdout.writelines(difflib.unified_diff(old, new, f"committed/{name}", f"fresh/{name}"))
            print(f"differs: {name}")
    return same


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, help="create or reuse the venv here instead of a temp dir")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--check", action="store_true", help="compare a fresh run with --out; write nothing")
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dump:
        dump(args.dump)
        return
    if sys.version_info < (3, 11):
        sys.exit("FastAPI 0.165 needs Python >= 3.11")
    with tempfile.TemporaryDirectory(prefix="fastapi-corpus-") as tmp:
        python = make_venv(args.venv.resolve() if args.venv else Path(tmp) / "venv")
        if args.check:
            fresh = Path(tmp) / "specs"
            run_in(python, fresh)
            if not compare(fresh, args.out):
                sys.exit(1)
            print(f"{args.out}: up to date")
        else:
            run_in(python, args.out)
            print(f"wrote {len(APPS)} documents and README.md to {args.out}")


if __name__ == "__main__":
    main()
