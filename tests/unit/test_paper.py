"""The paper account (exchange/paper.py): replay through it equals the backtest kernel bar for bar, its fills,
fees, funding and liquidations equal the contract maths, every write is idempotent and atomic (kill -9 safe)."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perphedge.config import parse_portfolio, parse_run
from perphedge.core import contracts as C
from perphedge.core import legstep as S
from perphedge.core.book import (
    Account,
    FeedSnapshot,
    FundingPayment,
    FundingSettlement,
    Liquidation,
    OrderRequest,
    TransferRequest,
)
from perphedge.core.hedge import CollateralSource
from perphedge.core.instruments import Instrument, LiquidationMethod, MarginSchedule
from perphedge.core.policies import policy_decisions
from perphedge.data.store import MarketStore
from perphedge.errors import ConfigError, DataError
from perphedge.exchange.paper import DAY_MS, PAPER_SCHEMA, PaperAccount, PaperLeg
from perphedge.specs import default_registry
from perphedge.usecases import backtest as B
from tests.conftest import GOLDEN_DATA, REPO

COL = {n: i for i, n in enumerate(S.OUT_COLUMNS)}
REG = default_registry()
LINEAR = REG.get("binance:BTCUSDT")
INVERSE = REG.get("binance:BTCUSD_PERP")


# ----------------------------------------------------------------------------------------------- helpers


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def params(
    inst: Instrument,
    *,
    coll: float = S.STABLE,
    lev: float = 2.0,
    mmr: float | None = None,
    cum: float = 0.0,
    taker: float = 0.0005,
    slip: float = 0.0002,
    band: float = 0.1,
    reopen: float = -1.0,
    top_up: float = 0.0,
    level: float = 0.5,
) -> np.ndarray:
    """A params vector laid out as backtest._leg_params lays it out (tier given, not picked)."""
    return np.array(
        [
            S.INVERSE if inst.is_inverse else S.LINEAR,
            coll,
            lev,
            inst.contract_size,
            inst.lot_size,
            inst.margin.tiers[0].mmr if mmr is None else mmr,
            cum,
            S.ENTRY_FAMILY if inst.liquidation_method.mm_at_entry else S.AT_LP_FAMILY,
            taker,
            slip,
            band,
            reopen,
            top_up,
            level,
        ]
    )


def snap(
    now_ms: int,
    prices: Mapping[str, float],
    *,
    highs: Mapping[str, float] | None = None,
    funding: Mapping[str, tuple[FundingSettlement, ...]] | None = None,
    bar: int | None = None,
    stale: bool = False,
) -> FeedSnapshot:
    return FeedSnapshot(
        now_ms=now_ms,
        source="test",
        prices=dict(prices),
        highs=dict(highs if highs is not None else prices),
        funding=dict(funding or {}),
        bar=bar,
        stale=stale,
    )


def order(cid: str, inst: Instrument, side: str, qty: float, *, reduce_only: bool = False, account: str = "p1"):  # type: ignore[no-untyped-def]
    return OrderRequest(
        client_id=cid,
        account=account,
        instrument=inst.id,
        side=side,  # type: ignore[arg-type]
        contracts=qty,
        reduce_only=reduce_only,
        ref_price=0.0,
        decision=1,
        leg=0,
    )


def xfer(tid: str, inst: Instrument, amount: float = 0.0, *, reset: bool = False, account: str = "p1") -> TransferRequest:
    return TransferRequest(
        transfer_id=tid,
        account=account,
        instrument=inst.id,
        amount_settle=amount,
        reason="rebalance",
        decision=1,
        leg=0,
        reset=reset,
    )


def account(
    db: sqlite3.Connection,
    legs: Mapping[Instrument, np.ndarray],
    *,
    balances: Mapping[str, float] | None = None,
    overdraft: bool = False,
    name: str = "p1",
    bar_ms: int = DAY_MS,
) -> PaperAccount:
    return PaperAccount(
        db,
        name=name,
        venue="binance",
        legs={i.id: PaperLeg(instrument=i, params=p) for i, p in legs.items()},
        starting_balances=dict(balances if balances is not None else {"USDT": 100_000.0}),
        overdraft=overdraft,
        bar_ms=bar_ms,
    )


def dump(db: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every paper table's rows (sorted), to compare whole states."""
    tables = ("paper_accounts", "paper_balances", "paper_positions", "paper_orders", "paper_fills", "paper_ledger")
    return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = connect(tmp_path / "book.sqlite")
    yield conn
    conn.close()


