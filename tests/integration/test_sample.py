"""The sample history bundled with the package: faithful, checked, offline, installable.

When ``../shared/data`` is present the bundle is compared with it; when it is absent (a user's
clone) the same tests compare the bundle with a rebuild of itself and with its recorded hashes, so
nothing is skipped.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from perphedge.data import sample
from perphedge.data.store import MarketStore
from perphedge.errors import DataError
from tests.conftest import REPO, run_cli, sample_dir, shared_sample_dir

LIMIT_BYTES = 3_000_000
TABLES = {
    "candles": "source, symbol, timeframe, ts, open, high, low, close, volume",
    "funding": "source, symbol, ts, rate, interval_hours, mark_price",
    "basis": "source, asset, ts, timeframe, spot_open, spot_close, perp_linear_open, perp_linear_close, "
    "perp_inverse_open, perp_inverse_close",
    "sentiment": "source, name, ts, value",
    "futures_candles": "source, symbol, timeframe, ts, expiry, open, high, low, close, spot_close, perp_close",
    "futures_settlements": "source, symbol, expiry, settlement_price",
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def manifest() -> sample.Manifest:
    return sample.load_manifest()


@pytest.fixture
def bundle_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "bundle"
    shutil.copytree(sample.bundle_dir(), dest)
    return dest


# ------------------------------------------------------------------------------------------ the bundle itself


def test_bundle_is_small_and_complete(manifest: sample.Manifest) -> None:
    root = sample.bundle_dir()
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total <= LIMIT_BYTES, f"bundle is {total:,} bytes"
    assert max(p.stat().st_size for p in root.rglob("*.parquet")) < 200_000  # no single large data file
    dirs = {f.csv.split("/")[0] for f in manifest.files}
    assert dirs == set(sample.DIRECTORIES)  # prices, funding, basis, sentiment and futures
    assert {f.csv for f in manifest.files} >= {
        "prices/BTC.csv",
        "prices/MATIC.csv",
        "funding/DERIBIT_BTC-PERPETUAL_1h.csv",
        "funding/BINANCE_BTCUSDT_dailymean.csv",
        "basis/OKX_ETH_8h.csv",
        "sentiment/fear_greed.csv",
        "futures/BINANCE_BTCUSD_quarterly_2021_settlements.csv",
    }
    assert not list(root.rglob("*.csv"))  # the CSVs themselves are never in the repository


def test_manifest_hashes_match_the_files(manifest: sample.Manifest) -> None:
    root = sample.bundle_dir()
    for f in manifest.files:
        for part in f.parts:
            assert _sha(root / part.path) == part.sha256, part.path
            assert (root / part.path).stat().st_size == part.bytes
    for name, doc in manifest.documents.items():
        assert _sha(root / name) == doc["sha256"], name
    assert set(manifest.documents) == {"README.md", "PROVENANCE.md"}
    assert sample.verify() == manifest


def test_provenance_names_sources_commits_counts_and_hashes(manifest: sample.Manifest) -> None:
    text = (sample.bundle_dir() / "PROVENANCE.md").read_text(encoding="utf-8")
    repos = {s["repository"]: s["commit"] for s in manifest.sources}
    assert repos["smjjjjjj/101-alphas-in-cryptocurrency-market"] == "11bdc93110c72604349cf5c1daaeafd72e68130f"
    assert repos["tkwsean/SpotFuturesArbitrage"] == "a438975c77d91c4de864cbfb975a1aa1da8505ff"
    assert len(repos) == 8
    for repo, commit in repos.items():
        assert f"`{repo}` | {commit}" in text
    for f in manifest.files:
        assert f"| {f.csv} | {f.rows} |" in text and f.csv_sha256 in text
        assert all(p.sha256 in text for p in f.parts)
    rows = {f.csv: f.rows for f in manifest.files}
    assert rows["prices/BTC.csv"] == 3059 and rows["prices/SOL.csv"] == 1969  # as in the source README
    assert rows["funding/DERIBIT_BTC-PERPETUAL_1h.csv"] == 16007
    assert rows["futures/BINANCE_BTCUSD_quarterly_1d_2021.csv"] == 441
    readme = (sample.bundle_dir() / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("# Historical crypto market data") and "Provenance and cross-checks" in readme


def test_bundle_equals_the_source_byte_for_byte(manifest: sample.Manifest, tmp_path: Path) -> None:
    """Every CSV rebuilt from the bundle is the source CSV, exactly (../shared/data or, absent, its hashes)."""
    source = shared_sample_dir()
    out = sample.materialise(tmp_path / "data")
    for f in manifest.files:
        rebuilt = (out / f.csv).read_bytes()
        assert hashlib.sha256(rebuilt).hexdigest() == f.csv_sha256 and len(rebuilt) == f.csv_bytes
        if source is not None:
            assert rebuilt == (source / f.csv).read_bytes(), f.csv
    if source is not None:
        wanted = {p.relative_to(source).as_posix() for p in source.rglob("*.csv")}
        assert wanted == {f.csv for f in manifest.files}  # nothing left out
        assert (out / "README.md").read_bytes() == (source / "README.md").read_bytes()
    crlf = [f.csv for f in manifest.files if f.newline == "\r\n"]
    assert crlf and all(b"\r\n" in (out / c).read_bytes() for c in crlf)  # line endings kept as they were


def test_the_builder_reproduces_the_bundle(manifest: sample.Manifest, tmp_path: Path) -> None:
    """Build from ../shared/data (or, without it, from the bundle's own CSVs): same content; same bytes
    when the DuckDB version is the one that wrote the bundle."""
    out = tmp_path / "built"
    built = sample.build(sample_dir(), out)
    assert built.sources == manifest.sources
    assert [(f.csv, f.rows, f.columns, f.newline, f.first, f.last, f.csv_sha256) for f in built.files] == [
        (f.csv, f.rows, f.columns, f.newline, f.first, f.last, f.csv_sha256) for f in manifest.files
    ]
    assert [[p.path for p in f.parts] for f in built.files] == [[p.path for p in f.parts] for f in manifest.files]
    assert built.documents["README.md"] == manifest.documents["README.md"]
    if built.duckdb_version == manifest.duckdb_version:  # deterministic: the very same bytes
        root = sample.bundle_dir()
        ours = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        assert ours == sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        for name in ours:
            assert (root / name).read_bytes() == (out / name).read_bytes(), name


def test_package_data_ships_the_bundle() -> None:
    """A non-editable install has the bundle: every bundled file matches a package-data pattern."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["perphedge"]
    package = REPO / "src" / "perphedge"
    files = [p.relative_to(package).as_posix() for p in sample.bundle_dir().rglob("*") if p.is_file()]
    assert files
    unmatched = [
        f for f in files if not any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/") for pat in patterns)
    ]
    assert not unmatched, f"not in package-data: {unmatched}"


def test_no_absolute_path_to_shared() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=False).stdout
    names = tracked.split() or [p.relative_to(REPO).as_posix() for p in (REPO / "src").rglob("*.py")]
    needle = "/work" + "/shared"  # ../shared is found relative to the clone, or through its variables
    offenders = []
    for name in names:
        path = REPO / name
        text_file = path.is_file() and path.suffix in (".py", ".toml", ".yaml", ".cfg", ".md", ".json", "")
        if text_file and needle in path.read_text(errors="replace"):
            offenders.append(name)
    assert not offenders


