"""Client order ids and transfer ids: deterministic, so a retried or resumed rebalance never doubles a position.

Pure: no I/O. Design ``docs/design/book.md`` §4.

**Order id** (20 characters, ``[0-9a-z]``, fixed width)::

    ph  3f9a1c2e  0000007  01  0
    ^^  ^^^^^^^^  ^^^^^^^  ^^  ^
    |   book id   decision leg attempt
    |   8 hex     7 base36 2 base36 1 base36
    "ph" (perphedge)

Decisions go up to ``36**7 - 1`` (78,364,164,095), legs up to ``36**2 - 1`` (1,295), attempts up to 35.
The same text is valid as-is on Binance (``newClientOrderId``: ``^[\\.A-Z\\:/a-z0-9_-]{1,36}$``), Bybit
(``orderLinkId``: at most 36 characters) and OKX (``clOrdId``: 1–32 alphanumerics). Hyperliquid wants a
128-bit hex ``cloid`` (``^0x[0-9a-f]{32}$``): there the id is ``"0x"`` + the first 32 hex digits of the
SHA-256 of the 20-character text (journal both forms: the hash cannot be inverted).

**Transfer id** (20 characters): ``"pt"`` + book id (8 hex) + decision (7 base36) + leg (2 base36) + one letter
for the kind: ``r`` for ``rebalance`` (the margin reset after a fill), ``t`` for ``top_up``. One decision moves
at most one margin amount per leg and kind, so the id is unique and a resent transfer is recognised.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "MAX_ATTEMPT",
    "MAX_DECISION",
    "MAX_LEG",
    "TRANSFER_KINDS",
    "client_order_id",
    "parse_client_order_id",
    "parse_transfer_id",
    "transfer_id",
]

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
#: Largest decision number (7 base36 digits).
MAX_DECISION = 36**7 - 1
#: Largest leg index (2 base36 digits).
MAX_LEG = 36**2 - 1
#: Largest attempt number (1 base36 digit).
MAX_ATTEMPT = 35
#: Transfer kinds and their one-letter code in a transfer id.
TRANSFER_KINDS = {"rebalance": "r", "top_up": "t"}

_BOOK_ID = re.compile(r"[0-9a-f]{8}")
_VENUE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_CID = re.compile(r"ph([0-9a-f]{8})([0-9a-z]{7})([0-9a-z]{2})([0-9a-z])")
_TID = re.compile(r"pt([0-9a-f]{8})([0-9a-z]{7})([0-9a-z]{2})([rt])")
#: Venues whose client ids must be a 128-bit hex number.
_HEX_VENUES = frozenset({"hyperliquid"})


def _base36(value: int, width: int) -> str:
    out = ""
    for _ in range(width):
        value, digit = divmod(value, 36)
        out = _DIGITS[digit] + out
    return out


def _check_int(name: str, value: object, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"client id field `{name}`: must be a whole number, was {value!r}")
    if not 0 <= value <= hi:
        raise ValueError(f"client id field `{name}`: must be in [0, {hi}], was {value}")
    return value


def _check_book(book_id: object) -> str:
    if not isinstance(book_id, str) or not _BOOK_ID.fullmatch(book_id):
        raise ValueError(f"client id field `book_id`: must be 8 lower-case hex digits, was {book_id!r}")
    return book_id


def _body(book_id: str, decision: int, leg: int) -> str:
    return (
        _check_book(book_id)
        + _base36(_check_int("decision", decision, MAX_DECISION), 7)
        + _base36(_check_int("leg", leg, MAX_LEG), 2)
    )


def client_order_id(book_id: str, decision: int, leg: int, attempt: int, venue: str) -> str:
    """The client order id of ``attempt`` of ``leg`` of ``decision`` of book ``book_id`` on ``venue``.

    ``venue`` is the exchange name (``binance``, ``bybit``, ``okx``, ``hyperliquid``, … lower case);
    only ``hyperliquid`` changes the form (see the module docstring). ValueError naming the field for
    an out-of-range or malformed input.
    """
    if not isinstance(venue, str) or not _VENUE.fullmatch(venue):
        raise ValueError(f"client id field `venue`: must be a lower-case exchange name, was {venue!r}")
    text = "ph" + _body(book_id, decision, leg) + _base36(_check_int("attempt", attempt, MAX_ATTEMPT), 1)
    if venue in _HEX_VENUES:
        return "0x" + hashlib.sha256(text.encode("ascii")).hexdigest()[:32]
    return text


def parse_client_order_id(cid: str) -> tuple[str, int, int, int] | None:
    """``(book_id, decision, leg, attempt)`` of a 20-character id made by :func:`client_order_id`; None if not ours."""
    if not isinstance(cid, str):
        return None
    m = _CID.fullmatch(cid)
    if m is None:
        return None
    return m.group(1), int(m.group(2), 36), int(m.group(3), 36), int(m.group(4), 36)


def transfer_id(book_id: str, decision: int, leg: int, kind: str) -> str:
    """The id of the margin transfer of ``kind`` (``rebalance`` | ``top_up``) of ``leg`` of ``decision``."""
    if kind not in TRANSFER_KINDS:
        raise ValueError(f"transfer id field `kind`: must be one of {', '.join(TRANSFER_KINDS)}, was {kind!r}")
    return "pt" + _body(book_id, decision, leg) + TRANSFER_KINDS[kind]


def parse_transfer_id(tid: str) -> tuple[str, int, int, str] | None:
    """``(book_id, decision, leg, kind)`` of an id made by :func:`transfer_id`; None if not ours."""
    if not isinstance(tid, str):
        return None
    m = _TID.fullmatch(tid)
    if m is None:
        return None
    kind = next(k for k, code in TRANSFER_KINDS.items() if code == m.group(4))
    return m.group(1), int(m.group(2), 36), int(m.group(3), 36), kind