# ------------------------------------------------------------------------------- replay = backtest kernel


def _inline_run(hedge: dict[str, Any], holdings: list[dict[str, Any]], **extra: Any) -> tuple[Any, Any]:
    doc = {
        "portfolio": {"name": "t", "holdings": holdings},
        "start": "2021-01-01",
        "end": "2021-12-31",
        "hedge": hedge,
        **extra,
    }
    run_cfg = parse_run(doc, "test")
    return run_cfg, parse_portfolio(doc["portfolio"], "test: portfolio")


ALTS = [{"asset": "SOL", "value_usd": 5000}, {"asset": "AVAX", "value_usd": 3000}, {"asset": "DOT", "value_usd": 2000}]
SCENARIOS: dict[str, Any] = {
    "linear_stable": lambda: B.load_run(REPO / "runs" / "altcoins-50pct.yaml")[:2],
    "inverse_buy": lambda: B.load_run(REPO / "runs" / "altcoins-inverse-buy.yaml")[:2],
    "inverse_buy_top_ups": lambda: _inline_run(
        {"instrument": "binance:BTCUSD_PERP", "leverage": 3, "collateral": "buy"},
        ALTS,
        policy={"kind": "drift_band", "ratio": 1.0, "band": 0.3},
        margin={"top_up": True, "top_up_level": 0.8, "reopen_after_days": 7},
        funding={"series": "binance:BTC/USDT:USDT"},
    ),
    "linear_direct_legs_top_ups": lambda: B.load_run(REPO / "runs" / "btc-eth-60pct.yaml")[:2],
    "inverse_holdings": lambda: _inline_run(
        {"instrument": "binance:BTCUSD_PERP", "leverage": 2, "collateral": "holdings"},
        [*ALTS, {"asset": "BTC", "quantity": 1.0}],
        policy={"kind": "drift_band", "ratio": 0.8, "band": 0.1},
        margin={"top_up": True, "top_up_level": 0.9, "reopen_after_days": 5},
        funding={"series": "binance:BTC/USDT:USDT"},
    ),
    "inverse_liquidation_reopen": lambda: _inline_run(
        {"instrument": "binance:BTCUSD_PERP", "leverage": 3, "collateral": "buy"},
        ALTS,
        policy={"kind": "drift_band", "ratio": 1.0, "band": 0.3},
        margin={"top_up": False, "reopen_after_days": 7},
        funding={"series": "binance:BTC/USDT:USDT"},
    ),
    "linear_liquidations_reopen": lambda: _inline_run(
        {"instrument": "binance:BTCUSDT", "leverage": 4, "collateral": "stable"},
        ALTS,
        policy={"kind": "drift_band", "ratio": 1.0, "band": 0.5},
        margin={"top_up": False, "reopen_after_days": 2},
    ),
}


def kernel_legs(store_path: Path, run_cfg: Any, pfile: Any) -> tuple[B.Prepared, list[dict[str, Any]]]:
    """Each leg's kernel inputs and output exactly as usecases.backtest runs it."""
    with MarketStore(store_path, read_only=True) as store:
        prep = B.prepare(run_cfg, pfile, store, REG)
    spec = B._policy_spec(run_cfg, prep.bars_per_day)
    betas, why = B._betas(prep, run_cfg)
    legs = []
    for leg in prep.legs:
        lr = B._run_leg(prep, run_cfg, spec, leg, betas, why)
        dec = policy_decisions(
            spec,
            days=prep.days,
            proxy_close=prep.closes[prep.proxy],
            fear_greed=prep.fear_greed,
            funding_daily=leg.funding,
            periods_per_year=prep.periods_per_year,
            bar_hours=prep.bar_hours,
        )
        coll = prep.collateral if leg.instrument.is_inverse else CollateralSource.STABLE
        prm = B._leg_params(prep, run_cfg, leg, coll, float(dec.target[0] * lr.exposure[0]), dec.band)
        legs.append({"leg": leg, "run": lr, "allowed": dec.allowed, "params": prm})
    return prep, legs


