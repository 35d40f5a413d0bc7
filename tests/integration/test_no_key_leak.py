"""Keys never leak (issue 11, item 6): with sentinel key and secret values in the environment (and in the OS
keyring), every `perphedge book` command on a book with a live exchange account, through the real CLI, including
its failures, ``--debug`` tracebacks and bad configurations, leaves neither value, nor its URL-encoded, base64 or
hex forms, in stdout, stderr, or any byte of any file under the book's folder, the output folder and
``PERPHEDGE_HOME`` (the book stores).

The live paths run for real: the venues' API is the fake exchange (started with the sentinel key and secret, so
every request is signed with them and verified), so status reads balances and positions, and the trading book sends
orders, with the values in every signed request."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from perphedge.exchange.fake import FakeExchange
from tests.conftest import REPO, run_cli, sample_dir

KEY = "PHSENTINELKEY0123456789"
SECRET = "PHSENTINELSECRET9876543210"
PASSWORD = "PHSENTINELPASS555"
PORTFOLIO = REPO / "examples" / "altcoins.yaml"


def forms(value: str) -> list[str]:
    """A value as it could leak: itself, URL-encoded, base64 (both alphabets, padded or not), hex (both cases)."""
    raw = value.encode()
    b64 = base64.b64encode(raw).decode()
    return sorted(
        {
            value,
            urllib.parse.quote(value, safe=""),
            b64,
            b64.rstrip("="),
            base64.urlsafe_b64encode(raw).decode().rstrip("="),
            raw.hex(),
            raw.hex().upper(),
        }
    )


SENTINELS = [f for v in (KEY, SECRET, PASSWORD) for f in forms(v)]


def leaks(data: str | bytes) -> list[str]:
    """The sentinel forms found in ``data`` (text, or bytes read as UTF-8, UTF-16 and Latin-1)."""
    if isinstance(data, str):
        texts = [data]
    else:
        texts = [data.decode("latin-1"), data.decode("utf-16-le", errors="ignore")]
    return [f for f in SENTINELS if any(f in t for t in texts)]


def test_the_detector_finds_every_form() -> None:
    for value in (KEY, SECRET):
        for form in forms(value):
            assert leaks(f"... {form} ...") and leaks(f"<{form}>".encode())
        assert leaks(value.encode("utf-16-le"))
    assert not leaks("PHSENTINEL alone is not a value")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with FakeExchange(
        sample_dir(), api_key=KEY, api_secret=SECRET, password=PASSWORD, balances={"USDT": 1e5, "BTC": 2.0}
    ) as fx:
        fx.marks.update({"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0})
        yield _world(tmp_path, fx.url)


def _world(tmp_path: Path, url: str) -> dict[str, Any]:
    home = tmp_path / "home"
    books = tmp_path / "books"
    out = tmp_path / "out"
    for d in (home, books, out):
        d.mkdir()
    shutil.copy(PORTFOLIO, books / "altcoins.yaml")
    return {"home": home, "books": books, "out": out, "root": tmp_path, "url": url}


def env_with(world: dict[str, Any], **extra: str) -> dict[str, str]:
    return {
        "PERPHEDGE_EXCHANGE_URL": world["url"],
        "PERPHEDGE_LOOKUP_SETTLE_S": "0.1",
        "BN_KEY": KEY,
        "BN_SECRET": SECRET,
        "OKX_PASS": PASSWORD,
        "PYTHON_KEYRING_BACKEND": "tests.keyring_backend.FileKeyring",
        "PERPHEDGE_TEST_KEYRING_FILE": str(world["root"] / "keyring.json"),
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        **extra,
    }


class Runs:
    """Every command run, for the final scan."""

    def __init__(self, world: dict[str, Any]) -> None:
        self.world = world
        self.results: list[tuple[tuple[str, ...], subprocess.CompletedProcess[str]]] = []

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, ok: tuple[int, ...] = (0, 2, 3)
    ) -> subprocess.CompletedProcess[str]:
        r = run_cli(*args, home=self.world["home"], env=env or env_with(self.world), cwd=self.world["root"])
        self.results.append((args, r))
        assert r.returncode in ok, (args, r.returncode, r.stderr[-2000:])
        if r.returncode == 2:  # a refusal is one clean line, not a traceback (unless --debug asked for one)
            if "--debug" not in args:
                assert "Traceback" not in r.stderr, r.stderr
            assert r.stderr.rstrip().splitlines()[-1].startswith("perphedge: error: "), r.stderr
        return r

    def scan(self, poisoned: Path | None = None) -> None:
        """No sentinel in any output or file (``poisoned``: the one file the test itself wrote a secret into)."""
        found: list[str] = []
        for args, r in self.results:
            for name, text in (("stdout", r.stdout), ("stderr", r.stderr)):
                hit = leaks(text)
                if hit:
                    found.append(f"{' '.join(args)}: {name}: {hit}")
        for path in sorted(self.world["root"].rglob("*")):
            if path.is_file() and path.name != "keyring.json" and path != poisoned:
                hit = leaks(path.read_bytes())
                if hit:
                    found.append(f"{path}: {hit}")
        assert not found, "secrets leaked:\n" + "\n".join(found)


def book_commands(run: Runs, book: Path, out: Path) -> None:
    """Every `perphedge book` command on ``book``: reads, dry runs, the execute path, watch, journal, replay, with
    and without --debug."""
    b = str(book)
    r = run("book", "status", b, "--format", "json", ok=(0,))  # the venue was read (signed requests)
    assert json.loads(r.stdout)["accounts"][0]["kind"] == "exchange"
    run("book", "status", b)
    run("book", "status", b, "--format", "json")
    run("--debug", "book", "status", b)
    run("book", "rebalance", b)
    run("book", "rebalance", b, "--format", "json")
    run("--debug", "book", "rebalance", b, "--format", "json")
    run("book", "rebalance", b, "--execute", "--yes", ok=(0, 1, 2, 3))  # a trading refusal may exit 1 (not sent)
    run("book", "watch", b, "--ticks", "1", "--every", "1s")
    run("book", "watch", b, "--ticks", "1", "--every", "1s", "--format", "json")
    run("book", "journal", b)
    run("book", "journal", b, "--format", "json")
    run("book", "journal", b, "--format", "csv")
    run("--debug", "book", "journal", b, "--format", "json")
    run("book", "replay", b, "--from", "2024-01-01", "--to", "2024-02-01", "--out", str(out / "replay"))
    run("--debug", "book", "replay", b, "--from", "2024-01-01", "--to", "2024-02-01", "--out", str(out / "r2"))


def test_no_command_leaks_the_environment_keys(world: dict[str, Any]) -> None:
    run = Runs(world)
    book = world["books"] / "live.book.yaml"
    r = run(
        "book", "init", str(book), "--portfolio", str(world["books"] / "altcoins.yaml"),
        "--exchange", "binance_coinm", "--key-env", "BN_KEY", "--secret-env", "BN_SECRET", ok=(0,),
    )  # fmt: skip
    assert "live account on binance_coinm" in r.stdout and "$BN_KEY" in r.stdout
    doc = yaml.safe_load(book.read_text(encoding="utf-8"))
    assert doc["accounts"][0]["key_env"] == "BN_KEY" and doc["accounts"][0]["read_only"] is True

    # the values are read: without the secret's variable the command says which variable is missing
    missing = env_with(world)
    del missing["BN_SECRET"]
    r = run("book", "status", str(book), env=missing, ok=(2,))
    assert "`BN_SECRET` (`secret_env`) is not set" in r.stderr
    r = run("--debug", "book", "status", str(book), env=missing, ok=(2,))
    assert "Traceback" in r.stderr

    book_commands(run, book, world["out"])

    # a trading book, a sandbox book, and an okx book with a passphrase
    trading = world["books"] / "trading.book.yaml"
    run(
        "book", "init", str(trading), "--portfolio", str(world["books"] / "altcoins.yaml"), "--exchange",
        "binance_coinm", "--key-env", "BN_KEY", "--secret-env", "BN_SECRET", "--sandbox", "--trading", ok=(0,),
    )  # fmt: skip
    r = run("book", "rebalance", str(trading), "--execute", "--yes", ok=(0,))
    assert "filled" in r.stdout  # a signed order really went to the (fake) venue
    run("--debug", "book", "rebalance", str(trading), "--execute", "--yes", ok=(0,))
    r = run("book", "status", str(trading), "--format", "json", ok=(0,))
    assert json.loads(r.stdout)["accounts"][0]["positions"][0]["side"] == "short"
    run("book", "halt", str(trading), ok=(0,))
    run("book", "resume", str(trading), ok=(0,))
    okx = world["books"] / "okx.book.yaml"
    okx.write_text(
        book.read_text(encoding="utf-8").replace(
            "exchange: binance_coinm, key_env: BN_KEY", "exchange: okx, password_env: OKX_PASS, key_env: BN_KEY"
        ),
        encoding="utf-8",
    )
    assert "okx" in okx.read_text(encoding="utf-8")
    run("book", "status", str(okx))  # okx lists no inverse BTCUSD_PERP of binance: refused, cleanly
    run.scan()


def test_no_command_leaks_keyring_credentials(world: dict[str, Any]) -> None:
    (world["root"] / "keyring.json").write_text(json.dumps({"ph-bn": {"key": KEY, "secret": SECRET}}), encoding="utf-8")
    run = Runs(world)
    book = world["books"] / "kr.book.yaml"
    run(
        "book", "init", str(book), "--portfolio", str(world["books"] / "altcoins.yaml"),
        "--exchange", "binance_coinm", "--keyring", "ph-bn", ok=(0,),
    )  # fmt: skip
    assert "keyring" in book.read_text(encoding="utf-8")
    # the keyring is read: an empty keyring names the missing entry
    empty = env_with(world, PERPHEDGE_TEST_KEYRING_FILE=str(world["root"] / "none.json"))
    r = run("book", "status", str(book), env=empty, ok=(2,))
    assert "no entry (ph-bn, key)" in r.stderr
    book_commands(run, book, world["out"])
    run.scan()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("secret", SECRET),
        ("api_key", KEY),
        ("password", PASSWORD),
        ("key_env", KEY),  # a key pasted where the variable's NAME belongs
        ("secret_env", SECRET),
        ("secret_env", "0x" + SECRET.encode().hex()),
    ],
)
def test_bad_configurations_do_not_echo_secrets(world: dict[str, Any], field: str, value: str) -> None:
    run = Runs(world)
    book = world["books"] / "bad.book.yaml"
    run(
        "book", "init", str(book), "--portfolio", str(world["books"] / "altcoins.yaml"),
        "--exchange", "binance_coinm", "--key-env", "BN_KEY", "--secret-env", "BN_SECRET", ok=(0,),
    )  # fmt: skip
    doc = yaml.safe_load(book.read_text(encoding="utf-8"))
    doc["accounts"][0][field] = value
    book.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    for args in (("book", "status", str(book)), ("--debug", "book", "status", str(book))):
        r = run(*args, ok=(2,))
        assert f"accounts[0].{field}" in r.stderr
    run("book", "rebalance", str(book), "--format", "json", ok=(2,))
    # and the same values given on the command line
    run(
        "book", "init", str(world["books"] / "cli.book.yaml"), "--portfolio", str(world["books"] / "altcoins.yaml"),
        "--exchange", "binance_coinm", "--key-env", value, "--secret-env", "BN_SECRET", ok=(2,),
    )  # fmt: skip
    run.scan(poisoned=book)
