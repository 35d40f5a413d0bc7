"""Live exchange accounts in the book file (config.ExchangeAccountModel, issue 11 item 1): every wrong input is one
ConfigError line naming the field, and never echoes what could be a key."""

from __future__ import annotations

import copy
import re
import string
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perphedge.config import (
    ENV_NAME,
    EXCHANGE_ACCOUNT_VENUES,
    ExchangeAccountModel,
    PaperAccountModel,
    looks_like_a_key,
    parse_book,
)
from perphedge.errors import ConfigError
from perphedge.files import load_yaml_text
from tests.unit.test_bookfile import SRC, base

LIVE = {"name": "main", "kind": "exchange", "exchange": "binance_usdm", "key_env": "BN_KEY", "secret_env": "BN_SECRET"}


def book_with(*accounts: dict[str, Any]) -> dict[str, Any]:
    doc = base()
    doc["accounts"] = [copy.deepcopy(a) for a in accounts]
    doc["limits"]["instruments"] = []
    return doc


def live(**over: Any) -> dict[str, Any]:
    acc = dict(LIVE)
    for k, v in over.items():
        if v is None:
            acc.pop(k, None)
        else:
            acc[k] = v
    return acc


def refused(acc: dict[str, Any] | Any, field: str | None = None) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_book(book_with(acc), SRC)
    text = str(exc.value)
    assert "\n" not in text and text.startswith(f"{SRC}: ")
    if field is not None:
        assert f"field `accounts[0].{field}`" in text, text
    return text


def parsed(acc: dict[str, Any]) -> ExchangeAccountModel:
    account = parse_book(book_with(acc), SRC).accounts[0]
    assert isinstance(account, ExchangeAccountModel)
    return account


# ------------------------------------------------------------------ what is accepted


def test_defaults_are_safe() -> None:
    acc = parsed(LIVE)
    assert acc.read_only is True and acc.sandbox is False and acc.margin_mode == "isolated"
    assert acc.keyring is None and acc.password_env is None and acc.bybit_account is None
    assert (acc.venue, acc.instrument_kinds) == ("binance", ("linear",))


@pytest.mark.parametrize(
    ("exchange", "venue", "kinds"),
    [
        ("binance_usdm", "binance", ("linear",)),
        ("binance_coinm", "binance", ("inverse",)),
        ("bybit", "bybit", ("linear", "inverse")),
        ("okx", "okx", ("linear", "inverse")),
        ("hyperliquid", "hyperliquid", ("linear",)),
        ("BINANCE_USDM", "binance", ("linear",)),
    ],
)
def test_each_venue_maps_to_its_instruments(exchange: str, venue: str, kinds: tuple[str, ...]) -> None:
    acc = parsed(live(exchange=exchange, password_env="OKX_PASS" if exchange == "okx" else None))
    assert acc.exchange == exchange.lower() and acc.venue == venue and acc.instrument_kinds == kinds
    for kind in ("linear", "inverse"):
        assert acc.holds(venue, kind) is (kind in kinds)
    assert not acc.holds("deribit", "inverse")


def test_paper_accounts_hold_every_instrument_of_their_exchange() -> None:
    paper = base()["accounts"][0]
    acc = parse_book(book_with(paper), SRC).accounts[0]
    assert isinstance(acc, PaperAccountModel) and acc.venue == "binance"
    assert acc.holds("binance", "inverse") and acc.holds("binance", "linear") and not acc.holds("bybit", "linear")


def test_bybit_defaults_to_unified_and_takes_classic() -> None:
    assert parsed(live(exchange="bybit")).bybit_account == "unified"
    assert parsed(live(exchange="bybit", bybit_account="classic")).bybit_account == "classic"


def test_okx_takes_a_passphrase_variable() -> None:
    assert parsed(live(exchange="okx", password_env="OKX_PASS")).password_env == "OKX_PASS"


def test_keyring_source() -> None:
    acc = parsed(live(key_env=None, secret_env=None, keyring={"service": "perphedge-binance"}))
    assert acc.keyring is not None and acc.keyring.service == "perphedge-binance" and acc.key_env is None
    okx = parsed(live(exchange="okx", key_env=None, secret_env=None, keyring={"service": "ph.okx"}))
    assert okx.password_env is None  # the passphrase is the keyring's (service, "password") entry


