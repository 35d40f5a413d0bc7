"""`perphedge plan` with a dated future as the leg: basis locked, roll, margin, scenarios, perpetual vs dated."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli, sample_dir

EXAMPLE = str(REPO / "examples" / "btc-quarterly.yaml")  # hedges on BTCUSD_PERP; --instrument picks the quarterly
DATED = ["--instrument", "binance:BTCUSD_210924"]


def _with_dated(args: tuple[str, ...] | list[str]) -> list[str]:
    return list(args) if "--instrument" in args else [*DATED, *args]


def _plan(store: Path, *args: str) -> dict:  # type: ignore[type-arg]
    r = run_cli("plan", EXAMPLE, "--store", str(store), "-f", "json", *_with_dated(args))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_inverse_quarterly_plan_on_a_stored_day(sample_store_path: Path) -> None:
    doc = _plan(sample_store_path, "--as-of", "2021-06-01", "--horizon", "90d")
    d = doc["dated"]
    row = next(
        r
        for r in csv.DictReader((sample_dir() / "futures/BINANCE_BTCUSD_quarterly_1d_2021.csv").open())
        if r["timestamp"] == "2021-06-01" and r["contract"] == "BTCUSD_210924"
    )
    assert d["future_price"] == float(row["close"]) and d["spot_price"] == float(row["spot_close"])
    assert d["basis"] == pytest.approx(float(row["close"]) / float(row["spot_close"]) - 1, rel=1e-12)
    assert d["days_to_expiry"] == pytest.approx(114 + 1 / 3)  # 2021-06-02 00:00 → 2021-09-24 08:00
    assert d["basis_annualized"] == pytest.approx(d["basis"] * 365 / d["days_to_expiry"])
    assert d["horizon_days"] == 90 and d["roll_needed"] is False
    leg = doc["hedge"]["legs"][0]
    assert leg["funding_usd_per_day"] == 0 and leg["funding_rate_8h"] == 0  # a dated future pays no funding
    assert d["margin"]["method"] == "mm_at_liquidation_price"
    # carry: basis pro rata over 90 of 114.33 days on the leg's notional; perpetual: 0.01%·3·90 days
    notional = leg["notional_usd"]
    dated, perp = d["comparison"]
    assert dated["carry_usd"] == pytest.approx(d["basis"] * 90 / d["days_to_expiry"] * notional)
    assert perp["carry_usd"] == pytest.approx(0.0001 * 3 * 90 * notional)
    assert d["dated_minus_perpetual_usd"] == pytest.approx(dated["carry_usd"] - perp["carry_usd"])
    # a converged basis at -10%: short Q at F0 bought back at S1, plus the bought coin margin's own move
    s0, f0, q = d["spot_price"], d["future_price"], leg["size"]
    s1 = s0 * 0.9
    conv = next(s for s in d["scenarios"] if s["name"] == "BTC -10%" and s["basis"] == "converged")
    expected = q * (1 / s1 - 1 / f0) * s1 + leg["collateral_amount"] * (s1 - s0)
    assert conv["hedge_pnl_usd"] == pytest.approx(expected, rel=1e-9)
    assert {w["code"] for w in doc["warnings"]} >= {"AssumptionWarning", "RoundingWarning"}


def test_linear_quarterly_earns_the_basis_when_it_converges(sample_store_path: Path) -> None:
    doc = _plan(
        sample_store_path,
        "--as-of",
        "2021-06-01",
        "--instrument",
        "binance:BTCUSDT_210924",
        "--collateral",
        "stable",
        "--future-price",
        "38000",
    )
    d = doc["dated"]
    q = doc["hedge"]["legs"][0]["size"]
    b = 38000 / d["spot_price"] - 1
    for s in d["scenarios"]:
        if s["basis"] == "converged":  # sold at F0, delivered at S1: q·(F0 − S0) whatever the move
            assert s["net_pnl_usd"] == pytest.approx(
                b * q * d["spot_price"] + (1 - q / 1.0) * s["spot_pnl_usd"], rel=1e-9, abs=1e-6
            )
    assert d["horizon_days"] == pytest.approx(d["days_to_expiry"])  # default: to delivery
    assert "coin_delta_offset_at_future_price" not in d


def test_roll_needed_past_delivery(sample_store_path: Path) -> None:
    d = _plan(sample_store_path, "--as-of", "2021-06-01", "--horizon", "180d", "--roll-days", "3")["dated"]
    assert d["roll_needed"] is True and d["rolls"][0]["date"] == "2021-09-21"
    assert d["days_covered_by_locked_basis"] == pytest.approx(d["days_to_expiry"])


def test_table_output(sample_store_path: Path) -> None:
    r = run_cli("plan", EXAMPLE, "--store", str(sample_store_path), "--as-of", "2021-06-01", *DATED)
    assert r.returncode == 0, r.stderr
    assert "Perpetual vs dated" in r.stdout and "Scenarios with the basis" in r.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["--as-of", "2021-06-01", "--horizon", "200d"], "runs past the contract's delivery"),
        (["--as-of", "2021-06-01", "--horizon", "200d", "--roll-days", "200"], "shorter than the contract's life"),
        (["--as-of", "2021-06-01", "--roll-days", "0"], "`--roll-days`"),
        (["--as-of", "2021-06-01", "--horizon", "0d"], "--horizon"),
        (["--as-of", "2021-10-01"], "contract expired"),
        (["--as-of", "2021-06-01", "--instrument", "binance:BTCUSD_210925"], "unknown expiry"),
        (["--as-of", "2021-06-01", "--future-price", "-1"], "`--future-price`"),
        (["--as-of", "2021-06-01", "--future-price", "nan"], "--future-price"),
        (["--as-of", "2021-06-01", "--basis-shock", "0.9"], "`--basis-shock`"),
        (["--as-of", "2021-06-02", "--instrument", "binance:BTCUSD_211231"], "no stored daily close"),
        (["--as-of", "2021-06-01", "--instrument", "binance:BTCUSD_PERP", "--horizon", "90d"], "dated-futures leg"),
    ],
)
def test_wrong_plan_inputs(sample_store_path: Path, args: list[str], message: str) -> None:
    r = run_cli("plan", EXAMPLE, "--store", str(sample_store_path), *_with_dated(args))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr


def test_a_dated_leg_needs_its_price(tmp_path: Path) -> None:
    pf = tmp_path / "p.yaml"
    pf.write_text(Path(EXAMPLE).read_text() + "prices: {BTC: 40000}\n")
    r = run_cli("plan", str(pf), *DATED, "--future-price", "41000", "-f", "json")
    # without --as-of, days to delivery run from now: a 2021 contract has expired
    assert r.returncode == 2 and "contract expired" in r.stderr
    r = run_cli("plan", str(pf), "--instrument", "binance:BTCUSD_301227")
    assert r.returncode == 2 and "needs its price" in r.stderr
    r = run_cli("plan", str(pf), "--instrument", "binance:BTCUSD_301227", "--future-price", "41000", "-f", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["dated"]["basis"] == pytest.approx(0.025)


def test_calc_of_a_dated_future_has_no_funding() -> None:
    """`calc` on a quarterly: no funding (its cost is the basis), the delivery time instead; a perpetual keeps it."""
    args = ("calc", "--side", "short", "--contracts", "10", "--entry", "35000", "--leverage", "2")
    r = run_cli(*args, "--instrument", "binance:BTCUSD_210924", "-f", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["expiry"] == "2021-09-24T08:00:00Z" and doc["funding_interval_hours"] is None
    assert doc["funding"]["value"] == 0 and doc["funding_per_day"]["value"] == 0 and doc["funding_rate"] == 0
    table = run_cli(*args, "--instrument", "binance:BTCUSD_210924")
    assert table.returncode == 0 and "none: a dated future" in table.stdout, table.stderr
    perp = json.loads(run_cli(*args, "--instrument", "binance:BTCUSD_PERP", "-f", "json").stdout)
    assert perp["expiry"] is None and perp["funding"]["value"] > 0 and perp["funding_interval_hours"] == 8
