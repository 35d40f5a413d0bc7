"""API credentials of live exchange accounts, and the redaction that keeps them out of every output.

Credentials are never in a file: an exchange account names environment variables (``key_env``, ``secret_env``,
``password_env``) or an OS keyring service (``keyring: {service: NAME}``, entries ``(NAME, "key")``,
``(NAME, "secret")``, ``(NAME, "password")``), and :func:`resolve_credentials` reads them at the moment a client is
built. A :class:`Credentials` object never shows its values (``repr``/``str`` are redacted, it cannot be pickled or
copied), and every value it holds is registered with the process-wide :class:`Redactor` (:func:`register_secret`),
which the command line applies to everything it prints (messages, ``--debug`` tracebacks, the output streams).

Errors name the account, the variable or keyring entry and the rule, never a value.
"""

from __future__ import annotations

import base64
import os
import re
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from perphedge.errors import ConfigError

if TYPE_CHECKING:
    from perphedge.config import ExchangeAccountModel

__all__ = [
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "Credentials",
    "Redactor",
    "redact",
    "redactor",
    "register_secret",
    "resolve_credentials",
    "secret_values",
]

#: What a secret becomes in any text the redactor scrubs.
REDACTED = "***"
#: Values shorter than this are not scrubbed from text (a 3-character "secret" would blank out ordinary words);
#: perphedge never prints a credential, so this only limits the safety net.
MIN_SECRET_LENGTH = 6

_WALLET = re.compile(r"0x[0-9a-fA-F]{40}")
_PRIVATE_KEY = re.compile(r"0x[0-9a-fA-F]{64}")
_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class Credentials:
    """The credentials of one exchange account, as read at call time. Shows no value: ``repr`` and ``str`` name the
    account and where the values came from; pickling and copying are refused.

    ``key`` is the API key (hyperliquid: the wallet address), ``secret`` the API secret (hyperliquid: the wallet's
    private key), ``password`` the API passphrase (okx only).
    """

    account: str
    exchange: str
    source: str  # "env: KEY_VAR, SECRET_VAR" or "keyring: service" — names only, never values
    key: str
    secret: str
    password: str | None = None

    @property
    def wallet_address(self) -> str:
        """Hyperliquid: the wallet address (``0x`` + 40 hex digits)."""
        self._hyperliquid_only("wallet_address")
        return self.key

    @property
    def private_key(self) -> str:
        """Hyperliquid: the wallet's private key (``0x`` + 64 hex digits)."""
        self._hyperliquid_only("private_key")
        return self.secret

    def _hyperliquid_only(self, what: str) -> None:
        if self.exchange != "hyperliquid":
            raise AttributeError(f"`{what}` is a hyperliquid credential; account `{self.account}` is {self.exchange}")

    def ccxt_config(self) -> dict[str, str]:
        """The credential entries of a ccxt exchange's constructor config (``apiKey``/``secret``/``password``, or
        hyperliquid's ``walletAddress``/``privateKey``). Pass it straight to ccxt; never print or store it."""
        if self.exchange == "hyperliquid":
            return {"walletAddress": self.key, "privateKey": self.secret}
        out = {"apiKey": self.key, "secret": self.secret}
        if self.password is not None:
            out["password"] = self.password
        return out

    def __repr__(self) -> str:
        extra = ", password=<redacted>" if self.password is not None else ""
        return (
            f"Credentials(account={self.account!r}, exchange={self.exchange!r}, source={self.source!r}, "
            f"key=<redacted>, secret=<redacted>{extra})"
        )

    __str__ = __repr__

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("Credentials cannot be pickled or copied (they would leave the process or be logged)")

    def __getstate__(self) -> NoReturn:
        raise TypeError("Credentials cannot be pickled or copied (they would leave the process or be logged)")


def secret_values(creds: Credentials) -> tuple[str, ...]:
    """Every value of ``creds`` that must never appear in output (the key, the secret, the password)."""
    return tuple(v for v in (creds.key, creds.secret, creds.password) if v)


