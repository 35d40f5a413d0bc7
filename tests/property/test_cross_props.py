"""Hypothesis properties of cross-margined accounts (:mod:`perphedge.core.cross`), issue 13 item 6.

* A cross account with one position equals the isolated formula with the wallet as margin, on every
  venue (with the fee to close folded into the rate where the series reserves it).
* More wallet balance never brings any position's liquidation price closer.
* When another position gains, a position's liquidation price moves away from its mark.
* At each liquidation price the account's equity equals its total maintenance requirement.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from perphedge.core import contracts as C
from perphedge.core.contracts import Side
from perphedge.core.cross import CrossAccount, CrossPosition, CrossVenue, account_state, cross_liquidation
from perphedge.core.instruments import Instrument, LiquidationMethod, MarginSchedule, MarginTier, TierStyle
from perphedge.specs import InstrumentRegistry, bundled_instruments

REGISTRY = InstrumentRegistry(bundled_instruments())
VENUE_INSTRUMENTS: dict[CrossVenue, tuple[str, ...]] = {
    CrossVenue.BINANCE_USDM: ("binance:BTCUSDT", "binance:ETHUSDT", "binance:SOLUSDT"),
    CrossVenue.BINANCE_COINM: ("binance:BTCUSD_PERP",),
    CrossVenue.BYBIT_UNIFIED: ("bybit:BTCUSDT", "bybit:ETHUSDT", "bybit:SOLUSDT"),
    CrossVenue.BYBIT_CLASSIC: ("bybit:BTCUSD",),
    CrossVenue.OKX: ("okx:BTC-USDT-SWAP",),
    CrossVenue.HYPERLIQUID: ("hyperliquid:BTC", "hyperliquid:ETH", "hyperliquid:SOL"),
}
venues = st.sampled_from(list(CrossVenue))
sides = st.sampled_from([Side.LONG, Side.SHORT])
prices = st.floats(min_value=10.0, max_value=1e5)
moves = st.floats(min_value=-0.3, max_value=0.3)
leverages = st.floats(min_value=1.2, max_value=20.0)
PROP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _shifted(schedule: MarginSchedule, fee: float) -> MarginSchedule:
    """The schedule with the closing fee added to every rate (same deductions): ``value·(MMR + fee) − cum``."""
    tiers = tuple(
        MarginTier(floor=t.floor, mmr=t.mmr + fee, max_leverage=t.max_leverage, maintenance_amount=t.maintenance_amount)
        for t in schedule.tiers
    )
    return MarginSchedule(style=TierStyle.MARGINAL, tiers=tiers)


def _position(inst: Instrument, side: Side, notional_usd: float, entry: float, mark: float) -> CrossPosition:
    contracts = notional_usd / inst.contract_size if inst.is_inverse else notional_usd / entry / inst.contract_size
    return CrossPosition(instrument=inst, side=side, contracts=contracts, entry=entry, mark=mark)


def _wallet(inst: Instrument, notional_usd: float, entry: float, leverage: float) -> float:
    value = notional_usd / entry  # coin for inverse; for linear the notional itself
    return value / leverage if inst.is_inverse else notional_usd / leverage


@PROP
@given(
    venues,
    st.data(),
    sides,
    st.floats(min_value=1e3, max_value=5e7),
    prices,
    moves,
    leverages,
    st.booleans(),
)
def test_one_position_equals_the_isolated_formula(
    venue: CrossVenue,
    data: st.DataObject,
    side: Side,
    notional: float,
    entry: float,
    move: float,
    lev: float,
    with_fee: bool,
) -> None:
    inst = REGISTRY.get(data.draw(st.sampled_from(VENUE_INSTRUMENTS[venue])))
    inst = replace(inst, closing_fee_in_margin=with_fee and inst.closing_fee_in_margin)
    pos = _position(inst, side, notional, entry, entry * (1 + move))
    wallet = _wallet(inst, notional, entry, lev)
    account = CrossAccount(venue=venue, wallet_balance=wallet, positions=(pos,))
    got = cross_liquidation(account).positions[0].liquidation_price
    fee = inst.taker_fee if inst.closing_fee_in_margin else 0.0
    if venue is CrossVenue.BYBIT_CLASSIC:
        # Bybit's own single-position formula (BY-INV-LIQ): constant MM on the entry value, fee at the BP
        q, s = pos.size, side.sign
        mm = inst.margin.maintenance_margin(q / entry)
        bp = q * (s + fee) / (wallet + s * q / entry)
        denom = s * q / entry + wallet - mm - (fee * q / bp if bp > 0 else 0.0)
        want = s * q / denom if denom * s > 0 else None
        if fee == 0:
            iso = C.liquidation_price(
                kind=inst.kind,
                method=LiquidationMethod.MM_ON_ENTRY_VALUE,
                side=side,
                size=q,
                entry=entry,
                margin=wallet,
                schedule=inst.margin,
            ).price
            assert (iso is None) == (want is None)
            if iso is not None and want is not None:
                assert iso == pytest.approx(want, rel=1e-9)
    else:
        method = LiquidationMethod.MM_AT_LIQUIDATION_PRICE if inst.is_inverse else LiquidationMethod.BINANCE_USDM
        want = C.liquidation_price(
            kind=inst.kind,
            method=method,
            side=side,
            size=pos.size,
            entry=entry,
            margin=wallet,
            schedule=_shifted(inst.margin, fee),
        ).price
    assert (got is None) == (want is None), (got, want)
    if got is not None and want is not None:
        assert got == pytest.approx(want, rel=1e-9)


def _two_leg_account(
    venue: CrossVenue, data: st.DataObject, wallet_lev: float, legs: list[tuple[Side, float, float, float]]
) -> CrossAccount:
    names = VENUE_INSTRUMENTS[venue]
    positions = []
    total = 0.0
    for k, (side, notional, entry, move) in enumerate(legs[: len(names)]):
        inst = REGISTRY.get(names[k])
        positions.append(_position(inst, side, notional, entry, entry * (1 + move)))
        total += _wallet(inst, notional, entry, 1.0)
    return CrossAccount(venue=venue, wallet_balance=total / wallet_lev, positions=tuple(positions))


legs = st.lists(st.tuples(sides, st.floats(min_value=1e3, max_value=2e7), prices, moves), min_size=1, max_size=3)


@PROP
@given(venues, st.data(), legs, leverages, st.floats(min_value=1.001, max_value=10.0))
def test_more_wallet_never_brings_a_liquidation_closer(
    venue: CrossVenue, data: st.DataObject, legs_: list[tuple[Side, float, float, float]], lev: float, more: float
) -> None:
    account = _two_leg_account(venue, data, lev, legs_)
    richer = replace(account, wallet_balance=account.wallet_balance * more)
    before = cross_liquidation(account).positions
    after = cross_liquidation(richer).positions
    for b, a in zip(before, after, strict=True):
        if b.status == "never":
            assert a.status == "never"
        if b.liquidation_price is None:
            continue
        if a.liquidation_price is None:
            continue  # no longer liquidable: further away than any price
        if b.side is Side.LONG:
            assert a.liquidation_price <= b.liquidation_price * (1 + 1e-9)
        else:
            assert a.liquidation_price >= b.liquidation_price * (1 - 1e-9)


@PROP
@given(
    st.sampled_from([v for v in CrossVenue if len(VENUE_INSTRUMENTS[v]) >= 2]),
    st.data(),
    legs.filter(lambda x: len(x) >= 2),
    leverages,
    st.floats(min_value=0.001, max_value=0.5),
)
def test_another_position_gaining_moves_the_liquidation_away(
    venue: CrossVenue, data: st.DataObject, legs_: list[tuple[Side, float, float, float]], lev: float, gain: float
) -> None:
    account = _two_leg_account(venue, data, lev, legs_)
    other = account.positions[1]
    # move the other position's mark in its favour: up for a long, down for a short
    better = replace(other, mark=other.mark * (1 + gain) if other.side is Side.LONG else other.mark / (1 + gain))
    assert better.upnl(better.mark) > other.upnl(other.mark)
    gained = replace(account, positions=(account.positions[0], better, *account.positions[2:]))
    b = cross_liquidation(account).positions[0]
    a = cross_liquidation(gained).positions[0]
    if b.status == "never":
        assert a.status == "never"
    if b.liquidation_price is None:
        return
    if a.liquidation_price is None:
        return
    if b.side is Side.LONG:
        assert a.liquidation_price <= b.liquidation_price * (1 + 1e-9)
    else:
        assert a.liquidation_price >= b.liquidation_price * (1 - 1e-9)


@PROP
@given(venues, st.data(), legs, leverages)
def test_equity_equals_maintenance_at_each_liquidation_price(
    venue: CrossVenue, data: st.DataObject, legs_: list[tuple[Side, float, float, float]], lev: float
) -> None:
    account = _two_leg_account(venue, data, lev, legs_)
    assume(venue is not CrossVenue.BYBIT_CLASSIC)  # its fee term is valued at the BP, not the price
    for j, liq in enumerate(cross_liquidation(account).positions):
        if liq.liquidation_price is None:
            continue
        prices = [p.mark for p in account.positions]
        prices[j] = liq.liquidation_price
        st_ = account_state(account, prices)
        scale = max(abs(st_.equity), st_.total_maintenance, account.wallet_balance)
        assert st_.equity - st_.total_maintenance == pytest.approx(0.0, abs=1e-7 * scale)
