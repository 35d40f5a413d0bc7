"""The bundled Hyperliquid specs of the sample's altcoins: USDC-settled linear perpetuals, hourly funding, one tier
at the coin's max leverage with maintenance margin half the initial margin there, lot and tick from szDecimals,
every value sourced and dated."""

from __future__ import annotations

import math

import pytest

from perphedge.core.instruments import ContractKind, LiquidationMethod
from perphedge.specs import bundled_instruments
from tests.conftest import sample_dir

HL = {i.symbol: i for i in bundled_instruments() if i.exchange == "hyperliquid"}
#: coin -> (szDecimals, max leverage) as the specs' sources state them
ALTS = {"AAVE": (2, 10), "ADA": (0, 20), "AVAX": (2, 10), "BNB": (3, 10), "DOGE": (0, 20), "DOT": (1, 20),
        "LINK": (1, 20), "UNI": (1, 20), "XRP": (0, 20)}  # fmt: skip


def test_every_sample_coin_listed_on_hyperliquid_has_a_spec() -> None:
    coins = {p.stem.upper() for p in (sample_dir() / "prices").glob("*.csv")}
    # MATIC is delisted on Hyperliquid (renamed POL): the only sample coin without a Hyperliquid perpetual
    assert coins - set(HL) == {"MATIC"}
    assert set(HL) == {"BTC", "ETH", "SOL", *ALTS}


@pytest.mark.parametrize("coin", sorted(ALTS))
def test_alt_spec(coin: str) -> None:
    inst, (sz, lev) = HL[coin], ALTS[coin]
    assert inst.kind is ContractKind.LINEAR and inst.settle == inst.quote == "USDC" and inst.base == coin
    assert inst.ccxt_symbol == f"{coin}/USDC:USDC" and inst.contract_size == 1.0
    assert inst.funding_interval_hours == 1.0
    assert inst.max_leverage == lev
    (tier,) = inst.margin.tiers
    assert tier.floor == 0 and tier.max_leverage == lev
    assert tier.mmr == pytest.approx(0.5 / lev, rel=1e-15)  # half the initial margin 1/lev
    assert math.isclose(inst.lot_size, 10.0**-sz) and math.isclose(inst.tick_size, 10.0 ** -(6 - sz))
    assert inst.liquidation_method is LiquidationMethod.BINANCE_USDM
    assert (inst.maker_fee, inst.taker_fee) == (0.00015, 0.00045)
    for key in ("tiers:", "lot_tick:", "funding:", "fees:", "liquidation_method:"):
        assert key in inst.source
    assert f"maxLeverage {lev}, szDecimals {sz}" in inst.source and inst.as_of == "2026-11-23"
