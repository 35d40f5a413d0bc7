"""Book files (config.BookFile, parse_book): every wrong input is one ConfigError line naming the field."""

from __future__ import annotations

import copy
import math
import re
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from perphedge.config import (
    AlertsModel,
    BookFile,
    CostsModel,
    FeedModel,
    FundingRunModel,
    HedgeModel,
    HoldingModel,
    LimitsModel,
    MarginRunModel,
    PaperAccountModel,
    PolicyModel,
    PortfolioFile,
    parse_book,
    parse_duration,
    read_yaml,
)
from perphedge.errors import ConfigError
from perphedge.files import load_yaml_text

BOOK = """\
book: 1
id: 3f9a1c2e
name: altcoin hedge
portfolio:
  holdings:
    - {asset: SOL, quantity: 100}
  prices: {SOL: 150}
hedge: {instrument: "binance:BTCUSDT", leverage: 2, collateral: stable}
step: 1d
policy: {kind: drift_band, ratio: 0.6, band: 0.10}
policy_origin: 2026-11-22
decide: close
costs: {fills: taker, slippage_bps: 2}
margin: {top_up: true, top_up_level: 0.5, reopen_after_days: 7}
funding: {history: true, assumed_rate_8h: 0.0001}
feed: {kind: store, source: binance}
accounts:
  - {name: paper1, kind: paper, exchange: binance, balances: {USDT: 20000}, overdraft: false}
limits:
  max_order_usd: 25000
  max_turnover_usd_per_day: 50000
  max_leverage: 3
  min_liquidation_distance: 0.25
  instruments: ["binance:BTCUSDT"]
alerts:
  liquidation_distance_below: 0.30
  ratio_off_by: 0.15
  funding_cost_8h_above: 0.0003
  feed_stale_after: 15m
  order_rejected: true
  rearm: 0.8
  webhook: null
store: null
"""

SRC = "my.book.yaml"


def base() -> dict[str, Any]:
    return copy.deepcopy(load_yaml_text(BOOK, SRC))


def put(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return doc


def dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + str(p)
    return out


def refused(doc: Any, field: str | None = None) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_book(doc, SRC)
    text = str(exc.value)
    assert "\n" not in text and text.startswith(f"{SRC}: ")
    if field is not None:
        assert f"field `{field}`" in text, text
    return text


def test_the_design_example_parses() -> None:
    book = parse_book(base(), SRC)
    assert isinstance(book, BookFile)
    assert book.id == "3f9a1c2e" and book.accounts[0].balances == {"USDT": 20000}
    assert book.alerts.feed_stale_after == "15m" and parse_duration(book.alerts.feed_stale_after) == 900
    assert book.limits.instruments == ["binance:BTCUSDT"]


def test_minimal_book() -> None:
    doc = {"book": 1, "id": "00000000", "portfolio": "p.yaml", "accounts": base()["accounts"]}
    book = parse_book(doc, SRC)
    assert book.feed.kind == "store" and book.alerts.rearm == 0.8 and book.limits.max_order_usd is None


@pytest.mark.parametrize("doc", [None, [], "book: 1", 3, True])
def test_not_a_mapping(doc: Any) -> None:
    assert "must be a YAML mapping" in refused(doc)


# ------------------------------------------------------------------ unknown keys

MAPPINGS: dict[tuple[Any, ...], type[BaseModel]] = {
    (): BookFile,
    ("feed",): FeedModel,
    ("accounts", 0): PaperAccountModel,
    ("limits",): LimitsModel,
    ("alerts",): AlertsModel,
    ("policy",): PolicyModel,
    ("costs",): CostsModel,
    ("margin",): MarginRunModel,
    ("funding",): FundingRunModel,
    ("hedge",): HedgeModel,
    ("portfolio",): PortfolioFile,
    ("portfolio", "holdings", 0): HoldingModel,
}


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(MAPPINGS, key=str)), st.from_regex(r"[a-z][a-z_]{0,12}", fullmatch=True))
def test_unknown_keys_are_refused(where: tuple[Any, ...], key: str) -> None:
    assume(key not in MAPPINGS[where].model_fields and not re.search("key|secret|password|passphrase|token", key))
    doc = base()
    node = doc
    for p in where:
        node = node[p]
    node[key] = 1
    text = refused(doc, dotted((*where, key)))
    assert "unknown key" in text