def replay_on_paper(
    prep: B.Prepared, legs: list[dict[str, Any]], db: sqlite3.Connection, *, split_funding: bool = False
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Drive a PaperAccount bar by bar with the kernel's decision calls (the book's job); per leg the
    output matrix rebuilt from what the account reported."""
    bar_ms = int(prep.bar_hours * 3_600_000)
    acct = PaperAccount(
        db,
        name="replay",
        venue="binance",
        legs={x["leg"].instrument.id: PaperLeg(instrument=x["leg"].instrument, params=x["params"]) for x in legs},
        starting_balances={"USDT": 50_000.0},
        overdraft=True,
        bar_ms=bar_ms,
    )
    n = len(prep.dates)
    outs = [np.zeros((n, len(S.OUT_COLUMNS))) for _ in legs]
    stats: dict[str, Any] = {"zero_trades": 0, "events": [], "orders": 0, "transfers": 0, "cash": 0.0}
    starts = prep.dates.tz_localize(None).to_numpy().astype("datetime64[ms]").astype(np.int64)
    assert starts[0] == prep.days[0] * DAY_MS
    for t in range(n):
        now = int(starts[t]) + bar_ms  # the bar's close
        prices = {x["leg"].instrument.base: float(x["leg"].c[t]) for x in legs}
        highs = {x["leg"].instrument.base: float(x["leg"].h[t]) for x in legs}
        funding = {}
        for x in legs:
            inst, rate = x["leg"].instrument, float(x["leg"].funding[t])
            if split_funding:
                parts = (rate / 3, rate / 3, rate - 2 * (rate / 3))
                funding[inst.id] = tuple(
                    FundingSettlement(instrument=inst.id, settlement_ms=now - k * bar_ms // 3, rate=r)
                    for k, r in enumerate(parts)
                )
            else:
                funding[inst.id] = (FundingSettlement(instrument=inst.id, settlement_ms=now, rate=rate),)
        sn = snap(now, prices, highs=highs, funding=funding, bar=t)
        events = acct.sync(sn)
        stats["events"] += events
        for i, x in enumerate(legs):
            inst, prm, lr, row = x["leg"].instrument, x["params"], x["run"], outs[i][t]
            for ev in events:
                if ev.instrument != inst.id:
                    continue
                if isinstance(ev, Liquidation):
                    row[COL["liquidated"]] = 1.0
                    row[COL["liq_price"]] = ev.price
                    row[COL["liq_loss_usd"]] = ev.loss_usd
                else:
                    row[COL["funding_usd"]] += ev.amount_usd
            px = float(x["leg"].c[t])
            st_ = acct.state(inst.id)
            d = S.rebalance_target(st_, prm, float(t), px, lr.exposure[t], lr.target[t], x["allowed"][t])
            if not math.isnan(d):
                n_new = S.target_contracts(prm, px, d)
                qty = n_new - st_[0]
                if qty == 0.0:
                    stats["zero_trades"] += 1
                else:
                    side = "sell" if qty > 0 else "buy"
                    res = acct.place_order(order(f"o{t}-{i}", inst, side, abs(qty), account="replay"), sn)
                    assert res.status == "filled", res.reason
                    assert acct.state(inst.id)[0] == n_new
                    row[COL["fee_usd"]] = res.fills[0].fee_usd
                    row[COL["slippage_usd"]] = res.fills[0].slippage_usd
                    stats["orders"] += 1
                tr = acct.transfer(xfer(f"t{t}-{i}", inst, 0.0, reset=True, account="replay"), sn)
                assert tr.applied, tr.reason
                row[COL["cash_flow_usd"]] = tr.cash_usd
                row[COL["spot_coin_flow"]] = tr.coins
                row[COL["rebalanced"]] = 1.0
                stats["transfers"] += 1
                stats["cash"] += tr.cash_usd
            else:
                add = S.top_up_amount(st_, prm, px)
                if not math.isnan(add):
                    tr = acct.transfer(xfer(f"u{t}-{i}", inst, add, account="replay"), sn)
                    assert tr.applied and tr.amount_settle == add
                    row[COL["cash_flow_usd"]] = tr.cash_usd
                    row[COL["spot_coin_flow"]] = tr.coins
                    row[COL["top_up_usd"]] = add * px if prm[0] == S.INVERSE else add
                    stats["transfers"] += 1
                    stats["cash"] += tr.cash_usd
            S.mark(acct.state(inst.id), prm, px, row)
    stats["account"] = acct
    return outs, stats


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_replay_through_the_paper_account_equals_the_backtest_kernel(
    name: str, sample_store_path: Path, tmp_path: Path
) -> None:
    run_cfg, pfile = SCENARIOS[name]()
    prep, legs = kernel_legs(sample_store_path, run_cfg, pfile)
    db = connect(tmp_path / "replay.sqlite")
    outs, stats = replay_on_paper(prep, legs, db)
    assert stats["zero_trades"] == 0  # a lot-rounded no-trade "rebalance" cannot be sent to a venue
    for x, got in zip(legs, outs, strict=True):
        want = x["run"].out
        np.testing.assert_array_equal(got, want, err_msg=f"{name} {x['leg'].instrument.id}")
        summary = x["run"].summary
        inst = x["leg"].instrument.id
        fund = [e for e in stats["events"] if isinstance(e, FundingPayment) and e.instrument == inst]
        liqs = [e for e in stats["events"] if isinstance(e, Liquidation) and e.instrument == inst]
        assert math.fsum(e.amount_usd for e in fund) == pytest.approx(summary["funding_received_usd"], rel=1e-12)
        assert [(round(e.price, 6), round(e.loss_usd, 6)) for e in liqs] == [
            (round(q["price"], 6), round(q["loss_usd"], 6)) for q in summary["liquidations"]
        ]
        # the account's own records add up to the backtest's totals
        fees = db.execute(
            "SELECT sum(fee_usd), sum(slippage_usd), count(*) FROM paper_fills WHERE instrument = ?", (inst,)
        ).fetchone()
        assert (fees[0] or 0.0) == pytest.approx(summary["fees_usd"], rel=1e-12)
        assert (fees[1] or 0.0) == pytest.approx(summary["slippage_usd"], rel=1e-12)
        assert fees[2] == summary["rebalances"]
    acct = stats["account"]
    usdt = next(b for b in acct.balances() if b.asset == "USDT")
    assert usdt.free == pytest.approx(50_000.0 - stats["cash"], rel=1e-12)
    if "liquidation" in name:
        assert sum(len(x["run"].summary["liquidations"]) for x in legs) >= 1
        assert any(
            (x["run"].out[i + 1 :, COL["contracts"]] > 0).any()
            for x in legs
            for i in np.nonzero(x["run"].out[:, COL["liquidated"]])[0]
        )  # reopened after the liquidation
    if "top_ups" in name or name == "inverse_holdings":
        assert any(b.asset == "BTC" and b.free < 0 for b in acct.balances()) == (name == "inverse_holdings")
        assert any((x["run"].out[:, COL["top_up_usd"]] != 0).any() for x in legs)


def test_replay_with_several_settlements_per_bar(sample_store_path: Path, tmp_path: Path) -> None:
    """Three settlements per bar: their rates summed in order into one settle_bar; payments add up to it."""
    run_cfg, pfile = SCENARIOS["inverse_buy"]()
    run_cfg = run_cfg.model_copy(update={"start": run_cfg.start.replace(year=2022), "end": run_cfg.end.replace(year=2022)})
    prep, legs = kernel_legs(sample_store_path, run_cfg, pfile)
    outs, stats = replay_on_paper(prep, legs, connect(tmp_path / "r.sqlite"), split_funding=True)
    want = legs[0]["run"].out
    for col in ("account_usd", "funding_usd", "fee_usd", "contracts", "cash_flow_usd", "liq_price"):
        np.testing.assert_allclose(outs[0][:, COL[col]], want[:, COL[col]], rtol=1e-12, atol=1e-12, err_msg=col)
    fund = [e for e in stats["events"] if isinstance(e, FundingPayment)]
    assert len(fund) > 300 and len(fund) % 3 == 0
    assert len({(e.instrument, e.settlement_ms) for e in fund}) == len(fund)
