"""Hedge sizing rules: collateral-aware notional, allocation, rounding and refusals."""

from __future__ import annotations

import pytest

from perphedge.core.hedge import CollateralSource, HedgeRequest, LegRequest, SizingMethod, plan_hedge
from perphedge.core.portfolio import Holding, Portfolio
from perphedge.errors import ConfigError, InfeasibleHedgeError
from perphedge.specs import InstrumentRegistry

PRICES = {"BTC": 60_000, "ETH": 3_000, "SOL": 150, "AVAX": 30, "DOT": 6.5}


def alts(scale: float = 1.0) -> Portfolio:
    return Portfolio(
        name="alts",
        prices=PRICES,
        holdings=(
            Holding(asset="SOL", quantity=5000 / 150 * scale),
            Holding(asset="AVAX", quantity=3000 / 30 * scale),
            Holding(asset="DOT", quantity=2000 / 6.5 * scale),
        ),
    )


def req(registry: InstrumentRegistry, inst: str = "binance:BTCUSD_PERP", **kw: object) -> HedgeRequest:
    base: dict[str, object] = {
        "ratio": 1.0,
        "proxy_legs": (LegRequest(instrument=registry.get(inst)),),
        "leverage": 2.0,
        "collateral": CollateralSource.BUY,
    }
    base.update(kw)
    return HedgeRequest(**base)  # type: ignore[arg-type]


def test_bought_collateral_sizing_scales_with_leverage(registry: InstrumentRegistry) -> None:
    plan = plan_hedge(alts(), req(registry, leverage=3.0))
    leg = plan.legs[0]
    assert leg.notional_usd == pytest.approx(15_000)  # D·L/(L−1)
    assert leg.collateral_amount == pytest.approx(15_000 / 3 / 60_000)
    assert plan.net_delta_usd == pytest.approx(0, abs=1e-6)


def test_one_x_inverse_on_bought_collateral_is_refused(registry: InstrumentRegistry) -> None:
    with pytest.raises(InfeasibleHedgeError, match="synthetic dollar"):
        plan_hedge(alts(), req(registry, leverage=1.0))


def test_stable_collateral_needs_linear(registry: InstrumentRegistry) -> None:
    with pytest.raises(ConfigError, match="stable needs a linear contract"):
        plan_hedge(alts(), req(registry, collateral=CollateralSource.STABLE))
    plan = plan_hedge(alts(), req(registry, "binance:BTCUSDT", collateral=CollateralSource.STABLE))
    assert plan.legs[0].notional_usd == pytest.approx(10_020)  # 0.167 BTC lot-rounded
    assert plan.legs[0].collateral_asset == "USDT"


def test_holdings_collateral_must_be_held(registry: InstrumentRegistry) -> None:
    with pytest.raises(InfeasibleHedgeError, match="portfolio holds 0 BTC"):
        plan_hedge(alts(), req(registry, collateral=CollateralSource.HOLDINGS))
    pf = Portfolio(name="eth", prices=PRICES, holdings=(Holding(asset="ETH", quantity=10),))
    with pytest.raises(InfeasibleHedgeError, match="needs 20 ETH"):
        plan_hedge(
            pf, req(registry, "binance:ETHUSD_PERP", ratio=2.0, leverage=1.0, collateral=CollateralSource.HOLDINGS)
        )


def test_rounds_to_zero_is_refused(registry: InstrumentRegistry) -> None:
    tiny = Portfolio(
        name="tiny", prices=PRICES, holdings=(Holding(asset="SOL", quantity=0.1),)
    )  # $15 -> $30 notional at 2x
    with pytest.raises(InfeasibleHedgeError, match="rounds to 0 contracts"):
        plan_hedge(tiny, req(registry, leverage=2.0))


def test_rounding_residual_is_reported(registry: InstrumentRegistry) -> None:
    pf = Portfolio(name="odd", prices=PRICES, holdings=(Holding(asset="SOL", quantity=1234 / 150),))
    plan = plan_hedge(pf, req(registry, "binance:BTCUSDT", collateral=CollateralSource.STABLE))
    leg = plan.legs[0]
    assert leg.contracts == pytest.approx(0.021)
    assert leg.residual_usd == pytest.approx(1234 - 0.021 * 60_000)
    assert any(w.code == "RoundingWarning" for w in plan.warnings)


def test_leverage_limits(registry: InstrumentRegistry) -> None:
    with pytest.raises(ConfigError, match="above the 125x maximum"):
        plan_hedge(alts(), req(registry, leverage=150.0))
    with pytest.raises(ConfigError, match=r"must be >= 1"):
        req(registry, leverage=0.5)
    big = Portfolio(name="big", prices=PRICES, holdings=(Holding(asset="BTC", quantity=300),))
    with pytest.raises(ConfigError, match="its margin tier"):
        plan_hedge(big, req(registry, leverage=50.0, collateral=CollateralSource.HOLDINGS))


def test_ratio_bounds(registry: InstrumentRegistry) -> None:
    for bad in (-0.1, 2.5, float("nan")):
        with pytest.raises(ConfigError, match="ratio"):
            req(registry, ratio=bad)