# ------------------------------------------------------------------------------------------------ resolving


def resolve_credentials(account: ExchangeAccountModel, env: Mapping[str, str] | None = None) -> Credentials:
    """Read ``account``'s credentials now, from the environment (``env``, default :data:`os.environ`) or the OS
    keyring, check their form, and register every value with the process redactor.

    ConfigError (one line naming the account and the variable or keyring entry, never a value) for a variable that
    is not set or is empty, a value with whitespace inside, a missing keyring entry or no keyring backend, and for
    hyperliquid a wallet address that is not ``0x`` + 40 hex digits or a private key that is not ``0x`` + 64.
    """
    who = f"account `{account.name}` ({account.exchange})"
    if account.keyring is not None:
        service = account.keyring.service
        key = _from_keyring(who, service, "key")
        secret = _from_keyring(who, service, "secret")
        password = _from_keyring(who, service, "password") if account.exchange == "okx" else None
        source = f"keyring: {service}"
    else:
        environ: Mapping[str, str] = os.environ if env is None else env
        if account.key_env is None or account.secret_env is None:  # the model refuses this; never guess
            raise ConfigError(f"{who}: give `key_env` and `secret_env`, or `keyring`")
        key = _from_env(who, environ, account.key_env, "key_env")
        secret = _from_env(who, environ, account.secret_env, "secret_env")
        password = (
            _from_env(who, environ, account.password_env, "password_env") if account.password_env is not None else None
        )
        source = f"env: {', '.join(n for n in (account.key_env, account.secret_env, account.password_env) if n)}"
    for value in (key, secret, password):
        if value is not None:
            register_secret(value)  # before any check below can mention anything
    where = (
        f"keyring entries of `{account.keyring.service}`"
        if account.keyring is not None
        else f"`{account.key_env}` and `{account.secret_env}`"
    )
    if key == secret:
        raise ConfigError(f"{who}: the key and the secret ({where}) hold the same value: check the variables")
    if account.exchange == "hyperliquid":
        _check_hyperliquid(who, key, secret, where)
    return Credentials(
        account=account.name, exchange=account.exchange, source=source, key=key, secret=secret, password=password
    )


def _checked(who: str, what: str, value: str) -> str:
    text = value.strip()  # a trailing newline from `$(cat file)` is not part of a key
    if not text:
        raise ConfigError(f"{who}: {what} is empty: it must hold the credential")
    if _BAD_CHARS.search(text):
        raise ConfigError(
            f"{who}: {what} holds whitespace or control characters inside the value (not shown): API credentials "
            "have none; check what was pasted"
        )
    return text


def _from_env(who: str, env: Mapping[str, str], name: str, field: str) -> str:
    value = env.get(name)
    if value is None:
        raise ConfigError(
            f"{who}: environment variable `{name}` (`{field}`) is not set: export it with the credential before "
            "running perphedge"
        )
    return _checked(who, f"environment variable `{name}` (`{field}`)", value)


def _from_keyring(who: str, service: str, user: str) -> str:
    try:
        import keyring
        from keyring.errors import KeyringError, NoKeyringError
    except ImportError:  # pragma: no cover - keyring is a dependency
        raise ConfigError(
            f"{who}: `keyring:` needs the `keyring` package, which is not installed: install it, or use "
            "`key_env`/`secret_env`"
        ) from None
    try:
        value = keyring.get_password(service, user)
    except NoKeyringError:
        raise ConfigError(
            f"{who}: `keyring: {{service: {service}}}` but no OS keyring backend is available (no Secret Service, "
            "KWallet or macOS/Windows keychain was found): start or unlock one, or use `key_env`/`secret_env`"
        ) from None
    except KeyringError as exc:
        raise ConfigError(
            f"{who}: the OS keyring refused to read entry ({service}, {user}): {type(exc).__name__}; unlock the "
            "keyring, or use `key_env`/`secret_env`"
        ) from None
    if value is None:
        raise ConfigError(
            f"{who}: the OS keyring has no entry ({service}, {user}): store it with `keyring set {service} {user}`"
        )
    return _checked(who, f"keyring entry ({service}, {user})", value)


