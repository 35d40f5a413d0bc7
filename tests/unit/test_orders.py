"""Client order ids (core/orders.py): deterministic, unique over (decision, leg, attempt), valid on every venue."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perphedge.core.orders import (
    MAX_ATTEMPT,
    MAX_DECISION,
    MAX_LEG,
    client_order_id,
    parse_client_order_id,
    parse_transfer_id,
    transfer_id,
)

BINANCE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
OKX = re.compile(r"^[A-Za-z0-9]{1,32}$")
HYPERLIQUID = re.compile(r"^0x[0-9a-f]{32}$")
BOOK = "3f9a1c2e"

books = st.text(alphabet="0123456789abcdef", min_size=8, max_size=8)
decisions = st.integers(0, MAX_DECISION)
legs = st.integers(0, MAX_LEG)
attempts = st.integers(0, MAX_ATTEMPT)


def test_layout_by_hand() -> None:
    # decision 7 = "0000007", leg 1 = "01", attempt 0 = "0"
    assert client_order_id(BOOK, 7, 1, 0, "binance") == "ph3f9a1c2e0000007010"
    # 36 = "10" in base 36, 35 = "z"
    assert client_order_id(BOOK, 36, 35, 35, "okx") == "ph3f9a1c2e00000100zz"
    assert client_order_id(BOOK, MAX_DECISION, MAX_LEG, MAX_ATTEMPT, "bybit") == "ph3f9a1c2ezzzzzzzzzz"


def test_hyperliquid_is_the_hash_of_the_text() -> None:
    text = client_order_id(BOOK, 12, 3, 1, "binance")
    assert client_order_id(BOOK, 12, 3, 1, "hyperliquid") == "0x" + hashlib.sha256(text.encode()).hexdigest()[:32]


@pytest.mark.parametrize(
    ("decision", "leg", "attempt"),
    [(0, 0, 0), (MAX_DECISION, MAX_LEG, MAX_ATTEMPT), (MAX_DECISION, 0, 0), (0, MAX_LEG, 0), (0, 0, MAX_ATTEMPT)],
)
@pytest.mark.parametrize("book", ["00000000", "ffffffff", BOOK])
def test_every_venue_rule_on_the_extremes(book: str, decision: int, leg: int, attempt: int) -> None:
    for venue in ("binance", "binanceusdm", "binancecoinm"):
        assert BINANCE.fullmatch(client_order_id(book, decision, leg, attempt, venue))
    bybit = client_order_id(book, decision, leg, attempt, "bybit")
    assert 1 <= len(bybit) <= 36
    assert OKX.fullmatch(client_order_id(book, decision, leg, attempt, "okx"))
    assert HYPERLIQUID.fullmatch(client_order_id(book, decision, leg, attempt, "hyperliquid"))
    assert len(client_order_id(book, decision, leg, attempt, "okx")) == 20


@settings(max_examples=300, deadline=None)
@given(books, decisions, legs, attempts)
def test_round_trip_and_determinism(book: str, decision: int, leg: int, attempt: int) -> None:
    cid = client_order_id(book, decision, leg, attempt, "binance")
    assert cid == client_order_id(book, decision, leg, attempt, "binance")
    assert parse_client_order_id(cid) == (book, decision, leg, attempt)
    assert BINANCE.fullmatch(cid) and OKX.fullmatch(cid) and len(cid) == 20


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(decisions, legs, attempts), min_size=2, max_size=30, unique=True))
def test_unique_over_decision_leg_attempt(keys: list[tuple[int, int, int]]) -> None:
    for venue in ("binance", "hyperliquid"):
        ids = {client_order_id(BOOK, d, leg, a, venue) for d, leg, a in keys}
        assert len(ids) == len(keys)


@settings(max_examples=100, deadline=None)
@given(books, books, decisions, legs, attempts)
def test_books_do_not_collide(a: str, b: str, decision: int, leg: int, attempt: int) -> None:
    if a != b:
        assert client_order_id(a, decision, leg, attempt, "okx") != client_order_id(b, decision, leg, attempt, "okx")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("3F9A1C2E", 0, 0, 0, "binance"), "book_id"),
        (("3f9a1c2", 0, 0, 0, "binance"), "book_id"),
        (("3f9a1c2e0", 0, 0, 0, "binance"), "book_id"),
        (("3f9a1c2g", 0, 0, 0, "binance"), "book_id"),
        ((None, 0, 0, 0, "binance"), "book_id"),
        ((BOOK, -1, 0, 0, "binance"), "decision"),
        ((BOOK, MAX_DECISION + 1, 0, 0, "binance"), "decision"),
        ((BOOK, 1.0, 0, 0, "binance"), "decision"),
        ((BOOK, True, 0, 0, "binance"), "decision"),
        ((BOOK, 0, MAX_LEG + 1, 0, "binance"), "leg"),
        ((BOOK, 0, -1, 0, "binance"), "leg"),
        ((BOOK, 0, 0, MAX_ATTEMPT + 1, "binance"), "attempt"),
        ((BOOK, 0, 0, -1, "binance"), "attempt"),
        ((BOOK, 0, 0, "1", "binance"), "attempt"),
        ((BOOK, 0, 0, 0, ""), "venue"),
        ((BOOK, 0, 0, 0, "Binance"), "venue"),
        ((BOOK, 0, 0, 0, "bin ance"), "venue"),
    ],
)
def test_malformed_inputs_name_the_field(args: tuple[object, ...], field: str) -> None:
    with pytest.raises(ValueError, match=f"`{field}`"):
        client_order_id(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ph3f9a1c2e000000701",  # 19
        "ph3f9a1c2e00000070100",  # 21
        "PH3f9a1c2e0000007010",
        "ph3F9A1C2E0000007010",
        "ph3f9a1c2e000000701-",
        "pt3f9a1c2e0000007010",
        "0x" + "a" * 32,
        "x-ph3f9a1c2e0000007010",
    ],
)
def test_parse_refuses_what_is_not_ours(text: str) -> None:
    assert parse_client_order_id(text) is None


def test_parse_non_text() -> None:
    assert parse_client_order_id(12) is None  # type: ignore[arg-type]
    assert parse_transfer_id(None) is None  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(books, decisions, legs, st.sampled_from(["rebalance", "top_up"]))
def test_transfer_ids(book: str, decision: int, leg: int, kind: str) -> None:
    tid = transfer_id(book, decision, leg, kind)
    assert len(tid) == 20 and tid.startswith("pt") and OKX.fullmatch(tid)
    assert parse_transfer_id(tid) == (book, decision, leg, kind)
    other = "top_up" if kind == "rebalance" else "rebalance"
    assert transfer_id(book, decision, leg, other) != tid
    assert parse_client_order_id(tid) is None
    assert parse_transfer_id(client_order_id(book, decision, leg, 0, "binance")) is None


def test_transfer_id_refuses() -> None:
    with pytest.raises(ValueError, match="`kind`"):
        transfer_id(BOOK, 0, 0, "withdraw")
    with pytest.raises(ValueError, match="`leg`"):
        transfer_id(BOOK, 0, MAX_LEG + 1, "top_up")
    with pytest.raises(ValueError, match="`book_id`"):
        transfer_id("xyz", 0, 0, "top_up")
