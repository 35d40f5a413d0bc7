"""Credentials of live accounts (exchange/credentials.py, issue 11 items 1 and 6): read at call time from the
environment or the OS keyring, never shown, registered with the redactor that the command line applies to
everything it prints."""

from __future__ import annotations

import base64
import copy
import io
import pickle
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import keyring
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keyring.backends import fail

from perphedge.cli import main
from perphedge.config import ExchangeAccountModel
from perphedge.errors import ConfigError, ExchangeError
from perphedge.exchange import credentials as C
from perphedge.exchange.credentials import (
    REDACTED,
    Credentials,
    Redactor,
    redact,
    register_secret,
    resolve_credentials,
    secret_values,
)
from tests.keyring_backend import FileKeyring

KEY = "PHSENTINELKEY0123456789"
SECRET = "PHSENTINELSECRET9876543210"
WALLET = "0x" + "1f" * 20
PRIVATE = "0x" + "a7" * 32


def account(**over: Any) -> ExchangeAccountModel:
    doc: dict[str, Any] = {
        "name": "main",
        "kind": "exchange",
        "exchange": "binance_usdm",
        "key_env": "T_KEY",
        "secret_env": "T_SECRET",
    }
    for k, v in over.items():
        if v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    return ExchangeAccountModel.model_validate(doc)


def refused(acc: ExchangeAccountModel, env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as exc:
        resolve_credentials(acc, env)
    text = str(exc.value)
    assert "\n" not in text and f"account `{acc.name}`" in text
    for value in env.values():
        if len(value.strip()) >= 4:
            assert value.strip() not in text
    return text


# ------------------------------------------------------------------ environment


def test_reads_the_environment_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    acc = account()
    monkeypatch.delenv("T_KEY", raising=False)
    with pytest.raises(ConfigError, match="`T_KEY`"):
        resolve_credentials(acc)
    monkeypatch.setenv("T_KEY", KEY)
    monkeypatch.setenv("T_SECRET", SECRET)
    creds = resolve_credentials(acc)
    assert (creds.key, creds.secret, creds.password) == (KEY, SECRET, None)
    assert creds.source == "env: T_KEY, T_SECRET" and creds.exchange == "binance_usdm"
    assert creds.ccxt_config() == {"apiKey": KEY, "secret": SECRET}
    monkeypatch.setenv("T_KEY", KEY + "2")  # a new call reads the new value
    assert resolve_credentials(acc).key == KEY + "2"


def test_okx_passphrase() -> None:
    acc = account(exchange="okx", password_env="T_PASS")
    creds = resolve_credentials(acc, {"T_KEY": KEY, "T_SECRET": SECRET, "T_PASS": "Passphrase-42"})
    assert creds.password == "Passphrase-42"
    assert creds.ccxt_config() == {"apiKey": KEY, "secret": SECRET, "password": "Passphrase-42"}
    assert "`T_PASS` (`password_env`) is not set" in refused(acc, {"T_KEY": KEY, "T_SECRET": SECRET})


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"T_SECRET": SECRET}, "`T_KEY` (`key_env`) is not set"),
        ({"T_KEY": KEY}, "`T_SECRET` (`secret_env`) is not set"),
        ({}, "`T_KEY` (`key_env`) is not set"),
        ({"T_KEY": "", "T_SECRET": SECRET}, "`T_KEY` (`key_env`) is empty"),
        ({"T_KEY": "   \n", "T_SECRET": SECRET}, "is empty"),
        ({"T_KEY": KEY, "T_SECRET": "PHSENTINEL SECRET98765"}, "whitespace or control characters"),
        ({"T_KEY": KEY + "\x00x", "T_SECRET": SECRET}, "whitespace or control characters"),
        ({"T_KEY": KEY, "T_SECRET": KEY}, "hold the same value"),
    ],
)
def test_environment_refusals_name_the_variable_never_the_value(env: dict[str, str], words: str) -> None:
    assert words in refused(account(), env)


