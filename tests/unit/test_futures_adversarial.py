"""Adversarial trial of dated futures (issue 16), the pure and spec parts: each class of wrong input found."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perphedge.errors import ConfigError
from perphedge.specs import default_registry
from perphedge.specs.futures import series_for
from perphedge.usecases.plan_futures import DatedOptions, roll_schedule

# non-ASCII decimal digits that `\d` and int() accept: fullwidth, Arabic-Indic, Devanagari
_FOREIGN_DIGITS = (
    [chr(0xFF10 + i) for i in range(10)] + [chr(0x0660 + i) for i in range(10)] + [chr(0x0966 + i) for i in range(10)]
)


@given(st.lists(st.sampled_from(_FOREIGN_DIGITS), min_size=1, max_size=6), st.integers(min_value=0, max_value=5))
def test_dated_symbols_take_ascii_digits_only(foreign: list[str], start: int) -> None:
    digits = list("210924")
    for k, ch in enumerate(foreign):
        digits[(start + k) % 6] = ch
    symbol = "BTCUSD_" + "".join(digits)
    assert series_for("binance", symbol) is None  # not a dated future: the registry then refuses it by name
    with pytest.raises(ConfigError, match="unknown instrument"):
        default_registry().get(f"binance:{symbol}")


def test_ascii_dated_symbols_still_resolve() -> None:
    assert default_registry().get("binance:btcusd_210924").symbol == "BTCUSD_210924"
    assert default_registry().get("deribit:BTC-24sep21").symbol == "BTC-24SEP21"


@pytest.mark.parametrize("price", [float("nan"), float("inf"), -1.0, 0.0, 1e12, 1e300])
def test_future_price_must_be_a_finite_price(price: float) -> None:
    with pytest.raises(ConfigError, match="`--future-price`: must be a finite price > 0"):
        DatedOptions(future_price=price)


def _quarterly(symbol: str = "binance:BTCUSD_210924") -> object:
    return default_registry().get(symbol)


def _ms(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp() * 1000)


def test_a_year_on_a_quarterly_rolls_every_quarter() -> None:
    # 2021-06-02 00:00 + 400 days = 2022-07-07: rolls 3 days before each delivery, into the next quarterly
    rolls = roll_schedule(_quarterly(), _ms("2021-06-02"), 400.0, 3)  # type: ignore[arg-type]
    got = [(dt.datetime.fromtimestamp(w / 1000, tz=dt.UTC).date().isoformat(), a, b) for w, a, b in rolls]
    assert got == [
        ("2021-09-21", "binance:BTCUSD_210924", "binance:BTCUSD_211231"),
        ("2021-12-28", "binance:BTCUSD_211231", "binance:BTCUSD_220325"),
        ("2022-03-22", "binance:BTCUSD_220325", "binance:BTCUSD_220624"),
        ("2022-06-21", "binance:BTCUSD_220624", "binance:BTCUSD_220930"),
    ]
    # within the first contract's life: no roll; just past its roll day: one
    assert roll_schedule(_quarterly(), _ms("2021-06-02"), 100.0, 3) == []  # type: ignore[arg-type]
    assert len(roll_schedule(_quarterly(), _ms("2021-06-02"), 112.0, 3)) == 1  # type: ignore[arg-type]


@given(horizon=st.integers(min_value=1, max_value=3650), roll=st.integers(min_value=1, max_value=60))
def test_roll_schedule_is_ordered_and_each_contract_outlives_its_roll(horizon: int, roll: int) -> None:
    inst = _quarterly()
    now = _ms("2021-06-02")
    rolls = roll_schedule(inst, now, float(horizon), roll)  # type: ignore[arg-type]
    end = now + horizon * 86_400_000
    held = inst.id  # type: ignore[attr-defined]
    last = now
    for when, near, far in rolls:
        assert near == held and last <= when < end
        nxt = default_registry().get(far)
        assert nxt.expiry_ms is not None and nxt.expiry_ms - when > roll * 86_400_000
        held, last = far, when
    # about one roll per quarter
    assert len(rolls) <= horizon // 80 + 1
