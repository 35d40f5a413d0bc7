"""Import refuses what is wrong, with one line naming the file, the line and the rule; nothing is half-written.

Timestamps (unit, years, time zones, candle boundaries), funding spacing, timeframes, foreign store
files; the whole import as one transaction; a killed import; the use-case boundary.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perphedge.data.importer import last_year, parse_file, parse_sample
from perphedge.data.store import INTERRUPTED, SCHEMA_VERSION, MarketStore
from perphedge.errors import ConfigError, DataError
from perphedge.usecases.data import CheckRequest, ImportRequest, StatusRequest, import_data, import_frames
from perphedge.usecases.data import check as check_store
from perphedge.usecases.data import status as store_status
from tests.conftest import REPO, run_cli, sample_dir

HEADER = "timestamp,open,high,low,close,volume\n"
ROW = "1,2,0.5,1.5,10"
NEXT = last_year() + 1


def ohlcv(tmp_path: Path, stamps: list[str], name: str = "f.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(f"{s},{ROW}\n" for s in stamps))
    return path


def funding(tmp_path: Path, rows: list[str], header: str = "timestamp,funding_rate", name: str = "fr.csv") -> Path:
    path = tmp_path / name
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert "\n" not in err and err.startswith("perphedge: error: "), err
    assert "Traceback" not in r.stderr
    return err


def import_ohlcv(path: Path, **options: Any) -> Any:
    return parse_file(path, kind="ohlcv", source="x", symbol="A/USDT", **options)


# ---------------------------------------------------------------------------------------------- timestamps

BAD_TIMESTAMPS: dict[str, tuple[list[str], dict[str, Any], str]] = {
    "s_then_ms": (
        ["1704067200", "1704153600000"],
        {},
        "line 3: epoch timestamp '1704153600000' looks like milliseconds but line 2 ('1704067200') looks like seconds",
    ),
    "ms_then_s": (["1704067200000", "1704153600"], {}, "line 3: epoch timestamp '1704153600' looks like seconds"),
    "ms_then_us": (["1704067200000", "1704153600000000"], {}, "looks like microseconds but line 2"),
    "epoch_then_iso": (["1704067200", "2024-01-02"], {}, "line 3: timestamp '2024-01-02' is a date/time but line 2"),
    "iso_then_epoch": (["2024-01-01", "1704153600"], {}, "line 3: timestamp '1704153600' is an epoch number"),
    "year_2008": (["2024-01-01", "2008-12-31"], {}, "line 3: timestamp '2008-12-31' is in the year 2008"),
    "year_2001": (["2001-01-01"], {}, "line 2: timestamp '2001-01-01' is in the year 2001: years must be within 2009"),
    "year_after_next": (["2024-01-01", f"{NEXT}-01-01"], {}, f"line 3: timestamp '{NEXT}-01-01' is in the year {NEXT}"),
    "seconds_far_future": (["10000000000"], {}, "is in the year 2286 (read as epoch seconds)"),
    "ms_read_as_s": (["86400000"], {}, "is in the year 1972 (read as epoch seconds)"),
    "huge": (["1e20"], {}, "(read as epoch nanoseconds)"),
    "inf": (["inf"], {}, "line 2: timestamp 'inf' is not a finite number"),
    "empty": (["2024-01-01", ""], {}, "line 3: empty timestamp"),
    "ambiguous_us_date": (["01/02/2024"], {}, "line 2: unparsable timestamp '01/02/2024' (ISO 8601"),
    "daily_at_5h": (["2024-01-01T05:00:00Z"], {}, "line 2: a 1d candle must open at 00:00 UTC; this one opens at"),
    "daily_second_row_off": (["2024-01-01", "2024-01-02 00:00:01"], {}, "line 3: a 1d candle must open at 00:00"),
    "daily_local_dates": (["2024-07-01"], {"tz": "Europe/London"}, "opens at 2024-06-30 23:00:00 UTC"),
    "weekly_not_monday": (["2024-01-03"], {"timeframe": "1w"}, "a 1w candle must open at Monday 00:00 UTC"),
    "8h_at_4h": (["2024-01-01T04:00:00Z"], {"timeframe": "8h"}, "must open at 00:00, 08:00 or 16:00 UTC"),
    "mixed_offsets": (
        ["2024-01-01T00:00:00Z", "2024-01-02T00:00:00+02:00"],
        {},
        "line 3: timestamp '2024-01-02T00:00:00+02:00' is at UTC+02:00 but line 2 ('2024-01-01T00:00:00Z') is at UTC",
    ),
    "mixed_nonzero_offsets": (
        ["2024-01-01T01:00:00+01:00", "2024-01-02T02:00:00+02:00"],
        {},
        "is at UTC+02:00 but line 2 ('2024-01-01T01:00:00+01:00') is at UTC+01:00: one time zone per file",
    ),
    "aware_then_naive": (
        ["2024-01-01T00:00:00Z", "2024-01-02T00:00:00"],
        {},
        "line 3: timestamp '2024-01-02T00:00:00' states no time zone but line 2 ('2024-01-01T00:00:00Z') does",
    ),
    "naive_then_aware": (["2024-01-01 00:00", "2024-01-02 00:00Z"], {}, "line 3: timestamp '2024-01-02 00:00Z' states"),
    "dst_gap": (["2024-03-31 01:30"], {"tz": "Europe/London", "timeframe": "1m"}, "does not exist or is ambiguous"),
}


@pytest.mark.parametrize("case", sorted(BAD_TIMESTAMPS))
def test_bad_timestamps_are_refused_with_their_line(tmp_path: Path, case: str) -> None:
    stamps, options, expected = BAD_TIMESTAMPS[case]
    path = ohlcv(tmp_path, stamps)
    with pytest.raises(DataError) as exc:
        import_ohlcv(path, **options)
    assert str(exc.value).startswith(f"{path}: ") and expected in str(exc.value), str(exc.value)


GOOD_TIMESTAMPS: dict[str, tuple[list[str], dict[str, Any], list[str]]] = {
    "epoch_seconds": (["1704067200", "1704153600"], {}, ["2024-01-01 00:00:00", "2024-01-02 00:00:00"]),
    "epoch_ms": (["1704067200000", "1704153600000"], {}, ["2024-01-01 00:00:00", "2024-01-02 00:00:00"]),
    "epoch_ms_float": (["1704067200000.0"], {}, ["2024-01-01 00:00:00"]),
    "same_offset_everywhere": (
        ["2024-01-01T02:00:00+02:00", "2024-01-02T02:00:00+0200"],
        {},
        ["2024-01-01 00:00:00", "2024-01-02 00:00:00"],
    ),
    "z_and_utc_suffix": (
        ["2024-01-01T00:00:00Z", "2024-01-02 00:00 UTC"],
        {},
        ["2024-01-01 00:00:00", "2024-01-02 00:00:00"],
    ),
    "local_hours": (["2023-07-01 01:00", "2023-12-01 00:00"], {"tz": "Europe/London", "timeframe": "1h"}, []),
    "weekly_monday": (
        ["2024-01-01", "2024-01-08"],
        {"timeframe": "1w"},
        ["2024-01-01 00:00:00", "2024-01-08 00:00:00"],
    ),
    "first_year": (["2009-01-03"], {}, ["2009-01-03 00:00:00"]),
    "next_year": ([f"{NEXT - 1}-12-31"], {}, [f"{NEXT - 1}-12-31 00:00:00"]),
}


@pytest.mark.parametrize("case", sorted(GOOD_TIMESTAMPS))
def test_good_timestamps_are_read_as_utc(tmp_path: Path, case: str) -> None:
    stamps, options, expected = GOOD_TIMESTAMPS[case]
    parsed = import_ohlcv(ohlcv(tmp_path, stamps), **options)
    got = [str(t) for t in parsed.frame["ts"]]
    if expected:
        assert got == expected
    else:
        assert got == ["2023-07-01 00:00:00", "2023-12-01 00:00:00"]  # BST in July, GMT in December
    assert not parsed.warnings


def test_offsets_with_tz_option_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"state their own time zone \(UTC\+02:00\), so `--tz Europe/Paris` would"):
        import_ohlcv(ohlcv(tmp_path, ["2024-01-01T02:00:00+02:00"]), tz="Europe/Paris")


@pytest.mark.parametrize("tz", ["Mars/Olympus", "UTC+2", ""])
def test_unknown_time_zone_is_a_config_error(tmp_path: Path, tz: str) -> None:
    with pytest.raises(ConfigError, match="invalid `--tz`"):
        import_ohlcv(ohlcv(tmp_path, ["2024-01-01"]), tz=tz)


@pytest.mark.parametrize("timeframe", ["2d", "1D", "", "1M", "daily"])
def test_unknown_timeframe_is_refused(tmp_path: Path, timeframe: str) -> None:
    with pytest.raises(ConfigError, match=r"invalid `--timeframe`: must be one of 1m, 5m, 15m, 1h, 4h, 8h, 1d, 1w"):
        import_ohlcv(ohlcv(tmp_path, ["2024-01-01"]), timeframe=timeframe)


def test_align_snaps_to_the_nearest_boundary_and_says_so(tmp_path: Path) -> None:
    path = ohlcv(tmp_path, ["2023-12-31T23:00:00Z", "2024-01-02T04:00:00Z", "2024-01-03T00:00:00Z"])
    parsed = import_ohlcv(path, align=True)
    assert [str(t) for t in parsed.frame["ts"]] == ["2024-01-01 00:00:00", "2024-01-02 00:00:00", "2024-01-03 00:00:00"]
    assert parsed.warnings == (f"{path}: --align moved 2 of 3 1d candles to 00:00 UTC (by up to 4 h)",)
    assert parsed.report().warnings == parsed.warnings


def test_align_refuses_what_it_cannot_place(tmp_path: Path) -> None:
    half = ohlcv(tmp_path, ["2024-01-01T12:00:00Z"], "half.csv")
    with pytest.raises(DataError, match="line 2: 2024-01-01 12:00:00 UTC is exactly between two 1d boundaries"):
        import_ohlcv(half, align=True)
    clash = tmp_path / "clash.csv"
    clash.write_text(HEADER + "2024-01-01T01:00:00Z,1,2,0.5,1.5,10\n2023-12-31T23:00:00Z,1,2,0.5,1.6,10\n")
    with pytest.raises(DataError, match="line 3: duplicate timestamp 2024-01-01 00:00:00 with values that differ"):
        import_ohlcv(clash, align=True)
    with pytest.raises(ConfigError, match="`--align` applies to OHLCV candles"):
        parse_file(clash, kind="funding", source="x", symbol="A/USDT:USDT", align=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    days=st.lists(st.integers(0, 5000), min_size=2, max_size=30, unique=True),
    unit=st.sampled_from(["s", "ms"]),
    flip=st.integers(0, 10_000),
)
def test_epoch_units_round_trip_and_a_mixed_file_is_refused(
    tmp_path: Path, days: list[int], unit: str, flip: int
) -> None:
    base = datetime(2010, 1, 1, tzinfo=UTC).timestamp()
    factor = 1000 if unit == "ms" else 1
    stamps = [int((base + d * 86_400) * factor) for d in days]
    path = ohlcv(tmp_path, [str(s) for s in stamps], "epoch.csv")
    parsed = import_ohlcv(path)
    expected = sorted(pd.Timestamp(base + d * 86_400, unit="s") for d in days)
    assert list(parsed.frame["ts"]) == expected
    k = flip % len(stamps)
    mixed = list(stamps)
    mixed[k] = stamps[k] // 1000 if unit == "ms" else stamps[k] * 1000
    bad = ohlcv(tmp_path, [str(s) for s in mixed], "mixed.csv")
    with pytest.raises(DataError, match="one unit per file"):
        import_ohlcv(bad)


# ---------------------------------------------------------------------------------------------- funding spacing


def test_funding_spacing_that_contradicts_the_interval_is_refused(tmp_path: Path) -> None:
    rows = ["2024-01-01T00:00:00Z,0.0001", "2024-01-01T08:00:00Z,0.0001", "2024-01-01T12:00:00Z,0.0001"]
    path = funding(tmp_path, rows)
    with pytest.raises(DataError) as exc:
        parse_file(path, kind="funding", source="x", symbol="A/USDT:USDT", interval_hours=8)
    assert str(exc.value).startswith(
        f"{path}: line 4: funding settlement 2024-01-01 12:00:00 is 4 h after the previous"
    )
    assert "contradicts its interval of 8 h (from --interval-hours)" in str(exc.value)
    twelve = funding(tmp_path, ["2024-01-01T00:00:00Z,0.0001", "2024-01-01T12:00:00Z,0.0001"], name="12.csv")
    with pytest.raises(DataError, match=r"line 3: .* is 12 h after .* contradicts its interval of 8 h"):
        parse_file(twelve, kind="funding", source="x", symbol="A/USDT:USDT", interval_hours=8)
    column = funding(
        tmp_path,
        ["2024-01-01T00:00:00Z,0.0001,8", "2024-01-01T08:00:00Z,0.0001,8", "2024-01-01T12:00:00Z,0.0001,8"],
        header="timestamp,funding_rate,interval_hours",
        name="col.csv",
    )
    with pytest.raises(
        DataError, match=r"line 4: .* contradicts its interval of 8 h \(from its `interval_hours` column\)"
    ):
        parse_file(column, kind="funding", source="x", symbol="A/USDT:USDT")


def test_missing_settlements_are_a_warning_and_changing_intervals_need_a_column(tmp_path: Path) -> None:
    rows = [f"2024-01-01T{h:02d}:00:00Z,0.0001" for h in (0, 1, 2, 5, 6)]
    parsed = parse_file(funding(tmp_path, rows), kind="funding", source="x", symbol="A/USD:A", interval_hours=1)
    assert parsed.rows == 5
    assert parsed.warnings == (
        f"{tmp_path / 'fr.csv'}: 2 funding settlements missing in 1 gaps "
        "(first: 2024-01-01 02:00:00 → 2024-01-01 05:00:00, line 5)",
    )
    bitmex_like = funding(
        tmp_path,
        ["2016-05-14T12:00:00Z,0.0001,24", "2016-05-15T12:00:00Z,0.0002,24", "2016-05-15T20:00:00Z,0.0001,8"],
        header="timestamp,funding_rate,interval_hours",
        name="bitmex.csv",
    )
    ok = parse_file(bitmex_like, kind="funding", source="x", symbol="BTC/USD:BTC")
    assert ok.frame["interval_hours"].tolist() == [24.0, 24.0, 8.0] and not ok.warnings
    with pytest.raises(ConfigError, match="has an `interval_hours` column, so `--interval-hours` would be ignored"):
        parse_file(bitmex_like, kind="funding", source="x", symbol="BTC/USD:BTC", interval_hours=8)


@pytest.mark.parametrize("value", [0.0, -8.0, float("nan"), float("inf"), 1000.0])
def test_interval_option_must_be_sane(tmp_path: Path, value: float) -> None:
    path = funding(tmp_path, ["2024-01-01T00:00:00Z,0.0001"])
    with pytest.raises(ConfigError, match="invalid `--interval-hours`"):
        parse_file(path, kind="funding", source="x", symbol="A/USDT:USDT", interval_hours=value)


def test_sample_irregularities_still_import_with_a_warning() -> None:
    files = {Path(f.file).name: f for f in parse_sample(sample_dir())}
    deribit = files["DERIBIT_BTC-PERPETUAL_1h.csv"]
    assert deribit.warnings and "2 funding settlements missing in 1 gaps" in deribit.warnings[0]
    assert "2020-08-27 05:00:00 → 2020-08-27 08:00:00" in deribit.warnings[0]
    bitmex = files["BITMEX_XBTUSD.csv"]
    assert not bitmex.warnings and sorted(set(bitmex.frame["interval_hours"])) == [8.0, 24.0]
    assert [name for name, f in files.items() if f.warnings] == ["DERIBIT_BTC-PERPETUAL_1h.csv"]


# ---------------------------------------------------------------------------------------------- the store file


def test_a_file_that_is_not_a_perphedge_store_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.duckdb"
    text.write_text("not a database at all, just some text long enough to have a header" * 3)
    with pytest.raises(DataError, match="is not a DuckDB file, so not a perphedge market store"):
        MarketStore(text)
    foreign = tmp_path / "foreign.duckdb"
    con = duckdb.connect(str(foreign))
    con.execute("CREATE TABLE users (id INTEGER)")
    con.close()
    before = foreign.read_bytes()
    for read_only in (False, True):
        with pytest.raises(
            DataError, match=r"is a DuckDB database but not a perphedge market store \(it holds the tables users\)"
        ):
            MarketStore(foreign, read_only=read_only)
    assert foreign.read_bytes() == before
    lookalike = tmp_path / "lookalike.duckdb"  # another application's schema_version is not ours
    con = duckdb.connect(str(lookalike))
    con.execute("CREATE TABLE schema_version (version INTEGER); CREATE TABLE orders (id INTEGER)")
    con.close()
    with pytest.raises(DataError, match="not a perphedge market store"):
        MarketStore(lookalike)
    with pytest.raises(DataError, match="is a directory; give a file path"):
        MarketStore(tmp_path)
    empty = tmp_path / "empty.duckdb"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="is empty"):
        MarketStore(empty, read_only=True)
    with MarketStore(empty) as store:  # an empty file holds nothing: it becomes a new store
        assert store.counts()["candles"] == 0


def test_cli_refuses_foreign_store_files(tmp_path: Path) -> None:
    good = ohlcv(tmp_path, ["2024-01-01"])
    foreign = tmp_path / "foreign.duckdb"
    con = duckdb.connect(str(foreign))
    con.execute("CREATE TABLE trades (id INTEGER)")
    con.close()
    text = tmp_path / "text.duckdb"
    text.write_text("hello " * 100)
    args = ("data", "import", str(good), "--kind", "ohlcv", "--source", "x", "--symbol", "A/USDT", "--store")
    assert "not a perphedge market store (it holds the tables trades)" in one_line_error(run_cli(*args, str(foreign)))
    assert "is not a DuckDB file" in one_line_error(run_cli(*args, str(text)))
    assert "is a directory" in one_line_error(run_cli(*args, str(tmp_path)))
    home_file = tmp_path / "home-is-a-file"
    home_file.write_text("x")
    err = one_line_error(run_cli("data", "import", str(good), *args[3:-1], env={"PERPHEDGE_HOME": str(home_file)}))
    assert str(home_file) in err  # named, whichever check sees it first


# ---------------------------------------------------------------------------------------------- through the CLI

CLI_CASES: dict[str, tuple[list[str], list[str], str]] = {
    "mixed_units": (["1704067200", "1704153600000"], [], "line 3: epoch timestamp '1704153600000' looks like ms"),
    "year": (["2024-01-01", "2031-01-02"], [], "line 3: timestamp '2031-01-02' is in the year 2031"),
    "not_midnight": (["2024-01-01T05:00:00Z"], [], "line 2: a 1d candle must open at 00:00 UTC"),
    "mixed_tz": (["2024-01-01T00:00:00Z", "2024-01-02T00:00:00+02:00"], [], "line 3: timestamp"),
    "timeframe": (["2024-01-01"], ["--timeframe", "2d"], "invalid `--timeframe`: must be one of"),
    "tz": (["2024-01-01"], ["--tz", "Nowhere/City"], "invalid `--tz`"),
    "columns": (["2024-01-01"], ["--columns", "closing=Close"], "invalid `--columns`: 'closing' is not one of ours"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_refuses_with_one_line_and_writes_nothing(tmp_path: Path, case: str) -> None:
    stamps, extra, expected = CLI_CASES[case]
    path = ohlcv(tmp_path, stamps)
    store = tmp_path / "s.duckdb"
    r = run_cli(
        "data",
        "import",
        str(path),
        "--kind",
        "ohlcv",
        "--source",
        "x",
        "--symbol",
        "A/USDT",
        *extra,
        "--store",
        str(store),
    )
    err = one_line_error(r)
    assert expected.replace("looks like ms", "looks like milliseconds") in err
    assert not store.exists()  # validation comes before the store is even opened


def test_cli_align_and_funding_warning(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    path = ohlcv(tmp_path, ["2024-01-01T02:00:00Z"])
    base = (
        "data",
        "import",
        str(path),
        "--kind",
        "ohlcv",
        "--source",
        "x",
        "--symbol",
        "A/USDT",
        "--store",
        str(store),
    )
    r = run_cli(*base, "--align", "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["files"][0]["first"] == "2024-01-01 00:00:00" and len(doc["warnings"]) == 1
    fr = funding(tmp_path, [f"2024-01-01T{h:02d}:00:00Z,0.0001" for h in (0, 8, 16)] + ["2024-01-02T16:00:00Z,0.0001"])
    r = run_cli(
        "data",
        "import",
        str(fr),
        "--kind",
        "funding",
        "--source",
        "x",
        "--symbol",
        "A/USDT:USDT",
        "--interval-hours",
        "8",
        "--store",
        str(store),
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().startswith("perphedge: warning: ") and "2 funding settlements missing in 1 gaps" in r.stderr
    r = run_cli("data", "import", str(sample_dir()), "--kind", "ohlcv", "--store", str(store))
    assert "`--kind` applies to a single file" in one_line_error(r)
    r = run_cli(
        "data",
        "import",
        str(fr),
        "--kind",
        "funding",
        "--source",
        "x",
        "--symbol",
        "A",
        "--timeframe",
        "1h",
        "--store",
        str(store),
    )
    assert "`--timeframe` applies to OHLCV candles" in one_line_error(r)


# ---------------------------------------------------------------------------------------------- one transaction


def _copy_sample(tmp_path: Path) -> Path:
    root = tmp_path / "sample"
    shutil.copytree(sample_dir(), root, ignore=shutil.ignore_patterns("futures"))
    return root


def _snapshot(path: Path) -> dict[str, Any]:
    with MarketStore(path, read_only=True) as store:
        return {
            "counts": store.counts(),
            "runs": store.runs(100),
            "sum": store.query("SELECT sum(close) AS s FROM candles")["s"].iloc[0],
        }


@pytest.mark.parametrize(
    "victim,damage,expected",
    [
        ("sentiment/fear_greed.csv", "2024-13-01,50\n", "unparsable timestamp '2024-13-01'"),
        ("funding/OKX_ETH-USDT-SWAP.csv", "2024-07-01T04:00:00Z,0.0001\n", "contradicts its interval of 8 h"),
        ("prices/XRP.csv", "1767225600000,1,2,0.5,1.5,10\n", "is an epoch number but line 2"),
    ],
)
def test_one_bad_file_rejects_the_whole_directory_and_the_store_is_unchanged(
    tmp_path: Path, victim: str, damage: str, expected: str
) -> None:
    root = _copy_sample(tmp_path)
    with (root / victim).open("a") as fh:
        fh.write(damage)
    fresh = tmp_path / "fresh.duckdb"
    err = one_line_error(run_cli("data", "import", str(root), "--store", str(fresh)))
    assert str(root / victim) in err and expected in err
    assert not fresh.exists()
    existing = tmp_path / "existing.duckdb"
    single = ohlcv(tmp_path, ["2024-01-01", "2024-01-02"])
    assert (
        run_cli(
            "data",
            "import",
            str(single),
            "--kind",
            "ohlcv",
            "--source",
            "x",
            "--symbol",
            "A/USDT",
            "--store",
            str(existing),
        ).returncode
        == 0
    )
    before = _snapshot(existing)
    one_line_error(run_cli("data", "import", str(root), "--store", str(existing)))
    assert _snapshot(existing) == before


def test_a_write_that_fails_midway_leaves_nothing_and_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = parse_sample(sample_dir())
    path = tmp_path / "s.duckdb"
    with MarketStore(path) as store:
        real = store.upsert
        calls = {"n": 0}

        def flaky(table: str, frame: pd.DataFrame) -> int:
            calls["n"] += 1
            if calls["n"] == 20:
                raise DataError("disk full (simulated)")
            return real(table, frame)

        monkeypatch.setattr(store, "upsert", flaky)
        with pytest.raises(DataError, match="disk full"):
            import_frames(store, files, source="sample")
        assert calls["n"] == 20
        assert all(n == 0 for n in store.counts().values())
        (run,) = store.unfinished_runs()
        assert run["state"] == "failed" and run["detail"] == "disk full (simulated)" and run["rows"] == 0
    doc = store_status(StatusRequest(store=path))
    assert doc["complete"] is False and doc["incomplete"][0]["source"] == "sample"
    findings = check_store(CheckRequest(store=path))["findings"]
    assert findings[0]["kind"] == "incomplete" and "failed (disk full (simulated))" in findings[0]["detail"]
    with MarketStore(path) as store:
        import_frames(store, files, source="sample")
    doc = store_status(StatusRequest(store=path))
    assert doc["complete"] is True and [r["state"] for r in doc["imports"]] == ["complete", "failed"]
    assert not [f for f in check_store(CheckRequest(store=path))["findings"] if f["kind"] == "incomplete"]


KILL_SELF = """
import os, signal, sys
from pathlib import Path
from perphedge.data.importer import parse_sample
from perphedge.data.store import MarketStore
from perphedge.usecases.data import import_frames

