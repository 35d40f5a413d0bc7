"""The parsers of what users type on the command line: days, dates, moves and numbers.

For each: every valid input round-trips to the value it names, and everything else raises
ConfigError (ValueError for the typer number parsers, which typer turns into a usage error) —
never another exception, never a silently different value.
"""

from __future__ import annotations

import math
import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from perphedge.cli.options import non_negative, non_negative_whole, number, positive, positive_whole, whole
from perphedge.core.parsing import (
    MAX_DAYS,
    MAX_YEAR,
    MIN_YEAR,
    format_days,
    format_move,
    parse_date,
    parse_date_or_latest,
    parse_date_range,
    parse_days,
    parse_move,
)
from perphedge.core.scenarios import Scenario, parse_moves, parse_scenario
from perphedge.errors import ConfigError

# text that looks like what users type: digits, signs, units, separators, letters, spaces
TYPED = st.text(alphabet="0123456789+-.,:=%/ dDwWTZe*abcBTCnaif\t", max_size=24) | st.text(max_size=24)

# ------------------------------------------------------------------------------------------------ days


@given(st.integers(min_value=1, max_value=MAX_DAYS))
def test_days_round_trip(n: int) -> None:
    assert parse_days(format_days(n), "--window") == n
    assert parse_days(f"  {n}D ", "--window") == n