def test_a_trailing_newline_is_not_part_of_the_key() -> None:
    creds = resolve_credentials(account(), {"T_KEY": KEY + "\n", "T_SECRET": " " + SECRET})
    assert (creds.key, creds.secret) == (KEY, SECRET)


def test_hyperliquid_wallet_and_private_key() -> None:
    acc = account(exchange="hyperliquid")
    creds = resolve_credentials(acc, {"T_KEY": WALLET, "T_SECRET": PRIVATE})
    assert creds.wallet_address == WALLET and creds.private_key == PRIVATE
    assert creds.ccxt_config() == {"walletAddress": WALLET, "privateKey": PRIVATE}
    with pytest.raises(AttributeError, match="hyperliquid"):
        _ = resolve_credentials(account(), {"T_KEY": KEY, "T_SECRET": SECRET}).wallet_address


@pytest.mark.parametrize(
    ("key", "secret", "words"),
    [
        (PRIVATE, WALLET, "look swapped"),
        (KEY, PRIVATE, "must be the wallet address, 0x and 40 hex digits"),
        ("0x" + "1f" * 19, PRIVATE, "wallet address"),
        ("0x" + "zz" * 20, PRIVATE, "wallet address"),
        (WALLET, SECRET, "private key, 0x and 64 hex digits"),
        (WALLET, "0x" + "a7" * 31, "private key"),
        (WALLET, "a7" * 32, "private key"),
    ],
)
def test_hyperliquid_forms_are_checked_unseen(key: str, secret: str, words: str) -> None:
    assert words in refused(account(exchange="hyperliquid"), {"T_KEY": key, "T_SECRET": secret})


# ------------------------------------------------------------------ keyring


@pytest.fixture
def file_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FileKeyring:
    monkeypatch.setenv("PERPHEDGE_TEST_KEYRING_FILE", str(tmp_path / "keyring.json"))
    backend = FileKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_keyring_entries(file_keyring: FileKeyring) -> None:
    file_keyring.set_password("ph-okx", "key", KEY)
    file_keyring.set_password("ph-okx", "secret", SECRET)
    file_keyring.set_password("ph-okx", "password", "Passphrase-42")
    acc = account(exchange="okx", key_env=None, secret_env=None, keyring={"service": "ph-okx"})
    creds = resolve_credentials(acc, {})
    assert (creds.key, creds.secret, creds.password) == (KEY, SECRET, "Passphrase-42")
    assert creds.source == "keyring: ph-okx"


@pytest.mark.parametrize(
    ("entries", "words"),
    [
        ({}, "has no entry (ph-bn, key): store it with `keyring set ph-bn key`"),
        ({"key": KEY}, "has no entry (ph-bn, secret)"),
        ({"key": " ", "secret": SECRET}, "keyring entry (ph-bn, key) is empty"),
        ({"key": KEY, "secret": "a b c d e f"}, "whitespace"),
    ],
)
def test_keyring_refusals(file_keyring: FileKeyring, entries: dict[str, str], words: str) -> None:
    for user, value in entries.items():
        file_keyring.set_password("ph-bn", user, value)
    acc = account(key_env=None, secret_env=None, keyring={"service": "ph-bn"})
    with pytest.raises(ConfigError) as exc:
        resolve_credentials(acc, {})
    assert words in str(exc.value) and SECRET not in str(exc.value) and KEY not in str(exc.value)


def test_no_keyring_backend_is_said_so() -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        acc = account(key_env=None, secret_env=None, keyring={"service": "ph-bn"})
        with pytest.raises(ConfigError, match="no OS keyring backend is available"):
            resolve_credentials(acc, {"T_KEY": KEY})
    finally:
        keyring.set_keyring(previous)


def test_okx_keyring_needs_the_password_entry(file_keyring: FileKeyring) -> None:
    file_keyring.set_password("ph-okx", "key", KEY)
    file_keyring.set_password("ph-okx", "secret", SECRET)
    acc = account(exchange="okx", key_env=None, secret_env=None, keyring={"service": "ph-okx"})
    with pytest.raises(ConfigError, match=r"no entry \(ph-okx, password\)"):
        resolve_credentials(acc, {})


