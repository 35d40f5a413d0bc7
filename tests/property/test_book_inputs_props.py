"""Properties of the book's input parsers: `book init --balance`, the command instants, the book file's
`policy_origin` and `hedge:` rules, and the ids `book init` writes. Each input either parses into something the
book file accepts, or is refused with one ConfigError naming the flag or field; never another exception."""

from __future__ import annotations

import re
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perphedge.cli.book import _init_balances, _parse_instant
from perphedge.config import BOOK_FIRST_DAY, BOOK_LAST_DAY, MAX_VALUE_USD, PaperAccountModel, parse_book
from perphedge.errors import ConfigError
from perphedge.files import load_yaml_text

BOOK = {
    "book": 1,
    "id": "3f9a1c2e",
    "portfolio": {"holdings": [{"asset": "BTC", "quantity": 1}], "prices": {"BTC": 60000}},
    "policy": {"kind": "drift_band", "ratio": 0.5, "band": 0.1},
    "feed": {"kind": "portfolio"},
    "accounts": [{"name": "paper", "kind": "paper", "exchange": "binance", "balances": {"USDT": 50000}}],
}

amounts = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from(["", "nan", "-0", "+5", "1e15", "1e15.1", "1_000", "0x10", "5=6", " 7 ", "١٠", "1e-400"]),
    st.text(max_size=8),
)
assets = st.one_of(
    st.sampled_from(["USDT", "usdt", " BTC ", "1000PEPE", "", "US DT", "api_key", "ÜSDT", "A" * 21, "key"]),
    st.text(max_size=6),
)
items = st.one_of(st.tuples(assets, amounts).map(lambda t: f"{t[0]}={t[1]}"), st.text(max_size=12))


@settings(max_examples=300, deadline=None)
@given(st.lists(items, max_size=4))
def test_balance_option_parses_into_a_valid_account_or_one_line(values: list[str]) -> None:
    try:
        out = _init_balances(values)
    except ConfigError as exc:
        assert str(exc).startswith("invalid `--balance`"), exc
        assert "\n" not in str(exc)
        return
    assert len(out) == len(values)
    for v in out.values():
        assert 0 < v <= MAX_VALUE_USD
    if out:
        acc = PaperAccountModel.model_validate({"name": "p", "kind": "paper", "exchange": "binance", "balances": out})
        assert acc.balances == out  # what init writes is what the book file reads back


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=30), st.datetimes().map(lambda d: d.isoformat()), st.dates().map(str)))
def test_instants_are_bounded_or_refused(text: str) -> None:
    try:
        ms = _parse_instant(text, "--since")
    except ConfigError as exc:
        assert str(exc).startswith("invalid `--since`"), exc
        return
    assert (
        datetime(2009, 1, 3, tzinfo=UTC) <= datetime.fromtimestamp(ms / 1000, tz=UTC) < datetime(2100, 1, 1, tzinfo=UTC)
    )


