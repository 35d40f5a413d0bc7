"""Each example in ``examples/`` reproduces its worked example (reference/worked_examples.md).

Where the guide's figure is naive, the test pins both the naive figure and the correct one.
"""

from __future__ import annotations

from typing import Any

import pytest

from perphedge.specs import InstrumentRegistry
from perphedge.usecases.documents import plan_document
from perphedge.usecases.plan import HedgeOverrides, plan_from_file
from tests.conftest import REPO


def plan(registry: InstrumentRegistry, name: str, **kw: Any) -> dict[str, Any]:
    return plan_document(plan_from_file(str(REPO / "examples" / name), registry=registry, **kw))


def scen(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in doc["scenarios"] if s["name"] == name)


def test_a_full_hedge_on_bought_btc_collateral(registry: InstrumentRegistry) -> None:
    doc = plan(registry, "altcoins.yaml")
    leg = doc["hedge"]["legs"][0]
    assert doc["portfolio"]["value_usd"] == 10_000
    assert leg["instrument"] == "binance:BTCUSD_PERP" and leg["kind"] == "inverse"
    assert leg["contracts"] == 200 and leg["notional_usd"] == 20_000  # not the guide's 100 / $10k
    assert leg["collateral_amount"] == pytest.approx(10_000 / 60_000, abs=1e-9)  # $10k of BTC
    assert leg["collateral_source"] == "buy"
    assert doc["hedge"]["net_delta_usd"] == pytest.approx(0, abs=0.01)
    # the guide's naive 100-contract short leaves $5k of BTC delta: net −$1,000 at −20%
    assert leg["naive_notional_usd"] == 10_000
    assert leg["naive_net_delta_usd"] == pytest.approx(5_000)
    down = scen(doc, "BTC -20%")
    assert down["spot_pnl_usd"] == pytest.approx(-2_000)
    assert down["net_pnl_usd"] == pytest.approx(0, abs=0.01)
    # funding: positive rate, the short receives 0.01%·3·$20k = $6/day
    assert leg["funding_usd_per_day"] == pytest.approx(6.0)


def test_a_naive_figure_and_the_linear_alternative(registry: InstrumentRegistry) -> None:
    naive = plan(registry, "altcoins-50pct.yaml", overrides=HedgeOverrides(ratio=0.5))
    assert naive["hedge"]["legs"][0]["notional_usd"] == 10_000  # = the guide's 100 contracts
    assert scen(naive, "BTC -20%")["net_pnl_usd"] == pytest.approx(-1_000)  # "net ≈ −$1,000"
    linear = plan(
        registry, "altcoins.yaml", overrides=HedgeOverrides(instrument="binance:BTCUSDT", collateral="stable")
    )
    leg = linear["hedge"]["legs"][0]
    assert leg["collateral_asset"] == "USDT"
    assert leg["notional_usd"] == pytest.approx(10_020)  # 0.167 BTC: the guide's $10k holds
    assert scen(linear, "BTC -20%")["net_pnl_usd"] == pytest.approx(4.0, abs=0.01)  # lot rounding only


def test_a2_half_hedge(registry: InstrumentRegistry) -> None:
    doc = plan(registry, "altcoins-50pct.yaml")
    leg = doc["hedge"]["legs"][0]
    assert leg["notional_usd"] == 10_000 and leg["naive_notional_usd"] == 5_000
    assert leg["collateral_usd"] == pytest.approx(5_000)
    assert doc["hedge"]["net_delta_usd"] == pytest.approx(5_000)  # half the exposure, as asked


def test_b_eth_holder_collateral_from_holdings(registry: InstrumentRegistry) -> None:
    doc = plan(registry, "eth-holder.yaml")
    leg = doc["hedge"]["legs"][0]
    assert leg["instrument"] == "binance:ETHUSD_PERP"
    assert leg["contracts"] == 15_000 and leg["notional_usd"] == 150_000  # 50 ETH at $3,000
    assert leg["collateral_amount"] == pytest.approx(50) and leg["collateral_source"] == "holdings"
    assert leg["liquidation_price"] is None  # 1x inverse short: cannot be liquidated
    down = scen(doc, "ETH -20%")
    assert down["spot_pnl_usd"] == pytest.approx(-60_000)  # "−20 ETH-equivalent"
    assert down["hedge_pnl_usd"] == pytest.approx(30_000)  # "+10 ETH-equivalent" at the old price
    assert down["legs"][0]["pnl"] == pytest.approx(12.5)  # in ETH at the new price
    assert doc["hedge"]["net_delta_usd"] == pytest.approx(150_000)


