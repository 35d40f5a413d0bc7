"""Exchange accounts in books (issue 11 item 1): `book init --exchange` writes a book that loads back and holds no
secret; a hedge leg is placed on the account whose venue and kind match its instrument, and a mismatch is refused
naming both; paper and exchange accounts mix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from perphedge.config import ExchangeAccountModel
from perphedge.errors import ConfigError
from perphedge.usecases.book import init_book, load_book, open_session
from tests.conftest import REPO

INVERSE = REPO / "examples" / "altcoins.yaml"  # hedges with binance:BTCUSD_PERP (inverse)


def live(**over: Any) -> ExchangeAccountModel:
    doc = {"name": "main", "kind": "exchange", "exchange": "binance_coinm", "key_env": "BN_KEY", "secret_env": "BN_S"}
    return ExchangeAccountModel.model_validate(doc | over)


def _init(tmp_path: Path, acc: ExchangeAccountModel, name: str = "b.yaml") -> Path:
    out = tmp_path / name
    init_book(out, portfolio=INVERSE, live=acc)
    return out


def test_init_writes_a_live_book_that_loads_back(tmp_path: Path) -> None:
    book = _init(tmp_path, live(read_only=False, sandbox=True))
    text = book.read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    (acc,) = doc["accounts"]
    assert acc == {
        "name": "main",
        "kind": "exchange",
        "exchange": "binance_coinm",
        "key_env": "BN_KEY",
        "secret_env": "BN_S",
        "sandbox": True,
        "read_only": False,
        "margin_mode": "isolated",
    }
    assert doc["feed"]["kind"] == "live" and doc["feed"]["source"] == "binance"
    assert doc["limits"]["instruments"] == ["binance:BTCUSD_PERP"]
    lb = load_book(book)
    assert isinstance(lb.book.accounts[0], ExchangeAccountModel)


def test_init_with_a_keyring(tmp_path: Path) -> None:
    acc = live(key_env=None, secret_env=None, keyring={"service": "ph-bn"})
    doc = yaml.safe_load(_init(tmp_path, acc).read_text(encoding="utf-8"))
    assert doc["accounts"][0]["keyring"] == {"service": "ph-bn"} and "key_env" not in doc["accounts"][0]


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"exchange": "binance_usdm"}, "binance:BTCUSD_PERP (inverse)"),
        ({"exchange": "hyperliquid"}, "an account on `hyperliquid`"),
        ({"exchange": "bybit"}, "binance:BTCUSD_PERP"),
        ({"exchange": "okx", "password_env": "P"}, "binance:BTCUSD_PERP"),
    ],
)
def test_init_refuses_a_venue_that_cannot_hold_the_hedge(tmp_path: Path, over: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match="invalid `--exchange`") as exc:
        init_book(tmp_path / "x.yaml", portfolio=INVERSE, live=live(**over))
    assert words in str(exc.value)
    assert not (tmp_path / "x.yaml").exists()


def test_init_refuses_paper_and_live_together_or_neither(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        init_book(tmp_path / "x.yaml", portfolio=INVERSE, exchange="binance", live=live())
    with pytest.raises(ConfigError, match="--paper EXCHANGE"):
        init_book(tmp_path / "x.yaml", portfolio=INVERSE)
    with pytest.raises(ConfigError, match="--balance"):
        init_book(tmp_path / "x.yaml", portfolio=INVERSE, live=live(), balances={"USDT": 100})


def _edit(book: Path, accounts: list[dict[str, Any]]) -> Path:
    doc = yaml.safe_load(book.read_text(encoding="utf-8"))
    doc["accounts"] = accounts
    doc["feed"] = {"kind": "portfolio", "source": "binance"}
    doc["id"] = str(doc["id"])
    book.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return book


LIVE_DOC = {"name": "main", "kind": "exchange", "key_env": "BN_KEY", "secret_env": "BN_S"}
PAPER_DOC = {"name": "paper", "kind": "paper", "exchange": "binance", "balances": {"USDT": 20000}}


@pytest.mark.parametrize("exchange", ["binance_usdm", "bybit"])
def test_a_leg_on_a_mismatched_exchange_account_is_refused_naming_both(tmp_path: Path, exchange: str) -> None:
    book = _edit(_init(tmp_path, live()), [LIVE_DOC | {"exchange": exchange}])
    lb = load_book(book)
    with pytest.raises(ConfigError) as exc:
        open_session(lb, writer=False)
    text = str(exc.value)
    if exchange == "binance_usdm":
        assert "binance:BTCUSD_PERP (inverse)" in text and "`exchange: binance_usdm`" in text and "linear" in text
    else:
        assert "no account is on `binance`" in text


def test_a_leg_held_by_a_paper_and_an_exchange_account_is_ambiguous(tmp_path: Path) -> None:
    book = _edit(_init(tmp_path, live()), [PAPER_DOC, LIVE_DOC | {"exchange": "binance_coinm"}])
    with pytest.raises(ConfigError, match="accounts paper, main are all on `binance`"):
        open_session(load_book(book), writer=False)


def test_mixed_books_place_each_leg_on_its_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the leg (binance inverse) goes to the paper account; the bybit exchange account holds nothing
    book = _edit(_init(tmp_path, live()), [PAPER_DOC, LIVE_DOC | {"exchange": "bybit"}])
    lb = load_book(book)
    assert [a.kind for a in lb.book.accounts] == ["paper", "exchange"]
    monkeypatch.delenv("BN_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"`BN_KEY` .* is not set"):
        open_session(lb, writer=False)  # the exchange account's credentials are read when it is opened
    monkeypatch.setenv("BN_KEY", "PHSENTINELKEY0123456789")
    monkeypatch.setenv("BN_S", "PHSENTINELSECRET9876543210")
    from perphedge.exchange.fake import FakeExchange
    from perphedge.usecases.book import close_session
    from tests.conftest import sample_dir

    with FakeExchange(
        sample_dir(), api_key="PHSENTINELKEY0123456789", api_secret="PHSENTINELSECRET9876543210", balances={"USDT": 1e4}
    ) as fx:
        monkeypatch.setenv("PERPHEDGE_EXCHANGE_URL", fx.url)
        s = open_session(lb, writer=False)  # the live account opens through the (fake) venue
        try:
            assert {leg.inst.id: leg.account for leg in s.legs} == {"binance:BTCUSD_PERP": "paper"}
            assert [a.kind for a in s.accounts.values()] == ["paper", "exchange"]
            acc = next(a for a in s.accounts.values() if a.kind == "exchange")
            assert acc.venue == "bybit" and acc.positions() == []  # it holds no leg of this book
        finally:
            close_session(s)


def test_a_live_account_matching_the_leg_is_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from perphedge.usecases import book as B

    book = _edit(_init(tmp_path, live()), [PAPER_DOC | {"exchange": "bybit"}, LIVE_DOC | {"exchange": "binance_coinm"}])
    lb = load_book(book)
    seen: dict[str, str] = {}

    def fake_accounts(lb: Any, legs: list[Any], store: Any, *, overdraft_all: bool) -> dict[str, Any]:
        seen.update({leg.inst.id: leg.account for leg in legs})
        raise ConfigError("stop")

    monkeypatch.setattr(B, "_make_accounts", fake_accounts)
    with pytest.raises(ConfigError, match="stop"):
        open_session(lb, writer=False)
    assert seen == {"binance:BTCUSD_PERP": "main"}
