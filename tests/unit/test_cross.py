"""perphedge.core.cross: cross accounts, each position's liquidation given the others, the surface."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from importlib import resources

import pytest

from perphedge.config import CROSS_VENUES
from perphedge.core.contracts import Side
from perphedge.core.cross import (
    CrossAccount,
    CrossPosition,
    CrossVenue,
    account_state,
    cross_liquidation,
    liquidation_surface,
    round_liquidation_price,
)
from perphedge.core.instruments import MarginSchedule
from perphedge.errors import ConfigError
from perphedge.specs import InstrumentRegistry, bundled_instruments, instrument_from_mapping

REG = InstrumentRegistry(bundled_instruments())


def pos(ident: str, side: str, contracts: float, entry: float, mark: float, **kw: object) -> CrossPosition:
    return CrossPosition(
        instrument=REG.get(ident),
        side=Side(side),
        contracts=contracts,
        entry=entry,
        mark=mark,
        **kw,  # type: ignore[arg-type]
    )


def test_venue_names_agree_with_the_config_file_model() -> None:
    assert tuple(v.value for v in CrossVenue) == CROSS_VENUES


def test_venue_parse() -> None:
    assert CrossVenue.parse(" OKX ") is CrossVenue.OKX
    with pytest.raises(ConfigError, match="must be one of binance_usdm"):
        CrossVenue.parse("binance")


@pytest.mark.parametrize(
    ("venue", "positions", "match"),
    [
        ("binance_usdm", (), "at least one position"),
        ("binance_usdm", (("bybit:BTCUSDT", "long"),), "not a binance instrument"),
        ("binance_usdm", (("binance:BTCUSD_PERP", "long"),), "is inverse"),
        ("binance_coinm", (("binance:BTCUSDT", "long"),), "is linear"),
        ("binance_coinm", (("binance:BTCUSD_PERP", "long"), ("binance:ETHUSD_PERP", "long")), "settles in ETH"),
        ("okx", (("okx:BTC-USD-SWAP", "long"), ("okx:BTC-USDT-SWAP", "short")), "one settle asset"),
        ("binance_usdm", (("binance:BTCUSDT", "long"), ("binance:BTCUSDT", "short")), "given twice"),
        ("bybit_classic", (("bybit:BTCUSDT", "long"),), "is linear"),
        ("hyperliquid", (("binance:BTCUSDT", "long"),), "not a hyperliquid"),
    ],
)
def test_account_refusals(venue: str, positions: tuple[tuple[str, str], ...], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CrossAccount(
            venue=CrossVenue(venue),
            wallet_balance=1.0,
            positions=tuple(pos(i, s, 1, 100, 100) for i, s in positions),
        )


@pytest.mark.parametrize("wallet", [-1.0, math.nan, math.inf])
def test_wallet_refusals(wallet: float) -> None:
    with pytest.raises(ConfigError, match="wallet_balance"):
        CrossAccount(
            venue=CrossVenue.BINANCE_USDM, wallet_balance=wallet, positions=(pos("binance:BTCUSDT", "long", 1, 1, 1),)
        )


@pytest.mark.parametrize("field", ["contracts", "entry", "mark"])
@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_position_refusals(field: str, value: float) -> None:
    args: dict[str, float] = {"contracts": 1.0, "entry": 1.0, "mark": 1.0, field: value}
    with pytest.raises(ConfigError, match=field):
        pos("binance:BTCUSDT", "long", args["contracts"], args["entry"], args["mark"])


def test_hyperliquid_matches_its_documented_formula() -> None:
    """Hyperliquid docs: liq = price − side·margin_available / size / (1 − l·side), l = 1/maintenance leverage."""
    p = pos("hyperliquid:ETH", "long", 10, 3000, 2900)
    q = pos("hyperliquid:BTC", "short", 0.5, 60000, 61000)
    acct = CrossAccount(venue=CrossVenue.HYPERLIQUID, wallet_balance=20000, positions=(p, q))
    res = cross_liquidation(acct)
    value = 20000 + p.upnl(p.mark) + q.upnl(q.mark)
    mm = 10 * 2900 * 0.02 + 0.5 * 61000 * 0.0125  # half the initial margin at 25x and 40x
    assert res.state.total_maintenance == pytest.approx(mm)
    available = value - mm
    for leg, l_rate in ((p, 0.02), (q, 0.0125)):
        s = leg.side.sign
        want = leg.mark - s * available / leg.size / (1 - l_rate * s)
        got = next(r for r in res.positions if r.instrument == leg.instrument.id).liquidation_price
        assert got == pytest.approx(want, rel=1e-12)


def test_okx_reserves_the_closing_fee() -> None:
    """OKX: liquidation at equity = value·(MMR + taker) − cum; without the fee the price is further away."""
    p = pos("okx:BTC-USDT-SWAP", "short", 100, 60000, 60000)  # 1 BTC (0.01 BTC contracts)
    acct = CrossAccount(venue=CrossVenue.OKX, wallet_balance=20000, positions=(p,))
    got = cross_liquidation(acct).positions[0]
    assert got.fee_rate == pytest.approx(0.0005)
    # tier 0: value ~80k < 2.5M, MMR 0.4 %: (WB + q·E)/(q·(1 + MMR + fee))
    assert got.liquidation_price == pytest.approx((20000 + 60000) / (1 + 0.004 + 0.0005), rel=1e-12)
    free = replace(acct, positions=(replace(p, instrument=replace(p.instrument, closing_fee_in_margin=False)),))
    assert cross_liquidation(free).positions[0].liquidation_price == pytest.approx(80000 / 1.004, rel=1e-12)


def test_binance_coinm_two_positions_per_coin() -> None:
    """Two BTC-settled COIN-M positions share the wallet: LP of one = isolated formula with WB − TMM + UPNL."""
    perp = REG.get("binance:BTCUSD_PERP")
    quarterly = replace(perp, symbol="BTCUSD_QTR")
    a = CrossPosition(instrument=perp, side=Side.SHORT, contracts=1000, entry=60000, mark=62000)
    b = CrossPosition(instrument=quarterly, side=Side.LONG, contracts=500, entry=61000, mark=62500)
    acct = CrossAccount(venue=CrossVenue.BINANCE_COINM, wallet_balance=0.5, positions=(a, b))
    res = cross_liquidation(acct)
    n = 100000.0
    tmm = perp.margin.maintenance_margin(50000 / 62500)
    upnl = 50000 * (1 / 61000 - 1 / 62500)
    wb = 0.5 - tmm + upnl
    # short: LP = N·(MMR − 1)/(WB + cum − N/E) in tier 0 (value at LP < 5 BTC)
    want = n * (0.004 - 1) / (wb + 0 - n / 60000)
    assert res.positions[0].liquidation_price == pytest.approx(want, rel=1e-12)
    assert res.positions[0].available_margin == pytest.approx(wb, rel=1e-12)


def test_tier_chosen_at_the_liquidation_price() -> None:
    """A large Binance COIN-M long whose value at the LP lies two tiers above its value at the mark."""
    p = pos("binance:BTCUSD_PERP", "long", 100000, 45000, 45000)
    res = cross_liquidation(CrossAccount(venue=CrossVenue.BINANCE_COINM, wallet_balance=101, positions=(p,)))
    lp = res.positions[0].liquidation_price
    assert lp is not None and res.positions[0].mmr == 0.125
    assert 200 <= 10_000_000 / lp < 400


def test_statuses() -> None:
    hedge = pos("binance:BTCUSD_PERP", "short", 600, 60000, 60000)  # 1x short: never
    acct = CrossAccount(venue=CrossVenue.BINANCE_COINM, wallet_balance=1.0, positions=(hedge,))
    assert cross_liquidation(acct).positions[0].status == "never"
    loser = pos("binance:BTCUSDT", "short", 10, 1000, 2000)  # loses 10,000 USDT
    small = pos("binance:ETHUSDT", "short", 0.001, 1000, 1000)  # gains at most q·E = 1 USDT
    acct = CrossAccount(venue=CrossVenue.BINANCE_USDM, wallet_balance=100, positions=(small, loser))
    res = cross_liquidation(acct)
    assert res.state.liquidated and res.state.margin_ratio is None
    assert res.positions[0].status == "always" and res.positions[0].liquidation_price is None
    assert res.positions[1].status == "at_price" and res.positions[1].liquidation_price is not None
    assert res.positions[1].liquidation_price < 2000  # already past it: the price that would restore the account
    # a linear long can gain without bound: some (high) price restores the account
    up = pos("binance:ETHUSDT", "long", 0.001, 1000, 1000)
    res = cross_liquidation(replace(acct, positions=(up, loser)))
    assert res.positions[0].status == "at_price" and res.positions[0].liquidation_price > 1e6


def test_override_schedule() -> None:
    p = pos("binance:ETHUSDT", "long", 1, 1000, 1000, schedule=MarginSchedule.single(0.1, 5))
    res = cross_liquidation(CrossAccount(venue=CrossVenue.BINANCE_USDM, wallet_balance=500, positions=(p,)))
    assert res.positions[0].liquidation_price == pytest.approx((500 + 5 - 1000) / (0.1 - 1))
    assert res.positions[0].mmr == 0.1 and res.positions[0].maintenance_amount == 5


@pytest.mark.parametrize(
    ("price", "mark", "tick", "want"),
    [
        (5739.0835, 8000, 0.5, 5739.5),
        (5739.5, 8000, 0.5, 5739.5),
        (26316.893, 31967.27, 0.1, 26316.9),
        (61234.56, 60000, 0.5, 61234.5),
        (0.3, 100, 0.5, 0.5),  # never below one tick
        (1.234567, 1.1, 0.0001, 1.2345),
    ],
)
def test_round_towards_the_mark(price: float, mark: float, tick: float, want: float) -> None:
    assert round_liquidation_price(price, mark, tick) == want


def test_round_refuses_a_bad_tick() -> None:
    with pytest.raises(ConfigError, match="tick"):
        round_liquidation_price(1.0, 1.0, 0.0)


def test_surface() -> None:
    a = pos("binance:ETHUSDT", "short", 10, 3000, 3000)
    b = pos("binance:BTCUSDT", "long", 0.5, 60000, 60000)
    acct = CrossAccount(venue=CrossVenue.BINANCE_USDM, wallet_balance=10000, positions=(a, b))
    moves = [-0.4, -0.2, 0.0, 0.2, 0.4]
    s = liquidation_surface(acct, 0, 1, moves, moves)
    assert s.leg_a == "binance:ETHUSDT" and s.leg_b == "binance:BTCUSDT"
    assert not s.liquidated[2][2]
    # ETH up 40 % (short loses 12,000) with BTC down 40 % (long loses 12,000): liquidated
    assert s.liquidated[4][0]
    for i, da in enumerate(moves):
        for k, db in enumerate(moves):
            st = account_state(acct, [3000 * (1 + da), 60000 * (1 + db)])
            assert s.liquidated[i][k] == st.liquidated
            assert s.margin_ratio[i][k] == st.margin_ratio
    with pytest.raises(ConfigError, match="two different"):
        liquidation_surface(acct, 0, 0, moves, moves)
    with pytest.raises(ConfigError, match="leg_b"):
        liquidation_surface(acct, 0, 2, moves, moves)
    with pytest.raises(ConfigError, match="moves_a"):
        liquidation_surface(acct, 0, 1, [], moves)
    with pytest.raises(ConfigError, match="-100"):
        liquidation_surface(acct, 0, 1, [-1.0], moves)
    with pytest.raises(ConfigError, match="moves_b"):
        liquidation_surface(acct, 0, 1, moves, [math.nan])


def test_account_state_price_refusals() -> None:
    acct = CrossAccount(
        venue=CrossVenue.BINANCE_USDM, wallet_balance=1, positions=(pos("binance:BTCUSDT", "long", 1, 1, 1),)
    )
    with pytest.raises(ConfigError, match="1 positions"):
        account_state(acct, [1.0, 2.0])
    with pytest.raises(ConfigError, match="price of binance:BTCUSDT"):
        account_state(acct, [0.0])


def test_closing_fee_flag_in_the_bundled_specs() -> None:
    """Bybit, OKX and BitMEX series reserve the fee to close, each with its source; the others do not."""
    raw = json.loads(resources.files("perphedge.specs").joinpath("instruments.json").read_text(encoding="utf-8"))
    for row in raw["instruments"]:
        inst = REG.get(f"{row['exchange']}:{row['symbol']}")
        flagged = row["exchange"] in ("bybit", "okx", "bitmex")
        assert inst.closing_fee_in_margin is flagged, inst.id
        assert ("closing_fee" in row["source"]) is flagged, inst.id


def test_closing_fee_flag_must_be_a_boolean() -> None:
    raw = json.loads(resources.files("perphedge.specs").joinpath("instruments.json").read_text(encoding="utf-8"))
    row = dict(raw["instruments"][0], closing_fee_in_margin="yes")
    with pytest.raises(ConfigError, match="closing_fee_in_margin"):
        instrument_from_mapping(row)
    assert instrument_from_mapping(dict(row, closing_fee_in_margin=True)).closing_fee_in_margin


def test_okx_isolated_liquidation_reserves_the_fee() -> None:
    """OKX isolated: liquidation at (margin + PnL) = value·(MMR + taker) − cum (closing_fee_in_isolated)."""
    from perphedge.usecases.plan import CalcInput, calc

    okx = REG.get("okx:BTC-USDT-SWAP")
    assert okx.closing_fee_in_isolated and okx.liquidation_schedule.tiers[0].mmr == pytest.approx(0.004 + 0.0005)
    res = calc(CalcInput(instrument=okx, side=Side.SHORT, contracts=100, entry=60000, leverage=3))
    # 1 BTC short at 3x: margin 20,000 USDT; (WB + q·E)/(q·(1 + MMR + fee))
    assert res.liquidation.price == pytest.approx(80000 / 1.0045, rel=1e-12)
    binance = REG.get("binance:BTCUSDT")
    assert not binance.closing_fee_in_isolated and binance.liquidation_schedule is binance.margin
    bybit = REG.get("bybit:BTCUSDT")  # Bybit's published isolated formula leaves the fee out
    assert bybit.closing_fee_in_margin and not bybit.closing_fee_in_isolated


def test_bitmex_isolated_liquidation_folds_the_taker_fee_into_maintenance() -> None:
    """BitMEX (BX-RED): Entry/(1 − 1/L + maintMargin) for a short, maintMargin including the taker fee."""
    from perphedge.usecases.plan import CalcInput, calc

    xbt = REG.get("bitmex:XBTUSD")
    assert xbt.closing_fee_in_isolated and xbt.liquidation_method.mm_at_entry
    res = calc(CalcInput(instrument=xbt, side=Side.SHORT, contracts=60000, entry=60000, leverage=2))
    assert res.liquidation.price == pytest.approx(60000 / (1 - 0.5 + 0.005 + 0.00075), rel=1e-12)
    assert xbt.liquidation_schedule.style is xbt.margin.style