# ------------------------------------------------------------------ duplicate keys through real files


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        ("book: 1\n", "book: 1\nbook: 1\n", 2),
        ("  max_leverage: 3\n", "  max_leverage: 3\n  max_leverage: 30\n", 23),
        ("{USDT: 20000}", "{USDT: 20000, USDT: 1}", 18),
        ("  rearm: 0.8\n", "  rearm: 0.8\n  rearm: 0.9\n", 32),
        ("    - {asset: SOL, quantity: 100}\n", "    - {asset: SOL, quantity: 100, quantity: 1}\n", 6),
    ],
)
def test_duplicate_keys_in_files(tmp_path: Path, old: str, new: str, line: int) -> None:
    assert old in BOOK
    path = tmp_path / "dup.book.yaml"
    path.write_text(BOOK.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"line {line}: duplicate key") as exc:
        read_yaml(path, "a book file")
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("  max_order_usd: 25000", "  max_order_usd: .nan", "limits.max_order_usd"),
        ("  max_order_usd: 25000", "  max_order_usd: .inf", "limits.max_order_usd"),
        ("  max_order_usd: 25000", "  max_order_usd: 1e999", "limits.max_order_usd"),
        ("  max_order_usd: 25000", "  max_order_usd: 0x10", "limits.max_order_usd"),
        ("  max_order_usd: 25000", '  max_order_usd: "25000"', "limits.max_order_usd"),
        ("  max_order_usd: 25000", "  max_order_usd: yes", "limits.max_order_usd"),
        ("  max_leverage: 3", "  max_leverage: 1_000", "limits.max_leverage"),
        ("  rearm: 0.8", "  rearm: -.inf", "alerts.rearm"),
        ("  feed_stale_after: 15m", "  feed_stale_after: 900", "alerts.feed_stale_after"),
        ("  feed_stale_after: 15m", "  feed_stale_after: 15:00", "alerts.feed_stale_after"),
        ("  order_rejected: true", "  order_rejected: 1", "alerts.order_rejected"),
        ("id: 3f9a1c2e", "id: 12345678", "id"),
        ("book: 1", "book: true", "book"),
        ("policy_origin: 2026-11-22", "policy_origin: 2026-02-30", None),
    ],
)
def test_wrong_values_in_files(tmp_path: Path, old: str, new: str, field: str | None) -> None:
    assert old in BOOK
    path = tmp_path / "bad.book.yaml"
    path.write_text(BOOK.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        doc, _ = read_yaml(path, "a book file")
        parse_book(doc, str(path))
    text = str(exc.value)
    assert "\n" not in text and text.startswith(str(path))
    if field is not None:
        assert f"field `{field}`" in text
        line = BOOK.splitlines().index(old) + 1
        assert f"line {line}:" in text


# ------------------------------------------------------------------ numbers: types and bounds

# path, low bound, low inclusive, high bound, high inclusive, nullable
NUMBERS: list[tuple[tuple[Any, ...], float, bool, float, bool, bool]] = [
    (("limits", "max_order_usd"), 0, False, 1e15, True, True),
    (("limits", "max_turnover_usd_per_day"), 0, False, 1e15, True, True),
    (("limits", "max_leverage"), 1, True, 200, True, True),
    (("limits", "min_liquidation_distance"), 0, False, 100, True, True),
    (("alerts", "liquidation_distance_below"), 0, False, 100, True, True),
    (("alerts", "ratio_off_by"), 0, False, 2, True, True),
    (("alerts", "funding_cost_8h_above"), 0, True, 0.05, True, True),
    (("alerts", "rearm"), 0, False, 1, False, False),
    (("accounts", 0, "balances", "USDT"), 0, False, 1e15, True, False),
    (("costs", "slippage_bps"), 0, True, 500, True, False),
    (("margin", "top_up_level"), 0, False, 1, False, False),
    (("funding", "assumed_rate_8h"), -0.05, True, 0.05, True, False),
    (("policy", "ratio"), 0, True, 2, True, False),
    (("policy", "band"), 0, True, 1, False, False),
    (("hedge", "leverage"), 1, True, math.inf, True, False),
]

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**30), 10**30),
    st.sampled_from([0, 0.0, -0.0, 1, -1, 1e15, 1e15 + 1, 1e16, 10**400, 5e-324, 0.05, 0.0500001, 200, 200.5]),
)