@settings(max_examples=100, deadline=None)
@given(st.datetimes(min_value=datetime(2009, 1, 3), max_value=datetime(2099, 12, 31)))
def test_instants_in_range_are_exact(when: datetime) -> None:
    when = when.replace(microsecond=(when.microsecond // 1000) * 1000)
    expected = int(when.replace(tzinfo=UTC).timestamp() * 1000)
    assert _parse_instant(when.isoformat(), "--start") == expected
    assert _parse_instant(when.isoformat() + "Z", "--start") == expected


@settings(max_examples=150, deadline=None)
@given(st.dates())
def test_policy_origin_accepted_exactly_inside_the_bounds(day: date) -> None:
    doc = {**BOOK, "policy_origin": day.isoformat()}
    if BOOK_FIRST_DAY <= day <= BOOK_LAST_DAY:
        assert parse_book(doc, "b.yaml").policy_origin == day
    else:
        with pytest.raises(ConfigError, match=r"field `policy_origin`: must be from 2009-01-03"):
            parse_book(doc, "b.yaml")


hedge_overrides = st.fixed_dictionaries(
    {},
    optional={
        "leverage": st.floats(min_value=1, max_value=10),
        "collateral": st.sampled_from(["buy", "holdings", "stable"]),
        "instrument": st.just("binance:BTCUSDT"),
        "method": st.sampled_from(["notional", "beta"]),
    },
)


@settings(max_examples=100, deadline=None)
@given(hedge_overrides, st.sampled_from(["ratio", "funding_rate_8h", None]), st.floats(min_value=0, max_value=0.05))
def test_hedge_fields_the_book_ignores_are_always_refused(hedge: dict[str, Any], extra: str | None, x: float) -> None:
    doc = {**BOOK, "hedge": hedge if extra is None else {**hedge, extra: x}}
    if extra is None:
        assert parse_book(doc, "b.yaml").hedge == hedge
    else:
        with pytest.raises(ConfigError, match=rf"field `hedge\.{extra}`: does not apply to a book"):
            parse_book(doc, "b.yaml")


PF = """prices: {BTC: 60000}
holdings:
  - {asset: BTC, value_usd: 100000}
hedge: {ratio: 0.5, instrument: "binance:BTCUSDT", leverage: 2, collateral: stable}
"""


@settings(max_examples=40, deadline=None)
@given(st.one_of(st.from_regex(r"[0-9e]{8}", fullmatch=True), st.from_regex(r"[0-9a-f]{8}", fullmatch=True)))
def test_every_id_init_writes_reads_back_as_written(book_id: str) -> None:
    from perphedge.usecases.book import init_book, load_book

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "pf.yaml").write_text(PF)
        with mock.patch("perphedge.usecases.book.secrets.token_hex", side_effect=[book_id, "abc12345"]):
            out = init_book(folder / "b.book.yaml", portfolio=folder / "pf.yaml", exchange="binance")
        # an id a YAML reader would take for a number is redrawn; any other is kept
        want = "abc12345" if re.fullmatch(r"[0-9]+(e[0-9]+)?", book_id) else book_id
        assert out.book_id == want
        assert load_yaml_text((folder / "b.book.yaml").read_text(), "b")["id"] == want
        assert load_book(folder / "b.book.yaml").book.id == want


FULL = {
    "book": 1,
    "id": "3f9a1c2e",
    "name": "n",
    "portfolio": {
        "holdings": [{"asset": "BTC", "quantity": 1}, {"asset": "SOL", "value_usd": 500}],
        "prices": {"BTC": 60000, "SOL": 150},
        "hedge": {"instrument": "binance:BTCUSDT", "leverage": 2, "collateral": "stable"},
    },
    "hedge": {"leverage": 2},
    "step": "1d",
    "policy": {"kind": "drift_band", "ratio": 0.5, "band": 0.1},
    "policy_origin": "2026-01-01",
    "decide": "close",
    "costs": {"fills": "taker", "slippage_bps": 2},
    "margin": {"top_up": True, "top_up_level": 0.5, "reopen_after_days": 7},
    "funding": {"history": True, "assumed_rate_8h": 0.0001},
    "feed": {"kind": "portfolio", "source": "binance"},
    "accounts": [{"name": "paper", "kind": "paper", "exchange": "binance", "balances": {"USDT": 20000}}],
    "limits": {"max_order_usd": 25000, "max_leverage": 3, "instruments": ["binance:BTCUSDT"]},
    "alerts": {"feed_stale_after": "15m", "ratio_off_by": 0.15, "rearm": 0.8},
}


def _leaves(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in _leaves(v, (*path, k))]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in _leaves(v, (*path, i))]
    return [path]


LEAVES = _leaves(FULL)
wild = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "binance:FOOUSDT", "nowhere", "1e400", "0s", "366d", "2009-01-02", "../x", "USDT"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(max_examples=250, deadline=None)
@given(st.sampled_from(LEAVES), wild)
def test_any_leaf_mutation_loads_or_is_one_line(path: tuple[Any, ...], value: Any) -> None:
    """Every leaf of a full book file replaced by any YAML value: `load_book` (the model and the checks against the
    portfolio and the specs) returns a book or raises one ConfigError/DataError line naming the file."""
    import copy

    import yaml

    from perphedge.errors import DataError
    from perphedge.usecases.book import load_book

    doc = copy.deepcopy(FULL)
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "b.book.yaml"
        f.write_text(yaml.safe_dump(doc, sort_keys=False))
        try:
            load_book(f)
        except (ConfigError, DataError) as exc:
            text = str(exc)
            assert "\n" not in text and text.startswith(str(f)), text
