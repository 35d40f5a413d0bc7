"""``python -m perphedge.exchange.fake``: starts, prints its URL, serves signed Binance routes, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from perphedge.errors import ExchangeError
from perphedge.exchange.live import open_live_account
from perphedge.specs import default_registry
from tests.conftest import sample_dir

KEY = "PHSENTINELKEYcli" + "k" * 48
SECRET = "PHSENTINELSECRETcli" + "s" * 45


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PERPHEDGE_SAMPLE_DATA"] = str(sample_dir())
    env.pop("PERPHEDGE_EXCHANGE_URL", None)
    return env


@pytest.fixture
def server() -> Iterator[tuple[subprocess.Popen[str], str]]:
    cmd = [
        sys.executable,
        "-m",
        "perphedge.exchange.fake",
        "--port",
        "0",
        "--api-key",
        KEY,
        "--api-secret",
        SECRET,
        "--balance",
        "USDT=100000",
        "--balance",
        "BTC=2",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("perphedge fake exchange: http://127.0.0.1:"), first
        yield proc, first.split(": ", 1)[1].strip()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)


def test_cli_serves_signed_binance_routes_until_terminated(server: tuple[subprocess.Popen[str], str]) -> None:
    proc, url = server
    reg = default_registry()
    acc = open_live_account(
        name="bn",
        venue="binance_usdm",
        credentials={"key": KEY, "secret": SECRET},
        instruments=[reg.get("binance:BTCUSDT")],
        base_url=url,
        options={"rate_limit_ms": 1},
    )
    assert {b.asset: b.wallet for b in acc.balances()} == {"USDT": 100_000.0}
    coin = open_live_account(
        name="cm",
        venue="binance_coinm",
        credentials={"key": KEY, "secret": SECRET},
        instruments=[reg.get("binance:BTCUSD_PERP")],
        base_url=url,
        options={"rate_limit_ms": 1},
    )
    assert {b.asset: b.wallet for b in coin.balances()} == {"BTC": 2.0}
    wrong = open_live_account(
        name="bn",
        venue="binance_usdm",
        credentials={"key": KEY, "secret": SECRET[:-1] + "x"},
        instruments=[reg.get("binance:BTCUSDT")],
        base_url=url,
        options={"rate_limit_ms": 1},
    )
    with pytest.raises(ExchangeError, match="-1022"):
        wrong.balances()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "PHSENTINEL" not in out + err  # the fake never prints the key or secret


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--balance", "USDT"], "ASSET=AMOUNT"),
        (["--port", "70000"], "--port"),
        (["--data", "/nonexistent/dir"], "--data"),
        (["--weight-limit", "0"], "--weight-limit"),
    ],
)
def test_cli_refuses_bad_arguments_with_one_line(args: list[str], match: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "perphedge.exchange.fake", *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perphedge: error: ") and match in lines[0]