# --------------------------------------------------------------------------------------- damage is refused


def test_a_damaged_bundle_is_refused(bundle_copy: Path, tmp_path: Path) -> None:
    m = sample.load_manifest(bundle_copy)
    victim = bundle_copy / m.files[0].parts[0].path
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"sha256 .* differs from manifest.json .* damaged"):
        sample.verify(bundle_copy)
    with pytest.raises(DataError, match="damaged"):
        sample.materialise(tmp_path / "out", bundle_copy)
    assert not (tmp_path / "out").exists()  # nothing written


def test_missing_extra_and_foreign_files_are_refused(bundle_copy: Path) -> None:
    m = sample.load_manifest(bundle_copy)
    (bundle_copy / "prices" / "PEPE.parquet").write_bytes(b"x")
    with pytest.raises(DataError, match=r"prices/PEPE.parquet` is not in manifest.json"):
        sample.verify(bundle_copy)
    (bundle_copy / "prices" / "PEPE.parquet").unlink()
    (bundle_copy / m.files[-1].parts[0].path).unlink()
    with pytest.raises(DataError, match=rf"`{m.files[-1].parts[0].path}` is missing"):
        sample.verify(bundle_copy)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(schema="perphedge.sample/0"), r"field `schema`: must be 'perphedge.sample/1', was"),
        (lambda d: d["files"][0].pop("csv_sha256"), "malformed sample manifest"),
        (lambda d: d["files"][0]["parts"][0].update(path="../../etc/passwd"), "is not <prices"),
        (lambda d: d["files"][0].update(rows=d["files"][0]["rows"] + 1), "parts hold"),
    ],
)
def test_a_malformed_manifest_is_refused(bundle_copy: Path, edit: object, message: str) -> None:
    path = bundle_copy / "manifest.json"
    doc = json.loads(path.read_text())
    edit(doc)  # type: ignore[operator]
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=message):
        sample.verify(bundle_copy)