def in_bounds(x: float, lo: float, lo_inc: bool, hi: float, hi_inc: bool) -> bool:
    if not math.isfinite(x):
        return False
    return (x >= lo if lo_inc else x > lo) and (x <= hi if hi_inc else x < hi)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(NUMBERS), numbers)
def test_numbers_accepted_exactly_within_bounds(spec: tuple[Any, ...], value: float) -> None:
    path, lo, lo_inc, hi, hi_inc, _ = spec
    doc = put(base(), path, value)
    try:
        as_float = float(value)
    except OverflowError:
        as_float = math.inf
    if in_bounds(as_float, lo, lo_inc, hi, hi_inc):
        parse_book(doc, SRC)
    else:
        refused(doc, dotted(path))


wrong_types = st.one_of(
    st.booleans(),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(alphabet="abc", min_size=1, max_size=3), st.integers(), max_size=2),
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(NUMBERS), st.one_of(wrong_types, st.none()))
def test_numbers_refuse_every_other_type(spec: tuple[Any, ...], value: Any) -> None:
    path, *_, nullable = spec
    doc = put(base(), path, value)
    if value is None and nullable:
        parse_book(doc, SRC)
        return
    text = refused(doc, dotted(path))
    if isinstance(value, bool):
        assert "true/false is not a number" in text or "must be" in text


BOOLS = [("accounts", 0, "overdraft"), ("alerts", "order_rejected"), ("margin", "top_up"), ("funding", "history")]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(BOOLS),
    st.one_of(st.integers(), st.floats(allow_nan=False), st.sampled_from(["true", "yes", "on", "1", ""]), st.none()),
)
def test_booleans_are_true_or_false_only(path: tuple[Any, ...], value: Any) -> None:
    assert "true or false" in refused(put(base(), path, value), dotted(path))


TEXTS = [
    ("step",),
    ("decide",),
    ("feed", "kind"),
    ("feed", "source"),
    ("accounts", 0, "kind"),
    ("accounts", 0, "name"),
    ("accounts", 0, "exchange"),
    ("name",),
    ("id",),
    ("alerts", "feed_stale_after"),
    ("alerts", "webhook"),
    ("store",),
]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(TEXTS),
    st.one_of(st.integers(), st.floats(), st.booleans(), st.lists(st.text(max_size=3), max_size=2)),
)
def test_text_fields_refuse_other_types(path: tuple[Any, ...], value: Any) -> None:
    refused(put(base(), path, value), dotted(path))


# ------------------------------------------------------------------ durations

DURATION = re.compile(r"([1-9][0-9]{0,6})([smhd])")
UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="0123456789smhdSMHD .:-+_e", max_size=9),
        st.from_regex(r"[0-9]{1,8}[smhd]", fullmatch=True),
        st.sampled_from(["15m", " 15m ", "15 m", "15M", "1.5h", "-5m", "0m", "00m", "15min", "PT15M", "1h30m",
                         "366d", "367d", "31622400s", "31622401s", "١٥m", "15m\n", ""]),
    )
)  # fmt: skip
def test_durations_in_every_form(text: str) -> None:
    doc = put(base(), ("alerts", "feed_stale_after"), text)
    m = DURATION.fullmatch(text.strip())
    if m and int(m.group(1)) * UNIT[m.group(2)] <= 366 * 86400:
        book = parse_book(doc, SRC)
        assert parse_duration(book.alerts.feed_stale_after) == int(m.group(1)) * UNIT[m.group(2)]
    else:
        assert "duration" in refused(doc, "alerts.feed_stale_after") or "at most 366d" in refused(doc)