files = parse_sample(Path(sys.argv[1]))
store = MarketStore(sys.argv[2])
real = store.upsert
n = {"calls": 0}
def upsert(table, frame):
    n["calls"] += 1
    if n["calls"] == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(table, frame)
store.upsert = upsert
import_frames(store, files, source=str(Path(sys.argv[1]).resolve()))
"""


def _clean_counts(tmp_path: Path) -> dict[str, int]:
    path = tmp_path / "clean.duckdb"
    r = run_cli("data", "import", str(sample_dir()), "--store", str(path))
    assert r.returncode == 0, r.stderr
    with MarketStore(path, read_only=True) as store:
        return store.counts()


def test_import_killed_inside_its_transaction_says_so_and_a_rerun_completes(tmp_path: Path) -> None:
    clean = _clean_counts(tmp_path)
    path = tmp_path / "killed.duckdb"
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SELF, str(sample_dir()), str(path), "25"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with MarketStore(path, read_only=True) as store:
        assert all(n == 0 for n in store.counts().values())  # the open transaction died with the process
        (run,) = store.unfinished_runs()
        assert run["state"] == "running"
    r = run_cli("data", "status", "--store", str(path))
    assert r.returncode == 0 and r.stdout.startswith("INCOMPLETE: import #1 of ") and "is running" in r.stdout
    doc = json.loads(run_cli("data", "status", "--store", str(path), "--format", "json").stdout)
    assert doc["complete"] is False and doc["incomplete"][0]["state"] == "running"
    r = run_cli("data", "check", "--strict", "--store", str(path), "--format", "json")
    assert r.returncode == 1 and json.loads(r.stdout)["findings"][0]["kind"] == "incomplete"
    assert run_cli("data", "import", str(sample_dir()), "--store", str(path)).returncode == 0
    with MarketStore(path, read_only=True) as store:
        assert store.counts() == clean and not store.unfinished_runs()
        runs = store.runs()
    assert [(r["state"], r["detail"]) for r in runs] == [("complete", None), ("failed", INTERRUPTED)]
    r = run_cli("data", "status", "--store", str(path))
    assert "INCOMPLETE" not in r.stdout


def _wait_for(path: Path, proc: subprocess.Popen[bytes], limit: float) -> float:
    """Poll until ``path`` exists (the import reached its write phase); seconds waited."""
    t0 = time.monotonic()
    while not path.exists() and proc.poll() is None and time.monotonic() - t0 < limit:
        time.sleep(0.005)
    return time.monotonic() - t0


def test_import_killed_at_random_moments(tmp_path: Path) -> None:
    """kill -9 of `perphedge data import <sample>` into a fresh store, 8 times at random moments (half of them
    inside the write phase): the store is absent or empty, complete, or says its import is unfinished, never half
    written; a re-run always ends at the clean counts."""
    clean = _clean_counts(tmp_path)
    exe = str(Path(sys.executable).parent / "perphedge")
    cmd = [exe, "data", "import", str(sample_dir()), "--store"]
    timed = tmp_path / "timed.duckdb"
    t0 = time.monotonic()
    proc = subprocess.Popen([*cmd, str(timed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    to_write = _wait_for(timed, proc, 120)
    assert proc.wait(timeout=120) == 0
    duration = time.monotonic() - t0
    writing = max(duration - to_write, 0.05)
    rng = random.Random(20261122)
    outcomes = []
    for trial in range(8):
        path = tmp_path / f"kill-{trial}.duckdb"
        proc = subprocess.Popen([*cmd, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if trial % 2:
            _wait_for(path, proc, 2 * duration)
            time.sleep(rng.uniform(0.0, 1.1) * writing)
        else:
            time.sleep(rng.uniform(0.2, 1.0) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        outcomes.append(_killed_state(path, clean))
        r = run_cli("data", "import", str(sample_dir()), "--store", str(path))
        assert r.returncode == 0, r.stderr
        with MarketStore(path, read_only=True) as store:
            assert store.counts() == clean and not store.unfinished_runs()
    assert len(outcomes) == 8 and set(outcomes) <= {"absent", "empty", "incomplete", "complete"}


def _killed_state(path: Path, clean: dict[str, int]) -> str:
    if not path.exists():
        return "absent"
    try:
        with MarketStore(path, read_only=True) as store:
            counts, unfinished = store.counts(), store.unfinished_runs()
    except DataError as exc:
        assert "holds no data yet" in str(exc) or "is empty (0 bytes)" in str(exc), str(exc)
        return "empty"
    if counts == clean:
        assert not unfinished, unfinished  # the rows and the `complete` commit together
        return "complete"
    assert all(n == 0 for n in counts.values()), counts  # never half an import
    if not unfinished:
        return "empty"
    r = run_cli("data", "status", "--store", str(path), "--format", "json")
    assert json.loads(r.stdout)["complete"] is False
    assert "INCOMPLETE: import #1" in run_cli("data", "status", "--store", str(path)).stdout
    return "incomplete"


# ---------------------------------------------------------------------------------------------- use-case boundary


def test_import_use_case_validates_everything_before_opening_the_store(tmp_path: Path) -> None:
    good = ohlcv(tmp_path, ["2024-01-01"])
    store = tmp_path / "s.duckdb"
    with pytest.raises(ConfigError, match=r"needs `--kind ohlcv\|funding`"):
        import_data(ImportRequest(path=str(good), store=store))
    with pytest.raises(ConfigError, match="no such file or directory"):
        import_data(ImportRequest(path=str(tmp_path / "nope.csv"), store=store))
    assert not store.exists()
    doc = import_data(ImportRequest(path=str(good), kind="ohlcv", source="Kraken", symbol="A/USD", store=store))
    assert doc["schema"] == "perphedge.data-import/1" and doc["rows"] == 1 and doc["import_id"] == 1
    assert doc["files"][0]["source"] == "kraken" and doc["warnings"] == []


def test_edges_and_adapters_keep_to_their_layer() -> None:
    src = REPO / "src" / "perphedge"
    cli = (src / "cli" / "data.py").read_text()
    assert "MarketStore" not in cli and "from perphedge.data" not in cli and "from perphedge.exchange" not in cli
    adapter = (src / "exchange" / "ccxt_source.py").read_text()
    assert "MarketStore" not in adapter and "upsert" not in adapter and "last_ts" not in adapter
    importer = (src / "data" / "importer.py").read_text()
    assert "MarketStore" not in importer and "upsert" not in importer


def test_a_store_of_the_previous_schema_is_upgraded_on_first_read(tmp_path: Path) -> None:
    from perphedge.data.store import MIGRATIONS

    path = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL)")
    con.execute(MIGRATIONS[0])
    con.execute("INSERT INTO schema_version VALUES (1, now()::TIMESTAMP)")
    con.execute("INSERT INTO candles VALUES ('binance', 'BTC/USDT', '1d', '2024-01-01', 1, 2, 0.5, 1.5, 3)")
    con.close()
    doc = store_status(StatusRequest(store=path))
    assert doc["complete"] is True and doc["imports"] == [] and doc["series"][0]["rows"] == 1
    with MarketStore(path, read_only=True) as store:
        assert len(store.query("SELECT * FROM schema_version")) == SCHEMA_VERSION


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"", "the file is empty"),
        (HEADER.encode(), "no rows to import (the file has only a header)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00\x01", "not a text CSV file"),
        (HEADER.encode() + b"2024-01-01,1,2,0.5,nan,10\n", "line 2: `close` is not a number: 'nan'"),
        (HEADER.encode() + b"2024-01-01,1,inf,0.5,1.5,10\n", "line 2: `high` must be a finite number, was 'inf'"),
        (HEADER.encode() + b"2024-01-01,1,2,0.5,1.5,-3\n", "line 2: volume must be >= 0"),
    ],
)
def test_unreadable_or_empty_files_are_one_line(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    with pytest.raises(DataError) as exc:
        import_ohlcv(path)
    assert str(exc.value).startswith(str(path)) and expected in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "request_,expected",
    [
        (CheckRequest(outlier_z=float("nan")), "invalid `--outlier-z`"),
        (CheckRequest(outlier_z=-1), "invalid `--outlier-z`"),
        (CheckRequest(stale_days=-1), "invalid `--stale-days`"),
    ],
)
def test_check_options_are_validated(request_: CheckRequest, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        check_store(request_)


MUTATIONS = {
    "hour": lambda day: f"{day}T05:00:00",
    "year": lambda day: f"2008{day[4:]}",
    "epoch_ms": lambda day: str(int(pd.Timestamp(day).timestamp() * 1000)),
    "offset": lambda day: f"{day}T00:00:00+00:00",
    "garbage": lambda day: f"{day}x",
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 40),
    start=st.integers(0, 4000),
    where=st.integers(0, 10_000),
    mutation=st.sampled_from(sorted(MUTATIONS)),
)
def test_one_bad_timestamp_anywhere_is_found_on_its_line(
    tmp_path: Path, n: int, start: int, where: int, mutation: str
) -> None:
    days = [str((pd.Timestamp("2010-01-01") + pd.Timedelta(days=start + i)).date()) for i in range(n)]
    k = where % n
    stamps = list(days)
    stamps[k] = MUTATIONS[mutation](days[k])
    path = ohlcv(tmp_path, stamps, "m.csv")
    if n == 1 and mutation in ("epoch_ms", "offset"):
        parsed = import_ohlcv(path)  # a file of one row has one unit and one time zone: it is fine
        assert [str(t.date()) for t in parsed.frame["ts"]] == days
        return
    with pytest.raises(DataError) as exc:
        import_ohlcv(path)
    assert f"{path}: line {k + 2}:" in str(exc.value) or (k == 0 and f"{path}: line 3:" in str(exc.value)), str(
        exc.value
    )


def test_a_device_or_pipe_is_never_a_store_and_never_removed(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.duckdb"
    os.mkfifo(fifo)
    for read_only in (False, True):
        with pytest.raises(DataError, match="is not a regular file"):
            MarketStore(fifo, read_only=read_only)
    assert fifo.exists() and not fifo.is_file()
    target = tmp_path / "empty-target.duckdb"
    target.write_bytes(b"")
    link = tmp_path / "link.duckdb"
    link.symlink_to(target)
    with pytest.raises(DataError, match="is not a DuckDB file"):
        MarketStore(link)  # an empty file behind a link is not replaced
    assert link.is_symlink() and target.exists()


@pytest.mark.parametrize("stamp", ["2024-01-01T00:00:00+25:00", "2024-01-01T00:00:00-13:00", "2024-01-01T00:00+01:75"])
def test_offsets_no_time_zone_has_are_refused(tmp_path: Path, stamp: str) -> None:
    with pytest.raises(DataError, match=r"line 2: .* which no time zone has \(offsets run from -12:00 to \+14:00\)"):
        import_ohlcv(ohlcv(tmp_path, [stamp]))


def test_the_journal_names_an_import_by_its_label(tmp_path: Path) -> None:
    good = ohlcv(tmp_path, ["2024-01-01"])
    store = tmp_path / "s.duckdb"
    req = ImportRequest(path=str(good), kind="ohlcv", source="x", symbol="A/USDT", store=store, label="bundled sample")
    assert import_data(req)["source"] == "bundled sample"
    assert [r["source"] for r in store_status(StatusRequest(store=store))["imports"]] == ["bundled sample"]
