"""Dated futures: golden numbers worked by hand, roll arithmetic, symbol resolution, wrong inputs."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perphedge.core import futures as F
from perphedge.core.contracts import Side
from perphedge.core.instruments import ContractKind
from perphedge.errors import ConfigError
from perphedge.specs import InstrumentRegistry, default_registry

EXPIRY_210924 = int(dt.datetime(2021, 9, 24, 8, tzinfo=dt.UTC).timestamp() * 1000)
prices = st.floats(min_value=100.0, max_value=1e6, allow_nan=False, allow_infinity=False)


# --------------------------------------------------------------------------- golden numbers


def test_inverse_quarterly_held_to_delivery_is_the_coin_pnl_at_settlement() -> None:
    # short 100 contracts of 100 USD (Q = 10,000) at 50,000, delivered at 40,000:
    # 10,000/40,000 − 10,000/50,000 = 0.25 − 0.20 = 0.05 BTC
    assert F.settlement_pnl("inverse", Side.SHORT, 10_000, 50_000, 40_000) == pytest.approx(0.05, abs=1e-15)
    # the long loses exactly that
    assert F.settlement_pnl("inverse", Side.LONG, 10_000, 50_000, 40_000) == pytest.approx(-0.05, abs=1e-15)
    # and the first 2021 quarterly of the sample: bought at the first close 30,428.94, delivered at 53,586.55
    coin = F.settlement_pnl("inverse", "long", 10_000, 30_428.93976162, 53_586.55381818)
    assert coin == pytest.approx(10_000 / 30_428.93976162 - 10_000 / 53_586.55381818, rel=1e-14)
    assert coin == pytest.approx(0.142020, abs=1e-6)


def test_linear_sold_at_basis_b_earns_b_times_spot_notional_less_fees() -> None:
    # 2 BTC spot at 40,000 and 2 BTC of the future sold at 41,000: b = 2.5%, b·q·S0 = 2,000 USDT
    # fees: entry 0.05% of 2·41,000 = 41; delivery 0.02% of 2·S_T
    for s_t, expected in ((30_000.0, 2_000 - 41 - 12), (55_000.0, 2_000 - 41 - 22)):
        got = F.linear_hedge_pnl(2, 40_000, 41_000, s_t, entry_fee_rate=0.0005, delivery_fee_rate=0.0002)
        assert got == pytest.approx(expected, abs=1e-9)
    assert F.linear_hedge_pnl(2, 40_000, 41_000, 12_345) == pytest.approx(2_000, abs=1e-9)


@given(s0=prices, f0=prices, s_t=prices, q=st.floats(min_value=1e-3, max_value=1e3))
def test_linear_hedge_earns_the_locked_basis_whatever_the_settlement(
    s0: float, f0: float, s_t: float, q: float
) -> None:
    expected = F.basis(f0, s0) * q * s0
    assert F.linear_hedge_pnl(q, s0, f0, s_t) == pytest.approx(expected, rel=1e-9, abs=1e-6 * q * max(s0, f0, s_t))


def test_inverse_hedge_usd_result_depends_on_the_final_price() -> None:
    # Q = 10,000 USD short at F0 = 42,000 against 10,000/40,000 = 0.25 BTC spot:
    # Q·S_T·(1/S0 − 1/F0) = 10,000·S_T·(1/40,000 − 1/42,000) = S_T · 0.0119047619...
    per_usd = 10_000 * (1 / 40_000 - 1 / 42_000)
    at_30k = F.inverse_hedge_usd_pnl(10_000, 40_000, 42_000, 30_000)
    at_50k = F.inverse_hedge_usd_pnl(10_000, 40_000, 42_000, 50_000)
    assert at_30k == pytest.approx(357.142857142857, rel=1e-12) == pytest.approx(30_000 * per_usd)
    assert at_50k == pytest.approx(595.238095238095, rel=1e-12)
    assert at_50k != pytest.approx(at_30k)


@given(s0=prices, f0=prices, s_t=prices)
def test_inverse_hedge_formula(s0: float, f0: float, s_t: float) -> None:
    q = 10_000.0
    assert F.inverse_hedge_usd_pnl(q, s0, f0, s_t) == pytest.approx(
        q * s_t * (1 / s0 - 1 / f0), rel=1e-9, abs=1e-9 * q * s_t / min(s0, f0)
    )


def test_basis_days_and_annualisation() -> None:
    # the last 2021-09-23 bar closes at 2021-09-24 00:00 UTC, delivery 08:00: one third of a day
    close = int(dt.datetime(2021, 9, 24, tzinfo=dt.UTC).timestamp() * 1000)
    assert F.days_to_expiry(close, EXPIRY_210924) == pytest.approx(1 / 3)
    assert F.basis(41_000, 40_000) == pytest.approx(0.025)
    # 2.5% over 91.25 days = 10% a year (365-day year, simple)
    assert F.annualized_basis(41_000, 40_000, 91.25) == pytest.approx(0.10)
    assert F.annualize(-0.01, 36.5) == pytest.approx(-0.10)


# --------------------------------------------------------------------------- roll arithmetic


def test_inverse_roll_worked_by_hand() -> None:
    # short Q = 10,000 USD entered at 50,000; roll: near quoted 51,000, far 52,000; taker 0.05%, 10 bp slippage
    r = F.roll_trade("inverse", 10_000, 50_000, 51_000, 52_000, fee_rate=0.0005, slippage_bps=10)
    assert r.buy_near_price == pytest.approx(51_051.0)  # 51,000·1.001
    assert r.sell_far_price == pytest.approx(51_948.0)  # 52,000·0.999
    # fees: 0.0005·10,000/51,051 + 0.0005·10,000/51,948 = 0.0000979413 + 0.0000962501 BTC
    assert r.fees == pytest.approx(0.0000979413 + 0.0000962501, abs=1e-10)
    # the near short loses 10,000·(1/51,051 − 1/50,000)... for a short: 10,000/51,051 − 10,000/50,000
    assert r.near_pnl == pytest.approx(10_000 / 51_051 - 10_000 / 50_000, rel=1e-12)
    assert r.near_pnl == pytest.approx(-0.0041174, abs=1e-7)
    # slippage: near (10,000/51,000 − 10,000/51,051) + far (10,000/51,948 − 10,000/52,000)
    assert r.slippage_cost == pytest.approx(1.95891e-4 + 1.92499e-4, rel=1e-4)
    assert r.calendar_spread == pytest.approx(52_000 / 51_000 - 1)


def test_linear_roll_worked_by_hand() -> None:
    # short 1 BTC entered at 50,000; roll at 51,000 → 52,000, taker 0.05%, no slippage
    r = F.roll_trade("linear", 1, 50_000, 51_000, 52_000, fee_rate=0.0005)
    assert r.fees == pytest.approx(25.5 + 26.0)
    assert r.near_pnl == pytest.approx(-1_000.0)
    assert r.slippage_cost == 0.0
    # 20 bp: buy 51,102, sell 51,896; slippage 102 + 104 = 206 USDT; fees 0.0005·(51,102 + 51,896) = 51.499
    r = F.roll_trade("linear", 1, 50_000, 51_000, 52_000, fee_rate=0.0005, slippage_bps=20)
    assert r.slippage_cost == pytest.approx(206.0)
    assert r.fees == pytest.approx(51.499)


def test_roll_dates_and_next_contract() -> None:
    assert F.roll_date_ms(EXPIRY_210924, 3) == EXPIRY_210924 - 3 * F.DAY_MS
    expiries = [EXPIRY_210924, EXPIRY_210924 - 91 * F.DAY_MS, EXPIRY_210924 + 98 * F.DAY_MS]
    assert F.next_expiry(expiries, EXPIRY_210924) == EXPIRY_210924 + 98 * F.DAY_MS
    assert F.next_expiry(expiries, 0) == EXPIRY_210924 - 91 * F.DAY_MS
    assert F.check_roll_days(5, 91.0) == 5
    assert F.check_horizon(EXPIRY_210924 - 100 * F.DAY_MS, 90, EXPIRY_210924, roll=False) == 90
    assert F.check_horizon(EXPIRY_210924 - 30 * F.DAY_MS, 90, EXPIRY_210924, roll=True) == 30


# --------------------------------------------------------------------------- wrong inputs


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: F.days_to_expiry(EXPIRY_210924, EXPIRY_210924), "contract expired"),
        (lambda: F.days_to_expiry(EXPIRY_210924 + 1, EXPIRY_210924), "contract expired"),
        (lambda: F.days_to_expiry(1.5, EXPIRY_210924), "epoch milliseconds"),  # type: ignore[arg-type]
        (lambda: F.check_horizon(EXPIRY_210924 - 30 * F.DAY_MS, 90, EXPIRY_210924, roll=False), "runs past"),
        (lambda: F.check_horizon(EXPIRY_210924 - 30 * F.DAY_MS, 0, EXPIRY_210924, roll=False), "must be > 0"),
        (lambda: F.check_roll_days(91, 91.0), "shorter than the contract's life"),
        (lambda: F.check_roll_days(200, 91.0), "shorter than the contract's life"),
        (lambda: F.check_roll_days(0, 91.0), "must be >= 1"),
        (lambda: F.check_roll_days(-3, 91.0), "must be >= 1"),
        (lambda: F.check_roll_days(2.5, 91.0), "whole number of days"),
        (lambda: F.check_roll_days(True, 91.0), "whole number of days"),
        (lambda: F.check_roll_days("3", 91.0), "whole number of days"),
        (lambda: F.next_expiry([EXPIRY_210924], EXPIRY_210924), "no listed contract expires after"),
        (lambda: F.next_expiry([], 0), "no listed contract expires after"),
        (lambda: F.basis(math.nan, 40_000), "finite"),
        (lambda: F.basis(41_000, 0), "must be > 0"),
        (lambda: F.basis(41_000, -1), "must be > 0"),
        (lambda: F.basis(math.inf, 1), "finite"),
        (lambda: F.annualize(0.01, 0), "must be > 0"),
        (lambda: F.settlement_pnl("inverse", "short", -1, 1, 1), "must be >= 0"),
        (lambda: F.settlement_pnl("inverse", "sideways", 1, 1, 1), "side"),
        (lambda: F.roll_trade("linear", 1, 1, 1, 1, fee_rate=-0.1), "must be >= 0"),
        (lambda: F.roll_trade("linear", 1, 1, 1, 1, fee_rate=0.0, slippage_bps=10_000), "< 10000"),
        (lambda: F.roll_trade("linear", 0, 1, 1, 1, fee_rate=0.0), "must be > 0"),
        (lambda: F.linear_hedge_pnl(1, 1, 1, 1, entry_fee_rate=math.nan), "finite"),
        (lambda: F.percentile([], 50), "at least one value"),
        (lambda: F.percentile([1.0], 101), "[0, 100]"),
    ],
)
def test_wrong_inputs_are_refused_with_one_line(call: object, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        call()  # type: ignore[operator]
    assert message in str(info.value) and "\n" not in str(info.value)


@given(st.lists(st.floats(min_value=-10, max_value=10), min_size=1, max_size=50), st.floats(min_value=0, max_value=100))
def test_percentile_matches_numpy(values: list[float], q: float) -> None:
    import numpy as np

    assert F.percentile(values, q) == pytest.approx(float(np.percentile(values, q)), abs=1e-9)


# --------------------------------------------------------------------------- instruments


@pytest.mark.parametrize(
    "ident,symbol,kind,size,perp",
    [
        ("binance:BTCUSD_210924", "BTCUSD_210924", ContractKind.INVERSE, 100.0, "binance:BTCUSD_PERP"),
        ("binance:btcusd_210924", "BTCUSD_210924", ContractKind.INVERSE, 100.0, "binance:BTCUSD_PERP"),
        ("binance:BTC/USD:BTC-210924", "BTCUSD_210924", ContractKind.INVERSE, 100.0, "binance:BTCUSD_PERP"),
        ("deribit:BTC-24SEP21", "BTC-24SEP21", ContractKind.INVERSE, 10.0, "deribit:BTC-PERPETUAL"),
        ("deribit:BTC/USD:BTC-210924", "BTC-24SEP21", ContractKind.INVERSE, 10.0, "deribit:BTC-PERPETUAL"),
        ("okx:BTC-USD-210924", "BTC-USD-210924", ContractKind.INVERSE, 100.0, "okx:BTC-USD-SWAP"),
        ("okx:BTC/USD:BTC-210924", "BTC-USD-210924", ContractKind.INVERSE, 100.0, "okx:BTC-USD-SWAP"),
        ("binance:BTCUSDT_210924", "BTCUSDT_210924", ContractKind.LINEAR, 1.0, "binance:BTCUSDT"),
        ("binance:BTC/USDT:USDT-210924", "BTCUSDT_210924", ContractKind.LINEAR, 1.0, "binance:BTCUSDT"),
    ],
)
def test_dated_symbols_resolve_with_expiry_and_the_perpetuals_margin(
    registry: InstrumentRegistry, ident: str, symbol: str, kind: ContractKind, size: float, perp: str
) -> None:
    inst = registry.get(ident)
    base = registry.get(perp)
    assert inst.symbol == symbol and inst.kind is kind and inst.contract_size == size
    assert inst.is_dated and inst.expiry_ms == EXPIRY_210924
    assert inst.margin == base.margin and inst.liquidation_method is base.liquidation_method
    assert any("no funding" in n for n in inst.notes)
    assert not base.is_dated and base.expiry_ms is None
    assert inst.source and inst.as_of


def test_deribit_single_digit_day_and_ccxt_symbol(registry: InstrumentRegistry) -> None:
    inst = registry.get("deribit:BTC-3DEC21")
    assert inst.ccxt_symbol == "BTC/USD:BTC-211203"
    assert inst.expiry_ms == int(dt.datetime(2021, 12, 3, 8, tzinfo=dt.UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    "ident,message",
    [
        ("binance:BTCUSD_210925", "unknown expiry"),  # a Saturday
        ("binance:BTCUSD_210827", "unknown expiry"),  # a Friday, not a quarter's last
        ("binance:BTCUSD_210917", "unknown expiry"),  # September, not its last Friday
        ("okx:BTC-USD-210925", "unknown expiry"),
        ("binance:BTCUSD_211331", "real calendar date"),
        ("binance:BTCUSD_210230", "real calendar date"),
        ("deribit:BTC-32SEP21", "real calendar date"),
        ("deribit:BTC-24FOO21", "real calendar date"),
        ("binance:BTCUSD_2109245", "unknown instrument"),
        ("binance:ETHUSD_210924", "unknown instrument"),
        ("bybit:BTCUSD_210924", "unknown instrument"),
        ("binance:BTCUSD_", "unknown instrument"),
    ],
)
def test_wrong_dated_symbols(registry: InstrumentRegistry, ident: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        registry.get(ident)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_user_spec_file_does_not_break_dated_resolution(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    # the registry built from bundled + user specs resolves dated symbols too
    assert default_registry().get("binance:BTCUSD_211231").expiry_ms == int(
        dt.datetime(2021, 12, 31, 8, tzinfo=dt.UTC).timestamp() * 1000
    )


@given(st.dates(min_value=dt.date(2019, 1, 1), max_value=dt.date(2030, 12, 31)))
def test_binance_lists_exactly_the_last_friday_of_each_quarter(day: dt.date) -> None:
    from perphedge.specs.futures import expiry_listed

    nxt = day + dt.timedelta(days=7)
    expected = day.weekday() == 4 and day.month in (3, 6, 9, 12) and nxt.month != day.month
    assert expiry_listed("last_friday_of_quarter", day) is expected


@given(st.dates(min_value=dt.date(2019, 1, 1), max_value=dt.date(2035, 12, 31)))
def test_every_listed_binance_quarterly_resolves_and_round_trips(day: dt.date) -> None:
    from perphedge.specs.futures import expiry_listed

    registry = default_registry()
    native = f"binance:BTCUSD_{day.strftime('%y%m%d')}"
    if not expiry_listed("last_friday_of_quarter", day):
        with pytest.raises(ConfigError, match="unknown expiry"):
            registry.get(native)
        return
    inst = registry.get(native)
    assert inst.expiry_ms == int(dt.datetime(day.year, day.month, day.day, 8, tzinfo=dt.UTC).timestamp() * 1000)
    assert registry.get(f"binance:{inst.ccxt_symbol}") == inst
    deribit = registry.get(f"deribit:BTC-{day.day}{day.strftime('%b').upper()}{day.strftime('%y')}")
    assert deribit.expiry_ms == inst.expiry_ms and deribit.ccxt_symbol == inst.ccxt_symbol


@given(
    kind=st.sampled_from(["inverse", "linear"]),
    entry=prices,
    near=prices,
    far=prices,
    fee=st.floats(min_value=0, max_value=0.01),
    slip=st.floats(min_value=0, max_value=100),
)
def test_roll_costs_are_never_negative_and_vanish_without_slippage(
    kind: str, entry: float, near: float, far: float, fee: float, slip: float
) -> None:
    size = 10_000.0 if kind == "inverse" else 0.5
    r = F.roll_trade(kind, size, entry, near, far, fee_rate=fee, slippage_bps=slip)
    assert r.fees >= 0 and r.slippage_cost >= -1e-12
    assert r.buy_near_price >= near and r.sell_far_price <= far
    flat = F.roll_trade(kind, size, entry, near, far, fee_rate=fee)
    assert flat.slippage_cost == pytest.approx(0.0, abs=1e-12)
    # the short's PnL and the long's are opposite (antisymmetry)
    assert F.settlement_pnl(kind, "short", size, entry, near) == pytest.approx(
        -F.settlement_pnl(kind, "long", size, entry, near)
    )