@pytest.mark.parametrize("value", [900, 15.0, True, None, ["15m"], {"m": 15}])
def test_durations_must_be_text(value: Any) -> None:
    text = refused(put(base(), ("alerts", "feed_stale_after"), value), "alerts.feed_stale_after")
    assert "duration" in text


# ------------------------------------------------------------------ secrets

SECRET_KEYS = ["api_key", "apiKey", "secret", "api_secret", "password", "passphrase", "token", "private_key", "KEY"]
PLACES: list[tuple[Any, ...]] = [(), ("accounts", 0), ("feed",), ("alerts",), ("limits",), ("hedge",), ("portfolio",)]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(SECRET_KEYS),
    st.sampled_from(PLACES),
    st.one_of(st.from_regex(r"S3CR3T[A-Za-z0-9]{4,20}", fullmatch=True), st.integers(10**6, 10**12)),
)
def test_secret_literals_are_refused_and_never_echoed(key: str, where: tuple[Any, ...], value: Any) -> None:
    assume(not (key == "KEY" and isinstance(value, int)))  # an upper-case code with a number: see below
    doc = base()
    put(doc, (*where, key), value)
    text = refused(doc, dotted((*where, key)))
    assert "secret written in a file is refused" in text
    assert str(value) not in text


@pytest.mark.parametrize("key", ["key_env", "secret_env", "password_env"])
def test_env_variable_names_are_not_secrets(key: str) -> None:
    text = refused(put(base(), ("accounts", 0, key), "BN_KEY"), f"accounts[0].{key}")
    assert "unknown key" in text  # paper accounts take no credentials; the name itself is fine


@pytest.mark.parametrize("asset", ["KEY", "TOKEN"])
def test_an_asset_named_like_a_secret_is_an_asset(asset: str) -> None:
    book = parse_book(put(base(), ("accounts", 0, "balances", asset), 100), SRC)
    assert book.accounts[0].balances[asset] == 100
    text = refused(put(base(), ("accounts", 0, "balances", asset), "abc"))
    assert "secret written in a file" in text and "abc" not in text


# ------------------------------------------------------------------ names and ids


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable + "éß", max_size=40))
def test_account_names(name: str) -> None:
    doc = put(base(), ("accounts", 0, "name"), name)
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", name.strip()):
        assert parse_book(doc, SRC).accounts[0].name == name.strip()
    else:
        refused(doc, "accounts[0].name")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable + "é\x00\x7f", max_size=220))
def test_book_names(name: str) -> None:
    doc = put(base(), ("name",), name)
    clean = name.strip()
    if 1 <= len(clean) <= 200 and not re.search(r"[\x00-\x1f\x7f]", clean):
        assert parse_book(doc, SRC).name == clean
    else:
        refused(doc, "name")


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="0123456789abcdefABCDEFxz \t", max_size=10), st.from_regex(r"[0-9a-f]{8}", fullmatch=True)
    )
)
def test_id_pattern(book_id: str) -> None:
    doc = put(base(), ("id",), book_id)
    if re.fullmatch(r"[0-9a-f]{8}", book_id.strip()):
        parse_book(doc, SRC)
    else:
        assert "8 lower-case hex digits" in refused(doc, "id")


def test_numeric_id_gets_a_quoting_hint() -> None:
    assert 'quote it: id: "01234567"' in refused(put(base(), ("id",), 12345678), "id")


def test_duplicate_account_names_any_case() -> None:
    doc = base()
    doc["accounts"].append({**doc["accounts"][0], "name": "PAPER1"})
    assert "is already `accounts[0]`" in refused(doc, "accounts[1].name")