# ------------------------------------------------------------------ never shown


def _creds() -> Credentials:
    return resolve_credentials(account(exchange="okx", password_env="T_PASS"), {
        "T_KEY": KEY, "T_SECRET": SECRET, "T_PASS": "Passphrase-42"
    })  # fmt: skip


def test_repr_and_str_are_redacted() -> None:
    creds = _creds()
    for text in (repr(creds), str(creds), f"{creds}", f"{creds!r}", repr([creds]), str({"c": creds})):
        assert KEY not in text and SECRET not in text and "Passphrase-42" not in text
        assert "main" in text and "<redacted>" in text


def test_not_picklable_nor_copyable() -> None:
    creds = _creds()
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(creds, protocol=proto)
    with pytest.raises(TypeError):
        copy.copy(creds)
    with pytest.raises(TypeError):
        copy.deepcopy(creds)
    assert not hasattr(creds, "__dict__")


def test_frozen() -> None:
    creds = _creds()
    with pytest.raises(AttributeError):
        creds.key = "x"  # type: ignore[misc]


def test_secret_values() -> None:
    assert secret_values(_creds()) == (KEY, SECRET, "Passphrase-42")
    assert secret_values(resolve_credentials(account(), {"T_KEY": KEY, "T_SECRET": SECRET})) == (KEY, SECRET)


def test_resolved_values_are_registered() -> None:
    value = "PHREGISTERED" + "9" * 12
    resolve_credentials(account(), {"T_KEY": value, "T_SECRET": SECRET})
    assert redact(f"x{value}y") == f"x{REDACTED}y"


# ------------------------------------------------------------------ the redactor


def encodings(value: str) -> list[str]:
    raw = value.encode()
    return [
        value,
        urllib.parse.quote(value, safe=""),
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode(),
        raw.hex(),
        raw.hex().upper(),
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=6, max_size=60),
    st.text(max_size=30),
    st.text(max_size=30),
)
def test_every_form_of_a_registered_value_is_scrubbed(value: str, before: str, after: str) -> None:
    r = Redactor()
    r.register(value)
    for form in encodings(value):
        assert form not in r.redact(before + form + after)


def test_short_values_are_not_scrubbed() -> None:
    r = Redactor()
    r.register("abc")
    r.register("")
    assert r.redact("abc abc") == "abc abc" and len(r) == 0


def test_longest_value_first() -> None:
    r = Redactor()
    r.register("ABCDEFGH")
    r.register("ABCDEFGHIJKL")
    assert r.redact("ABCDEFGHIJKL") == REDACTED


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ("GET https://fapi.binance.com/fapi/v3/account?timestamp=1&signature=abcdef0123456789 400", "abcdef0123456789"),
        ("url ...&recvWindow=5000&SIGNATURE=ffee1122&x=1", "ffee1122"),
        ("headers {'X-MBX-APIKEY': 'vmPUZE6mv9SD5VNHk4H', 'Content-Type': 'json'}", "vmPUZE6mv9SD5VNHk4H"),
        ('{"X-BAPI-API-KEY":"XyZ123abc","X-BAPI-SIGN":"deadbeef99"}', "XyZ123abc"),
        ('{"X-BAPI-API-KEY":"XyZ123abc","X-BAPI-SIGN":"deadbeef99"}', "deadbeef99"),
        ("OK-ACCESS-KEY: 0c7e5b5e-1f2a", "0c7e5b5e-1f2a"),
        ("ok-access-passphrase=hunter2hunter2", "hunter2hunter2"),
        ("OK-ACCESS-SIGN: c2lnbmF0dXJl==", "c2lnbmF0dXJl"),
    ],
)
def test_signatures_and_key_headers_are_scrubbed_even_unregistered(text: str, gone: str) -> None:
    out = Redactor().redact(text)
    assert gone not in out and REDACTED in out