def test_ratio_zero_opens_nothing(registry: InstrumentRegistry) -> None:
    plan = plan_hedge(alts(), req(registry, ratio=0.0))
    assert plan.legs == ()
    assert plan.net_delta_usd == pytest.approx(10_000)


def test_min_variance_needs_estimated_ratios(registry: InstrumentRegistry) -> None:
    with pytest.raises(ConfigError, match="method `min_variance` needs a hedge ratio"):
        plan_hedge(alts(), req(registry, method=SizingMethod.MIN_VARIANCE))
    plan = plan_hedge(
        alts(),
        req(
            registry,
            "binance:BTCUSDT",
            collateral=CollateralSource.STABLE,
            method=SizingMethod.MIN_VARIANCE,
            betas={"SOL": 2.0, "AVAX": 1.0, "DOT": 1.0},
        ),
    )
    assert plan.target_usd == pytest.approx(15_000)


def test_beta_method_needs_betas_and_uses_them(registry: InstrumentRegistry) -> None:
    with pytest.raises(ConfigError, match="no beta for"):
        plan_hedge(alts(), req(registry, method=SizingMethod.BETA, betas={"SOL": 1.4}))
    plan = plan_hedge(
        alts(),
        req(
            registry,
            "binance:BTCUSDT",
            collateral=CollateralSource.STABLE,
            method=SizingMethod.BETA,
            betas={"SOL": 1.4, "AVAX": 1.5, "DOT": 1.2},
        ),
    )
    assert plan.target_usd == pytest.approx(5000 * 1.4 + 3000 * 1.5 + 2000 * 1.2)


def test_weighted_legs_split_the_target(registry: InstrumentRegistry) -> None:
    legs = (
        LegRequest(instrument=registry.get("binance:BTCUSDT"), weight=0.7),
        LegRequest(instrument=registry.get("binance:ETHUSDT"), weight=0.3),
    )
    plan = plan_hedge(alts(10), req(registry, proxy_legs=legs, collateral=CollateralSource.STABLE))
    by = {leg.instrument.id: leg.target_delta_usd for leg in plan.legs}
    assert by == pytest.approx({"binance:BTCUSDT": 70_000, "binance:ETHUSDT": 30_000})
    with pytest.raises(ConfigError, match="sum to 1"):
        req(registry, proxy_legs=(LegRequest(instrument=registry.get("binance:BTCUSDT"), weight=0.5),))


def test_direct_mode_uses_own_perps_and_proxies_the_rest(registry: InstrumentRegistry) -> None:
    direct = {"SOL": registry.get("binance:SOLUSDT")}
    plan = plan_hedge(alts(10), req(registry, "binance:BTCUSDT", direct=direct, collateral=CollateralSource.STABLE))
    by = {leg.instrument.id: dict(leg.covers) for leg in plan.legs}
    assert by["binance:SOLUSDT"] == pytest.approx({"SOL": 50_000})
    assert by["binance:BTCUSDT"] == pytest.approx({"AVAX": 30_000, "DOT": 20_000})
    assert any("AVAX, DOT" in w.message for w in plan.warnings)


def test_scope_group(registry: InstrumentRegistry) -> None:
    pf = Portfolio(
        name="cs",
        prices=PRICES,
        holdings=(
            Holding(asset="BTC", quantity=1, group="core"),
            Holding(asset="SOL", quantity=100, group="sat"),
            Holding(asset="USDT", quantity=1000),
        ),
    )
    plan = plan_hedge(pf, req(registry, "binance:BTCUSDT", scope="sat", ratio=0.5, collateral=CollateralSource.STABLE))
    assert plan.target_usd == pytest.approx(7_500)
    assert plan.net_delta_usd == pytest.approx(60_000 + 15_000 - 0.125 * 60_000)
    with pytest.raises(ConfigError, match="no holding is in group"):
        plan_hedge(pf, req(registry, "binance:BTCUSDT", scope="moon", collateral=CollateralSource.STABLE))


def test_warnings_for_high_leverage(registry: InstrumentRegistry) -> None:
    plan = plan_hedge(alts(), req(registry, "binance:BTCUSDT", leverage=10.0, collateral=CollateralSource.STABLE))
    codes = {w.code for w in plan.warnings}
    assert {"LeverageWarning", "LiquidationRiskWarning"} <= codes


def test_portfolio_validation() -> None:
    with pytest.raises(ConfigError, match="no price for PEPE"):
        Portfolio(name="x", prices={}, holdings=(Holding(asset="PEPE", quantity=1),))
    with pytest.raises(ConfigError, match="holds nothing"):
        Portfolio(name="x", prices={}, holdings=())
    with pytest.raises(ConfigError, match="must be > 0"):
        Holding(asset="SOL", quantity=-1)
    with pytest.raises(ConfigError, match="finite"):
        Holding(asset="SOL", quantity=float("nan"))
    pf = Portfolio(
        name="x",
        prices={"PEPE": 0.00001},
        holdings=(Holding(asset="PEPE", quantity=1e9), Holding(asset="USDC", quantity=10)),
    )
    assert pf.value_usd == pytest.approx(10_010)
    assert pf.exposure_usd == pytest.approx(10_000)