@pytest.mark.parametrize("n", [0, 17])
def test_account_count(n: int) -> None:
    doc = base()
    doc["accounts"] = [{**base()["accounts"][0], "name": f"a{i}"} for i in range(n)]
    assert "must list 1 to 16 accounts" in refused(doc, "accounts")


@pytest.mark.parametrize(
    ("balances", "text"),
    [
        ({}, "at least one starting balance"),
        ({"US DT": 5}, "asset code"),
        ({"": 5}, "asset code"),
        ({"USDT": 5, "usdt": 6}, "are the same asset"),
        ({"USDT": 0}, "must be > 0"),
        ({"USDT": 2e15}, "<= 1e+15"),
    ],
)
def test_balances(balances: dict[str, Any], text: str) -> None:
    assert text in refused(put(base(), ("accounts", 0, "balances"), balances))


@pytest.mark.parametrize(
    ("value", "text", "field"),
    [
        ([""], "instrument id", "limits.instruments[0]"),
        (["BTCUSDT"], "instrument id", "limits.instruments[0]"),
        (["binance:BTCUSDT", "binance:btcusdt"], "already `instruments[0]`", "limits.instruments[1]"),
        (["binance: BTCUSDT"], "instrument id", "limits.instruments[0]"),
        ("binance:BTCUSDT", "must be a list", "limits.instruments"),
    ],
)
def test_limit_instruments(value: Any, text: str, field: str) -> None:
    assert text in refused(put(base(), ("limits", "instruments"), value), field)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://hooks.example.com/services/T0/B0/XYZ", True),
        ("http://127.0.0.1:8080/alert?x=1", True),
        ("https://[::1]:8443/x", True),
        ("http:///x", False),
        ("https://", False),
        ("ftp://example.com/x", False),
        ("example.com/x", False),
        ("https://exa mple.com/x", False),
        ("https://example.com:0/x", False),
        ("https://example.com:70000/x", False),
        ("https://example.com/" + "a" * 2000, False),
    ],
)
def test_webhook_urls(url: str, ok: bool) -> None:
    doc = put(base(), ("alerts", "webhook"), url)
    if ok:
        assert parse_book(doc, SRC).alerts.webhook == url
    else:
        text = refused(doc, "alerts.webhook")
        assert "/x" not in text.split("was ")[-1].replace("/...", "")  # the path (a token) is not echoed


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("feed", "source"), "bin ance", "feed.source"),
        (("feed", "kind"), "ws", "feed.kind"),
        (("accounts", 0, "exchange"), "Bin/ance", "accounts[0].exchange"),
        (("accounts", 0, "kind"), "live", "accounts[0].kind"),
        (("step",), "4h", "step"),
        (("decide",), "always", "decide"),
        (("book",), 2, "book"),
        (("book",), 1.0, "book"),
        (("book",), True, "book"),
        (("portfolio",), "", "portfolio"),
        (("portfolio",), {"holdings": [{"asset": "SOL", "quantity": -1}]}, "portfolio.holdings[0].quantity"),
        (("portfolio",), {"holdings": [{"asset": "SOL", "quantity": 1}], "x": 1}, "portfolio.x"),
        (("hedge",), {"leverage": "2"}, "hedge.leverage"),
        (("policy",), {"kind": "drift_band", "every_days": 3}, "policy"),
        (("store",), "", "store"),
    ],
)
def test_other_refusals_name_the_field(path: tuple[Any, ...], value: Any, field: str) -> None:
    refused(put(base(), path, value), field)


def test_book_init_never_draws_an_id_that_reads_back_as_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    """`91595e57` or `12345678` unquoted is a number to YAML 1.2 readers: `book init` draws again."""
    import secrets

    from perphedge.usecases import book as B

    drawn = iter(["91595e57", "12345678", "0a1b2c3d"])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(drawn))
    import tempfile
    from pathlib import Path

    from tests.conftest import REPO

    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "b.yaml"
        B.init_book(out, portfolio=REPO / "examples" / "btc-50pct.yaml", exchange="binance")
        assert "'0a1b2c3d'" in out.read_text(encoding="utf-8")
