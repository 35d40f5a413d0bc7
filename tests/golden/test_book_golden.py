"""A rebalance worked by hand (issue 10, item 9).

Book: 100 SOL held off-exchange, hedged 60 % with Binance's linear BTCUSDT perpetual at 2x (stable collateral),
policy ``drift_band`` ratio 0.6, band 10 %. Binance BTCUSDT: lot 0.001 BTC, taker fee 0.05 %, first margin tier
0.4 % (maintenance amount 0); slippage 2 bps (the book's default costs).

**Open at BTC 50,000, SOL 100.** Exposure = 100 × 100 = 10,000 USD; target hedge d = 0.6 × 10,000 = 6,000 USD;
contracts = 6,000 / 50,000 = 0.120 BTC (a whole number of 0.001 lots). Fee 0.12 × 50,000 × 0.0005 = 3.00 USD,
slippage 0.12 × 50,000 × 0.0002 = 1.20 USD. Margin = value / leverage = 6,000 / 2 = 3,000 USDT.

**BTC +20 % (60,000), SOL unchanged.** The short's delta is −0.12 × 60,000 = −7,200 USD against an exposure of
10,000: the hedge is at 72 %, 12 points above target; the band check |−7,200 + 6,000| = 1,200 > 0.10 × 6,000 = 600
says rebalance. New size 6,000 / 60,000 = 0.100 BTC: **buy 0.020 BTC, reduce-only** (residual 0: 0.1 is whole lots).
Fee 0.02 × 60,000 × 0.0005 = 0.60 USD; slippage 0.02 × 60,000 × 0.0002 = 0.24 USD. The unrealised loss
0.12 × (50,000 − 60,000) = −1,200 USDT is realised and the margin is reset to 6,000 / 2 = 3,000 USDT.

Liquidation after the trade (Binance USDⓈ-M, isolated, one-way, short):
LP = (WB + cum + q·E) / (q·(1 + MMR)) = (3,000 + 0 + 0.1 × 60,000) / (0.1 × 1.004) = 89,641.434… USD.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from perphedge.core.book import FeedSnapshot


@dataclass
class _Feed:
    """A feed at fixed prices (the test's hand-made market)."""

    prices: dict[str, float]
    kind: str = "test"
    settlements: dict[str, Any] = field(default_factory=dict)

    def snapshot(self, now_ms: int, since_ms: int) -> FeedSnapshot:
        return FeedSnapshot(
            now_ms=now_ms, source="test", prices=dict(self.prices), highs=dict(self.prices), last_price_ms=now_ms
        )


NOW = 1_790_000_000_000  # 2026-09-21T…Z, inside one daily bar with NOW + 1 h


def _book(tmp: Path) -> Path:
    doc = {
        "book": 1,
        "id": "60a0b0c0",
        "portfolio": {
            "name": "sol",
            "prices": {"SOL": 100, "BTC": 50000},
            "holdings": [{"asset": "SOL", "quantity": 100}],
            "hedge": {"instrument": "binance:BTCUSDT", "leverage": 2, "ratio": 0.6},
        },
        "policy": {"kind": "drift_band", "ratio": 0.6, "band": 0.1},
        "policy_origin": "2026-01-01",
        "feed": {"kind": "portfolio"},
        "store": "golden.sqlite",
        "accounts": [{"name": "paper", "kind": "paper", "exchange": "binance", "balances": {"USDT": 10000}}],
    }
    p = tmp / "golden.book.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return p


def test_worked_rebalance_after_btc_plus_20_percent(tmp_path: Path) -> None:
    from perphedge.usecases import book as B

    lb = B.load_book(_book(tmp_path))
    s = B.open_session(lb, writer=True, now_ms=NOW, feed=_Feed({"BTC": 50000.0, "SOL": 100.0}))
    try:
        r = B.tick(s, NOW, decide=True, execute=True)
        assert r.plan is not None
        (order,) = [i for i in r.plan.items if i.kind == "order"]
        assert (order.side, order.reduce_only) == ("sell", False)
        assert order.contracts == pytest.approx(0.12, abs=1e-12)
        assert order.fee_usd == pytest.approx(3.00, abs=1e-9)
        assert order.slippage_usd == pytest.approx(1.20, abs=1e-9)
        assert [x["status"] for x in r.results if "client_id" in x] == ["filled"]
    finally:
        B.close_session(s)

    later = NOW + 3_600_000  # the same daily bar: the first decision is done, the book file is the same
    s = B.open_session(lb, writer=False, now_ms=later, feed=_Feed({"BTC": 60000.0, "SOL": 100.0}))
    try:
        snap = B.snapshot(s, later)
        plan = B.plan_rebalance(s, snap)
        doc = B.status_document(s, snap, decision=plan)
    finally:
        B.close_session(s)
    assert doc["delta"]["exposure_usd"] == pytest.approx(10_000.0, rel=1e-12)
    assert doc["delta"]["hedge_delta_usd"] == pytest.approx(-7_200.0, rel=1e-12)
    assert doc["hedge"]["achieved_ratio"] == pytest.approx(0.72, rel=1e-12)
    assert doc["hedge"]["off_by"] == pytest.approx(0.12, rel=1e-9)
    (pos,) = doc["accounts"][0]["positions"]
    assert pos["upnl_usd"] == pytest.approx(-1_200.0, rel=1e-12)
    assert pos["margin_settle"] == pytest.approx(3_000.0, rel=1e-12)
    (order,) = [i for i in plan.items if i.kind == "order"]
    assert (order.side, order.reduce_only) == ("buy", True)
    assert order.contracts == pytest.approx(0.02, abs=1e-12)
    assert order.contracts_after == pytest.approx(0.1, abs=1e-12)
    assert order.residual_usd == pytest.approx(0.0, abs=1e-6)
    assert order.fee_usd == pytest.approx(0.60, abs=1e-9)
    assert order.slippage_usd == pytest.approx(0.24, abs=1e-9)
    assert order.liquidation_after == pytest.approx(9_000.0 / 0.1004, rel=1e-12)
    assert "drift beyond band" in order.reason
    (move,) = [i for i in plan.items if i.kind == "transfer"]
    # margin reset: 3,000 − (1,200 + 0.60 + 0.24 realised) back to 3,000 → 1,200.84 USDT from the wallet
    assert move.amount_settle == pytest.approx(1_200.84, abs=1e-9)
