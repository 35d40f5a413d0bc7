"""A hostile user against the live-account surface (issue 11): wrong book files, environment variables, flags and
fake-exchange arguments are refused with one line naming what is wrong (exit 2), never a traceback, a hang, an
echoed secret or an order sent. Each test here pins a fix or a class of inputs that was tried."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from perphedge.cli import main
from perphedge.exchange.fake import FakeExchange
from perphedge.exchange.fake_cli import main as fake_main
from tests.conftest import REPO, sample_dir

KEY = "PHADVKEY0123456789abcdefABCDEF0123456789abcdefABCDEF0123456789ab"
SECRET = "PHADVSECRET9876543210fedcbaFEDCBA9876543210fedcbaFEDCBA98765432"
BASE: dict[str, Any] = {
    "book": 1,
    "id": "adf00d11",
    "name": "adversarial",
    "portfolio": str(REPO / "examples" / "btc-50pct.yaml"),
    "step": "1d",
    "policy": {"kind": "drift_band", "ratio": 0.5, "band": 0.1},
    "policy_origin": "2026-11-01",
    "feed": {"kind": "portfolio", "source": "binance"},
    "accounts": [
        {
            "name": "main",
            "kind": "exchange",
            "exchange": "binance_usdm",
            "key_env": "PH_ADV_KEY",
            "secret_env": "PH_ADV_SECRET",
            "read_only": False,
        }
    ],
    "limits": {"max_leverage": 3.0, "instruments": ["binance:BTCUSDT"]},
}


@pytest.fixture
def fx(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeExchange]:
    with FakeExchange(sample_dir(), api_key=KEY, api_secret=SECRET, balances={"USDT": 100_000.0}) as fake:
        fake.marks["BTC"] = 60_000.0
        for name, value in {
            "PERPHEDGE_HOME": str(tmp_path / "home"),
            "PERPHEDGE_EXCHANGE_URL": fake.url,
            "PH_ADV_KEY": KEY,
            "PH_ADV_SECRET": SECRET,
            "PERPHEDGE_LOOKUP_SETTLE_S": "0.1",
            "PERPHEDGE_RATE_LIMIT_MS": "1",
        }.items():
            monkeypatch.setenv(name, value)
        yield fake


def _book(tmp: Path, text: str | None = None, **account: Any) -> Path:
    doc = copy.deepcopy(BASE)
    doc["accounts"][0].update(account)
    path = tmp / "adv.book.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perphedge: error: "), err
    assert "Traceback" not in out + err and KEY not in out + err and SECRET not in out + err
    return lines[0]


def _orders(fx: FakeExchange) -> list[Any]:
    return list(fx.ledgers["binance_usdm"].orders)


# ------------------------------------------------------------------------------------------- book file (YAML)


@pytest.mark.parametrize("tail", ["x: &a [*a]\n", "x: &a {y: *a}\n", "x: &a {y: [1, {z: *a}]}\n"])
def test_a_recursive_alias_is_one_line_not_an_internal_error(
    fx: FakeExchange, tmp_path: Path, capsys: pytest.CaptureFixture[str], tail: str
) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False) + tail
    line = _refused(capsys, "book", "status", str(_book(tmp_path, text)))
    assert "an alias refers to a node that contains it" in line and "line " in line


def test_shared_aliases_without_a_cycle_still_load(tmp_path: Path) -> None:
    from perphedge.files import load_yaml_text

    doc = load_yaml_text("a: &a [1, 2]\nb: [*a, *a]\nc: {d: *a}\n", "x.yaml")
    assert doc["b"] == [[1, 2], [1, 2]] and doc["c"]["d"] == [1, 2]


@pytest.mark.parametrize(
    ("field", "words"),
    [("read_only", "duplicate key `read_only`"), ("exchange", "duplicate key `exchange`")],
)
def test_a_duplicated_account_key_is_refused(
    fx: FakeExchange, tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, words: str
) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False)
    first = f"  {field}: {BASE['accounts'][0][field]!s}".replace("False", "false") + "\n"
    assert first in text
    text = text.replace(first, first + first.replace("false", "true").replace("binance_usdm", "okx"))
    assert words in _refused(capsys, "book", "status", str(_book(tmp_path, text)))
    assert _orders(fx) == []


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("exchange", "kraken", "must be one of binance_usdm"),
        ("exchange", 1, "must be one of"),
        ("key_env", "", "NAME of an environment variable"),
        ("key_env", "A B", "NAME of an environment variable"),
        ("key_env", 5, "was a number (not shown)"),
        ("secret_env", "PH_ADV_KEY", "must name another variable"),
        ("password_env", "PW", "applies to okx only"),
        ("bybit_account", "unified", "applies to bybit only"),
        ("margin_mode", "Cross", "'isolated' or 'cross'"),
        ("margin_mode", None, "'isolated' or 'cross'"),
        ("sandbox", "yes", "must be true or false"),
        ("sandbox", 1, "must be true or false"),
        ("read_only", None, "must be true or false"),
        ("read_only", "no", "must be true or false"),
        ("api_key", "abc", "a secret written in a file is refused"),
        ("keyring", {"service": "svc"}, "ONE source"),
    ],
)
def test_wrong_account_fields_name_the_field(
    fx: FakeExchange, tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: Any, words: str
) -> None:
    line = _refused(capsys, "book", "rebalance", str(_book(tmp_path, **{field: value})), "--execute", "--yes")
    assert f"accounts[0].{field}" in line or field in line
    assert words in line
    assert _orders(fx) == []


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ({"execution": {"limit_offset_bps": float("nan")}}, "execution.limit_offset_bps"),
        ({"execution": {"limit_offset_bps": -1}}, "must be >= 0"),
        ({"execution": {"lookup_settle": "0s"}}, "execution.lookup_settle"),
        ({"execution": {"lookup_settle": "999d"}}, "at most 366d"),
        ({"execution": {"order_type": "LIMIT"}}, "execution.order_type"),
        ({"execution": None}, "must be a mapping"),
        ({"alerts": {"liquidation_mismatch_ticks": 0}}, "must be > 0"),
        ({"alerts": {"liquidation_mismatch_ticks": float("inf")}}, "finite"),
        ({"alerts": {"liquidation_mismatch_ticks": "5"}}, "without quotes"),
    ],
)
def test_wrong_execution_and_alert_settings_name_the_field(
    fx: FakeExchange,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    section: dict[str, Any],
    words: str,
) -> None:
    doc = copy.deepcopy(BASE) | section
    text = yaml.safe_dump(doc, sort_keys=False)
    assert words in _refused(capsys, "book", "rebalance", str(_book(tmp_path, text)), "--execute", "--yes")
    assert _orders(fx) == []


# ---------------------------------------------------------------------------------------- environment variables


@pytest.mark.parametrize("value", ["", "abc", "-1", "nan", "inf", "601", "1,5"])
def test_a_malformed_lookup_settle_is_refused_before_the_first_order(
    fx: FakeExchange, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PERPHEDGE_LOOKUP_SETTLE_S", value)
    book = _book(tmp_path)
    if value == "":  # unset in effect: the book's own `execution.lookup_settle` applies
        assert main(["book", "rebalance", str(book), "--execute", "--yes"]) == 0
        assert len(_orders(fx)) == 1
        return
    line = _refused(capsys, "book", "rebalance", str(book), "--execute", "--yes")
    assert "PERPHEDGE_LOOKUP_SETTLE_S" in line and repr(value) in line
    assert _orders(fx) == []  # refused up front, not while resolving a lost answer


@pytest.mark.parametrize("value", ["1e12", "600001", "0", "-5", "nan", "abc"])
def test_a_rate_limit_that_would_hang_or_mean_nothing_is_refused(
    fx: FakeExchange, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PERPHEDGE_RATE_LIMIT_MS", value)
    line = _refused(capsys, "book", "status", str(_book(tmp_path)))
    assert "PERPHEDGE_RATE_LIMIT_MS" in line and "at most 600000" in line


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://[::1", "must be an http(s) URL"),
        ("http://127.0.0.1:99999", "must be an http(s) URL"),
        ("http://127.0.0.1:abc", "must be an http(s) URL"),
        ("http://127.0.0.1:1\n", "must be an http(s) URL"),
        ("http://127.0.0.1:1 /x", "must be an http(s) URL"),
        ("ftp://127.0.0.1:1", "must be an http(s) URL"),
        ("https://user:hunter2pass@127.0.0.1:1", "must not carry a user or password"),
    ],
)
def test_a_malformed_exchange_url_is_one_line(
    fx: FakeExchange,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    words: str,
) -> None:
    monkeypatch.setenv("PERPHEDGE_EXCHANGE_URL", url)
    line = _refused(capsys, "book", "status", str(_book(tmp_path)))
    assert "PERPHEDGE_EXCHANGE_URL" in line and words in line
    assert "hunter2pass" not in line


@pytest.mark.parametrize(
    ("var", "value", "words"),
    [
        ("PH_ADV_KEY", "", "is empty"),
        ("PH_ADV_KEY", " \t", "is empty"),
        ("PH_ADV_KEY", "abc\ndef", "control characters"),
        ("PH_ADV_SECRET", "a b", "control characters"),
        ("PH_ADV_SECRET", KEY, "hold the same value"),
        ("PH_ADV_KEY", "Z" * 64, "refused the credentials"),
        ("PH_ADV_SECRET", "Z" * 64, "refused the credentials"),
    ],
)
def test_bad_credentials_in_the_environment_are_one_line_and_never_shown(
    fx: FakeExchange,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    var: str,
    value: str,
    words: str,
) -> None:
    monkeypatch.setenv(var, value)
    line = _refused(capsys, "book", "rebalance", str(_book(tmp_path)), "--execute", "--yes")
    assert words in line
    assert _orders(fx) == []


# --------------------------------------------------------------------------------------------- halt / resume


@pytest.mark.parametrize("reason", ["line1\nline2", "\x1b[31mred", "tab\there", "cr\rreturn"])
def test_a_halt_reason_with_control_characters_is_refused(
    fx: FakeExchange, tmp_path: Path, capsys: pytest.CaptureFixture[str], reason: str
) -> None:
    line = _refused(capsys, "book", "halt", str(_book(tmp_path)), "--reason", reason)
    assert "--reason" in line and "control characters" in line
    assert main(["book", "rebalance", str(_book(tmp_path)), "--execute", "--yes"]) == 0  # not halted
    assert len(_orders(fx)) == 1


@pytest.mark.parametrize("reason", ["é☃🚀 maintenance", "x" * 500, "$(rm -rf /)", "-dash"])
def test_a_printable_halt_reason_is_kept_and_blocks_orders(
    fx: FakeExchange, tmp_path: Path, capsys: pytest.CaptureFixture[str], reason: str
) -> None:
    book = str(_book(tmp_path))
    assert main(["book", "halt", book, "--reason", reason]) == 0
    capsys.readouterr()
    assert main(["book", "rebalance", book, "--execute", "--yes"]) == 3
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and reason in err
    assert _orders(fx) == []


def test_resume_on_a_never_halted_book_and_halt_on_a_read_only_book(
    fx: FakeExchange, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    book = str(_book(tmp_path, read_only=True))
    assert main(["book", "resume", book, "--format", "json"]) == 0
    assert '"was_halted": false' in capsys.readouterr().out
    assert main(["book", "halt", book]) == 0
    assert main(["book", "halt", book]) == 0  # twice: still one halt, no error
    assert _orders(fx) == []


# ------------------------------------------------------------------------------------------ fake exchange CLI


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--api-key", "K"], "invalid `--api-key`: give it with `--api-secret`"),
        (["--api-secret", "S"], "invalid `--api-secret`: give it with `--api-key`"),
        (["--port", "70000"], "invalid `--port`"),
        (["--balance", "USDT=1e400", "--api-key", "K", "--api-secret", "S"], "invalid `--balance`"),
        (["--balance", "USDT", "--api-key", "K", "--api-secret", "S"], "ASSET=AMOUNT"),
        (["--data", "/nonexistent-dir", "--api-key", "K", "--api-secret", "S"], "invalid `--data`"),
    ],
)
def test_the_fake_cli_refuses_half_configured_credentials_and_bad_values(
    capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    assert fake_main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and words in err
