"""The sample history bundled with the package: a compact, byte-exact copy of ``../shared/data``.

``../shared/data`` (CSV files in ``prices/``, ``funding/``, ``basis/``, ``sentiment/`` and
``futures/``, about 5.6 MB) is not part of a user's clone, so the package ships it as one Parquet
file per CSV (zstd level 19, about 1.2 MB in all) in ``perphedge/data/sample_data/``:

* every column is ``VARCHAR`` and holds the CSV text *verbatim*, so the CSV files rebuilt from the
  bundle are byte-identical to the originals (checked against their SHA-256 on every rebuild) and
  the importer sees exactly what it sees in ``../shared/data``;
* ``README.md`` is the source's own README, verbatim (sources, commits, transformations, checks);
* ``PROVENANCE.md`` says what was bundled, from which repositories and commits, with row counts and
  the SHA-256 of every CSV and every bundled file;
* ``manifest.json`` (``perphedge.sample/1``) holds the same in machine-readable form.

Use it through :func:`materialise` (rebuild the ``../shared/data`` layout in a directory, e.g. to
import it with `perphedge data import --sample`), which checks every hash first.
Rebuild the bundle with ``python -m perphedge.data.sample build ../shared/data`` (deterministic:
the same source and DuckDB version give the same bytes); ``verify`` and ``extract DEST`` check and
unpack it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from perphedge.errors import DataError, PerphedgeError

__all__ = [
    "DIRECTORIES",
    "SCHEMA",
    "BundledFile",
    "Manifest",
    "Part",
    "build",
    "bundle_dir",
    "load_manifest",
    "main",
    "materialise",
    "read_csv_bytes",
    "shared_or_bundled",
    "verify",
]

SCHEMA = "perphedge.sample/1"
DIRECTORIES = ("prices", "funding", "basis", "sentiment", "futures")
MANIFEST = "manifest.json"
PROVENANCE = "PROVENANCE.md"
README = "README.md"
COMPRESSION_LEVEL = 19
ROW_GROUP_SIZE = 122_880
PART_ROWS = 8_192  # a CSV with more rows is bundled in parts of at most this many rows (each file < 200 kB)
_HEX40 = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Part:
    """One Parquet file of the bundle: ``rows`` consecutive data rows of one CSV."""

    path: str  # inside the bundle, e.g. ``prices/BTC.parquet`` or ``funding/X.2.parquet``
    rows: int
    bytes: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows, "bytes": self.bytes, "sha256": self.sha256}


@dataclass(frozen=True, slots=True, kw_only=True)
class BundledFile:
    """One CSV of the source and the Parquet file(s) that hold it."""

    csv: str  # path in the source layout, e.g. ``prices/BTC.csv``
    parts: tuple[Part, ...]  # in row order
    rows: int  # data rows (the header not counted)
    columns: tuple[str, ...]
    newline: str  # "\n" or "\r\n", as in the source file
    first: str | None  # first / last value of the `timestamp` column (None when the file has none)
    last: str | None
    csv_bytes: int
    csv_sha256: str

    @property
    def parquet_bytes(self) -> int:
        return sum(p.bytes for p in self.parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "csv": self.csv,
            "rows": self.rows,
            "columns": list(self.columns),
            "newline": self.newline,
            "first": self.first,
            "last": self.last,
            "csv_bytes": self.csv_bytes,
            "csv_sha256": self.csv_sha256,
            "parts": [p.as_dict() for p in self.parts],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """The bundle's manifest: files, hashes, sources, and the writer that made it."""

    files: tuple[BundledFile, ...]
    documents: dict[str, dict[str, Any]]  # README.md / PROVENANCE.md → {"bytes", "sha256"}
    sources: tuple[dict[str, str], ...]
    duckdb_version: str

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def total_bytes(self) -> int:
        """Bytes of everything bundled (Parquet files, README.md, PROVENANCE.md), manifest excluded."""
        return sum(f.parquet_bytes for f in self.files) + sum(int(d["bytes"]) for d in self.documents.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "description": (
                "Compact copy of perphedge's sample history (../shared/data): one Parquet file per CSV, every "
                "column VARCHAR holding the CSV text verbatim, zstd-compressed; the CSVs rebuilt from it are "
                "byte-identical to the originals (csv_sha256)."
            ),
            "format": {
                "parquet": "all columns VARCHAR, the CSV text verbatim, rows in file order",
                "part_rows": PART_ROWS,
                "compression": "zstd",
                "compression_level": COMPRESSION_LEVEL,
                "row_group_size": ROW_GROUP_SIZE,
            },
            "written_by": {"duckdb": self.duckdb_version},
            "sources": list(self.sources),
            "rows": self.rows,
            "total_bytes": self.total_bytes,
            "documents": dict(sorted(self.documents.items())),
            "files": [f.as_dict() for f in self.files],
        }


