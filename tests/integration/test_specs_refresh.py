"""``perphedge instruments --refresh [--diff] [--exchange] [--write]`` against the fake exchange's public market and
tier routes: the refreshed specs, deliberate differences found, the written file usable with --specs, refusals."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from perphedge.errors import ConfigError
from perphedge.exchange import fake_hyperliquid
from perphedge.exchange.ccxt_source import make_exchange
from perphedge.exchange.fake import FakeExchange
from perphedge.exchange.fake_okx import OkxVenue
from perphedge.specs import load_user_specs
from perphedge.usecases.specs_refresh import RefreshRequest, _bundled_raw, bundled_path, diff_specs, refresh_specs
from tests.conftest import run_cli, sample_dir

MARKS = {"BTC": 50_000.0, "ETH": 2_500.0}  # the fake converts its tier floors at these prices


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    with FakeExchange(sample_dir()) as fx:
        fx.marks.update(MARKS)
        yield fx


def clients(fx: FakeExchange, *names: str) -> dict[str, Any]:
    out = {}
    for name in names:
        c = make_exchange(name, base_url=fx.url)
        c.rateLimit = 1
        out[name] = c
    return out


def okx(fx: FakeExchange) -> OkxVenue:
    v = fx.venue_state["okx"]
    assert isinstance(v, OkxVenue)
    return v


def test_okx_and_hyperliquid_agree_with_the_bundled_specs(fake: FakeExchange) -> None:
    doc = refresh_specs(
        RefreshRequest(exchanges=("okx", "hyperliquid"), diff=True), clients=clients(fake, "okx", "hyperliquid")
    )
    assert doc["schema"] == "perphedge.instruments-refresh/1"
    assert doc["differences"] == []
    assert doc["refreshed"][:2] == ["okx:BTC-USD-SWAP", "okx:BTC-USDT-SWAP"]
    assert len([r for r in doc["refreshed"] if r.startswith("hyperliquid:")]) == 12
    inv = doc["instruments"][0]
    assert inv["as_of"] == doc["as_of"]
    assert "okx public/position-tiers" in inv["source"]["tiers"] and "at the last price 50000" in inv["source"]["tiers"]
    assert "ccxt fetchMarkets okx" in inv["source"]["refresh"]


def test_deliberate_differences_are_listed(fake: FakeExchange, monkeypatch: pytest.MonkeyPatch) -> None:
    v = okx(fake)
    v.max_leverage["BTC-USD-SWAP"] = 100.0
    # BTC-USDT-SWAP: tier 2 at a higher maintenance rate and a floor of 3,000,000 USDT instead of 2,500,000
    v.tier_overrides["BTC-USDT-SWAP"] = [(0, 0.004, 125), (3_000_000, 0.0065, 100), (7_500_000, 0.008, 75)]
    monkeypatch.setitem(fake_hyperliquid.COIN_SPECS, "SOL", (2, 10))  # Hyperliquid cut SOL to 10x
    doc = refresh_specs(
        RefreshRequest(exchanges=("okx", "hyperliquid"), diff=True), clients=clients(fake, "okx", "hyperliquid")
    )
    got = {(d["instrument"], d["field"]): (d["bundled"], d["venue"]) for d in doc["differences"]}
    assert got == {
        ("okx:BTC-USD-SWAP", "max_leverage"): (125, 100),
        ("okx:BTC-USDT-SWAP", "tiers"): (5, 3),
        ("okx:BTC-USDT-SWAP", "tiers[1].floor"): (2_500_000, 3_000_000),
        ("okx:BTC-USDT-SWAP", "tiers[1].mmr"): (0.006, 0.0065),
        ("hyperliquid:SOL", "max_leverage"): (20, 10),
        ("hyperliquid:SOL", "tiers"): (2, 1),
        ("hyperliquid:SOL", "tiers[0].mmr"): (0.025, 0.05),
        ("hyperliquid:SOL", "tiers[0].max_leverage"): (20, 10),
    }


def test_written_file_is_read_back_by_specs(fake: FakeExchange, tmp_path: Path) -> None:
    okx(fake).max_leverage["BTC-USDT-SWAP"] = 75.0
    env = {"PERPHEDGE_EXCHANGE_URL": fake.url, "PERPHEDGE_RATE_LIMIT_MS": "1"}
    for name in ("specs.yaml", "specs.json"):
        out = tmp_path / name
        r = run_cli(
            "instruments",
            "--refresh",
            "--diff",
            "--exchange",
            "okx",
            "--write",
            str(out),
            "--format",
            "json",
            env=env,
            home=tmp_path,
        )
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["written"] == str(out)
        assert doc["differences"] == [
            {"instrument": "okx:BTC-USDT-SWAP", "field": "max_leverage", "bundled": 125, "venue": 75}
        ]
        loaded = {i.id: i for i in load_user_specs(out)}
        assert loaded["okx:BTC-USDT-SWAP"].max_leverage == 75.0
        assert loaded["okx:BTC-USDT-SWAP"].as_of == doc["as_of"]
        assert "ccxt fetchMarkets okx" in loaded["okx:BTC-USDT-SWAP"].source
        listed = run_cli("instruments", "--specs", str(out), "--format", "json", home=tmp_path)
        assert listed.returncode == 0, listed.stderr
        rows = {r["id"]: r for r in json.loads(listed.stdout)["instruments"]}
        assert rows["okx:BTC-USDT-SWAP"]["max_leverage"] == 75.0
        assert rows["binance:BTCUSDT"]["max_leverage"] == 125.0  # the bundled specs stay underneath
    text = (tmp_path / "specs.yaml").read_text()
    assert yaml.safe_load(text)["instruments"][1]["symbol"] == "BTC-USDT-SWAP"
    table = run_cli("instruments", "--refresh", "--diff", "--exchange", "okx", env=env, home=tmp_path, columns=200)
    assert table.returncode == 0, table.stderr
    assert "okx:BTC-USDT-SWAP" in table.stdout and "max_leverage" in table.stdout and "75" in table.stdout


def test_bundled_file_is_never_written(fake: FakeExchange) -> None:
    before = bundled_path().read_bytes()
    with pytest.raises(ConfigError, match="is the bundled spec file"):
        refresh_specs(RefreshRequest(exchanges=("okx",), write=str(bundled_path())), clients=clients(fake, "okx"))
    assert bundled_path().read_bytes() == before


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--diff"], "`--diff` applies to `--refresh`"),
        (["--write", "x.yaml"], "`--write` applies to `--refresh`"),
        (["--exchange", "okx"], "`--exchange` applies to `--refresh`"),
        (["--refresh", "--exchange", "kraken"], "refreshing specs supports binance, bybit, okx, hyperliquid"),
        (["--refresh", "--exchange", "okx,okx"], "okx is given twice"),
        (["--refresh", "--exchange", "okx,"], "an empty name between commas"),
        (["--refresh", "--exchange", ""], "an empty name between commas"),
        (["--refresh", "--write", "out.txt"], "must end in .yaml, .yml or .json"),
        (["--refresh", "--write", ""], "empty path"),
        (["--refresh", "--specs", "x.yaml"], "`--specs` is not read by `--refresh`"),
    ],
)
def test_refusals(tmp_path: Path, args: list[str], message: str) -> None:
    r = run_cli(
        "instruments", *args, home=tmp_path, env={"PERPHEDGE_EXCHANGE_URL": f"http://127.0.0.1:{closed_port()}"}
    )
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perphedge: error:") and message in lines[0], r.stderr


def test_write_targets_refused_before_any_request(tmp_path: Path) -> None:
    env = {"PERPHEDGE_EXCHANGE_URL": f"http://127.0.0.1:{closed_port()}"}
    (tmp_path / "dir.yaml").mkdir()
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        for target, message in (
            (tmp_path / "dir.yaml", "is a directory"),
            *([(ro / "x.yaml", "permission denied")] if os.geteuid() != 0 else []),  # root writes anywhere
            (tmp_path / "file" / "x.yaml", None),
        ):
            if message is None:
                (tmp_path / "file").write_text("x")
                message = "is a file, not a directory"
            r = run_cli("instruments", "--refresh", "--exchange", "okx", "--write", str(target), env=env, home=tmp_path)
            assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    finally:
        ro.chmod(0o700)


def test_unreachable_venue_is_one_line(tmp_path: Path) -> None:
    env = {"PERPHEDGE_EXCHANGE_URL": f"http://127.0.0.1:{closed_port()}", "PERPHEDGE_EXCHANGE_TIMEOUT_MS": "2000"}
    r = run_cli("instruments", "--refresh", "--exchange", "okx", home=tmp_path, env=env)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "cannot reach" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not list(tmp_path.glob("*.yaml"))


_FIELDS = ["contract_size", "tick_size", "lot_size", "max_leverage"]


@settings(max_examples=60, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=len(_bundled_raw()) - 1),
    field=st.sampled_from(_FIELDS),
    factor=st.floats(min_value=0.01, max_value=100.0).filter(lambda f: abs(f - 1.0) > 1e-6),
)
def test_diff_finds_exactly_the_changed_field(index: int, field: str, factor: float) -> None:
    bundled = _bundled_raw()
    changed = [dict(r) for r in bundled]
    changed[index][field] = bundled[index][field] * factor
    rows = diff_specs(bundled, changed)
    ident = f"{bundled[index]['exchange']}:{bundled[index]['symbol']}"
    assert [(r["instrument"], r["field"]) for r in rows] == [(ident, field)]
    assert diff_specs(bundled, bundled) == []


def test_library_call_without_venue_instruments_is_refused() -> None:
    with pytest.raises(ConfigError, match="refreshing specs supports"):
        RefreshRequest(exchanges=("bitget",)).venues()