def _check_hyperliquid(who: str, key: str, secret: str, where: str) -> None:
    if _PRIVATE_KEY.fullmatch(key) and _WALLET.fullmatch(secret):
        raise ConfigError(
            f"{who}: the wallet address and the private key ({where}) look swapped: the key is the wallet address "
            "(0x + 40 hex digits), the secret the private key (0x + 64)"
        )
    if not _WALLET.fullmatch(key):
        raise ConfigError(
            f"{who}: the key ({where}) must be the wallet address, 0x and 40 hex digits; it holds {len(key)} "
            "characters of another form (not shown)"
        )
    if not _PRIVATE_KEY.fullmatch(secret):
        raise ConfigError(
            f"{who}: the secret ({where}) must be the wallet's private key, 0x and 64 hex digits; it holds "
            f"{len(secret)} characters of another form (not shown)"
        )


# ------------------------------------------------------------------------------------------------ redaction

#: ``signature=...`` query parameters (Binance signs the query string) and the venues' key/signature headers, in
#: the forms ccxt's errors and debug output show them: ``'X-MBX-APIKEY': 'abc'``, ``X-MBX-APIKEY: abc``,
#: ``"OK-ACCESS-KEY":"abc"``.
_SIGNATURE_PARAM = re.compile(r"(?i)(\bsignature=)[^&\s'\"<>]+")
_HEADERS = (
    "X-MBX-APIKEY",
    "X-BAPI-API-KEY",
    "X-BAPI-SIGN",
    "OK-ACCESS-KEY",
    "OK-ACCESS-SIGN",
    "OK-ACCESS-PASSPHRASE",
)
_HEADER_VALUE = re.compile(
    r"(?i)((?:" + "|".join(re.escape(h) for h in _HEADERS) + r")['\"]?\s*[:=]\s*['\"]?)([^'\"\s,;}&]+)"
)


def _encodings(value: str) -> set[str]:
    """``value`` and the forms a request or a log could carry it in: URL-encoded, base64 (both alphabets, with and
    without padding) and hex (both cases)."""
    raw = value.encode()
    out = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value), raw.hex(), raw.hex().upper()}
    for b64 in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        out |= {b64, b64.rstrip("=")}
    return {v for v in out if len(v) >= MIN_SECRET_LENGTH}


class Redactor:
    """Replaces every registered secret (and its URL/base64/hex forms), ``signature=`` query values and the
    venues' API-key and signature header values in text with ``***``. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None

    def register(self, value: str) -> None:
        """Scrub ``value`` (and its encodings) from all later text; values under MIN_SECRET_LENGTH are ignored."""
        if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
            return
        forms = _encodings(value)
        with self._lock:
            if forms <= self._values:
                return
            values = self._values | forms
            # longest first: a value that contains another is replaced whole
            pattern = re.compile("|".join(re.escape(v) for v in sorted(values, key=lambda v: (-len(v), v))))
            self._values, self._pattern = values, pattern

    def __len__(self) -> int:
        return len(self._values)

    def redact(self, text: str) -> str:
        """``text`` without any secret."""
        pattern = self._pattern  # one read: a concurrent register() swaps the whole pattern
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        text = _SIGNATURE_PARAM.sub(r"\g<1>" + REDACTED, text)
        return _HEADER_VALUE.sub(r"\g<1>" + REDACTED, text)

    def __repr__(self) -> str:
        return f"Redactor({len(self)} values)"


_REDACTOR = Redactor()


def redactor() -> Redactor:
    """The process-wide redactor (what the command line applies to everything it prints)."""
    return _REDACTOR


def register_secret(value: str) -> None:
    """Scrub ``value`` from everything the process prints from now on (thread-safe)."""
    _REDACTOR.register(value)


def redact(text: str) -> str:
    """``text`` with every registered secret, signature and API-key header value replaced by ``***``."""
    return _REDACTOR.redact(text)
