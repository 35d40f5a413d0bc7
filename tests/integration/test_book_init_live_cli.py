"""`perphedge book init --exchange` through the CLI (issue 11 item 1): impossible flag combinations are one line
naming the flag; the written book names variables, never values, and loads back."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from perphedge.cli import main
from perphedge.usecases.book import load_book
from tests.conftest import REPO, run_cli

PORTFOLIO = str(REPO / "examples" / "altcoins.yaml")  # hedges with binance:BTCUSD_PERP (inverse)
KEY, SECRET = "PHSENTINELKEY0123456789", "PHSENTINELSECRET9876543210"


def _refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, *flags: str) -> str:
    book = tmp_path / "x.book.yaml"
    code = main(["book", "init", str(book), "--portfolio", PORTFOLIO, *flags])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perphedge: error: "), err
    assert not book.exists()
    return lines[0]


CREDS = ["--key-env", "BN_KEY", "--secret-env", "BN_SECRET"]


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--paper", "binance", "--trading"], "invalid `--trading`: it is for a live account"),
        (["--paper", "binance", "--sandbox"], "invalid `--sandbox`"),
        (["--paper", "binance", "--key-env", "BN_KEY"], "invalid `--key-env`"),
        (["--paper", "binance", "--keyring", "svc"], "invalid `--keyring`"),
        (["--paper", "binance", "--password-env", "P"], "invalid `--password-env`"),
        (["--trading"], "missing account: give --paper EXCHANGE"),
        ([], "missing account"),
        (["--paper", "binance", "--exchange", "binance_coinm", *CREDS], "not both"),
        (["--exchange", "binance_coinm"], "invalid `--key-env`: is required"),
        (
            ["--exchange", "binance_coinm", "--key-env", "BN_KEY"],
            "invalid `--secret-env`: is required with `--key-env`",
        ),
        (["--exchange", "binance_coinm", "--secret-env", "S"], "invalid `--key-env`: is required with `--secret-env`"),
        (["--exchange", "binance_coinm", *CREDS, "--keyring", "svc"], "ONE source"),
        (["--exchange", "binance_coinm", *CREDS, "--password-env", "P"], "invalid `--password-env`: applies to okx"),
        (["--exchange", "okx", *CREDS], "invalid `--password-env`: is required for okx"),
        (["--exchange", "binance", *CREDS], "invalid `--exchange`: must be one of binance_usdm, binance_coinm"),
        (["--exchange", "kraken", *CREDS], "hyperliquid"),
        (["--exchange", "binance_usdm", *CREDS], "binance:BTCUSD_PERP (inverse)"),
        (["--exchange", "hyperliquid", *CREDS], "an account on `hyperliquid`"),
        (["--exchange", "binance_coinm", *CREDS, "--balance", "USDT=100"], "invalid `--balance`"),
        (["--exchange", "binance_coinm", "--key-env", "1BAD", "--secret-env", "S"], "NAME of an environment"),
        (["--exchange", "binance_coinm", "--keyring", "bad service"], "invalid `--keyring`"),
        (["--exchange", "binance_coinm", *CREDS[:2], "--secret-env", "BN_KEY"], "another variable"),
    ],
)
def test_impossible_combinations(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flags: list[str], words: str
) -> None:
    assert words in _refused(capsys, tmp_path, *flags)


@pytest.mark.parametrize("value", [KEY, SECRET, "0x" + "ab" * 32])
def test_a_key_given_as_a_variable_name_is_refused_unseen(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, value: str
) -> None:
    line = _refused(capsys, tmp_path, "--exchange", "binance_coinm", "--key-env", value, "--secret-env", "S")
    assert "not the key itself" in line and value not in line and value[:10] not in line


def test_the_written_book_names_variables_only(tmp_path: Path) -> None:
    book = tmp_path / "live.book.yaml"
    env = {"BN_KEY": KEY, "BN_SECRET": SECRET}
    r = run_cli("book", "init", str(book), "--portfolio", PORTFOLIO, "--exchange", "binance_coinm", *CREDS,
                "--sandbox", env=env, home=tmp_path / "home")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "read-only" in r.stdout and "(sandbox)" in r.stdout and "$BN_KEY, $BN_SECRET" in r.stdout
    raw = book.read_bytes()
    assert KEY.encode() not in raw and SECRET.encode() not in raw
    (acc,) = yaml.safe_load(raw)["accounts"]
    assert (acc["key_env"], acc["secret_env"], acc["read_only"], acc["sandbox"]) == ("BN_KEY", "BN_SECRET", True, True)
    assert load_book(book).book.accounts[0].kind == "exchange"


def test_trading_writes_read_only_false(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    book = tmp_path / "t.book.yaml"
    assert main(["book", "init", str(book), "--portfolio", PORTFOLIO, "--exchange", "binance_coinm", *CREDS,
                 "--trading"]) == 0  # fmt: skip
    assert "TRADING (read_only: false)" in capsys.readouterr().out
    assert yaml.safe_load(book.read_text(encoding="utf-8"))["accounts"][0]["read_only"] is False


def test_bybit_and_okx_books(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pf = tmp_path / "pf.yaml"
    doc = yaml.safe_load(Path(PORTFOLIO).read_text(encoding="utf-8"))
    doc["hedge"]["instrument"] = "bybit:BTCUSD"
    pf.write_text(yaml.safe_dump(doc), encoding="utf-8")
    book = tmp_path / "by.book.yaml"
    assert main(["book", "init", str(book), "--portfolio", str(pf), "--exchange", "bybit", *CREDS]) == 0
    acc = yaml.safe_load(book.read_text(encoding="utf-8"))["accounts"][0]
    assert acc["exchange"] == "bybit" and acc["bybit_account"] == "unified"
    doc["hedge"]["instrument"] = "okx:BTC-USD-SWAP"
    pf.write_text(yaml.safe_dump(doc), encoding="utf-8")
    book = tmp_path / "okx.book.yaml"
    code = main(["book", "init", str(book), "--portfolio", str(pf), "--exchange", "okx", *CREDS,
                 "--password-env", "OKX_PASS"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    acc = yaml.safe_load(book.read_text(encoding="utf-8"))["accounts"][0]
    assert acc["password_env"] == "OKX_PASS" and "bybit_account" not in acc