def test_tampered_rows_fail_the_csv_hash(bundle_copy: Path, tmp_path: Path) -> None:
    """A Parquet file rewritten with one value changed (and the manifest's file hash updated) still fails."""
    import duckdb

    m = sample.load_manifest(bundle_copy)
    entry = next(f for f in m.files if f.csv == "prices/BTC.csv")
    part = bundle_copy / entry.parts[0].path
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS SELECT * FROM read_parquet('{part}')")
    con.execute("UPDATE t SET close = '1.0' WHERE timestamp = '2024-03-13'")
    con.execute(f"COPY t TO '{part}' (FORMAT parquet, COMPRESSION zstd)")
    con.close()
    doc = json.loads((bundle_copy / "manifest.json").read_text())
    for f in doc["files"]:
        for p in f["parts"]:
            if p["path"] == entry.parts[0].path:
                p.update(sha256=_sha(part), bytes=part.stat().st_size)
    (bundle_copy / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"prices/BTC.parquet: the CSV rebuilt from it does not match its sha256"):
        sample.materialise(tmp_path / "out", bundle_copy)


def test_materialise_needs_a_new_or_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="must be a new or empty directory"):
        sample.materialise(tmp_path / "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    assert (sample.materialise(tmp_path / "empty") / "prices" / "BTC.csv").is_file()


# ------------------------------------------------------------------------------------------------ builder

README_ROW = "| K | `owner/repo` | " + "a" * 40 + " | `data/x.csv` |\n"


def _tiny_source(root: Path, rows: int = 3) -> Path:
    """A small source in the sample layout: a README naming one source, one CSV per directory."""
    for d in sample.DIRECTORIES:
        (root / d).mkdir(parents=True)
    (root / "README.md").write_text("# tiny\n\n| key | repository | commit | what |\n|---|---|---|---|\n" + README_ROW)
    days = pd.date_range("2020-01-01", periods=rows, freq="D").strftime("%Y-%m-%d")
    (root / "prices" / "BTC.csv").write_text(
        "timestamp,open,high,low,close,volume\n" + "".join(f"{d},1,2,0.5,1.5,{i}\n" for i, d in enumerate(days))
    )
    (root / "funding" / "BINANCE_BTCUSDT.csv").write_text("timestamp,funding_rate\n2020-01-01T00:00:00Z,1e-4\n")
    (root / "basis" / "OKX_BTC_8h.csv").write_text("timestamp,spot_open\n2023-01-01T00:00:00Z,16573.0\n")
    (root / "sentiment" / "fear_greed.csv").write_text("timestamp,value\n2018-02-01,30\n")
    (root / "futures" / "settle.csv").write_bytes(b"contract,expiry\r\nBTCUSD_210326,2021-03-26T08:00:00Z\r\n")
    return root


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: (r / "README.md").unlink(), "missing `README.md`"),
        (lambda r: shutil.rmtree(r / "futures"), "missing `futures`"),
        (lambda r: (r / "prices" / "notes.txt").write_text("x"), "unexpected file in the sample layout"),
        (lambda r: (r / "prices" / "deep").mkdir(), "unexpected directory"),
        (lambda r: (r / "other").mkdir(), "unexpected directory"),
        (lambda r: (r / "prices" / "X.csv").write_text('timestamp,close\n"2024-01-01",1\n'), "quoted fields"),
        (lambda r: (r / "prices" / "X.csv").write_text("timestamp,close\n2024-01-01,1,2\n"), "line 2: 3 fields"),
        (lambda r: (r / "prices" / "X.csv").write_text("timestamp,close\n2024-01-01,1"), "must end with a line"),
        (lambda r: (r / "prices" / "X.csv").write_bytes(b"timestamp,close\r\n2024-01-01,1\n"), "must end with"),
        (lambda r: (r / "prices" / "X.csv").write_bytes(b"a,b\r\n1,2\n3,4\r\n"), "mixed line endings"),
        (lambda r: (r / "prices" / "X.csv").write_text("timestamp,close\n"), "no data rows"),
        (lambda r: (r / "prices" / "X.csv").write_text("timestamp,timestamp\n1,2\n"), "must be unique"),
        (lambda r: (r / "prices" / "X.csv").write_bytes(b"timestamp,close\n2024-01-01,\xff\n"), "not UTF-8"),
        (lambda r: (r / "README.md").write_text("# no sources here\n"), "names no source repository"),
    ],
)
def test_builder_refuses_what_it_cannot_bundle_exactly(tmp_path: Path, mutate: object, message: str) -> None:
    root = _tiny_source(tmp_path / "src")
    assert sample.build(root, tmp_path / "ok").rows == 7  # the untouched source builds
    mutate(root)  # type: ignore[operator]
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous bundle")
    with pytest.raises(DataError, match=message):
        sample.build(root, out)
    assert [p.name for p in out.iterdir()] == ["old.txt"]  # a failed build leaves the old bundle alone
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # and no staging left over