def test_trading_sandbox_cross() -> None:
    acc = parsed(live(read_only=False, sandbox=True, margin_mode="cross"))
    assert (acc.read_only, acc.sandbox, acc.margin_mode) == (False, True, "cross")


def test_mixed_paper_and_exchange_accounts() -> None:
    book = parse_book(book_with(base()["accounts"][0], live(exchange="bybit")), SRC)
    assert [a.kind for a in book.accounts] == ["paper", "exchange"]


# ------------------------------------------------------------------ refusals, by category


@pytest.mark.parametrize("exchange", ["binance", "binanceusdm", "bitmex", "deribit", "kraken", "", "okx-swap"])
def test_unknown_venues_are_refused_with_the_list(exchange: str) -> None:
    text = refused(live(exchange=exchange), "exchange")
    assert "binance_usdm, binance_coinm, bybit, okx, hyperliquid" in text


def test_binance_gets_a_hint() -> None:
    assert "binance_coinm: COIN-M inverse" in refused(live(exchange="binance"), "exchange")


@pytest.mark.parametrize("value", [1, True, None, ["okx"], {"okx": 1}])
def test_venue_must_be_text(value: Any) -> None:
    refused(live(exchange=value) if value is not None else {**LIVE, "exchange": None}, "exchange")


@pytest.mark.parametrize(
    ("over", "field", "words"),
    [
        ({"key_env": None, "secret_env": None}, "key_env", "is required"),
        ({"secret_env": None}, "secret_env", "is required with `key_env`"),
        ({"key_env": None}, "key_env", "is required with `secret_env`"),
        ({"keyring": {"service": "svc"}}, "key_env", "ONE source"),
        ({"key_env": None, "keyring": {"service": "svc"}}, "secret_env", "ONE source"),
        ({"secret_env": "BN_KEY"}, "secret_env", "another variable"),
    ],
)
def test_credentials_come_from_exactly_one_source(over: dict[str, Any], field: str, words: str) -> None:
    assert words in refused(live(**over), field)


def test_keyring_with_password_env_is_two_sources() -> None:
    acc = live(exchange="okx", key_env=None, secret_env=None, keyring={"service": "s"}, password_env="OKX_PASS")
    assert "ONE source" in refused(acc, "password_env")


@pytest.mark.parametrize("exchange", ["binance_usdm", "binance_coinm", "bybit", "hyperliquid"])
def test_password_env_is_okx_only(exchange: str) -> None:
    assert "applies to okx only" in refused(live(exchange=exchange, password_env="PASS"), "password_env")


def test_okx_needs_its_passphrase_variable() -> None:
    assert "is required for okx" in refused(live(exchange="okx"), "password_env")
    same = live(exchange="okx", password_env="BN_SECRET")
    assert "another variable" in refused(same, "password_env")


@pytest.mark.parametrize("exchange", ["binance_usdm", "binance_coinm", "okx", "hyperliquid"])
@pytest.mark.parametrize("mode", ["unified", "classic"])
def test_bybit_account_is_bybit_only(exchange: str, mode: str) -> None:
    acc = live(exchange=exchange, bybit_account=mode, password_env="P" if exchange == "okx" else None)
    assert "applies to bybit only" in refused(acc, "bybit_account")


@pytest.mark.parametrize("mode", ["portfolio", "UNIFIED", "", 1, True])
def test_bybit_account_values(mode: Any) -> None:
    refused(live(exchange="bybit", bybit_account=mode), "bybit_account")


@pytest.mark.parametrize("mode", ["portfolio", "Isolated", "", 0, None])
def test_margin_mode_values(mode: Any) -> None:
    refused({**LIVE, "margin_mode": mode}, "margin_mode")


@pytest.mark.parametrize("field", ["sandbox", "read_only"])
@pytest.mark.parametrize("value", ["true", "no", 1, 0, None, "yes"])
def test_flags_are_true_or_false(field: str, value: Any) -> None:
    assert "true or false" in refused({**LIVE, field: value}, field)


@pytest.mark.parametrize("service", ["", "has space", "-lead", "a" * 129, "tab\there", "é"])
def test_keyring_service_names(service: str) -> None:
    refused(live(key_env=None, secret_env=None, keyring={"service": service}), "keyring.service")


