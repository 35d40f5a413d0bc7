from __future__ import annotations

import pytest

from perphedge.core.units import Asset, Money, Price, is_stablecoin, normalise_asset
from perphedge.errors import ConfigError, UnitMismatchError

BTC, USD = Asset(code="btc"), Asset(code="USD")


def test_money_same_asset_arithmetic() -> None:
    assert (Money(amount=1, asset=BTC) + Money(amount=0.5, asset=BTC)).amount == 1.5
    assert (2 * Money(amount=1, asset=BTC)).amount == 2


def test_money_refuses_mixing_assets() -> None:
    with pytest.raises(UnitMismatchError, match="BTC and USD"):
        _ = Money(amount=1, asset=BTC) + Money(amount=1, asset=USD)
    with pytest.raises(UnitMismatchError):
        _ = Money(amount=1, asset=BTC) * Money(amount=1, asset=BTC)  # type: ignore[operator]


def test_price_converts_both_ways_and_only_its_assets() -> None:
    p = Price(value=60_000, base=BTC, quote=USD)
    assert p.convert(Money(amount=0.5, asset=BTC)) == Money(amount=30_000, asset=USD)
    assert p.convert(Money(amount=30_000, asset=USD)) == Money(amount=0.5, asset=BTC)
    with pytest.raises(UnitMismatchError):
        p.convert(Money(amount=1, asset=Asset(code="ETH")))


def test_asset_codes() -> None:
    assert normalise_asset(" sol ") == "SOL"
    assert is_stablecoin("usdc")
    with pytest.raises(ConfigError):
        normalise_asset("bin ance")
    with pytest.raises(ConfigError):
        Money(amount=float("nan"), asset=BTC)


def test_calc_result_carries_each_amount_in_its_asset() -> None:
    """The calculator's amounts cross into documents as Money: coin for inverse, the quote for linear."""
    import pytest as _pytest

    from perphedge.core.contracts import Side
    from perphedge.errors import UnitMismatchError
    from perphedge.specs import default_registry
    from perphedge.usecases.plan import CalcInput, calc

    reg = default_registry()
    inv = calc(
        CalcInput(
            instrument=reg.get("binance:BTCUSD_PERP"),
            side=Side.SHORT,
            contracts=100,
            entry=60000,
            exit=50000,
            leverage=2,
        )
    )
    assert {m.asset.code for m in (inv.margin, inv.initial_margin, inv.fee_open, inv.funding)} == {"BTC"}
    assert inv.pnl is not None and inv.pnl_usd is not None and inv.net_pnl is not None
    assert inv.pnl.asset.code == "BTC" and inv.pnl_usd.asset.code == "USD"
    assert inv.pnl_usd.amount == _pytest.approx(inv.pnl.amount * 50000)  # converted at the exit price
    assert inv.funding_usd.amount == _pytest.approx(inv.funding.amount * 60000)  # at the mark (= entry)
    with _pytest.raises(UnitMismatchError):
        _ = inv.pnl + inv.pnl_usd
    lin = calc(
        CalcInput(
            instrument=reg.get("binance:BTCUSDT"), side=Side.SHORT, contracts=1, entry=60000, exit=50000, leverage=2
        )
    )
    assert lin.pnl is not None and lin.pnl.asset.code == "USDT" and lin.pnl.amount == _pytest.approx(10000)
    assert lin.net_pnl is not None and lin.net_pnl.amount == _pytest.approx(10000 - 30 - 25)
