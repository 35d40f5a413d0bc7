"""Commands that do not simulate DeFi positions yet refuse a portfolio holding them (one line, exit 2), instead of
silently leaving their delta out (issue 14: backtest, stress and book come later)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import REPO, run_cli

LP = REPO / "examples" / "defi-lp-v3.yaml"


def test_backtest_refuses_positions(tmp_path: Path, store_home: Path) -> None:
    run = tmp_path / "run.yaml"
    run.write_text(yaml.safe_dump({"portfolio": str(LP), "start": "2022-01-01", "end": "2022-06-30"}), encoding="utf-8")
    r = run_cli("backtest", str(run), "--out", str(tmp_path / "out"), home=store_home)
    assert r.returncode == 2, r.stderr
    assert "DeFi `positions:`" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_stress_refuses_positions(store_home: Path) -> None:
    r = run_cli("stress", str(LP), home=store_home)
    assert r.returncode == 2, r.stderr
    assert "DeFi `positions:`" in r.stderr and r.stderr.count("\n") == 1


def test_book_refuses_positions(tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = run_cli("book", "init", str(tmp_path / "b.yaml"), "--portfolio", str(LP), "--paper", "binance", home=home)
    assert r.returncode == 2, r.stderr
    assert "DeFi `positions:`" in r.stderr
    book = tmp_path / "c.book.yaml"
    book.write_text(
        yaml.safe_dump(
            {
                "book": 1,
                "id": "def10001",
                "portfolio": str(LP),
                "accounts": [{"name": "p", "kind": "paper", "exchange": "binance", "balances": {"USDT": 1000}}],
            }
        ),
        encoding="utf-8",
    )
    r = run_cli("book", "status", str(book), home=home)
    assert r.returncode == 2, r.stderr
    assert "DeFi `positions:`" in r.stderr and r.stderr.count("\n") == 1
