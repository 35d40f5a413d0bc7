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
