"""Wrong command lines through the installed ``perphedge`` script: one line, the right exit code.

Every case asserts: the exit code (2 for the user's mistake), exactly one line on stderr starting
``perphedge: error:``, the option (or file) and the rule named in it, no ``Traceback`` and no
click usage block (``Usage:`` / ``Try ... --help``). The internal-error path (exit 1, ``--debug``)
is tested in-process in tests/unit/test_cli_main.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

EXAMPLE = str(REPO / "examples" / "altcoins.yaml")  # holds SOL, AVAX, DOT; hedged with BTC
RUN = str(REPO / "runs" / "altcoins-50pct.yaml")
GRID = str(REPO / "runs" / "grid.yaml")
CALC = ["calc", "--instrument", "binance:BTCUSDT", "--side", "short", "--contracts", "1", "--entry", "60000"]


def one_line_error(r: subprocess.CompletedProcess[str], *fragments: str, code: int = 2) -> str:
    """Assert the one-line error contract; return the line."""
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == code, (r.returncode, r.stdout[-2000:], r.stderr)
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert line.startswith("perphedge: error: "), line
    assert "Traceback" not in r.stderr
    assert "Usage:" not in r.stderr and "Try '" not in r.stderr
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


# ------------------------------------------------------------------ numbers, choices, usage (item 2)


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["plan", EXAMPLE, "--ratio", "abc"], ["invalid value for --ratio", "'abc' is not a number"]),
        (["plan", EXAMPLE, "--ratio", "nan"], ["--ratio", "'nan' is not a finite number"]),
        (["plan", EXAMPLE, "--ratio", "-inf"], ["--ratio", "not a finite number"]),
        (["plan", EXAMPLE, "--funding-rate-8h", "inf"], ["--funding-rate-8h", "'inf' is not a finite number"]),
        (["plan", EXAMPLE, "--leverage", "nan"], ["--leverage", "must be a number or auto"]),
        (["plan", EXAMPLE, "--leverage", "two"], ["--leverage", "'two'"]),
        ([*CALC[:-2], "--entry", "1e400"], ["--entry", "'1e400' is not a finite number"]),
        ([*CALC[:-4], "--contracts", "ten", "--entry", "1"], ["--contracts", "'ten' is not a number"]),
        ([*CALC, "--mmr", "NaN"], ["--mmr", "not a finite number"]),
        ([*CALC, "--wallet-balance", "1,000"], ["--wallet-balance", "'1,000' is not a number"]),
        (["sweep", GRID, "--workers", "0"], ["--workers", "must be >= 1"]),
        (["sweep", GRID, "--workers", "-2"], ["--workers", "must be >= 1"]),
        (["sweep", GRID, "--workers", "2.5"], ["--workers", "'2.5' is not a whole number"]),
        (["stress", EXAMPLE, "--seed", "x"], ["--seed", "'x' is not a whole number"]),
    ],
)
def test_bad_numbers(args: list[str], fragments: list[str]) -> None:
    one_line_error(run_cli(*args), *fragments)


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["plan", EXAMPLE, "--format", "xml"], ["invalid value for --format", "'xml'", "table"]),
        (["plan", EXAMPLE, "-f", "yaml"], ["--format", "'yaml'"]),
        (["instruments", "--format", "csv"], ["--format", "'csv'"]),
        ([*CALC, "--margin-mode", "portfolio"], ["--margin-mode", "'portfolio'", "isolated"]),
        (["calc", "--instrument", "binance:BTCUSDT", "--side", "up", "--contracts", "1", "--entry", "1"], ["--side"]),
    ],
)
def test_bad_choices(args: list[str], fragments: list[str]) -> None:
    one_line_error(run_cli(*args), *fragments)


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["plan", EXAMPLE, "--bogus"], ["`perphedge plan` has no option --bogus", "perphedge plan --help"]),
        (["plan", EXAMPLE, "--fromat", "json"], ["no option --fromat", "did you mean --format"]),
        (["calc", "--side", "short"], ["`perphedge calc` needs the option --instrument"]),
        (["calc", "--instrument", "binance:BTCUSDT", "--side", "short", "--contracts", "1"], ["option --entry"]),
        (["analyze", "--proxy", "BTC"], ["needs the option --assets"]),
        (["plan", EXAMPLE, "--ratio"], ["option --ratio needs a value"]),
        (["plan", EXAMPLE, "--debug"], ["--debug goes before the command: perphedge --debug plan"]),
        (["frobnicate"], ["no such command 'frobnicate'", "perphedge --help"]),
        (["data", "frobnicate"], ["no such command 'frobnicate'", "perphedge data --help"]),
        (["plan", EXAMPLE, "extra-argument"], ["extra-argument"]),
    ],
)
def test_usage_errors(args: list[str], fragments: list[str]) -> None:
    one_line_error(run_cli(*args), *fragments)


@pytest.mark.parametrize(
    "args", [["plan", "/nonexistent.yaml"], ["backtest", "/nonexistent.yaml"], ["sweep", "/nonexistent.yaml"]]
)
def test_missing_files(args: list[str]) -> None:
    one_line_error(run_cli(*args), "/nonexistent.yaml: no such file")


@pytest.mark.parametrize("args", [["--help"], ["plan", "--help"], [], ["plan"], ["calc"], ["data"]])
def test_help_still_prints(args: list[str]) -> None:
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage: perphedge") or "Usage: perphedge" in r.stdout
    assert r.stderr == ""


def test_version_and_debug_flag_are_root_options() -> None:
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("perphedge ")
    r = run_cli("--debug", "plan", EXAMPLE, "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["schema"] == "perphedge.plan/1"
    # a user mistake under --debug is still exit 2 (with the traceback above the line)
    r = run_cli("--debug", "plan", EXAMPLE, "--window", "0d")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("perphedge: error: invalid `--window`")


# ------------------------------------------------------------------------------ windows (item 3)


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["plan", EXAMPLE, "--window", "0d"], ["`--window`", "at least 1 day"]),
        (["plan", EXAMPLE, "--window", "-5d"], ["`--window`", "positive"]),
        (["plan", EXAMPLE, "--window", "abc"], ["`--window`", "'abc'"]),
        (["plan", EXAMPLE, "--window", "180"], ["`--window`", "no unit", "180d"]),
        (["plan", EXAMPLE, "--window", "26w"], ["`--window`", "method notional estimates nothing"]),
        (["analyze", "--assets", "SOL", "--window", "0d"], ["`--window`"]),
        (["analyze", "--assets", "SOL", "--window", "-30d"], ["`--window`"]),
        (["analyze", "--assets", "SOL", "--horizon", "0d"], ["`--horizon`"]),
        (["analyze", "--assets", "SOL", "--horizon", "1d,,7d"], ["`--horizon`"]),
        (["analyze", "--assets", "SOL", "--horizon", "7"], ["`--horizon`", "7d"]),
        (["stress", EXAMPLE, "--horizon", "-90d"], ["`--horizon`"]),
        (["stress", EXAMPLE, "--horizon", "90"], ["`--horizon`", "90d"]),
    ],
)
def test_bad_windows(args: list[str], fragments: list[str]) -> None:
    one_line_error(run_cli(*args), *fragments)


# ----------------------------------------------------------------------- drifts and scenarios (item 3)


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--drift", "SOL=20"], ["`--drift` SOL", "'20' is ambiguous", "20%", "0.20"]),
        (["--drift", "BTC=-15"], ["`--drift` BTC", "ambiguous", "-15%"]),
        (["--drift", "SOL=-100%"], ["`--drift` SOL", "above -100%"]),
        (["--drift", "SOL=2000%"], ["at most +1000%"]),
        (["--drift", "SOL=15.0"], ["at most +1000%"]),
        (["--drift", "SOL=nan"], ["`--drift` SOL", "'nan'"]),
        (["--drift", "SOL=1e-1"], ["'1e-1'"]),
        (["--drift", "SOL=+5%,SOL=-5%"], ["SOL is given twice"]),
        (["--drift", "ETH=+20%"], ["altcoins.yaml", "does not hold ETH", "AVAX, BTC, DOT, SOL"]),
        (["--drift", "USDT=-5%"], ["USDT is a stablecoin"]),
        (["--scenario", "crash:BTC=-15"], ["`--scenario` BTC", "ambiguous"]),
        (["--scenario", "crash:BTC=-150%"], ["`--scenario` BTC", "above -100%"]),
        (["--scenario", "crash:BTC=-15%,DOGE=-30%"], ["`--scenario`", "does not hold DOGE"]),
        (["--scenario", "crash:BTC=abc"], ["not a return"]),
        (["--scenario", "crash:"], ["`--scenario`", "names no move"]),
    ],
)
def test_bad_moves(args: list[str], fragments: list[str]) -> None:
    one_line_error(run_cli("plan", EXAMPLE, *args), *fragments)


def test_valid_moves_keep_their_meaning() -> None:
    r = run_cli("plan", EXAMPLE, "--drift", "SOL=0.2,BTC=+10%", "--scenario", "x:BTC=-0.15,*=-20%", "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["drift"]["moves"] == {"SOL": 0.2, "BTC": 0.1}
    custom = doc["scenarios"][-1]
    assert custom["name"] == "x" and custom["proxy_return"] == -0.15


# ----------------------------------------------------------------------------------- dates (item 3)

BAD_DATES = [
    ("01/02/2024", "ambiguous"),
    ("2024-1-2", "YYYY-MM-DD"),
    ("20240102", "write 2024-01-02"),
    ("2024-02-30", "not a calendar date"),
    ("yesterday", "YYYY-MM-DD"),
    ("2024-01-01T00:00:00+02:00", "offsets are refused"),
    ("2024-01-01 12:00", "offsets are refused"),
    ("1999-12-31", "year"),
]


@pytest.mark.parametrize("text,hint", BAD_DATES)
def test_plan_as_of_dates(text: str, hint: str) -> None:
    one_line_error(run_cli("plan", EXAMPLE, "--as-of", text), "`--as-of`", repr(text), hint)


@pytest.mark.parametrize("text,hint", BAD_DATES[:4])
def test_stress_as_of_dates(text: str, hint: str) -> None:
    one_line_error(run_cli("stress", EXAMPLE, "--as-of", text), "`--as-of`", hint)


@pytest.mark.parametrize("flag", ["--since", "--until"])
@pytest.mark.parametrize("text,hint", BAD_DATES)
def test_analyze_dates(flag: str, text: str, hint: str) -> None:
    one_line_error(run_cli("analyze", "--assets", "SOL", flag, text), f"`{flag}`", hint)


def test_analyze_since_after_until() -> None:
    r = run_cli("analyze", "--assets", "SOL", "--since", "2024-05-01", "--until", "2024-01-01")
    one_line_error(r, "`--since`", "2024-05-01 is after `--until` 2024-01-01")


# ------------------------------------------------------------------------ analyze assets (item 3)


@pytest.mark.parametrize(
    "args",
    [
        ["--assets", "BTC", "--proxy", "BTC"],
        ["--assets", "sol,btc", "--proxy", "btc"],
        ["--assets", "ETH", "--proxy", "eth"],
    ],
)
def test_analyze_asset_equal_to_proxy(args: list[str]) -> None:
    one_line_error(run_cli("analyze", *args), "`--assets`", "is also the proxy")


@pytest.mark.sample_data
def test_analyze_factor_missing_from_the_store(store_home: Path) -> None:
    r = run_cli("analyze", "--assets", "SOL", "--factors", "BTC,XYZ", "--no-funding", home=store_home)
    one_line_error(r, "`--factors`", "factor XYZ", str(store_home / "market.duckdb"))
    r = run_cli("analyze", "--assets", "SOL", "--factors", "QQQ", "--no-funding", home=store_home)
    one_line_error(r, "factor QQQ")


# ------------------------------------------------------------------------ output paths (item 1)


def test_plot_dir_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "plots"
    target.write_text("not a directory")
    one_line_error(run_cli("analyze", "--assets", "SOL", "--plot", str(target)), "`--plot`", "is a file")
    one_line_error(
        run_cli("analyze", "--assets", "SOL", "--plot", str(target / "sub")), "`--plot`", f"{target} is a file"
    )


def test_backtest_out_checked_before_the_replay(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_text("a file")
    one_line_error(run_cli("backtest", RUN, "--out", str(target)), "`--out`", "is a file")
    one_line_error(run_cli("backtest", RUN, "--out", str(target / "deeper")), "`--out`", "is a file")


def test_sweep_out_must_be_a_writable_file(tmp_path: Path) -> None:
    one_line_error(run_cli("sweep", GRID, "--out", str(tmp_path)), "`--out`", "is a directory")
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    one_line_error(run_cli("sweep", GRID, "--out", str(blocker / "sweep.json")), "`--out`", "is a file")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_output_dir(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        one_line_error(run_cli("analyze", "--assets", "SOL", "--plot", str(ro)), "`--plot`", "permission denied")
        one_line_error(run_cli("backtest", RUN, "--out", str(ro / "x")), "`--out`", "permission denied")
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize(
    "args",
    [
        ["data", "status"],
        ["analyze", "--assets", "SOL"],
        ["plan", str(REPO / "examples" / "altcoins-stored-prices.yaml"), "--as-of", "latest"],
        ["backtest", RUN],
    ],
)
def test_perphedge_home_is_a_file(tmp_path: Path, args: list[str]) -> None:
    home = tmp_path / "home-file"
    home.write_text("oops")
    r = run_cli(*args, env={"PERPHEDGE_HOME": str(home)}, cwd=tmp_path)
    one_line_error(r, f"PERPHEDGE_HOME={home} is a file")
