"""Wrong input files and impossible positions through the installed ``perphedge``: exit 2, one line, no traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import run_cli

PF = """name: t
prices: {BTC: 60000, SOL: 150, AVAX: 30}
holdings:
  - {asset: SOL, value_usd: 5000}
  - {asset: AVAX, quantity: 100}
hedge:
  ratio: 1.0
  instrument: binance:BTCUSD_PERP
  leverage: 2
  collateral: buy
"""

RUN = """portfolio: {pf}
start: 2021-01-01
end: 2021-06-30
hedge: {{instrument: binance:BTCUSDT, leverage: 2, collateral: stable}}
policy: {{kind: static, ratio: 0.5, band: 0.10}}
margin: {{top_up: false}}
"""

SPEC = {
    "exchange": "x",
    "symbol": "BTCUSD",
    "kind": "inverse",
    "base": "BTC",
    "quote": "USD",
    "settle": "BTC",
    "contract_size": 100,
    "lot_size": 1,
    "tick_size": 0.1,
    "max_leverage": 100,
    "tiers": [[0, 0.005, 100], [50, 0.01, 50]],
    "liquidation_method": "mm_at_liquidation_price",
}

CALC = ["calc", "--instrument", "binance:BTCUSDT", "--side", "short", "--entry", "60000"]


def one_line_error(r: object, expected: str) -> str:
    stderr = r.stderr  # type: ignore[attr-defined]
    assert r.returncode == 2, (r.stdout, stderr)  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perphedge: error: "), stderr
    assert expected in lines[0], lines[0]
    return lines[0]


# (name, file text or None, extra args, expected text); {f} is the written file
PORTFOLIO_CASES = [
    ("dup price", PF.replace("SOL: 150,", "SOL: 150, SOL: 1,"), "line 2: duplicate key `SOL`"),
    ("dup top", PF + "name: again\n", "line 11: duplicate key `name` (first on line 1)"),
    ("dup hedge", PF + "  leverage: 3\n", "duplicate key `leverage`"),
    ("qty true", PF.replace("quantity: 100", "quantity: true"), "was true (true/false is not a number)"),
    ("price text", PF.replace("SOL: 150", "SOL: '150'"), "field `prices.SOL`: must be a number, was '150'"),
    ("ratio text", PF.replace("ratio: 1.0", "ratio: '1.0'"), "field `hedge.ratio`"),
    ("qty nan", PF.replace("quantity: 100", "quantity: .nan"), "must be a finite number"),
    ("qty 1e307", PF.replace("quantity: 100", "quantity: 1.0e+307"), "must be <= 1e+18"),
    ("value 1e308", PF.replace("value_usd: 5000", "value_usd: 1.0e+308"), "must be <= 1e+15"),
    ("group all", PF.replace("quantity: 100}", "quantity: 100, group: all}"), "`all` is reserved"),
    (
        "beta not held",
        PF + "betas: {DOGE: 1.2}\n",
        "field `betas.DOGE`: beta for DOGE, which the portfolio does not hold",
    ),
    (
        "dup holding",
        PF.replace(
            "  - {asset: AVAX, quantity: 100}\n", "  - {asset: AVAX, quantity: 100}\n  - {asset: AVAX, quantity: 5}\n"
        ),
        "AVAX is held twice",
    ),
    ("empty", "", "is empty"),
    ("latin-1", None, "is not a text file (not UTF-8"),
]


@pytest.mark.parametrize("name,text,expected", PORTFOLIO_CASES, ids=[c[0] for c in PORTFOLIO_CASES])
def test_plan_refuses_wrong_portfolio_files(tmp_path: Path, name: str, text: str | None, expected: str) -> None:
    f = tmp_path / "p.yaml"
    if text is None:
        f.write_bytes(b"name: caf\xe9\nholdings: []\n")
    else:
        f.write_text(text)
    line = one_line_error(run_cli("plan", str(f), home=tmp_path), expected)
    assert str(f) in line


def test_plan_of_a_directory_or_binary(tmp_path: Path) -> None:
    one_line_error(run_cli("plan", str(tmp_path), home=tmp_path), "is a directory, expected a portfolio file")
    one_line_error(run_cli("plan", "/bin/ls", home=tmp_path), "/bin/ls: is not a text file")


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (lambda s: s.replace("start: 2021-01-01", "start: 01/02/2021"), "field `start`: must be an ISO 8601 date"),
        (lambda s: s.replace("start: 2021-01-01", "start: 20210101"), "field `start`: must be an ISO 8601 date"),
        (lambda s: s.replace("start: 2021-01-01", "start: 2021-13-01"), "line 2: invalid date `2021-13-01`"),
        (lambda s: s + "start: 2021-02-01\n", "line 7: duplicate key `start` (first on line 2)"),
        (lambda s: s.replace("ratio: 0.5,", "ratio: 0.5, ratio: 0.9,"), "duplicate key `ratio`"),
        (lambda s: s.replace("top_up: false", "top_up: 'yes'"), "field `margin.top_up`: must be true or false"),
        (lambda s: s.replace("leverage: 2", "leverage: true"), "field `hedge.leverage`: must be a number"),
    ],
)
def test_backtest_refuses_wrong_run_files_before_reading_the_store(
    tmp_path: Path, mutate: Callable[[str], str], expected: str
) -> None:
    pf = tmp_path / "p.yaml"
    pf.write_text(PF)
    f = tmp_path / "r.yaml"
    f.write_text(mutate(RUN.format(pf=pf)))
    out = tmp_path / "out"
    r = run_cli("backtest", str(f), "--store", str(tmp_path / "absent.duckdb"), "--out", str(out), home=tmp_path)
    one_line_error(r, expected)
    assert not out.exists()


def test_backtest_run_pointing_at_a_duplicate_keyed_portfolio(tmp_path: Path) -> None:
    pf = tmp_path / "p.yaml"
    pf.write_text(PF.replace("SOL: 150,", "SOL: 150, SOL: 1,"))
    f = tmp_path / "r.yaml"
    f.write_text(RUN.format(pf=pf))
    r = run_cli("backtest", str(f), "--store", str(tmp_path / "absent.duckdb"), home=tmp_path)
    one_line_error(r, f"{pf}: line 2: duplicate key `SOL`")


def test_sweep_refuses_duplicate_grid_keys_and_wrong_value_kinds(tmp_path: Path) -> None:
    pf = tmp_path / "p.yaml"
    pf.write_text(PF)
    (tmp_path / "base.yaml").write_text(RUN.format(pf=pf))
    grid = tmp_path / "grid.yaml"
    grid.write_text("base: base.yaml\ngrid:\n  policy.ratio: [0.5]\n  policy.ratio: [0.7]\n")
    store = str(tmp_path / "absent.duckdb")
    one_line_error(run_cli("sweep", str(grid), "--store", store, home=tmp_path), "line 4: duplicate key `policy.ratio`")
    grid.write_text("base: base.yaml\ngrid:\n  policy.ratio: [0.5, true]\n")
    one_line_error(
        run_cli("sweep", str(grid), "--store", store, home=tmp_path),
        "field `grid.policy.ratio[1]`: must be a finite number",
    )
    one_line_error(run_cli("sweep", str(tmp_path), "--store", store, home=tmp_path), "is a directory")


@pytest.mark.parametrize(
    "change,expected",
    [
        ({"taker_fee": 0.02}, "field `taker_fee`: must be in [0, 0.01]"),
        ({"maker_fee": -0.005}, "field `maker_fee`: must be in [-0.001, 0.01]"),
        ({"lot_size": 0}, "field `lot_size`: must be > 0"),
        ({"tiers": [[0, 0.005, 100], [50, 0.01, 50], [20, 0.02, 20]]}, "floors must increase"),
    ],
)
def test_instruments_refuses_insane_spec_files(tmp_path: Path, change: dict[str, object], expected: str) -> None:
    f = tmp_path / "specs.json"
    f.write_text(json.dumps({"instruments": [SPEC | change]}))
    line = one_line_error(run_cli("instruments", "--specs", str(f), home=tmp_path), expected)
    assert f"{f}: instruments[0] x:BTCUSD" in line


def test_spec_files_with_duplicates_binary_or_directory(tmp_path: Path) -> None:
    f = tmp_path / "specs.yaml"
    f.write_text(json.dumps({"instruments": [SPEC, SPEC]}))
    one_line_error(run_cli("instruments", "--specs", str(f), home=tmp_path), "duplicate instrument id")
    f.write_text("instruments:\n  - exchange: x\n    exchange: y\n")
    one_line_error(run_cli("instruments", "--specs", str(f), home=tmp_path), "line 3: duplicate key `exchange`")
    one_line_error(run_cli("plan", "/dev/null", "--specs", "/bin/ls", home=tmp_path), "/bin/ls: is not a text file")
    one_line_error(run_cli("instruments", "--specs", str(tmp_path), home=tmp_path), "is a directory")


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--contracts", "1000", "--leverage", "125"], "position liquidated on opening: its initial margin at 125x"),
        (["--contracts", "1", "--leverage", "10", "--mmr", "0.2"], "MMR 20.0000%"),
        (["--contracts", "1", "--margin-mode", "cross", "--wallet-balance", "0"], "`--wallet-balance`: must be > 0"),
        (["--contracts", "1", "--margin-mode", "cross", "--wallet-balance", "100"], "cross wallet balance 100 USDT"),
        (["--contracts", "1", "--fee-rate", "0.5"], "`--fee-rate`: must be in [-0.001, 0.01]"),
        (["--contracts", "1", "--fee-rate", "nan"], "--fee-rate: 'nan' is not a finite number"),
        (["--contracts", "0.1234"], "not a multiple of the lot 0.001 of binance:BTCUSDT: nearest 0.123 or 0.124"),
        (["--contracts", "1e-300"], "1e-300 is less than one lot (0.001) of binance:BTCUSDT"),
        (["--contracts", "0.0004"], "0.0004 is less than one lot (0.001) of binance:BTCUSDT"),
        (["--contracts", "nan"], "--contracts: 'nan' is not a finite number"),
        (["--contracts", "1", "--mark", "200000", "--leverage", "2"], "past the liquidation price"),
    ],
)
def test_calc_refuses_positions_that_cannot_exist(tmp_path: Path, args: list[str], expected: str) -> None:
    one_line_error(run_cli(*CALC, *args, home=tmp_path), expected)
