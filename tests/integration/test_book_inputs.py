"""`perphedge book` inputs attacked as a new user and as an adversary: every wrong input is ONE line
``perphedge: error: ...`` with exit 2 naming the flag or field and the value, nothing is written or replaced,
and nothing runs on an absurd value (the sim clock into the future, an origin in year 1)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import pytest

from perphedge.cli import main
from perphedge.config import parse_book
from perphedge.errors import ConfigError
from perphedge.files import load_yaml_text

PF = """name: btc half
prices: {BTC: 60000}
holdings:
  - {asset: BTC, value_usd: 100000}
hedge: {ratio: 0.5, instrument: "binance:BTCUSDT", leverage: 2, collateral: stable}
"""

BOOK = """book: 1
id: 3f9a1c2e
name: test
portfolio: pf.yaml
step: 1d
policy: {kind: drift_band, ratio: 0.5, band: 0.10}
policy_origin: 2026-01-01
feed: {kind: portfolio, source: binance}
accounts:
  - {name: paper, kind: paper, exchange: binance, balances: {USDT: 50000}}
limits:
  max_leverage: 3
  instruments: ["binance:BTCUSDT"]
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "pf.yaml").write_text(PF)
    (tmp_path / "b.book.yaml").write_text(BOOK)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def fails(capsys: pytest.CaptureFixture[str], argv: list[str], *expected: str, code: int = 2) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == code, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(lines) == 1 and lines[0].startswith("perphedge: error: "), err
    for e in expected:
        assert e in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------------- counts


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", "1e3", ""])
def test_watch_ticks_refused_in_one_line(folder: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    fails(capsys, ["book", "watch", "b.book.yaml", "--ticks", value], "invalid `--ticks`", repr(value))


@pytest.mark.parametrize("value", ["0", "-3", "x", "2.0"])
def test_journal_limit_refused_in_one_line(folder: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    fails(capsys, ["book", "journal", "b.book.yaml", "--limit", value], "invalid `--limit`", repr(value))


# ------------------------------------------------------------------------------------------- instants


@pytest.mark.parametrize("flag", ["--since", "--until"])
def test_journal_empty_instant_refused(folder: Path, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    fails(capsys, ["book", "journal", "b.book.yaml", flag, ""], f"invalid `{flag}`", "was ''")


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00", "1970-01-01T00:00Z", "2008-12-31", "9999-12-31T23:59", "2100-01-01"]
)
@pytest.mark.parametrize("cmd", ["journal", "watch"])
def test_instants_outside_bitcoin_era_refused(
    folder: Path, capsys: pytest.CaptureFixture[str], value: str, cmd: str
) -> None:
    argv = ["book", "journal", "b.book.yaml", "--since", value]
    if cmd == "watch":
        argv = ["book", "watch", "b.book.yaml", "--clock", "sim", "--start", value, "--ticks", "1"]
    flag = "--since" if cmd == "journal" else "--start"
    line = fails(capsys, argv, f"invalid `{flag}`", repr(value))
    assert "2009-01-03" in line or "ISO date" in line


@pytest.mark.parametrize("flag", ["--start", "--until"])
def test_sim_clock_refuses_the_future(folder: Path, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    future = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    argv = ["book", "watch", "b.book.yaml", "--clock", "sim", "--start", "2026-01-02", flag, future]
    if flag == "--start":
        argv = ["book", "watch", "b.book.yaml", "--clock", "sim", "--start", future]
    fails(capsys, argv, f"invalid `{flag}`", future, "in the future")
    assert not (Path.cwd() / "books").exists()


def test_sim_clock_without_until_stops_at_the_present(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT00:00Z")
    rc = main(
        ["book", "watch", "b.book.yaml", "--clock", "sim", "--start", start, "--every", "12h", "--format", "json"]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "reached the present" in err
    ticks = [json.loads(line) for line in out.splitlines()]
    assert 2 <= len(ticks) <= 4
    now = datetime.now(UTC)
    assert all(datetime.fromisoformat(t["as_of"].replace("Z", "+00:00")) <= now for t in ticks)
    rc = main(["book", "journal", "b.book.yaml", "--kind", "tick", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert rc == 0 and len(rows) == len(ticks)


# ------------------------------------------------------------------------------------------- --store


@pytest.mark.parametrize(
    "argv",
    [
        ["book", "status", "b.book.yaml", "--store", ""],
        ["book", "rebalance", "b.book.yaml", "--store", " "],
        ["book", "watch", "b.book.yaml", "--ticks", "1", "--store", ""],
        ["book", "replay", "b.book.yaml", "--from", "2024-01-01", "--to", "2024-02-01", "--store", ""],
        ["book", "init", "n.book.yaml", "--portfolio", "pf.yaml", "--paper", "binance", "--store", ""],
    ],
)
def test_empty_store_option_refused(folder: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    fails(capsys, argv, "invalid `--store`")
    assert not (folder / "n.book.yaml").exists()


# ------------------------------------------------------------------------------------------- book init

INIT = ["book", "init", "n.book.yaml", "--portfolio", "pf.yaml", "--paper", "binance"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("USDT=", "'' is not a number"),
        ("=5", "ASSET=AMOUNT"),
        ("USDT", "ASSET=AMOUNT"),
        ("USDT=abc", "'abc' is not a number"),
        ("USDT=-1", "must be > 0"),
        ("USDT=0", "must be > 0"),
        ("USDT=nan", "not a finite number"),
        ("USDT=inf", "not a finite number"),
        ("USDT=1e400", "not a finite number"),
        ("USDT=1e300", "must be <= 1e+15"),
        ("US DT=5", "asset code"),
        ("api_key=5", "asset code"),
        ("ÜSDT=5", "asset code"),
        ("USDT=5=6", "is not a number"),
    ],
)
def test_init_balance_refused_before_anything_is_written(
    folder: Path, capsys: pytest.CaptureFixture[str], value: str, expected: str
) -> None:
    fails(capsys, [*INIT, "--balance", value], "--balance", expected)
    assert not (folder / "n.book.yaml").exists()


def test_init_balance_twice_refused(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fails(capsys, [*INIT, "--balance", "USDT=5", "--balance", "usdt=6"], "USDT given twice")
    assert not (folder / "n.book.yaml").exists()


def test_init_balances_written_as_given(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*INIT, "--balance", "usdt=1234.5", "--balance", "BTC=0.5"]) == 0
    doc = load_yaml_text((folder / "n.book.yaml").read_text(), "n")
    assert doc["accounts"][0]["balances"] == {"USDT": 1234.5, "BTC": 0.5}


@pytest.mark.parametrize("book", ["pf.yaml", "./pf.yaml", "sub/../pf.yaml", "link.yaml"])
def test_init_never_overwrites_its_portfolio(folder: Path, capsys: pytest.CaptureFixture[str], book: str) -> None:
    (folder / "sub").mkdir()
    (folder / "link.yaml").symlink_to(folder / "pf.yaml")
    fails(capsys, ["book", "init", book, "--portfolio", "pf.yaml", "--paper", "binance", "--force"], "portfolio file")
    assert (folder / "pf.yaml").read_text() == PF


def test_init_force_replaces_a_book_but_no_other_file(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_file = "portfolio: pf.yaml\nstart: 2024-01-01\nend: 2024-02-01\n"
    (folder / "run.yaml").write_text(run_file)
    fails(capsys, ["book", "init", "run.yaml", "--portfolio", "pf.yaml", "--paper", "binance", "--force"], "--force")
    assert (folder / "run.yaml").read_text() == run_file
    (folder / "bin.yaml").write_bytes(b"\x00\xff\xfe")
    fails(capsys, ["book", "init", "bin.yaml", "--portfolio", "pf.yaml", "--paper", "binance", "--force"], "--force")
    assert (folder / "bin.yaml").read_bytes() == b"\x00\xff\xfe"
    assert main(["book", "init", "b.book.yaml", "--portfolio", "pf.yaml", "--paper", "binance", "--force"]) == 0
    assert load_yaml_text((folder / "b.book.yaml").read_text(), "b")["id"] != "3f9a1c2e"


@pytest.mark.parametrize("value", ["", "ccxt", "stores", " "])
def test_init_feed_refused(folder: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    fails(capsys, [*INIT, "--feed", value], "invalid `--feed`", repr(value))
    assert not (folder / "n.book.yaml").exists()


def test_init_feed_case_insensitive(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*INIT, "--feed", "Portfolio"]) == 0
    assert load_yaml_text((folder / "n.book.yaml").read_text(), "n")["feed"]["kind"] == "portfolio"


def test_init_stablecoins_only_refused(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "st.yaml").write_text(
        "holdings:\n  - {asset: USDT, quantity: 1000}\n  - {asset: usdc, quantity: 5}\n"
        "hedge: {instrument: 'binance:BTCUSDT'}\n"
    )
    fails(
        capsys,
        ["book", "init", "n.book.yaml", "--portfolio", "st.yaml", "--paper", "binance"],
        "only stablecoins",
        "USDC, USDT",
    )
    assert not (folder / "n.book.yaml").exists()


def test_init_default_feed_needs_the_hedge_price_too(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SOL priced but the hedge's BTC not: a `feed: portfolio` book could never open, so the default is live and
    `--feed portfolio` is refused naming BTC."""
    (folder / "sol.yaml").write_text(
        "prices: {SOL: 150}\nholdings:\n  - {asset: SOL, quantity: 10}\nhedge: {instrument: 'binance:BTCUSDT'}\n"
    )
    assert main(["book", "init", "n.book.yaml", "--portfolio", "sol.yaml", "--paper", "binance"]) == 0
    assert load_yaml_text((folder / "n.book.yaml").read_text(), "n")["feed"]["kind"] == "live"
    capsys.readouterr()
    argv = ["book", "init", "m.book.yaml", "--portfolio", "sol.yaml", "--paper", "binance", "--feed", "portfolio"]
    fails(capsys, argv, "invalid `--feed portfolio`", "BTC")
    assert not (folder / "m.book.yaml").exists()


@pytest.mark.parametrize("book_id", ["1234e567", "0123e456", "00000e12", "12345678", "00000000", "1e234567"])
def test_init_ids_that_look_like_numbers_read_back(
    folder: Path, capsys: pytest.CaptureFixture[str], book_id: str
) -> None:
    """init redraws an id a YAML reader would take for a number; a book that has one anyway (quoted, as an
    older init wrote it) still reads back as text."""
    with mock.patch("perphedge.usecases.book.secrets.token_hex", side_effect=[book_id, book_id, "abc12345"]) as draw:
        assert main(INIT) == 0, capsys.readouterr().err
    assert draw.call_count == 3
    capsys.readouterr()
    text = (folder / "n.book.yaml").read_text()
    assert load_yaml_text(text, "n")["id"] == "abc12345"
    (folder / "n.book.yaml").write_text(re.sub(r"(?m)^id: .*$", f"id: '{book_id}'", text))
    assert main(["book", "status", "n.book.yaml", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["book"]["id"] == book_id


def test_init_force_validates_before_replacing(folder: Path) -> None:
    from perphedge.usecases.book import init_book

    before = (folder / "b.book.yaml").read_text()
    with pytest.raises(ConfigError, match="asset code"):
        init_book(
            folder / "b.book.yaml",
            portfolio=folder / "pf.yaml",
            exchange="binance",
            balances={"US DT": 5.0},
            force=True,
        )
    assert (folder / "b.book.yaml").read_text() == before


# ------------------------------------------------------------------------------------------- replay --emit-run


@pytest.mark.parametrize("target", ["b.book.yaml", "./b.book.yaml", "pf.yaml"])
def test_emit_run_never_over_the_book_or_its_portfolio(
    folder: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    before = {p: (folder / p).read_text() for p in ("b.book.yaml", "pf.yaml")}
    argv = ["book", "replay", "b.book.yaml", "--from", "2024-01-01", "--to", "2024-02-01", "--emit-run", target]
    fails(capsys, argv, "invalid `--emit-run`", str(Path(target)))
    assert {p: (folder / p).read_text() for p in before} == before


# ------------------------------------------------------------------------------------------- book file


def _book(folder: Path, old: str, new: str) -> None:
    assert old in BOOK
    (folder / "b.book.yaml").write_text(BOOK.replace(old, new) if old else BOOK + new)


@pytest.mark.parametrize("day", ["0001-01-01", "1970-01-01", "2009-01-02", "2100-01-01"])
def test_policy_origin_outside_the_bitcoin_era_refused(
    folder: Path, capsys: pytest.CaptureFixture[str], day: str
) -> None:
    _book(folder, "policy_origin: 2026-01-01", f"policy_origin: {day}")
    fails(capsys, ["book", "status", "b.book.yaml"], "field `policy_origin`", day, "2009-01-03")


@pytest.mark.parametrize(
    ("text", "field", "hint"),
    [
        ("hedge: {ratio: 0.3}\n", "hedge.ratio", "policy.ratio"),
        ("hedge: {leverage: 2, funding_rate_8h: 0.001}\n", "hedge.funding_rate_8h", "funding.assumed_rate_8h"),
    ],
)
def test_hedge_fields_a_book_would_ignore_are_refused(
    folder: Path, capsys: pytest.CaptureFixture[str], text: str, field: str, hint: str
) -> None:
    _book(folder, "", text)
    fails(capsys, ["book", "status", "b.book.yaml"], f"field `{field}`", hint, "ignored")


@pytest.mark.parametrize("exchange", ["foonance", "binance_usdm"])
def test_account_on_an_unknown_exchange_refused(
    folder: Path, capsys: pytest.CaptureFixture[str], exchange: str
) -> None:
    _book(folder, "exchange: binance, balances", f"exchange: {exchange}, balances")
    fails(capsys, ["book", "status", "b.book.yaml"], "field `accounts[0].exchange`", exchange, "binance, bitmex")


def test_second_account_on_an_unknown_exchange_refused(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    acc = "  - {name: paper, kind: paper, exchange: binance, balances: {USDT: 50000}}\n"
    _book(folder, acc, acc + "  - {name: p2, kind: paper, exchange: nowhere, balances: {USDT: 5}}\n")
    fails(capsys, ["book", "status", "b.book.yaml"], "field `accounts[1].exchange`", "nowhere")


@pytest.mark.parametrize("ident", ["binance:FOOUSDT", "nowhere:BTCUSDT"])
def test_limits_instrument_outside_the_specs_refused(
    folder: Path, capsys: pytest.CaptureFixture[str], ident: str
) -> None:
    _book(folder, '["binance:BTCUSDT"]', f'["binance:BTCUSDT", "{ident}"]')
    fails(capsys, ["book", "status", "b.book.yaml"], "field `limits.instruments[1]`", ident)


@pytest.mark.parametrize("source", ["foonance", "okx"])
def test_live_feed_of_an_unsupported_source_is_one_line(
    folder: Path, capsys: pytest.CaptureFixture[str], source: str
) -> None:
    """This was an internal error (TypeError) for every live-feed book: the feed was built with wrong arguments."""
    _book(folder, "{kind: portfolio, source: binance}", f"{{kind: live, source: {source}}}")
    fails(capsys, ["book", "status", "b.book.yaml"], "invalid `feed.source`", source)


def test_parse_book_origin_bounds_direct() -> None:
    doc = load_yaml_text(BOOK, "b")
    assert parse_book(doc, "b").policy_origin is not None
    for day in ("2009-01-03", "2099-12-31"):
        assert str(parse_book({**doc, "policy_origin": day}, "b").policy_origin) == day
    with pytest.raises(ConfigError, match=r"field `policy_origin`: must be from 2009-01-03"):
        parse_book({**doc, "policy_origin": "2009-01-02"}, "b")


# ------------------------------------------------------------------------------------------- stores


@pytest.mark.parametrize("value", ["1000000001", "99999999999999999999999"])
def test_counts_beyond_a_billion_refused(folder: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    """`--limit 99999999999999999999999` was an internal error (OverflowError in SQLite)."""
    fails(capsys, ["book", "journal", "b.book.yaml", "--limit", value], "invalid `--limit`", "1,000,000,000")
    fails(capsys, ["book", "watch", "b.book.yaml", "--ticks", value], "invalid `--ticks`")


def test_readers_refuse_another_books_store(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A book whose `id` was edited (or whose `store:` names another book's store) must not show the other book's
    positions and journal as its own: status, journal and rebalance all refuse it (the writer always did)."""
    assert main(["book", "rebalance", "b.book.yaml", "--execute", "--yes", "--format", "json"]) == 0
    capsys.readouterr()
    from perphedge.usecases.book import book_store_path, load_book

    store = book_store_path(load_book(folder / "b.book.yaml"))
    other = BOOK.replace("id: 3f9a1c2e", "id: 3f9a1c2f") + f"store: {store}\n"
    (folder / "o.book.yaml").write_text(other)
    for argv in (
        ["book", "status", "o.book.yaml"],
        ["book", "journal", "o.book.yaml"],
        ["book", "rebalance", "o.book.yaml"],
        ["book", "rebalance", "o.book.yaml", "--execute", "--yes"],
    ):
        fails(capsys, argv, "belongs to book 3f9a1c2e, not 3f9a1c2f")


def test_execute_while_watch_runs_is_one_line(folder: Path) -> None:
    """`rebalance --execute` (and a second watch) while `book watch` holds the book's store: one line, exit 2;
    status and journal still read."""
    import os
    import signal
    import subprocess
    import sys

    exe = str(Path(sys.executable).parent / "perphedge")
    env = dict(os.environ)
    watch = subprocess.Popen(
        [exe, "book", "watch", "b.book.yaml", "--every", "1h", "--format", "json"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert watch.stdout is not None
        first = watch.stdout.readline()  # the first tick is done: the lock is held
        assert json.loads(first)["as_of"]
        for argv in (
            ["book", "rebalance", "b.book.yaml", "--execute", "--yes"],
            ["book", "watch", "b.book.yaml", "--ticks", "1"],
        ):
            r = subprocess.run(
                [exe, *argv], cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False
            )
            lines = r.stderr.strip().splitlines()
            assert r.returncode == 4, r.stderr  # busy: another writer holds the store
            assert len(lines) == 1 and lines[0].startswith("perphedge: error: "), r.stderr
            assert "being written by" in lines[0] and str(watch.pid) in lines[0]
        for argv in (["book", "status", "b.book.yaml", "--format", "json"], ["book", "journal", "b.book.yaml"]):
            r = subprocess.run(
                [exe, *argv], cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False
            )
            assert r.returncode == 0, r.stderr
    finally:
        watch.send_signal(signal.SIGTERM)
        try:
            watch.wait(timeout=30)
        except subprocess.TimeoutExpired:
            watch.kill()
            watch.wait()


# ------------------------------------------------------------------------------------------- replay --out


def test_replay_never_replaces_the_books_store_or_a_foreign_file(
    folder: Path, capsys: pytest.CaptureFixture[str], sample_store_path: Path
) -> None:
    """`replay --out DIR` replaces DIR/journal.sqlite: it deleted the live book's store when the book kept it there
    (`store: journal.sqlite`), and any other book's store or file of that name."""
    (folder / "live.book.yaml").write_text(BOOK + "store: journal.sqlite\n")
    assert main(["book", "rebalance", "live.book.yaml", "--execute", "--yes", "--format", "json"]) == 0
    capsys.readouterr()
    store = folder / "journal.sqlite"
    before = store.read_bytes()
    replay = ["--from", "2024-01-01", "--to", "2024-02-01", "--store", str(sample_store_path), "--format", "json"]
    fails(capsys, ["book", "replay", "live.book.yaml", *replay, "--out", "."], "invalid `--out`", "own store")
    assert store.read_bytes() == before
    # another book (b.book.yaml, the same positions' id differs) must not replace it either
    other = BOOK.replace("id: 3f9a1c2e", "id: 0badc0de")
    (folder / "other.book.yaml").write_text(other)
    fails(capsys, ["book", "replay", "other.book.yaml", *replay, "--out", "."], "invalid `--out`", "book 3f9a1c2e")
    assert store.read_bytes() == before
    (folder / "notes").mkdir()
    (folder / "notes" / "journal.sqlite").write_text("my notes")
    fails(capsys, ["book", "replay", "b.book.yaml", *replay, "--out", "notes"], "not a replay journal")
    assert (folder / "notes" / "journal.sqlite").read_text() == "my notes"
    # a replay into its own earlier output folder still works
    for _ in range(2):
        assert main(["book", "replay", "b.book.yaml", *replay, "--out", "rp"]) == 0, capsys.readouterr().err
        assert json.loads(capsys.readouterr().out)["bars"] > 0


# ------------------------------------------------------------------------------------------- portfolio


def test_portfolio_pointing_at_a_book_file(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _book(folder, "portfolio: pf.yaml", "portfolio: b.book.yaml")
    fails(capsys, ["book", "status", "b.book.yaml"], "field `portfolio`", "is a book file")
    (folder / "c.book.yaml").write_text(BOOK)
    fails(
        capsys,
        ["book", "init", "n.book.yaml", "--portfolio", "c.book.yaml", "--paper", "binance"],
        "invalid `--portfolio`",
        "is a book file",
    )
    assert not (folder / "n.book.yaml").exists()


def test_no_hedge_instrument_anywhere_names_the_book(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "nh.yaml").write_text("prices: {BTC: 60000}\nholdings:\n  - {asset: BTC, quantity: 1}\n")
    _book(folder, "portfolio: pf.yaml", "portfolio: nh.yaml")
    fails(capsys, ["book", "status", "b.book.yaml"], "b.book.yaml: field `hedge.instrument`: is required")
    # given in the book's own `hedge:`, it is enough
    (folder / "b.book.yaml").write_text(
        BOOK.replace("portfolio: pf.yaml", "portfolio: nh.yaml") + "hedge: {instrument: binance:BTCUSDT}\n"
    )
    assert main(["book", "status", "b.book.yaml", "--format", "json"]) == 0
    capsys.readouterr()
    argv = ["book", "init", "n.book.yaml", "--portfolio", "nh.yaml", "--paper", "binance"]
    fails(capsys, argv, "invalid `--portfolio`", "nh.yaml has no `hedge.instrument`")
    assert not (folder / "n.book.yaml").exists()


@pytest.mark.parametrize("given", ["m.duckdb", "sub/m.duckdb", "./sub/../m.duckdb"])
def test_init_store_option_is_relative_to_where_it_is_typed(
    folder: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    """`book init sub/x.book.yaml --store m.duckdb` wrote `store: m.duckdb`, which the book reads relative to its
    own folder (sub/m.duckdb): the book then looked for another file than the one given."""
    from perphedge.usecases.book import _market_store_path, load_book

    (folder / "sub").mkdir()
    target = folder / given
    target.write_bytes(b"")
    argv = ["book", "init", "sub/x.book.yaml", "--portfolio", "pf.yaml", "--paper", "binance", "--store", given]
    assert main(argv) == 0, capsys.readouterr().err
    assert _market_store_path(load_book(folder / "sub" / "x.book.yaml"), None).resolve() == target.resolve()
