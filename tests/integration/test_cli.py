"""The real ``perphedge`` entry point, run as a user runs it (subprocess), no network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

EXAMPLE = str(REPO / "examples" / "altcoins.yaml")
# the installed console script, exactly what a user runs
ENTRY = str(Path(sys.executable).parent / "perphedge")


def run(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["COLUMNS"] = "120"
    return subprocess.run(
        [ENTRY, *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=60, check=False
    )


def test_plan_table() -> None:
    r = run("plan", EXAMPLE)
    assert r.returncode == 0, r.stderr
    assert "binance:BTCUSD_PERP" in r.stdout
    assert "200 × 100 USD" in r.stdout
    assert "0.16666667 BTC" in r.stdout
    assert "net delta +0.00 USD" in r.stdout


def test_plan_json_schema_fields() -> None:
    r = run("plan", EXAMPLE, "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "perphedge.plan/1"
    for key in ("value_usd", "exposure_usd", "holdings"):
        assert key in doc["portfolio"]
    for key in ("ratio", "method", "target_usd", "net_delta_usd", "legs"):
        assert key in doc["hedge"]
    leg = doc["hedge"]["legs"][0]
    for key in (
        "instrument",
        "kind",
        "side",
        "contracts",
        "contract_size",
        "contract_size_unit",
        "notional_usd",
        "entry_price",
        "leverage",
        "collateral_asset",
        "collateral_amount",
        "collateral_source",
        "initial_margin",
        "maintenance_margin_rate",
        "liquidation_method",
        "liquidation_price",
        "bankruptcy_price",
        "funding_rate_8h",
        "funding_usd_per_day",
    ):
        assert key in leg, key
    for key in ("name", "proxy_return", "spot_pnl_usd", "hedge_pnl_usd", "net_pnl_usd"):
        assert key in doc["scenarios"][0]
    assert isinstance(doc["warnings"], list)


def test_plan_overrides_scenario_compare_drift() -> None:
    r = run(
        "plan",
        EXAMPLE,
        "--ratio",
        "0.5",
        "--instrument",
        "bybit:BTCUSD",
        "--leverage",
        "3",
        "--scenario",
        "crash:BTC=-15%,*=-20%",
        "--compare",
        "--drift",
        "BTC=+20%",
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["hedge"]["ratio"] == 0.5
    assert doc["hedge"]["legs"][0]["instrument"] == "bybit:BTCUSD"
    assert doc["hedge"]["legs"][0]["notional_usd"] == 7_500  # 5,000 · 3/2
    assert doc["scenarios"][-1]["name"] == "crash"
    assert len(doc["compare"]) == 4
    assert doc["drift"]["moves"] == {"BTC": 0.2}
    r = run("plan", EXAMPLE, "--compare", "--drift", "BTC=+20%")
    assert r.returncode == 0, r.stderr
    assert "Compare" in r.stdout and "Drift" in r.stdout


def test_calc_json_units_and_numbers() -> None:
    r = run(
        "calc",
        "--instrument",
        "binance:BTCUSD_PERP",
        "--side",
        "short",
        "--contracts",
        "100",
        "--entry",
        "60000",
        "--leverage",
        "2",
        "--exit",
        "50000",
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["notional"] == {"value": 10_000.0, "unit": "USD"}
    assert doc["initial_margin"]["unit"] == "BTC"
    assert doc["initial_margin"]["value"] == pytest.approx(10_000 / 60_000 / 2)
    assert doc["liquidation_price"]["value"] == pytest.approx(119_520.0)  # tier 1, MMR 0.4%
    assert doc["bankruptcy_price"]["value"] == pytest.approx(120_000.0)
    assert doc["pnl"]["value"] == pytest.approx(10_000 * (1 / 50_000 - 1 / 60_000))
    assert doc["funding"]["value"] == pytest.approx(10_000 / 60_000 * 0.0001)  # short receives


def test_calc_reproduces_bybit_2024_example_with_overrides() -> None:
    r = run(
        "calc",
        "--instrument",
        "bybit:BTCUSD",
        "--side",
        "short",
        "--contracts",
        "60000",
        "--entry",
        "50000",
        "--leverage",
        "10",
        "--mmr",
        "0.005",
        "--method",
        "mm_on_entry_value",
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["liquidation_price"]["value"] == pytest.approx(55_248.6188, abs=1e-3)


def test_calc_cross_and_table() -> None:
    r = run(
        "calc",
        "--instrument",
        "binance:BTCUSDT",
        "--side",
        "short",
        "--contracts",
        "1",
        "--entry",
        "60000",
        "--margin-mode",
        "cross",
        "--wallet-balance",
        "30000",
        "--mmr",
        "0.005",
        "--exit",
        "55000",
    )
    assert r.returncode == 0, r.stderr
    assert "89,552.24 USDT" in r.stdout  # Binance USDS-M family, MM at LP


def test_instruments_and_help() -> None:
    r = run("instruments", "--format", "json")
    assert r.returncode == 0
    ids = {i["id"] for i in json.loads(r.stdout)["instruments"]}
    assert {"bybit:BTCUSD", "bitmex:XBTUSD", "deribit:BTC-PERPETUAL", "okx:BTC-USDT-SWAP"} <= ids
    for cmd in ("plan", "calc", "instruments"):
        h = run(cmd, "--help")
        assert h.returncode == 0 and "Example" in h.stdout


def test_user_spec_file_overrides_bundled(tmp_path: Path) -> None:
    spec = tmp_path / "instruments.yaml"
    spec.write_text(
        "instruments:\n"
        "  - {exchange: myex, symbol: SOLUSD, kind: inverse, base: SOL, quote: USD, settle: SOL, contract_size: 10,\n"
        "     lot_size: 1, tick_size: 0.01, max_leverage: 20, tiers: [[0, 0.01, 20]],\n"
        "     liquidation_method: mm_at_liquidation_price, source: my notes, as_of: '2026-11-01'}\n"
    )
    r = run(
        "plan",
        EXAMPLE,
        "--specs",
        str(spec),
        "--instrument",
        "direct:myex:inverse",
        "--proxy",
        "binance:BTCUSD_PERP",
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    legs = {leg["instrument"] for leg in json.loads(r.stdout)["hedge"]["legs"]}
    assert legs == {"myex:SOLUSD", "binance:BTCUSD_PERP"}


BAD_CASES = {
    "malformed": ("holdings: [asset: SOL\n", "malformed YAML"),
    "unknown_key": (
        "holdings:\n  - {asset: SOL, quantity: 1}\nprices: {SOL: 100, BTC: 60000}\nhedge: {instrument: "
        "binance:BTCUSDT, leverag: 2}\n",
        "field `hedge.leverag`: unknown key",
    ),
    "no_price": (
        "holdings:\n  - {asset: PEPE, quantity: 1000}\nhedge: {instrument: binance:BTCUSDT}\n",
        "no price for PEPE",
    ),
    "negative": (
        "prices: {SOL: 100, BTC: 60000}\nholdings:\n  - {asset: SOL, quantity: -3}\n"
        "hedge: {instrument: binance:BTCUSDT}\n",
        "field `holdings[0].quantity`: must be > 0, was -3",
    ),
    "nan": (
        "prices: {SOL: 100, BTC: 60000}\nholdings:\n  - {asset: SOL, quantity: .nan}\n"
        "hedge: {instrument: binance:BTCUSDT}\n",
        "field `holdings[0].quantity`",
    ),
    "unknown_instrument": (
        "prices: {SOL: 100, BTC: 60000}\nholdings:\n  - {asset: SOL, quantity: 100}\n"
        "hedge: {instrument: binance:DOGEUSD}\n",
        "unknown instrument 'binance:DOGEUSD'",
    ),
    "leverage_high": (
        "prices: {SOL: 100, BTC: 60000}\nholdings:\n  - {asset: SOL, quantity: 100}\n"
        "hedge: {instrument: binance:BTCUSD_PERP, leverage: 200}\n",
        "above the 125x maximum",
    ),
    "leverage_low": (
        "prices: {SOL: 100, BTC: 60000}\nholdings:\n  - {asset: SOL, quantity: 100}\n"
        "hedge: {instrument: binance:BTCUSD_PERP, leverage: 0.5}\n",
        "field `hedge.leverage`",
    ),
    "ratio": (
        "prices: {SOL: 100, BTC: 60000}\nholdings:\n  - {asset: SOL, quantity: 100}\n"
        "hedge: {instrument: binance:BTCUSD_PERP, ratio: 3}\n",
        "field `hedge.ratio`",
    ),
    "empty": ("prices: {SOL: 100}\nholdings: []\nhedge: {instrument: binance:BTCUSD_PERP}\n", "field `holdings`"),
    "no_btc_price": (
        "prices: {SOL: 100}\nholdings:\n  - {asset: SOL, quantity: 100}\nhedge: {instrument: binance:BTCUSD_PERP}\n",
        "no price for BTC",
    ),
    "rounds_to_zero": (
        "prices: {SOL: 100, BTC: 60000}\nholdings:\n  - {asset: SOL, quantity: 0.1}\n"
        "hedge: {instrument: binance:BTCUSD_PERP}\n",
        "rounds to 0 contracts",
    ),
    "min_variance": (
        "prices: {SOL: 100, BTC: 60000}\nholdings:\n  - {asset: SOL, quantity: 100}\n"
        "hedge: {instrument: binance:BTCUSD_PERP, method: min_variance}\n",
        "no market store",
    ),
    "not_mapping": ("- just\n- a list\n", "must be a YAML mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_one_line_exit_2(tmp_path: Path, case: str) -> None:
    text, expected = BAD_CASES[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    r = run("plan", str(path))
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert str(path) in lines[0]
    assert expected in lines[0], lines[0]


@pytest.mark.parametrize(
    "args,expected",
    [
        (["plan", "/nonexistent.yaml"], "no such file"),
        (["plan", EXAMPLE, "--leverage", "0"], "leverage"),
        (["plan", EXAMPLE, "--collateral", "stable"], "stable needs a linear contract"),
        (["plan", EXAMPLE, "--scenario", "x:BTC=abc"], "not a return"),
        (["calc", "--instrument", "nope", "--side", "short", "--contracts", "1", "--entry", "1"], "exchange:SYMBOL"),
        (
            ["calc", "--instrument", "binance:BTCUSDT", "--side", "short", "--contracts", "-1", "--entry", "1"],
            "contracts",
        ),
        (
            [
                "calc",
                "--instrument",
                "binance:BTCUSDT",
                "--side",
                "short",
                "--contracts",
                "1",
                "--entry",
                "100",
                "--margin-mode",
                "cross",
            ],
            "wallet-balance",
        ),
        (
            [
                "calc",
                "--instrument",
                "binance:BTCUSD_PERP",
                "--side",
                "short",
                "--contracts",
                "1",
                "--entry",
                "100",
                "--method",
                "binance_usdm",
            ],
            "for linear contracts",
        ),
        (["calc", "--instrument", "binance:BTCUSDT", "--side", "sideways", "--contracts", "1", "--entry", "1"], "side"),
    ],
)
def test_bad_flags_exit_2_without_traceback(args: list[str], expected: str) -> None:
    r = run(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert expected in r.stderr
