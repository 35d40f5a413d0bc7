"""Commands that do not simulate DeFi positions yet refuse a portfolio holding them (one line, exit 2), instead of
silently leaving their delta out (issue 14: stress comes later; backtest, sweep and book hold them now:
tests/integration/test_backtest_defi.py, tests/integration/test_book_defi.py)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO, run_cli

LP = REPO / "examples" / "defi-lp-v3.yaml"


def test_stress_refuses_positions(store_home: Path) -> None:
    r = run_cli("stress", str(LP), home=store_home)
    assert r.returncode == 2, r.stderr
    assert "DeFi `positions:`" in r.stderr and r.stderr.count("\n") == 1