@pytest.mark.parametrize("keyring", ["svc", ["svc"], {}, {"service": "s", "user": "u"}])
def test_keyring_is_a_service_mapping(keyring: Any) -> None:
    refused(live(key_env=None, secret_env=None, keyring=keyring))


@pytest.mark.parametrize(
    "name",
    ["1KEY", "BN-KEY", "BN KEY", "", "$BN_KEY", "a" * 129, "K\nEY", "ключ", "BN.KEY"],
)
@pytest.mark.parametrize("field", ["key_env", "secret_env"])
def test_bad_variable_names_are_refused_and_not_echoed(field: str, name: str) -> None:
    text = refused(live(**{field: name}), field)
    assert "NAME of an environment variable" in text
    if len(name.strip()) >= 3:
        assert name.strip() not in text


@pytest.mark.parametrize(
    "value",
    [
        "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",  # Binance-shaped key
        "XXXXXXXXXXXXXXXXXX".replace("X", "aB3")[:18],  # Bybit-shaped, 18 mixed
        "3B9F0C2D4E6A8B1C3D5E7F9A0B2C4D6E",  # 32 hex, all upper: looks like a variable name, is an OKX secret
        "0x" + "ab" * 32,  # a hyperliquid private key
        "0x" + "cd" * 20,  # a wallet address
        "PHSENTINELKEY0123456789",  # upper case and digits
    ],
)
def test_a_key_pasted_as_a_variable_name_is_refused_unseen(value: str) -> None:
    for field in ("key_env", "secret_env"):
        text = refused(live(**{field: value}), field)
        assert value not in text and value[:8] not in text and "not shown" in text


@pytest.mark.parametrize("value", [12345678901234567890, 3.5, True, ["BN_KEY"], {"n": "BN_KEY"}])
def test_variable_names_are_text(value: Any) -> None:
    text = refused(live(key_env=value), "key_env")
    assert "NAME of an environment variable" in text and str(value) not in text


@pytest.mark.parametrize("name", ["BN_KEY", "_K", "binance_api_key", "K" * 128, "OKX_SECRET_2024", "a1"])
def test_good_variable_names(name: str) -> None:
    assert parsed(live(key_env=name)).key_env == name


@pytest.mark.parametrize("key", ["key", "secret", "api_key", "apiKey", "private_key", "password", "passphrase"])
@pytest.mark.parametrize("value", ["PHSENTINELKEY0123456789", 123456789])
def test_literal_secrets_under_an_exchange_account_point_to_key_env(key: str, value: Any) -> None:
    text = refused(live(**{key: value}), key)
    assert "secret written in a file is refused" in text and "`key_env` / `secret_env`" in text
    assert str(value) not in text


@pytest.mark.parametrize("kind", ["live", "Exchange", "", 5, None, "ccxt"])
def test_account_kind(kind: Any) -> None:
    acc = {**LIVE, "kind": kind}
    text = refused(acc, "kind")
    assert "paper" in text and "exchange" in text


def test_account_kind_missing() -> None:
    assert "is required" in refused(live(kind=None), "kind")


@pytest.mark.parametrize("extra", ["balances", "overdraft", "api", "testnet", "leverage", "max_order_usd"])
def test_unknown_keys(extra: str) -> None:
    assert "unknown key" in refused({**LIVE, extra: 1 if extra != "balances" else {"USDT": 1}}, extra)


def test_paper_fields_on_a_live_account_and_back() -> None:
    assert "unknown key" in refused({**base()["accounts"][0], "key_env": "BN_KEY"}, "key_env")
    assert "unknown key" in refused({**LIVE, "overdraft": False}, "overdraft")


@pytest.mark.parametrize("name", ["", "has space", "x" * 33, "naïve", "a/b"])
def test_account_names_follow_the_paper_rule(name: str) -> None:
    refused(live(name=name) if name else {**LIVE, "name": ""}, "name")


def test_duplicate_names_across_kinds() -> None:
    doc = book_with(base()["accounts"][0], live(name="PAPER1"))
    with pytest.raises(ConfigError, match=r"accounts\[1\]\.name.*already `accounts\[0\]`"):
        parse_book(doc, SRC)


