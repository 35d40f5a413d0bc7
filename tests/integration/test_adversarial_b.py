"""Regression tests of an adversarial pass over data import/fetch/status/check, analyze, backtest, sweep and
stress: each case was accepted silently, crashed, printed ``None`` or many lines before its fix."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from perphedge.cli.options import write_plots
from perphedge.data.importer import parse_file
from perphedge.data.store import MarketStore
from perphedge.errors import ConfigError, DataError
from perphedge.usecases.data import import_frames
from tests.conftest import REPO, run_cli

RUNS = REPO / "runs"
ALTS = REPO / "examples" / "altcoins.yaml"
HEADER = "timestamp,open,high,low,close,volume\n"
ROW = "2024-01-01,10,11,9,10.5,100\n"


def one_line_error(r: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, exactly one stderr line ``perphedge: error: ...`` holding every needle; no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr)
    lines = [x for x in r.stderr.splitlines() if x.strip() and "━" not in x]
    assert len(lines) == 1 and lines[0].startswith("perphedge: error: "), r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr and "None" not in lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _import(
    tmp_path: Path, body: str, *extra: str, kind: str = "ohlcv", symbol: str = "X/USDT"
) -> tuple[subprocess.CompletedProcess[str], Path]:
    csv = tmp_path / "in.csv"
    csv.write_text(body, newline="")
    store = tmp_path / "s.duckdb"
    r = run_cli(
        "data", "import", str(csv), "--kind", kind, "--source", "t", "--symbol", symbol, "--store", str(store), *extra
    )
    return r, store


# ------------------------------------------------------------------------------------------------ import: CSV


@pytest.mark.parametrize(
    ("header", "row", "column"),
    [
        ("timestamp,open,high,low,close,close,volume", "2024-01-01,10,11,9,10.5,10.6,100", "'close'"),
        ("timestamp,timestamp,open,high,low,close,volume", "2024-01-01,2024-01-02,10,11,9,10.5,100", "'timestamp'"),
        ("timestamp,open,high,low,close,Close,volume", "2024-01-01,10,11,9,10.5,10.6,100", "'Close'"),
        ("timestamp,open,high,low,close, close,volume", "2024-01-01,10,11,9,10.5,10.6,100", "'close'"),
        ("\ufefftimestamp,open,high,low,close,volume,volume", "2024-01-01,10,11,9,10.5,1,2", "'volume'"),
    ],
    ids=["close_twice", "timestamp_twice", "case_differs", "space_differs", "bom_and_volume_twice"],
)
def test_duplicate_csv_header_is_refused_and_nothing_written(
    tmp_path: Path, header: str, row: str, column: str
) -> None:
    r, store = _import(tmp_path, f"{header}\n{row}\n")
    one_line_error(r, "line 1: column", column, "appears twice in the header")
    assert not store.exists()


def test_trailing_comma_is_not_a_duplicate_header(tmp_path: Path) -> None:
    r, _ = _import(tmp_path, HEADER.replace("\n", ",\n") + ROW.replace("\n", ",\n"))
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("price", ["1e308", "1e16", "2e15"])
def test_absurd_prices_are_refused(tmp_path: Path, price: str) -> None:
    r, _ = _import(tmp_path, HEADER + f"2024-01-01,{price},{price},{price},{price},100\n")
    one_line_error(r, "line 2: prices must be <= 1e+15")


def test_large_but_plausible_price_is_accepted(tmp_path: Path) -> None:
    r, _ = _import(tmp_path, HEADER + "2024-01-01,2.5e9,2.6e9,2.4e9,2.55e9,1\n")  # BTC in a weak quote currency
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    ("symbol", "kind", "needle"),
    [
        ("///", "ohlcv", "must be BASE/QUOTE"),
        ("BTC", "ohlcv", "must be BASE/QUOTE"),
        ("BTC/USDT/X", "ohlcv", "must be BASE/QUOTE"),
        ("BTC/USDT:", "ohlcv", "must be BASE/QUOTE"),
        ("X/USDT", "funding", "funding belongs to a perpetual"),
        ("BTC/USD", "funding", "funding belongs to a perpetual"),
    ],
)
def test_malformed_symbols_are_refused(tmp_path: Path, symbol: str, kind: str, needle: str) -> None:
    body = "timestamp,funding_rate\n2024-01-01T00:00:00Z,0.0001\n" if kind == "funding" else HEADER + ROW
    extra = ("--interval-hours", "8") if kind == "funding" else ()
    r, store = _import(tmp_path, body, *extra, kind=kind, symbol=symbol)
    one_line_error(r, "invalid `--symbol`", needle, repr(symbol))
    assert not store.exists()


@pytest.mark.parametrize("symbol", ["SOL/USDT", "BTC/USDT:USDT", "1000PEPE/USDT", "BTC/USD:BTC"])
def test_wellformed_ohlcv_symbols_still_import(tmp_path: Path, symbol: str) -> None:
    parsed = parse_file(_csv(tmp_path, HEADER + ROW), kind="ohlcv", source="x", symbol=symbol)
    assert parsed.symbol == symbol and parsed.rows == 1


def _csv(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "f.csv"
    path.write_text(body)
    return path


# ------------------------------------------------------------------------------------------------ stores


@pytest.mark.parametrize("fraction", [3, 2])
@pytest.mark.parametrize("command", ["status", "check", "import", "analyze"])
def test_truncated_store_is_one_line_exit_2(
    sample_store_path: Path, tmp_path: Path, fraction: int, command: str
) -> None:
    data = sample_store_path.read_bytes()
    store = tmp_path / "cut.duckdb"
    store.write_bytes(data[: len(data) // fraction])
    csv = _csv(tmp_path, HEADER + ROW)
    args = {
        "status": ["data", "status"],
        "check": ["data", "check"],
        "import": ["data", "import", str(csv), "--kind", "ohlcv", "--source", "t", "--symbol", "X/USDT"],
        "analyze": ["analyze", "--assets", "SOL"],
    }[command]
    line = one_line_error(run_cli(*args, "--store", str(store)), str(store))
    assert "damaged" in line or "cannot open the market store" in line


def test_import_failure_is_reported_even_when_the_journal_cannot_be_written(tmp_path: Path) -> None:
    """A full disk invalidates the DuckDB database: recording the failed run then fails too, and that second
    error used to replace the first (``cannot record the end of run``)."""
    parsed = parse_file(_csv(tmp_path, HEADER + ROW), kind="ohlcv", source="x", symbol="A/USDT")
    with MarketStore(tmp_path / "s.duckdb") as store:

        def full(*_: object, **__: object) -> None:
            raise DataError("writing to the market store failed: No space left on device")

        def journal(*_: object, **__: object) -> None:
            raise DataError("cannot record the end of run #1: database has been invalidated")

        store.upsert = full  # type: ignore[method-assign]
        store.finish_run = journal  # type: ignore[method-assign]
        with pytest.raises(DataError, match="No space left on device"):
            import_frames(store, [parsed], source="test")


# ------------------------------------------------------------------------------------------------ fetch


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--since", "2099-01-01", "--spot", "BTC/USDT"], ["invalid `--since`: 2099-01-01 is in the future"]),
        (["--since", "2024-01-01", "--spot", "BTC/USDT:USDT"], ["invalid `--spot`", "belongs in --perps"]),
        (["--since", "2024-01-01", "--perps", "BTC/USDT"], ["invalid `--perps`", "BASE/QUOTE:SETTLE"]),
        (["--since", "2024-01-01", "--spot", "BTC/USDT,,"], ["invalid `--spot`: an empty symbol between commas"]),
        (["--since", "2024-01-01", "--spot", "BTC/USDT,,SOL/USDT"], ["an empty symbol"]),
        (["--since", "2024-01-01", "--perps", "BTC/USDT:USDT,,"], ["invalid `--perps`: an empty symbol"]),
        (["--since", "2024-01-01", "--spot", "BTCUSDT"], ["invalid `--spot`", "BASE/QUOTE"]),
    ],
    ids=["since_future", "perp_as_spot", "spot_as_perp", "trailing_commas", "inner_empty", "perps_empty", "no_slash"],
)
def test_fetch_symbol_shapes_and_future_since_refused_before_the_network(
    tmp_path: Path, args: list[str], needles: list[str]
) -> None:
    start = time.monotonic()
    r = run_cli(
        "data",
        "fetch",
        "--exchange",
        "binance",
        *args,
        "--store",
        str(tmp_path / "f.duckdb"),
        env={"PERPHEDGE_EXCHANGE_URL": "http://127.0.0.1:9"},  # nothing listens: a network attempt would retry
    )
    one_line_error(r, *needles)
    assert time.monotonic() - start < 4, "refused only after trying the network"
    assert not (tmp_path / "f.duckdb").exists()


# ------------------------------------------------------------------------------------------------ analyze


@pytest.mark.parametrize("factors", ["BTC,BTC", "ETH,btc,ETH", "BTC,ETH,BTC"])
def test_analyze_duplicate_factors_refused(store_home: Path, factors: str) -> None:
    one_line_error(run_cli("analyze", "--assets", "SOL", "--factors", factors, home=store_home), "invalid `--factors`")


@pytest.mark.parametrize(
    ("since", "until", "rows"),
    [("2021-01-01", "2021-03-01", 0), ("2023-03-01", "2023-06-30", 366), ("2024-05-01", "2024-09-30", 184)],
)
def test_analyze_basis_statistics_cover_the_requested_window(
    store_home: Path, since: str, until: str, rows: int
) -> None:
    r = run_cli(
        "analyze",
        "--assets",
        "SOL",
        "--since",
        since,
        "--until",
        until,
        "--window",
        "30d",
        "-f",
        "json",
        home=store_home,
    )
    assert r.returncode == 0, r.stderr
    basis = json.loads(r.stdout)["basis"]
    assert len(basis) == (0 if rows == 0 else 6)  # 3 exchanges x BTC, ETH
    for row in basis:
        assert since <= row["first"][:10] and row["last"][:10] <= until, row
        assert row["rows"] == rows
    if rows == 0:
        assert basis == []


# ------------------------------------------------------------------------------------------------ backtest


def _run_file(tmp_path: Path, start: str, end: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(
        f"portfolio: {ALTS}\nhedge: {{instrument: binance:BTCUSDT, leverage: 2, collateral: stable}}\n"
        f"start: {start}\nend: {end}\npolicy: {{kind: static, ratio: 0.5}}\n"
    )
    return path


@pytest.mark.parametrize("end", ["2026-01-01", "2027-06-01", "2030-12-31"])
def test_backtest_end_after_the_data_is_refused(store_home: Path, tmp_path: Path, end: str) -> None:
    out = tmp_path / "out"
    r = run_cli("backtest", str(_run_file(tmp_path, "2025-06-01", end)), "--out", str(out), home=store_home)
    one_line_error(r, "ends 2025-12-31", f"before the run's `end` {end}")
    assert not out.exists() or not any(out.iterdir())


def test_backtest_end_on_the_last_day_runs(store_home: Path, tmp_path: Path) -> None:
    r = run_cli(
        "backtest",
        str(_run_file(tmp_path, "2025-06-01", "2025-12-31")),
        "--out",
        str(tmp_path / "o"),
        "--no-report",
        "-f",
        "json",
        home=store_home,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["end"] == "2025-12-31"


# ------------------------------------------------------------------------------------------------ sweep


@pytest.mark.parametrize(
    ("grid", "needle"),
    [
        # misspelt keys are caught when the grid is read (the key is not a field of a run file) ...
        ("  policy.ratoi: [0.5, 1]\n", "`policy.ratoi` is not a field of a run file"),
        ("  hedgee.leverage: [1, 2]\n", "`hedgee.leverage` is not a field of a run file"),
        # ... the rest when every combination has been parsed, still before any work
        ("  policy.ratio: [5, 6]\n", "none of the 2 combinations is a valid run"),
        ("  policy.table.0.ratio: [0.1]\n", "field `policy.table`"),
        ("  portfolio: [no-such-file.yaml]\n", "no such file"),
        ("  policy..ratio: [0.5]\n", "`policy..ratio` is not a field of a run file"),
    ],
    ids=["misspelt_leaf", "misspelt_top", "all_out_of_range", "list_index", "missing_portfolio", "double_dot"],
)
def test_sweep_without_one_valid_combination_is_refused_up_front(
    store_home: Path, tmp_path: Path, grid: str, needle: str
) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(f"base: {RUNS / 'altcoins-50pct.yaml'}\ngrid:\n{grid}")
    out = tmp_path / "sweep.json"
    r = run_cli("sweep", str(path), "--workers", "1", "--out", str(out), home=store_home)
    one_line_error(r, needle)
    assert "━" not in r.stderr  # refused before the progress bar
    assert not out.exists()


def test_sweep_with_some_valid_combinations_still_runs(store_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(f"base: {RUNS / 'altcoins-50pct.yaml'}\ngrid:\n  policy.ratio: [0.5, 5]\n")
    r = run_cli("sweep", str(path), "--workers", "1", "-f", "json", home=store_home)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["succeeded"] == 1 and doc["failed_count"] == 1


def _session(sid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:
                out.append(int(entry))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_during_a_parallel_sweep_is_one_line_and_leaves_no_worker(store_home: Path, tmp_path: Path) -> None:
    """Ctrl-C signals the whole foreground process group: workers used to print their KeyboardInterrupt.

    A grid of 1,280 configurations, so the sweep is still running when the signal comes (the workers start only
    after the data is loaded; the 48 of runs/grid.yaml could all finish within the half second)."""
    grid = tmp_path / "big-grid.yaml"
    grid.write_text(
        f"base: {RUNS / 'altcoins-50pct.yaml'}\n"
        "grid:\n"
        "  policy.ratio: [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1]\n"
        "  policy.band: [0.02, 0.04, 0.06, 0.08, 0.10, 0.12, 0.14, 0.16]\n"
        "  hedge.leverage: [1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9, 10, 11, 12, 13]\n"
    )
    cmd = [str(Path(sys.executable).parent / "perphedge"), "sweep", str(grid), "--workers", "2"]
    env = dict(os.environ, PERPHEDGE_HOME=str(store_home))
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while len(_session(proc.pid)) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)  # the parent and its two workers
    assert proc.poll() is None, "the sweep ended before it could be interrupted"
    time.sleep(0.5)  # the workers are inside their first backtests
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = [x for x in err.splitlines() if x.strip() and "━" not in x]
    assert lines == ["perphedge: interrupted"], err
    time.sleep(0.3)
    assert _session(proc.pid) == []


# ------------------------------------------------------------------------------------------------ stress, --as-of


@pytest.mark.parametrize("leverage", ["2,,3", ",2", "2,", " , ", "2, ,3"])
def test_stress_leverage_with_empty_items_refused(store_home: Path, leverage: str) -> None:
    r = run_cli("stress", str(ALTS), "--paths", "100", "--leverage", leverage, home=store_home)
    one_line_error(r, "invalid `--leverage`", "empty item")


@pytest.mark.parametrize("command", ["stress", "plan"])
def test_as_of_in_the_future_refused(store_home: Path, command: str) -> None:
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    extra = ["--paths", "100"] if command == "stress" else []
    r = run_cli(command, "examples/altcoins-stored-prices.yaml", "--as-of", tomorrow, *extra, home=store_home)
    one_line_error(r, f"invalid `--as-of`: {tomorrow} is in the future")


@pytest.mark.parametrize(("day", "stale"), [("2026-03-01", True), ("2026-01-08", True), ("2026-01-05", False)])
def test_as_of_a_date_the_store_does_not_reach_is_refused(store_home: Path, day: str, stale: bool) -> None:
    r = run_cli("plan", "examples/altcoins-stored-prices.yaml", "--as-of", day, home=store_home)
    if stale:
        one_line_error(r, "invalid `--as-of`", "from 2025-12-31", "days earlier")
    else:
        assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------------------------ plots


def test_plot_write_failure_names_the_folder_and_leaves_no_partial_file(tmp_path: Path) -> None:
    (tmp_path / "keep.png").write_text("an earlier plot")

    def plot(_doc: dict[str, object], out: Path) -> list[str]:
        (out / "half.png").write_bytes(b"\x89PNG partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(ConfigError, match=r"invalid `--plot`: cannot write the plots in .*: No space left on device"):
        write_plots(plot, {}, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]