def bundle_dir() -> Path:
    """Directory of the bundled sample inside the installed package."""
    root = resources.files("perphedge.data") / "sample_data"
    path = Path(str(root))
    if not (path / MANIFEST).is_file():
        raise DataError(
            f"{path}: the bundled sample is missing (no {MANIFEST}); reinstall perphedge or rebuild it with "
            "`python -m perphedge.data.sample build ../shared/data`"
        )
    return path


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_manifest(bundle: Path | None = None) -> Manifest:
    """Read and check the shape of ``manifest.json`` (hashes are checked by :func:`verify`)."""
    root = bundle if bundle is not None else bundle_dir()
    path = root / MANIFEST
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file (not a perphedge sample bundle)") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read the sample manifest: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise DataError(f"{path}: field `schema`: must be {SCHEMA!r}, was {found!r}")
    try:
        files = tuple(
            BundledFile(
                csv=str(f["csv"]),
                parts=tuple(
                    Part(path=str(p["path"]), rows=int(p["rows"]), bytes=int(p["bytes"]), sha256=str(p["sha256"]))
                    for p in f["parts"]
                ),
                rows=int(f["rows"]),
                columns=tuple(str(c) for c in f["columns"]),
                newline=str(f["newline"]),
                first=None if f["first"] is None else str(f["first"]),
                last=None if f["last"] is None else str(f["last"]),
                csv_bytes=int(f["csv_bytes"]),
                csv_sha256=str(f["csv_sha256"]),
            )
            for f in doc["files"]
        )
        documents = {str(k): dict(v) for k, v in doc["documents"].items()}
        sources = tuple({str(k): str(v) for k, v in s.items()} for s in doc["sources"])
        version = str(doc["written_by"]["duckdb"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{path}: malformed sample manifest: {exc!r}") from exc
    for f in files:
        for name in (f.csv, *(p.path for p in f.parts)):
            _check_relative(name, path)
        if not f.parts or sum(p.rows for p in f.parts) != f.rows:
            raise DataError(f"{path}: `{f.csv}`: its parts hold {sum(p.rows for p in f.parts)} rows, not {f.rows}")
    return Manifest(files=files, documents=documents, sources=sources, duckdb_version=version)


def _check_relative(name: str, where: Path) -> None:
    parts = Path(name).parts
    if Path(name).is_absolute() or ".." in parts or len(parts) != 2 or parts[0] not in DIRECTORIES:
        raise DataError(f"{where}: file `{name}` is not <{'|'.join(DIRECTORIES)}>/<name>")


def _listed(manifest: Manifest) -> dict[str, tuple[int, str]]:
    out = {p.path: (p.bytes, p.sha256) for f in manifest.files for p in f.parts}
    out.update({name: (int(d["bytes"]), str(d["sha256"])) for name, d in manifest.documents.items()})
    return out


def verify(bundle: Path | None = None) -> Manifest:
    """Check that the bundle holds exactly the files its manifest lists, with their sizes and SHA-256."""
    root = bundle if bundle is not None else bundle_dir()
    manifest = load_manifest(root)
    listed = _listed(manifest)
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != MANIFEST}
    present = {p for p in present if "__pycache__" not in p}
    missing = sorted(set(listed) - present)
    if missing:
        raise DataError(f"{root}: bundled file `{missing[0]}` is missing ({len(missing)} missing)")
    extra = sorted(present - set(listed))
    if extra:
        raise DataError(f"{root}: `{extra[0]}` is not in {MANIFEST} (stale file? rebuild the bundle)")
    for name, (size, digest) in sorted(listed.items()):
        data = (root / name).read_bytes()
        if len(data) != size or _sha256(data) != digest:
            raise DataError(
                f"{root / name}: sha256 {_sha256(data)} ({len(data)} bytes) differs from {MANIFEST} "
                f"({digest}, {size} bytes): the bundled sample is damaged"
            )
    return manifest


def _connect() -> Any:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 1")  # one writer thread: byte-identical output run after run
    con.execute("SET preserve_insertion_order = true")
    return con


def _rows_of(path: Path, columns: Sequence[str]) -> list[tuple[str, ...]]:
    con = _connect()
    try:
        rel = con.execute("SELECT * FROM read_parquet(?)", [str(path)])
        names = tuple(d[0] for d in rel.description)
        rows: list[tuple[str, ...]] = rel.fetchall()
    except Exception as exc:  # duckdb raises its own error types for corrupt files
        raise DataError(f"{path}: cannot read the bundled Parquet file: {exc}") from exc
    finally:
        con.close()
    if names != tuple(columns):
        raise DataError(f"{path}: columns {list(names)} differ from the manifest's {list(columns)}")
    return rows


def _csv_bytes(columns: Sequence[str], rows: Sequence[Sequence[str | None]], newline: str, where: Path) -> bytes:
    lines = [",".join(columns)]
    for i, row in enumerate(rows):
        if any(v is None for v in row):
            raise DataError(f"{where}: row {i + 1} holds a NULL (the bundle stores text, never NULL)")
        lines.append(",".join(row))  # type: ignore[arg-type]
    return (newline.join(lines) + newline).encode("utf-8")


def read_csv_bytes(entry: BundledFile, bundle: Path | None = None) -> bytes:
    """The original CSV file of ``entry``, rebuilt from its Parquet file and checked against its SHA-256."""
    root = bundle if bundle is not None else bundle_dir()
    path = root / entry.parts[0].path
    rows: list[tuple[str, ...]] = []
    for part in entry.parts:
        got = _rows_of(root / part.path, entry.columns)
        if len(got) != part.rows:
            raise DataError(f"{root / part.path}: {len(got)} rows, the manifest says {part.rows}")
        rows += got
    data = _csv_bytes(entry.columns, rows, entry.newline, path)
    if _sha256(data) != entry.csv_sha256:
        raise DataError(f"{path}: the CSV rebuilt from it does not match its sha256 {entry.csv_sha256}")
    return data


def materialise(dest: Path, bundle: Path | None = None) -> Path:
    """Rebuild the ``../shared/data`` layout (CSV files and README.md) in ``dest``; return ``dest``.

    ``dest`` must not exist or be an empty directory. Every file is checked against its SHA-256
    before anything is written.
    """
    root = bundle if bundle is not None else bundle_dir()
    manifest = verify(root)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DataError(f"{dest}: must be a new or empty directory to extract the sample into")
    out = {f.csv: read_csv_bytes(f, root) for f in manifest.files}
    out[README] = (root / README).read_bytes()
    for name, data in out.items():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return dest


def shared_or_bundled(path: Path) -> Path:
    """``path`` (e.g. ``../shared/data``) when it exists, else the bundled sample rebuilt in a temporary
    directory that is removed when the process exits. For scripts (benchmarks) that want the sample layout."""
    import atexit
    import tempfile

    if path.exists():
        return path
    tmp = Path(tempfile.mkdtemp(prefix="perphedge-sample-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    print(f"{path} not found: using the sample history bundled with perphedge", file=sys.stderr)
    return materialise(tmp / "data")


# ------------------------------------------------------------------------------------------------ builder


def _parse_csv(path: Path) -> tuple[tuple[str, ...], list[list[str]], str]:
    """Header, rows (text verbatim) and line terminator of a plain CSV; refuse anything not round-trippable."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text: {exc}") from exc
    newline = "\r\n" if "\r\n" in text else "\n"
    if not text.endswith(newline):
        raise DataError(f"{path}: the last line must end with a line break")
    lines = text[: -len(newline)].split(newline)
    for i, line in enumerate(lines):
        if "\r" in line or "\n" in line:
            raise DataError(f"{path}: line {i + 1}: mixed line endings")
        if '"' in line:
            raise DataError(f"{path}: line {i + 1}: quoted fields are not supported in the sample bundle")
    header = tuple(lines[0].split(","))
    if len(set(header)) != len(header) or any(not h for h in header):
        raise DataError(f"{path}: line 1: column names must be unique and non-empty, were {list(header)}")
    rows = [line.split(",") for line in lines[1:]]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise DataError(f"{path}: line {i + 2}: {len(row)} fields, the header has {len(header)}")
    if not rows:
        raise DataError(f"{path}: no data rows")
    if _csv_bytes(header, rows, newline, path) != data:  # pragma: no cover - guarded by the checks above
        raise DataError(f"{path}: does not round-trip as plain CSV")
    return header, rows, newline


def _sources(readme: str, where: Path) -> tuple[dict[str, str], ...]:
    """Source repositories and snapshot commits named in the sample README (tables and prose)."""
    out: list[dict[str, str]] = []
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and _HEX40.match(cells[2]) and cells[1].startswith("`"):
            out.append({"key": cells[0], "repository": cells[1].strip("`"), "commit": cells[2], "used": cells[3]})
    section = ""
    for line in readme.splitlines():
        if line.startswith("### "):
            section = line[4:].split(" ", 1)[0]
        for m in re.finditer(r"`([\w.-]+/[\w.-]+)` at commit ([0-9a-f]{40})(?:, folder `([^`]+)`)?", line):
            used = f"{section} (folder `{m.group(3)}`)" if m.group(3) else section
            out.append({"key": section, "repository": m.group(1), "commit": m.group(2), "used": used})
    if not out:
        raise DataError(f"{where}: names no source repository with a 40-hex commit; cannot state provenance")
    return tuple(out)


def _source_files(source: Path) -> list[tuple[str, Path]]:
    if not source.is_dir():
        raise DataError(f"{source}: not a directory (expected the sample data, e.g. ../shared/data)")
    missing = [d for d in (README, *DIRECTORIES) if not (source / d).exists()]
    if missing:
        raise DataError(
            f"{source}: missing `{missing[0]}` (the sample layout has {README} and {', '.join(DIRECTORIES)}/)"
        )
    found: list[tuple[str, Path]] = []
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source).as_posix()
        if path.is_dir():
            if rel not in DIRECTORIES:
                raise DataError(f"{path}: unexpected directory in the sample layout")
            continue
        if rel == README:
            continue
        parts = Path(rel).parts
        if len(parts) != 2 or parts[0] not in DIRECTORIES or path.suffix != ".csv":
            raise DataError(f"{path}: unexpected file in the sample layout (only <dir>/<name>.csv and {README})")
        found.append((rel, path))
    if not found:
        raise DataError(f"{source}: no CSV files to bundle")
    return found


def _provenance(manifest: Manifest, readme_sha: str) -> str:
    mb = manifest.total_bytes / 1e6
    csv_mb = sum(f.csv_bytes for f in manifest.files) / 1e6
    lines = [
        "# Bundled sample history: provenance",
        "",
        "Generated by `python -m perphedge.data.sample build ../shared/data`; do not edit by hand.",
        "",
        f"A compact copy of perphedge's sample history (`../shared/data`): {len(manifest.files)} CSV files, "
        f"{manifest.rows:,} rows, {csv_mb:.2f} MB as CSV, bundled in {mb:.2f} MB "
        "(one Parquet file per CSV, zstd level "
        f"{COMPRESSION_LEVEL}, every column VARCHAR holding the CSV text verbatim, written by DuckDB "
        f"{manifest.duckdb_version}).",
        "",
        "The only transformation made here is that storage change: the CSVs rebuilt from the bundle "
        "(`perphedge data import --sample`, `python -m perphedge.data.sample extract DIR`) are byte-identical "
        "to the originals, which is checked against `csv_sha256` below every time. How the data was "
        "extracted from its source repositories, the timezone fixes, renames and cuts, and the checks "
        f"against independent copies are described in `{README}` beside this file, a verbatim copy of "
        f"`../shared/data/README.md` (sha256 `{readme_sha}`).",
        "",
        "## Sources (repository snapshots, as named in README.md)",
        "",
        "| key | repository | commit | used |",
        "|---|---|---|---|",
    ]
    lines += [f"| {s['key']} | `{s['repository']}` | {s['commit']} | {s['used']} |" for s in manifest.sources]
    lines += [
        "",
        "## Files",
        "",
        "| CSV | rows | first | last | CSV bytes | CSV sha256 | Parquet file | bytes | sha256 |",
        "|---|---:|---|---|---:|---|---|---:|---|",
    ]
    for f in manifest.files:
        for i, p in enumerate(f.parts):
            head = (
                f"| {f.csv} | {f.rows} | {f.first or '-'} | {f.last or '-'} | {f.csv_bytes} | {f.csv_sha256} "
                if i == 0
                else "| | | | | | "
            )
            lines.append(f"{head}| {p.path} | {p.bytes} | {p.sha256} |")
    lines += [
        "",
        f"`{README}`: {manifest.documents[README]['bytes']} bytes, sha256 `{manifest.documents[README]['sha256']}`.",
        "",
        "Check the bundle: `python -m perphedge.data.sample verify` (every file against `manifest.json`).",
        "",
    ]
    return "\n".join(lines)


@contextlib.contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A fresh directory beside ``out`` that replaces ``out`` when the block succeeds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def build(source: Path, out: Path) -> Manifest:
    """Bundle the sample layout under ``source`` into ``out`` (replaced whole); deterministic."""
    import duckdb
    import pandas as pd

    files = _source_files(source)
    readme = (source / README).read_bytes()
    sources = _sources(readme.decode("utf-8", errors="replace"), source / README)
    entries: list[BundledFile] = []
    with _staging(out) as tmp:
        (tmp / README).write_bytes(readme)
        parsed = [(rel, path, *_parse_csv(path)) for rel, path in files]  # every file checked before writing
        con = _connect()
        try:
            for rel, path, header, rows, newline in parsed:
                stem = rel[: -len(".csv")]
                chunks = [rows[i : i + PART_ROWS] for i in range(0, len(rows), PART_ROWS)]
                parts: list[Part] = []
                for n, chunk in enumerate(chunks, start=1):
                    target_rel = f"{stem}.parquet" if len(chunks) == 1 else f"{stem}.{n}.parquet"
                    target = tmp / target_rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    con.register("frame", pd.DataFrame(chunk, columns=list(header), dtype=object))
                    quoted = target.as_posix().replace("'", "''")
                    con.execute(
                        f"COPY (SELECT * FROM frame) TO '{quoted}' (FORMAT parquet, COMPRESSION zstd, "
                        f"COMPRESSION_LEVEL {COMPRESSION_LEVEL}, ROW_GROUP_SIZE {ROW_GROUP_SIZE})"
                    )
                    con.unregister("frame")
                    data = target.read_bytes()
                    parts.append(Part(path=target_rel, rows=len(chunk), bytes=len(data), sha256=_sha256(data)))
                raw = path.read_bytes()
                ts = header.index("timestamp") if "timestamp" in header else None
                entry = BundledFile(
                    csv=rel,
                    parts=tuple(parts),
                    rows=len(rows),
                    columns=header,
                    newline=newline,
                    first=rows[0][ts] if ts is not None else None,
                    last=rows[-1][ts] if ts is not None else None,
                    csv_bytes=len(raw),
                    csv_sha256=_sha256(raw),
                )
                read_csv_bytes(entry, tmp)  # the round trip is exact, or the build fails here
                entries.append(entry)
        finally:
            con.close()
        documents = {README: {"bytes": len(readme), "sha256": _sha256(readme)}}
        draft = Manifest(files=tuple(entries), documents=documents, sources=sources, duckdb_version=duckdb.__version__)
        provenance = _provenance(draft, _sha256(readme)).encode("utf-8")
        (tmp / PROVENANCE).write_bytes(provenance)
        documents[PROVENANCE] = {"bytes": len(provenance), "sha256": _sha256(provenance)}
        manifest = Manifest(
            files=tuple(entries), documents=documents, sources=sources, duckdb_version=duckdb.__version__
        )
        (tmp / MANIFEST).write_text(json.dumps(manifest.as_dict(), indent=1) + "\n", encoding="utf-8")
        verify(tmp)
    return manifest


def _default_source() -> str:
    return os.environ.get("PERPHEDGE_SAMPLE_DATA", "../shared/data")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perphedge.data.sample build|verify|extract``."""
    parser = argparse.ArgumentParser(
        prog="python -m perphedge.data.sample",
        description="Build, check or unpack the sample history bundled with perphedge.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="bundle ../shared/data into the package (replaces the bundle)")
    b.add_argument(
        "source", nargs="?", default=None, help="the sample data (default $PERPHEDGE_SAMPLE_DATA or ../shared/data)"
    )
    b.add_argument("--out", default=None, help="bundle directory (default: the package's sample_data/)")
    v = sub.add_parser("verify", help="check every bundled file against manifest.json")
    v.add_argument("--bundle", default=None)
    e = sub.add_parser("extract", help="rebuild the ../shared/data layout (CSV files) in a new directory")
    e.add_argument("dest")
    e.add_argument("--bundle", default=None)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            out = Path(args.out) if args.out else Path(str(resources.files("perphedge.data") / "sample_data"))
            m = build(Path(args.source or _default_source()), out)
            print(f"bundled {len(m.files)} files, {m.rows:,} rows, {m.total_bytes:,} bytes into {out}")
        elif args.command == "verify":
            bundle = Path(args.bundle) if args.bundle else None
            m = verify(bundle)
            print(f"ok: {len(m.files)} files, {m.rows:,} rows, {m.total_bytes:,} bytes match manifest.json")
        else:
            bundle = Path(args.bundle) if args.bundle else None
            dest = materialise(Path(args.dest), bundle)
            print(f"extracted the sample history into {dest}")
    except PerphedgeError as exc:
        print(f"perphedge: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