def test_build_replaces_a_bundle_whole_and_is_deterministic(tmp_path: Path) -> None:
    root = _tiny_source(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.parquet").write_bytes(b"old")
    first = sample.build(root, out)
    assert not (out / "stale.parquet").exists()
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert sample.build(root, out) == first
    assert before == {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert first.sources == ({"key": "K", "repository": "owner/repo", "commit": "a" * 40, "used": "`data/x.csv`"},)
    assert (
        sample.materialise(tmp_path / "x", out)
        and (tmp_path / "x" / "futures" / "settle.csv").read_bytes() == (root / "futures" / "settle.csv").read_bytes()
    )


def test_large_files_are_split_into_parts_and_rejoined(tmp_path: Path) -> None:
    rows = 2 * sample.PART_ROWS + 5
    root = _tiny_source(tmp_path / "src", rows=rows)
    m = sample.build(root, tmp_path / "out")
    btc = next(f for f in m.files if f.csv == "prices/BTC.csv")
    assert [p.rows for p in btc.parts] == [sample.PART_ROWS, sample.PART_ROWS, 5]
    assert [p.path for p in btc.parts] == [f"prices/BTC.{i}.parquet" for i in (1, 2, 3)]
    assert (btc.first, btc.last) == (
        "2020-01-01",
        str((pd.Timestamp("2020-01-01") + pd.Timedelta(days=rows - 1)).date()),
    )
    assert sample.read_csv_bytes(btc, tmp_path / "out") == (root / "prices" / "BTC.csv").read_bytes()
    (tmp_path / "out" / "prices" / "BTC.2.parquet").unlink()
    with pytest.raises(DataError, match=r"`prices/BTC.2.parquet` is missing"):
        sample.verify(tmp_path / "out")


def test_module_command_line(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "perphedge.data.sample", *args], capture_output=True, text=True, check=False
        )

    r = run("verify")
    assert r.returncode == 0 and r.stdout.startswith("ok: 39 files, 101,802 rows"), r.stdout + r.stderr
    r = run("extract", str(tmp_path / "x"))
    assert r.returncode == 0 and (tmp_path / "x" / "funding" / "BITMEX_XBTUSD.csv").is_file()
    r = run("extract", str(tmp_path / "x"))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"perphedge: error: {tmp_path / 'x'}: must be a new or empty directory to extract the sample into"
    ]
    r = run("build", str(tmp_path / "nothing"), "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "not a directory" in r.stderr and "Traceback" not in r.stderr
    r = run("build", str(_tiny_source(tmp_path / "tiny")), "--out", str(tmp_path / "b"))
    assert r.returncode == 0 and "bundled 5 files, 7 rows" in r.stdout, r.stdout + r.stderr
    assert run("verify", "--bundle", str(tmp_path / "b")).returncode == 0


# ------------------------------------------------------------------------------------- import --sample (CLI)


def _dump(path: Path) -> dict[str, pd.DataFrame]:
    with MarketStore(path, read_only=True) as store:
        return {t: store.query(f"SELECT {cols} FROM {t} ORDER BY ALL") for t, cols in TABLES.items()}


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """``perphedge data import --sample`` into a new store, once: (store path, JSON document)."""
    path = tmp_path_factory.mktemp("sample-import") / "s.duckdb"
    r = run_cli("data", "import", "--sample", "--store", str(path), "--format", "json")
    assert r.returncode == 0, r.stderr
    return path, json.loads(r.stdout)


def test_import_sample_equals_importing_the_directory(
    manifest: sample.Manifest, imported: tuple[Path, dict[str, object]], sample_store_path: Path
) -> None:
    """Table by table, every value: ``--sample`` = ``perphedge data import ../shared/data``."""
    path, doc = imported
    assert doc["store"] == str(path)
    files = doc["files"]
    assert isinstance(files, list)
    assert {f["file"] for f in files} == {f"sample:{f.csv}" for f in manifest.files}  # futures/ too (issue 16)
    ours, theirs = _dump(path), _dump(sample_store_path)  # the session store: import_sample(sample_dir())
    for table in TABLES:
        pd.testing.assert_frame_equal(ours[table], theirs[table], check_exact=True, obj=table)
    rows = {f.csv: f.rows for f in manifest.files}
    mark, fund = "futures/BINANCE_BTCUSD_PERP_mark_1d_2021.csv", "futures/BINANCE_BTCUSD_PERP_funding_2021.csv"
    assert len(ours["candles"]) == sum(n for c, n in rows.items() if c.startswith("prices/")) + rows[mark]
    assert len(ours["funding"]) == sum(n for c, n in rows.items() if c.startswith("funding/")) + rows[fund]
    assert len(ours["basis"]) == sum(n for c, n in rows.items() if c.startswith("basis/"))
    assert len(ours["sentiment"]) == rows["sentiment/fear_greed.csv"]
    assert len(ours["futures_candles"]) == rows["futures/BINANCE_BTCUSD_quarterly_1d_2021.csv"] == 441
    assert len(ours["futures_settlements"]) == rows["futures/BINANCE_BTCUSD_quarterly_2021_settlements.csv"] == 3
    assert doc["rows"] == sum(len(f) for f in ours.values()) == 100_266 + 273 + 819 + 441 + 3


def test_imported_prices_and_funding_equal_the_csvs_exactly(imported: tuple[Path, dict[str, object]]) -> None:
    source = sample_dir()
    with MarketStore(imported[0], read_only=True) as store:
        for csv in sorted((source / "prices").glob("*.csv")):
            got = store.query(
                "SELECT strftime(ts, '%Y-%m-%d') AS timestamp, open, high, low, close, volume FROM candles "
                "WHERE source = 'binance' AND symbol = ? ORDER BY ts",
                [f"{csv.stem}/USDT"],
            )
            pd.testing.assert_frame_equal(got, pd.read_csv(csv), check_exact=True, obj=csv.name)
        for name, symbol in (
            ("BINANCE_BTCUSDT", "BTC/USDT:USDT"),
            ("BYBIT_ETHUSD", "ETH/USD:ETH"),
            ("OKX_BTC-USD-SWAP", "BTC/USD:BTC"),
        ):
            got = store.query(
                "SELECT strftime(ts, '%Y-%m-%dT%H:%M:%SZ') AS timestamp, rate AS funding_rate FROM funding "
                "WHERE source = ? AND symbol = ? ORDER BY ts",
                [name.split("_")[0].lower(), symbol],
            )
            src = pd.read_csv(source / "funding" / f"{name}.csv")
            pd.testing.assert_frame_equal(got, src, check_exact=True, obj=name)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sample", "some/dir"], "give either PATH (some/dir) or `--sample`, not both"),
        (["some/dir", "--sample"], "give either PATH (some/dir) or `--sample`, not both"),
        (["--sample", "--kind", "ohlcv"], "`--kind`: for importing one file, not with `--sample`"),
        (["--sample", "--symbol", "X", "--interval-hours", "8"], "`--symbol`, `--interval-hours`: for importing one"),
        (["--format", "json"], "missing PATH"),
    ],
)
def test_import_sample_misuse_is_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    r = run_cli("data", "import", *args, "--store", str(tmp_path / "s.duckdb"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"perphedge: error: {message}"), r.stderr
    assert not (tmp_path / "s.duckdb").exists()


def test_shared_or_bundled_falls_back_to_the_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sample.shared_or_bundled(tmp_path) == tmp_path  # present: used as it is
    root = sample.shared_or_bundled(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    assert (root / "prices" / "BTC.csv").read_bytes().startswith(b"timestamp,open,high,low,close,volume\n")
    assert "using the sample history bundled with perphedge" in capsys.readouterr().err
