"""DeFi positions against the protocols' published formulas and worked examples computed by hand.

Uniswap v2 whitepaper: ``x·y = k = L²``; at pool price ``P`` (quote per base) ``x = L/√P``, ``y = L·√P``.
Uniswap v3 whitepaper (eq. 6.29, 6.30): in range ``x = L(1/√P − 1/√p_b)``, ``y = L(√P − √p_a)``; below
``p_a`` all base, above ``p_b`` all quote. Aave: ``HF = Σ collateral·LT / Σ debt``.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from perphedge.core.defi import (
    LendingPosition,
    LpV2Position,
    LpV3Position,
    impermanent_loss_v2,
    v3_amounts,
    v3_gamma,
    v3_liquidity_from_amounts,
    v3_value,
)
from perphedge.specs import InstrumentRegistry
from perphedge.usecases.documents import plan_document
from perphedge.usecases.plan import plan_from_file
from tests.conftest import REPO


def plan(registry: InstrumentRegistry, name: str) -> dict[str, Any]:
    return plan_document(plan_from_file(str(REPO / "examples" / name), registry=registry))


def test_v3_worked_example_in_range() -> None:
    """L = 4000 on [1500, 2500] at P = 2000 (the issue's own example).

    √2000 = 44.7213595, √1500 = 38.7298335, √2500 = 50.
    x = 4000 × (1/44.7213595 − 1/50) = 4000 × (0.0223606798 − 0.02) = 9.44271910 ETH
    y = 4000 × (44.7213595 − 38.7298335) = 4000 × 5.99152609 = 23,966.1044 USDC
    value = 9.4427191 × 2000 + 23,966.1044 = 18,885.4382 + 23,966.1044 = 42,851.5426 USD
    delta = x = 9.4427 ETH = 18,885.44 USD: 44% of the value, not 100% (nor the v2 50%).
    gamma = dx/dP = −L/(2·P^1.5) = −4000/(2 × 89,442.719) = −0.02236068 ETH per USD of price.
    """
    x, y = v3_amounts(4000.0, 1500.0, 2500.0, 2000.0)
    assert float(x) == pytest.approx(9.44271910, abs=1e-8)
    assert float(y) == pytest.approx(23966.1044, abs=1e-3)
    assert float(v3_value(4000.0, 1500.0, 2500.0, 2000.0)) == pytest.approx(42851.5426, abs=1e-3)
    assert float(v3_gamma(4000.0, 1500.0, 2500.0, 2000.0)) == pytest.approx(-0.02236068, abs=1e-8)
    pos = LpV3Position(base="ETH", quote="USDC", p_a=1500, p_b=2500, liquidity=4000)
    assert float(pos.delta_usd({"ETH": 2000.0})["ETH"]) == pytest.approx(18885.438, abs=1e-3)


def test_v3_worked_example_out_of_range_on_either_side() -> None:
    """Below p_a = 1500: x = 4000 × (1/38.7298335 − 1/50) = 4000 × 0.00581988897 = 23.2795559 ETH, y = 0;
    the delta is all of it whatever the price below the range (gamma 0).
    Above p_b = 2500: y = 4000 × (50 − 38.7298335) = 45,080.6662 USDC, x = 0: delta 0, value constant."""
    for p in (1000.0, 1499.0, 1500.0):
        x, y = v3_amounts(4000.0, 1500.0, 2500.0, p)
        assert float(x) == pytest.approx(23.2795559, abs=1e-6) and float(y) == 0.0
        assert float(v3_gamma(4000.0, 1500.0, 2500.0, p)) == 0.0
    for p in (2500.0, 2501.0, 9000.0):
        x, y = v3_amounts(4000.0, 1500.0, 2500.0, p)
        assert float(x) == 0.0 and float(y) == pytest.approx(45080.6662, abs=1e-3)
        assert float(v3_value(4000.0, 1500.0, 2500.0, p)) == pytest.approx(45080.6662, abs=1e-3)
    # below the range the value is x·P: 23.2795559 × 1000 = 23,279.56
    assert float(v3_value(4000.0, 1500.0, 2500.0, 1000.0)) == pytest.approx(23279.5559, abs=1e-3)


def test_v3_liquidity_from_the_ui_amounts() -> None:
    """The amounts a pool UI shows give back L: in range (9.4427191 ETH + 23,966.1044 USDC at 2000) → 4000;
    below the range 23.2795559 ETH alone → 4000; above it 45,080.6662 USDC alone → 4000."""
    assert v3_liquidity_from_amounts(9.4427191, 23966.1044, 1500, 2500, 2000) == pytest.approx(4000, rel=1e-7)
    assert v3_liquidity_from_amounts(23.2795559, 0.0, 1500, 2500, 1400) == pytest.approx(4000, rel=1e-7)
    assert v3_liquidity_from_amounts(0.0, 45080.6662, 1500, 2500, 2600) == pytest.approx(4000, rel=1e-7)


def test_v2_worked_example_and_impermanent_loss() -> None:
    """5 ETH + 15,000 USDC at ETH 3000: L = √(5 × 15,000) = 273.861279; value 30,000, delta 5 ETH = 15,000
    USD (half). ETH ×4 (12,000): x = L/√12000 = 2.5 ETH, y = L·√12000 = 30,000: value 60,000 vs holding
    5 × 12,000 + 15,000 = 75,000: IL = −20% = 2√4/(1+4) − 1. ETH ×2: 2√2/3 − 1 = −5.7191%.
    ETH ÷2 (r = 0.5): 2√0.5/1.5 − 1 = −5.7191% too (IL is symmetric in log price)."""
    pos = LpV2Position.from_amounts(base="ETH", quote="USDC", x=5.0, y=15000.0, price=3000.0)
    assert pos.liquidity == pytest.approx(273.861279, abs=1e-6)
    assert float(pos.value_usd({"ETH": 3000.0})) == pytest.approx(30000.0)
    assert float(pos.delta_usd({"ETH": 3000.0})["ETH"]) == pytest.approx(15000.0)
    a = pos.amounts({"ETH": 12000.0})
    assert float(a["ETH"]) == pytest.approx(2.5) and float(a["USDC"]) == pytest.approx(30000.0)
    assert float(pos.value_usd({"ETH": 12000.0})) == pytest.approx(60000.0)
    assert float(impermanent_loss_v2(4.0)) == pytest.approx(-0.2)
    assert float(impermanent_loss_v2(2.0)) == pytest.approx(-0.0571910, abs=1e-7)
    assert float(impermanent_loss_v2(0.5)) == pytest.approx(-0.0571910, abs=1e-7)
    # gamma: dx/dP = −L/(2·P^1.5) = −273.861279/(2 × 164,316.767) = −0.000833333 = −x/(2P)
    assert float(pos.gamma({"ETH": 3000.0})) == pytest.approx(-5.0 / 6000.0)


def test_aave_health_factor_and_liquidation_price() -> None:
    """10 ETH supplied at 3000, 12,000 USDC borrowed, LT 0.83: HF = 30,000 × 0.83 / 12,000 = 2.075;
    liquidated when 10·p·0.83 = 12,000, p = 1,445.78 (−51.8%)."""
    pos = LendingPosition(supplied={"ETH": 10}, borrowed={"USDC": 12000}, liquidation_threshold=0.83)
    assert float(pos.health_factor({"ETH": 3000.0})) == pytest.approx(2.075)
    liq = pos.liquidation_price("ETH", {"ETH": 3000.0})
    assert liq == pytest.approx(1445.783133, abs=1e-6)
    assert float(pos.delta_usd({"ETH": 3000.0})["ETH"]) == pytest.approx(30000.0)
    assert float(pos.value_usd({"ETH": 3000.0})) == pytest.approx(18000.0)


def test_example_staked_eth_half_hedged_with_an_inverse_short(registry: InstrumentRegistry) -> None:
    """examples/defi-staked-eth.yaml: 100 stETH (rate 1) = 100 ETH of delta = 300,000 USD at 3000.
    50% hedge = 150,000 USD of delta on binance:ETHUSD_PERP (10 USD contracts) at 2x on bought ETH margin:
    N = 150,000 × 2/(2 − 1) = 300,000 USD = 30,000 contracts, margin 300,000/(2 × 3000) = 50 ETH (a long of
    150,000): net delta 300,000 − 300,000 + 150,000 = +150,000 = 50 ETH. ETH −30%: staked −90,000, hedge
    +45,000, net −45,000 (half). The depeg scenario (stETH −5% vs ETH): −15,000 unhedged."""
    doc = plan(registry, "defi-staked-eth.yaml")
    pos = doc["portfolio"]["positions"][0]
    assert pos["kind"] == "staked" and pos["delta"] == {"ETH": 100.0} and pos["delta_usd"] == {"ETH": 300000.0}
    assert doc["portfolio"]["exposure_usd"] == 300000.0 and doc["portfolio"]["holdings"] == []
    leg = doc["hedge"]["legs"][0]
    assert leg["contracts"] == 30000 and leg["notional_usd"] == 300000.0
    assert leg["collateral_amount"] == pytest.approx(50.0)
    assert doc["hedge"]["net_delta_by_asset_usd"] == {"ETH": 150000.0}
    s = next(s for s in doc["scenarios"] if s["name"] == "ETH -30%")
    assert (s["spot_pnl_usd"], s["hedge_pnl_usd"], s["net_pnl_usd"]) == (-90000.0, 45000.0, -45000.0)
    depeg = next(s for s in doc["scenarios"] if "depeg" in s["name"])
    assert depeg["spot_pnl_usd"] == -15000.0 and depeg["hedge_pnl_usd"] == 0.0


def test_example_v3_lp_hedged_on_its_delta(registry: InstrumentRegistry) -> None:
    """examples/defi-lp-v3.yaml: the L = 4000 [1500, 2500] position at 2000 is worth 42,851.54 but its
    delta is 9.4427 ETH = 18,885.44 USD: binance:ETHUSDT (0.001 ETH lots) shorts 9.443 ETH, not 21.43.
    ETH −10% (1800): x = 4000(1/42.4264069 − 0.02) = 14.2809 ETH, y = 4000(42.4264069 − 38.7298335) =
    14,786.29: value 40,491.92, PnL −2,359.62; hedge +9.443 × 200 = +1,888.60; net −471.02, which is the
    impermanent loss against holding 9.4427 ETH + 23,966.10 USDC (16,996.89 + 23,966.10 = 40,962.99):
    −471.07 (the lot rounding leaves 0.05). ETH ±25% takes it to its bounds (1500, 2500)."""
    doc = plan(registry, "defi-lp-v3.yaml")
    pos = doc["portfolio"]["positions"][0]
    assert pos["value_usd"] == 42851.54 and pos["delta_usd"] == {"ETH": 18885.44}
    assert pos["range_status"] == "in"
    assert doc["hedge"]["legs"][0]["contracts"] == 9.443
    assert doc["hedge"]["target_usd"] == 18885.44
    s = next(s for s in doc["scenarios"] if s["name"] == "ETH -10%")
    assert s["spot_pnl_usd"] == pytest.approx(-2359.62, abs=0.01)
    assert s["hedge_pnl_usd"] == pytest.approx(1888.60, abs=0.01)
    assert s["impermanent_loss_usd"] == pytest.approx(-471.07, abs=0.02)
    assert math.isclose(s["net_pnl_usd"], s["impermanent_loss_usd"], abs_tol=1.0)
    names = [s["name"] for s in doc["scenarios"]]
    assert "ETH -25.0% (#0 at range low 1500)" in names and "ETH +25.0% (#0 at range high 2500)" in names
    warn = [w for w in doc["warnings"] if w["code"] == "RangeWarning"]
    assert len(warn) == 1 and "'ETH -30%' (below)" in warn[0]["message"] and "'ETH +30%' (above)" in warn[0]["message"]


def test_example_lending_and_v2_pool(registry: InstrumentRegistry) -> None:
    """examples/defi-lending.yaml at ETH 3000: loan 10 ETH − 12,000 USDC (value 18,000, delta 10 ETH), pool
    5 ETH + 15,000 USDC (value 30,000, delta 5 ETH): 15 ETH = 45,000 USD hedged, not the 48,000 of value.
    ETH −51.8% to 1,445.78 liquidates the loan: bonus 5% × 12,000 = 600 lost; the pool at r = 0.481928 loses
    IL 2√r/(1+r) − 1 = 2 × 0.694210/1.481928 − 1 = −6.3099% of holding 5 × 1,445.78 + 15,000 = 22,228.92:
    −1,402.61."""
    doc = plan(registry, "defi-lending.yaml")
    loan, pool = doc["portfolio"]["positions"]
    assert loan["value_usd"] == 18000.0 and loan["delta"] == {"ETH": 10.0}
    assert loan["health_factor"] == pytest.approx(2.075)
    assert pool["value_usd"] == 30000.0 and pool["delta"] == {"ETH": 5.0}
    assert doc["portfolio"]["value_usd"] == 48000.0 and doc["portfolio"]["exposure_usd"] == 45000.0
    assert doc["hedge"]["target_usd"] == 45000.0 and doc["hedge"]["legs"][0]["contracts"] == 15.0
    s = next(s for s in doc["scenarios"] if "liquidated" in s["name"])
    assert s["name"] == "ETH -51.8% (#0 liquidated at 1,445.78)"
    out_loan, out_pool = s["positions"]
    assert out_loan["liquidated"] and out_loan["liquidation_loss_usd"] == 600.0
    assert out_pool["impermanent_loss_usd"] == pytest.approx(-1402.61, abs=0.01)
    r = 1445.783133 / 3000
    assert out_pool["impermanent_loss_usd"] == pytest.approx(
        float(impermanent_loss_v2(r)) * (5 * 1445.783133 + 15000), abs=0.01
    )
