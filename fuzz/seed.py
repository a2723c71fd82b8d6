"""Writes one seed per response fixture into fuzz/corpus/classify: the bytes the target's
`Reply` reads (status - 100 as u16 little-endian, truncated = false, no headers), then the
fixture as the body."""
import pathlib
import struct

root = pathlib.Path(__file__).resolve().parent
out = root / "corpus" / "classify"
out.mkdir(parents=True, exist_ok=True)
for fixture in sorted((root.parent / "tests" / "fixtures" / "responses").iterdir()):
    status = int(fixture.name[:3])
    (out / f"seed-{fixture.stem}").write_bytes(struct.pack("<H", status - 100) + b"\0\0\0\0" + fixture.read_bytes())
print(f"{len(list(out.iterdir()))} files in {out}")