def test_c_btc_eth_60pct_direct_legs_and_drift(registry: InstrumentRegistry) -> None:
    doc = plan(registry, "btc-eth-60pct.yaml", drift_moves="BTC=+20%")
    legs = {leg["instrument"]: leg for leg in doc["hedge"]["legs"]}
    assert legs["binance:BTCUSDT"]["notional_usd"] == pytest.approx(150_000)
    assert legs["binance:ETHUSDT"]["notional_usd"] == pytest.approx(90_000)
    assert doc["portfolio"]["cash_usd"] == 100_000
    assert doc["hedge"]["target_usd"] == pytest.approx(240_000)
    btc = next(d for d in doc["drift"]["legs"] if d["instrument"] == "binance:BTCUSDT")
    # coin-sized shorts scale with price: still 60%, no contracts to add; the rally is a USDT loss
    assert btc["hedge_ratio_now"] == pytest.approx(0.6)
    assert btc["contracts_to_trade"] == 0
    assert btc["unrealised_pnl"] == pytest.approx(-30_000)


def test_c_drift_when_btc_rallies_alone(registry: InstrumentRegistry) -> None:
    # one BTC inverse proxy leg for BTC and ETH, bought collateral at 2x: BTC +20% with ETH flat
    # over-hedges (the leg's USD delta grows with BTC, the ETH it covers does not)
    doc = plan(
        registry,
        "btc-eth-60pct.yaml",
        drift_moves="BTC=+20%,ETH=0%",
        overrides=HedgeOverrides(instrument="binance:BTCUSD_PERP", collateral="buy", leverage=2),
    )
    d = doc["drift"]["legs"][0]
    assert d["target_delta_usd"] == pytest.approx(150_000 * 1.2 + 90_000)
    assert d["delta_usd"] == pytest.approx(-288_000)
    assert d["hedge_ratio_now"] == pytest.approx(0.6 * 288 / 270)
    assert d["contracts_to_trade"] == pytest.approx(-360)  # buy back $36k of notional


def test_c_uniform_rally_keeps_an_inverse_hedge_on_target(registry: InstrumentRegistry) -> None:
    # the USD value of an inverse short's PnL is Q(1 − P/E), linear in P: no drift in a uniform move
    doc = plan(
        registry,
        "btc-eth-60pct.yaml",
        drift_moves="*=+20%",
        overrides=HedgeOverrides(instrument="binance:BTCUSD_PERP", collateral="buy", leverage=2),
    )
    d = doc["drift"]["legs"][0]
    assert d["hedge_ratio_now"] == pytest.approx(0.6)
    assert d["contracts_to_trade"] == 0


def test_d_btc_half_hedge_arithmetic(registry: InstrumentRegistry) -> None:
    doc = plan(registry, "btc-50pct.yaml", scenarios=["btc-15:BTC=-15%"])
    s = scen(doc, "btc-15")
    assert s["spot_pnl_usd"] == pytest.approx(-15_000)
    assert s["hedge_pnl_usd"] == pytest.approx(7_500, abs=5)  # 0.833 BTC lot
    assert s["net_pnl_usd"] == pytest.approx(-7_500, abs=5)  # not "near zero"


def test_e_alts_40pct_on_btc(registry: InstrumentRegistry) -> None:
    doc = plan(registry, "alts-40pct.yaml", scenarios=["btc-15/alts-20:BTC=-15%,*=-20%"])
    assert doc["hedge"]["target_usd"] == pytest.approx(20_000)
    s = scen(doc, "btc-15/alts-20")
    assert s["spot_pnl_usd"] == pytest.approx(-17_500)
    assert s["hedge_pnl_usd"] == pytest.approx(3_000, abs=5)
    assert s["net_pnl_usd"] == pytest.approx(-14_500, abs=5)
    assert s["proxy_return"] == pytest.approx(-0.15)


def test_f_core_satellite(registry: InstrumentRegistry) -> None:
    doc = plan(registry, "core-satellite.yaml")
    assert doc["hedge"]["scope_exposure_usd"] == 30_000
    assert doc["hedge"]["legs"][0]["notional_usd"] == pytest.approx(15_000)
    assert doc["portfolio"]["exposure_by_group_usd"] == {"core": 70_000, "satellite": 30_000}


def test_g_beta_two_means_double_not_half(registry: InstrumentRegistry) -> None:
    doc = plan(registry, "beta-basket.yaml")
    assert doc["hedge"]["target_usd"] == pytest.approx(200_000)
    assert doc["hedge"]["legs"][0]["notional_usd"] == pytest.approx(200_000, abs=60)
    assert doc["hedge"]["net_delta_usd"] == pytest.approx(100_000, abs=60)  # the BTC core stays unhedged


def test_compare_lists_inverse_linear_proxy_direct(registry: InstrumentRegistry) -> None:
    doc = plan(registry, "altcoins.yaml", compare=True)
    variants = {row["variant"]: row for row in doc["compare"]}
    assert set(variants) == {
        "proxy inverse (buy)",
        "direct inverse (buy)",
        "proxy linear (stable)",
        "direct linear (stable)",
    }
    assert variants["proxy linear (stable)"]["notional_usd"] == pytest.approx(10_020)
    assert "binance:SOLUSDT" in variants["direct linear (stable)"]["legs"]
    for row in variants.values():
        assert row["error"] is None
        assert row["net_delta_usd"] == pytest.approx(0, abs=150)  # SOLUSDT lot = 1 SOL
