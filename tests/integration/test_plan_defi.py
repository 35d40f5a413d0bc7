"""`perphedge plan` on DeFi positions, run as a user runs it (subprocess): tables, the JSON document,
scenario and drift options, and one-line refusals (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.test_cli import run

LP = str(REPO / "examples" / "defi-lp-v3.yaml")
STAKED = str(REPO / "examples" / "defi-staked-eth.yaml")


def test_plan_table_shows_positions_deltas_and_scenarios() -> None:
    r = run("plan", LP)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "DeFi positions (hedged by their delta, not their value)" in out
    assert "9.4427191 ETH" in out and "+18,885.44" in out
    assert "9.443 × 1 ETH" in out
    assert "LP IL USD" in out and "below range" in out and "above range" in out
    assert "RangeWarning" in out
    assert "Portfolio" not in out.split("DeFi positions")[0]  # no empty holdings table


def test_plan_json_positions_and_net_delta_by_asset() -> None:
    r = run("plan", STAKED, "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "perphedge.plan/1"
    pf = doc["portfolio"]
    assert pf["holdings"] == [] and pf["positions_value_usd"] == 300000.0
    assert pf["exposure_by_asset_usd"] == {"ETH": 300000.0}
    p = pf["positions"][0]
    for key in ("value_usd", "amounts", "delta", "delta_usd", "kind", "label", "underlying_quantity"):
        assert key in p
    assert doc["hedge"]["net_delta_by_asset_usd"] == {"ETH": 150000.0}
    assert doc["hedge"]["net_delta_usd"] == 150000.0
    s = doc["scenarios"][0]
    assert s["positions"][0]["kind"] == "staked" and "positions_pnl_usd" in s


def test_a_scenario_may_depeg_the_staked_token(tmp_path: Path) -> None:
    r = run("plan", STAKED, "--format", "json", "--scenario", "crash:ETH=-40%,STETH=-10%")
    assert r.returncode == 0, r.stderr
    s = next(s for s in json.loads(r.stdout)["scenarios"] if s["name"] == "crash")
    # 100 ETH × 3000 × (0.6 × 0.9 − 1) = −138,000; the short offsets only the ETH move
    assert s["spot_pnl_usd"] == -138000.0
    assert s["positions"][0]["depeg"] == pytest.approx(0.1)


def test_lending_liquidation_and_drift_of_an_lp(tmp_path: Path) -> None:
    f = tmp_path / "mixed.yaml"
    f.write_text(
        "name: mixed\nprices: {ETH: 3000, BTC: 60000}\nholdings: [{asset: BTC, quantity: 1}]\n"
        "positions:\n"
        "  - {kind: lending, supplied: {ETH: 10}, borrowed: {USDC: 12000}, liquidation_threshold: 0.83,"
        " liquidation_bonus: 0.05}\n"
        "  - {kind: lp_v2, pair: [ETH, USDC], amounts: {ETH: 5, USDC: 15000}}\n"
        "hedge: {instrument: 'direct:binance:linear', leverage: 2}\n"
    )
    r = run("plan", str(f), "--format", "json", "--drift", "ETH=+20%")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    lend = doc["portfolio"]["positions"][0]
    assert lend["health_factor"] == pytest.approx(2.075) and lend["liquidation_prices_usd"]["ETH"] == pytest.approx(
        1445.7831, abs=1e-3
    )
    liq = next(s for s in doc["scenarios"] if "liquidated" in s["name"])
    assert liq["positions_liquidated"] and liq["positions"][0]["liquidation_loss_usd"] == 600.0
    legs = {leg["instrument"]: leg for leg in doc["hedge"]["legs"]}
    assert legs["binance:ETHUSDT"]["target_delta_usd"] == 45000.0  # 10 ETH lent + 5 ETH in the pool
    eth = next(d for d in doc["drift"]["legs"] if d["instrument"] == "binance:ETHUSDT")
    # after ETH +20%: 10 ETH × 3600 + the pool's new 5/√1.2 ETH × 3600 = 36,000 + 16,431.68
    assert eth["target_delta_usd"] == pytest.approx(36000 + 5 / 1.2**0.5 * 3600, abs=0.01)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "prices: {ETH: 2000}\npositions: [{kind: lp_v3, pair: [ETH, USDC], range: [2500, 1500], liquidity: 1}]\n",
            "field `positions[0].range`",
        ),
        (
            "prices: {ETH: 2000}\npositions: [{kind: lp_v3, pair: [ETH, USDC], range: [2500, 3000], "
            "amounts: {ETH: 1, USDC: 5}}]\n",
            "field `positions[0].amounts`: at price 2000 the position is below its range",
        ),
        ("positions: [{kind: staked, asset: STETH, underlying: ETH, quantity: 1}]\n", "no price for ETH"),
        ("prices: {ETH: 2000}\nholdings: []\n", "field `holdings`"),
    ],
)
def test_bad_positions_exit_2_with_one_line(tmp_path: Path, body: str, expected: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(body + "hedge: {instrument: binance:ETHUSDT}\n")
    r = run("plan", str(f))
    assert r.returncode == 2, r.stdout + r.stderr
    assert expected in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_leverage_auto_is_refused_with_positions() -> None:
    r = run("plan", LP, "--leverage", "auto")
    assert r.returncode == 2
    assert "`--leverage auto`" in r.stderr and "positions" in r.stderr