@given(st.integers(min_value=1, max_value=MAX_DAYS // 7))
def test_weeks_are_seven_days(n: int) -> None:
    assert parse_days(f"{n}w", "--window") == 7 * n


@given(TYPED)
@example("0d")
@example("-5d")
@example("180")
@example("abc")
@example("1.5d")
@example("99999999999999999999d")
@example("٣d")  # a non-ASCII digit
def test_days_accept_only_whole_positive_days_or_weeks(text: str) -> None:
    try:
        days = parse_days(text, "--window")
    except ConfigError as exc:
        assert "`--window`" in str(exc)
        return
    assert re.fullmatch(r"[0-9]+[dwDW]", text.strip())
    assert 1 <= days <= MAX_DAYS


@pytest.mark.parametrize(
    "text", ["0d", "-5d", "+5d", "5", "180", "5h", "1.5d", "", " ", "d", "abc", f"{MAX_DAYS + 1}d"]
)
def test_days_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--horizon"):
        parse_days(text, "--horizon")


def test_bare_number_suggests_the_unit() -> None:
    with pytest.raises(ConfigError, match="write 180d"):
        parse_days("180", "--window")


# ----------------------------------------------------------------------------------------------- dates

DAYS = st.dates(min_value=date(MIN_YEAR, 1, 1), max_value=date(MAX_YEAR, 12, 31))


@given(DAYS)
def test_dates_round_trip(day: date) -> None:
    assert parse_date(day.isoformat(), "--since") == day
    assert parse_date_or_latest(f" {day.isoformat()} ", "--as-of") == day


@given(DAYS)
def test_other_spellings_of_a_valid_date_are_refused(day: date) -> None:
    spellings = [
        day.strftime("%d/%m/%Y"),
        day.strftime("%m/%d/%Y"),
        day.strftime("%Y%m%d"),
        day.strftime("%d.%m.%Y"),
        f"{day.year}-{day.month}-{day.day}" if day.month < 10 or day.day < 10 else day.strftime("%Y/%m/%d"),
        f"{day.isoformat()}T00:00:00",
        f"{day.isoformat()}T00:00:00Z",
        f"{day.isoformat()}T00:00:00+02:00",
        f"{day.isoformat()} 00:00",
    ]
    for text in spellings:
        with pytest.raises(ConfigError, match="--since"):
            parse_date(text, "--since")


@given(TYPED)
@example("2024-02-30")
@example("2024-13-01")
@example("0000-01-01")
@example("yesterday")
@example("01/02/2024")
@example("2024-1-2")
@example("20240102")
@example("2008-12-31")
@example("2100-01-01")
def test_dates_accept_only_iso_days(text: str) -> None:
    try:
        day = parse_date(text, "--until")
    except ConfigError as exc:
        assert "`--until`" in str(exc)
        return
    assert day.isoformat() == text.strip()
    assert MIN_YEAR <= day.year <= MAX_YEAR


@pytest.mark.parametrize(
    "text,hint",
    [
        ("01/02/2024", "ambiguous"),
        ("2024-01-01T00:00:00+02:00", "offsets are refused"),
        ("20240102", "write 2024-01-02"),
        ("2024-02-30", "not a calendar date"),
        ("yesterday", "dates are ISO 8601"),
        ("2024-1-2", "dates are ISO 8601"),
        ("2024-01-01Z", "offsets are refused"),
        ("2024-01-01 00:00", "offsets are refused"),
        ("1999-01-01", "year"),
    ],
)
def test_date_messages(text: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(hint)):
        parse_date(text, "--as-of")


def test_latest_only_where_documented() -> None:
    assert parse_date_or_latest("latest", "--as-of") is None
    assert parse_date_or_latest("LATEST", "--as-of") is None
    with pytest.raises(ConfigError):
        parse_date("latest", "--since")


@given(DAYS, st.integers(min_value=0, max_value=4000))
def test_date_range_orders(first: date, gap: int) -> None:
    last = first + timedelta(days=gap)
    assume(last.year <= MAX_YEAR)
    assert parse_date_range(first.isoformat(), last.isoformat()) == (first, last)
    if gap:
        with pytest.raises(ConfigError, match="is after"):
            parse_date_range(last.isoformat(), first.isoformat())


# ----------------------------------------------------------------------------------------------- moves

PERCENTS = st.decimals(min_value=Decimal("-99.99"), max_value=Decimal(1000), places=2)


@given(PERCENTS)
def test_percent_moves_round_trip(pct: Decimal) -> None:
    for text in (f"{pct:+}%", f"{pct}%", f" {pct:+}% "):
        assert parse_move(text, "--drift") == float(pct) / 100


@given(st.floats(min_value=-1.0, max_value=10.0, exclude_min=True, allow_nan=False))
def test_fraction_moves_round_trip(x: float) -> None:
    assert parse_move(format_move(x), "--drift") == x


@given(st.integers(min_value=-10_000, max_value=10_000).filter(bool))
def test_bare_integers_are_ambiguous(n: int) -> None:
    with pytest.raises(ConfigError, match="ambiguous"):
        parse_move(str(n), "--drift")


@given(TYPED)
@example("20")
@example("-100%")
@example("1001%")
@example("nan")
@example("inf%")
@example("1e-1")
@example("0.2.3")
@example("--5%")
@example("10.000001")
def test_moves_accept_only_signed_percent_or_decimal_fraction(text: str) -> None:
    try:
        value = parse_move(text, "--scenario")
    except ConfigError as exc:
        assert "`--scenario`" in str(exc)
        return
    raw = text.strip()
    assert raw.endswith("%") or "." in raw or int(raw) == 0
    assert math.isfinite(value)
    assert -1.0 < value <= 10.0


@pytest.mark.parametrize(
    "text,expected",
    [("+20%", 0.2), ("-15%", -0.15), ("0.2", 0.2), ("-.15", -0.15), ("0", 0.0), ("0%", 0.0), ("1000%", 10.0)],
)
def test_moves_examples(text: str, expected: float) -> None:
    assert parse_move(text, "--drift") == pytest.approx(expected)


@given(st.dictionaries(st.sampled_from(["BTC", "ETH", "SOL", "AVAX", "*"]), PERCENTS, min_size=1, max_size=5))
def test_move_lists_round_trip(moves: dict[str, Decimal]) -> None:
    text = ",".join(f"{asset}={pct:+}%" for asset, pct in moves.items())
    assert parse_moves(text, "--drift") == {a: float(p) / 100 for a, p in moves.items()}
    sc = parse_scenario(f"name:{text}", "BTC")
    assert sc.name == "name"
    assert sc.default == (float(moves["*"]) / 100 if "*" in moves else None)


@given(TYPED)
@example("ETH=20")
@example("BTC=-10%,BTC=-20%")
@example("=5%")
@example("BTC")
@example(",,,")
@example("crash:")
def test_move_lists_and_scenarios_never_raise_anything_else(text: str) -> None:
    for parse in (lambda: parse_moves(text, "--drift"), lambda: parse_scenario(text, "BTC")):
        try:
            out = parse()
        except ConfigError:
            continue
        assert isinstance(out, dict | Scenario)


def test_asset_named_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="BTC is given twice"):
        parse_moves("BTC=-10%,btc=-20%", "--drift")


# --------------------------------------------------------------------------------- typer number parsers


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_round_trip(x: float) -> None:
    assert number(repr(x)) == x


@given(TYPED)
@example("nan")
@example("-inf")
@example("1e400")
@example("")
def test_number_parsers_refuse_with_value_error_only(text: str) -> None:
    for parse in (number, non_negative, positive):
        try:
            value = parse(text)
        except ValueError:
            continue
        assert math.isfinite(value)
        assert parse is number or value >= 0
        assert parse is not positive or value > 0
    for parse_int in (whole, positive_whole, non_negative_whole):
        try:
            n = parse_int(text)
        except ValueError:
            continue
        assert n == int(text.strip())
        assert parse_int is whole or n >= 0
        assert parse_int is not positive_whole or n >= 1


@pytest.mark.parametrize("text", ["abc", "nan", "inf", "-inf", "1e400", ""])
def test_number_refusals(text: str) -> None:
    with pytest.raises(ValueError):
        number(text)


@pytest.mark.parametrize("text", ["2.5", "1e3", "x", "", "٣"])
def test_whole_refusals(text: str) -> None:
    with pytest.raises(ValueError):
        whole(text)