def test_duplicate_keys_in_the_file_are_refused() -> None:
    text = (
        "book: 1\nid: '3f9a1c2e'\nportfolio: p.yaml\naccounts:\n"
        "  - name: main\n    kind: exchange\n    exchange: bybit\n    key_env: A\n    key_env: B\n    secret_env: S\n"
    )
    with pytest.raises(ConfigError, match="key_env"):
        load_yaml_text(text, SRC)


# ------------------------------------------------------------------ hypothesis

VALID_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["name", "exchange", "key_env", "secret_env", "sandbox", "read_only", "margin_mode", "keyring"]),
    st.one_of(
        st.integers(),
        st.floats(allow_nan=False),
        st.booleans(),
        st.none(),
        st.lists(st.text(max_size=3), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.text(max_size=40),
    ),
)
def test_any_value_of_any_field_parses_or_is_one_line(field: str, value: Any) -> None:
    acc = {**LIVE, field: value}
    try:
        account = parse_book(book_with(acc), SRC).accounts[0]
    except ConfigError as exc:
        text = str(exc)
        assert "\n" not in text and text.startswith(f"{SRC}: ") and "accounts[0]" in text
        if field.endswith("_env") and isinstance(value, str) and len(value.strip()) >= 10:
            assert value.strip() not in text  # a variable "name" may be a key: never echoed
        return
    assert isinstance(account, ExchangeAccountModel)
    if field == "name":
        assert isinstance(value, str) and VALID_NAME.fullmatch(value.strip())
    if field in ("key_env", "secret_env"):
        assert isinstance(value, str) and ENV_NAME.fullmatch(value.strip()) and not looks_like_a_key(value)
    if field in ("sandbox", "read_only"):
        assert isinstance(value, bool)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.ascii_letters + string.digits + "_-.$ ", min_size=0, max_size=140))
def test_variable_names_by_the_rule(name: str) -> None:
    acc = live(key_env=name)
    ok = bool(ENV_NAME.fullmatch(name.strip())) and not looks_like_a_key(name) and name.strip() != "BN_SECRET"
    if ok:
        assert parsed(acc).key_env == name.strip()
    else:
        text = refused(acc, "key_env" if name.strip() != "BN_SECRET" else "secret_env")
        if len(name.strip()) >= 10 and name.strip() != "BN_SECRET":
            assert name.strip() not in text


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=14),
        st.one_of(st.integers(0, 9), st.booleans(), st.text(alphabet=string.ascii_uppercase, max_size=5)),
        min_size=1,
        max_size=3,
    )
)
def test_unknown_keys_are_refused(extra: dict[str, Any]) -> None:
    known = set(ExchangeAccountModel.model_fields)
    acc = {**LIVE, **{k: v for k, v in extra.items() if k not in known}}
    unknown = [k for k in extra if k not in known]
    if not unknown:
        return
    with pytest.raises(ConfigError) as exc:
        parse_book(book_with(acc), SRC)
    text = str(exc.value)
    assert "accounts[0]." in text and ("unknown key" in text or "secret written in a file" in text)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(sorted(LIVE)),
    st.sampled_from(["A1", "B2", "main", "exchange", "binance_usdm"]),
)
def test_duplicate_keys_in_yaml_are_refused(key: str, second: str) -> None:
    lines = [f"    {k}: {v}" for k, v in LIVE.items()]
    lines.insert(len(lines), f"    {key}: {second}")
    text = "book: 1\nid: '3f9a1c2e'\nportfolio: p.yaml\naccounts:\n  -" + "\n".join(lines)[3:] + "\n"
    with pytest.raises(ConfigError) as exc:
        parse_book(load_yaml_text(text, SRC), SRC)
    assert "\n" not in str(exc.value) and key in str(exc.value)


def test_venue_table_is_the_issue_list() -> None:
    assert list(EXCHANGE_ACCOUNT_VENUES) == ["binance_usdm", "binance_coinm", "bybit", "okx", "hyperliquid"]


def test_round_trip_through_yaml() -> None:
    acc = parsed(live(exchange="bybit", read_only=False))
    again = parsed(yaml.safe_load(yaml.safe_dump(acc.model_dump(mode="json", exclude_none=True))))
    assert again == acc
