"""Late fixes of issue 10: a webhook URL carrying credentials is a secret in the file; an account that holds none of
the hedge's legs is named in a warning; executed rebalances print readable result lines, not JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, run_cli


def _doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "book": 1,
        "id": "9011a000",
        "portfolio": str(REPO / "examples" / "altcoins.yaml"),
        "policy_origin": "2026-01-01",
        "feed": {"kind": "portfolio"},
        "accounts": [{"name": "paper", "kind": "paper", "exchange": "binance", "balances": {"USDT": 15000}}],
    }
    doc.update(over)
    return doc


@pytest.mark.parametrize(
    "url", ["https://bob:hunter2@hooks.example.com/x", "http://token@127.0.0.1:8080/hook", "https://:pw@h.example/"]
)
def test_webhook_with_credentials_is_refused_without_echoing_them(tmp_path: Path, url: str) -> None:
    book = tmp_path / "b.book.yaml"
    book.write_text(yaml.safe_dump(_doc(alerts={"webhook": url})), encoding="utf-8")
    r = run_cli("book", "status", str(book), home=tmp_path / "home")
    assert r.returncode == 2, r.stderr
    assert "alerts.webhook" in r.stderr and "secret" in r.stderr
    assert "hunter2" not in r.stderr and "token@" not in r.stderr and ":pw" not in r.stderr
    assert r.stderr.count("\n") == 1


def test_an_account_holding_no_leg_is_named_in_a_warning(tmp_path: Path) -> None:
    accounts = [
        {"name": "paper", "kind": "paper", "exchange": "binance", "balances": {"USDT": 15000}},
        {"name": "spare", "kind": "paper", "exchange": "bybit", "balances": {"USDT": 500}},
    ]
    book = tmp_path / "b.book.yaml"
    book.write_text(yaml.safe_dump(_doc(accounts=accounts)), encoding="utf-8")
    r = run_cli("book", "status", str(book), "--format", "json", home=tmp_path / "home")
    assert r.returncode == 0, r.stderr
    import json

    doc = json.loads(r.stdout)
    assert any("account `spare` (bybit) holds none of the hedge's instruments" in w for w in doc["warnings"])
    assert doc["value"]["accounts_usd"] == pytest.approx(15500)


def test_execute_prints_readable_results(tmp_path: Path) -> None:
    book = tmp_path / "b.book.yaml"
    book.write_text(yaml.safe_dump(_doc()), encoding="utf-8")
    r = run_cli("book", "rebalance", str(book), "--execute", "--yes", home=tmp_path / "home")
    assert r.returncode == 0, r.stderr
    lines = [x.strip() for x in r.stdout.splitlines()]
    # the default policy (static, ratio 0.5): 100 contracts of 100 USD, filled at 60,000 less 2 bps of slippage
    assert any(x.startswith("order ph9011a000") and "filled 100 contracts at 59,988.00" in x for x in lines), r.stdout
    assert any(x.startswith("margin pt9011a000") and "BTC moved" in x for x in lines), r.stdout
    assert "{" not in r.stdout