def test_ordinary_text_is_untouched() -> None:
    text = "sell 200 BTCUSD_PERP at 60,000 USD; liquidation 91,234.5; signature verification is on"
    assert Redactor().redact(text) == text


def test_registering_is_thread_safe() -> None:
    r = Redactor()
    values = [f"PHTHREAD{i:04d}SECRETVALUE" for i in range(200)]

    def worker(chunk: list[str]) -> None:
        for v in chunk:
            r.register(v)
            assert v not in r.redact(f"[{v}]")

    threads = [threading.Thread(target=worker, args=(values[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    text = r.redact(" ".join(values))
    assert not any(v in text for v in values)


# ------------------------------------------------------------------ the command line's edge


def _run_main(monkeypatch: pytest.MonkeyPatch, exc: BaseException, *args: str) -> tuple[int, str, str]:
    """``main`` with ``perphedge instruments`` raising ``exc``; returns (code, stdout, stderr)."""
    from perphedge import specs

    def boom(*_a: Any, **_k: Any) -> Any:
        print(f"stdout mentions {KEY}")
        raise exc

    monkeypatch.setattr(specs, "default_registry", boom)
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    code = main([*args, "instruments"])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("debug", [[], ["--debug"]])
@pytest.mark.parametrize(
    "exc",
    [
        ExchangeError(
            f"binanceusdm GET https://fapi.binance.com/fapi/v3/account?timestamp=1&signature=9f8e7d {KEY} {SECRET}"
        ),
        RuntimeError(f"ccxt said {{'X-MBX-APIKEY': '{KEY}'}} and {SECRET}"),
        ConfigError(f"a message quoting {base64.b64encode(SECRET.encode()).decode()}"),
        OSError(5, f"I/O error near {urllib.parse.quote(SECRET)}"),
    ],
)
def test_cli_errors_and_tracebacks_are_scrubbed(
    monkeypatch: pytest.MonkeyPatch, exc: BaseException, debug: list[str]
) -> None:
    register_secret(KEY)
    register_secret(SECRET)
    code, out, err = _run_main(monkeypatch, exc, *debug)
    assert code in (1, 2)
    assert err.strip(), "the failure is reported"
    if debug:
        assert "Traceback" in err
    for form in [*encodings(KEY), *encodings(SECRET), "9f8e7d"]:
        assert form not in out and form not in err, form
    assert REDACTED in out and REDACTED in err


def test_the_streams_are_restored_after_main(monkeypatch: pytest.MonkeyPatch) -> None:
    before = sys.stdout, sys.stderr
    main(["--version"])
    assert (sys.stdout, sys.stderr) == before


def test_module_registry_is_one_object() -> None:
    assert C.redactor() is C.redactor() and isinstance(C.redactor(), Redactor)


def test_everything_the_cli_prints_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    """typer.echo, rich consoles and logging handlers made inside a command all write through the scrubbed
    streams (a ccxt error printed by any of them loses its secrets)."""
    import logging

    import typer
    from rich.console import Console

    from perphedge import specs

    register_secret(KEY)

    def command(*_a: Any, **_k: Any) -> Any:
        typer.echo(f"echo {KEY}", err=True)
        typer.echo(f"echo {KEY}")
        Console(stderr=True).print(f"rich {KEY}")
        Console().print(f"rich {KEY}")
        handler = logging.StreamHandler(sys.stderr)
        log = logging.getLogger("perphedge.test.redaction")
        log.addHandler(handler)
        try:
            log.warning("log %s", KEY)
        finally:
            log.removeHandler(handler)
        raise typer.Exit(0)

    monkeypatch.setattr(specs, "default_registry", command)
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    assert main(["instruments"]) == 0
    assert out.getvalue().count(REDACTED) == 2 and err.getvalue().count(REDACTED) == 3
    assert KEY not in out.getvalue() + err.getvalue()
