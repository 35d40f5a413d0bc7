"""The paper account (exchange/paper.py): replay through it equals the backtest kernel bar for bar, its fills,
fees, funding and liquidations equal the contract maths, every write is idempotent and atomic (kill -9 safe)."""

from __future__ import annotations

import importlib.util
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


def xfer(
    tid: str, inst: Instrument, amount: float = 0.0, *, reset: bool = False, account: str = "p1"
) -> TransferRequest:
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
            own = S.own_coins_usd(st_, prm, px, acct.coins_moved_in(inst.id))  # inverse+holdings: as the book does
            d = S.rebalance_target(st_, prm, float(t), px, lr.exposure[t] + own, lr.target[t], x["allowed"][t])
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
            row[COL["delta_usd"]] += S.own_coins_usd(acct.state(inst.id), prm, px, acct.coins_moved_in(inst.id))
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
    run_cfg = run_cfg.model_copy(
        update={"start": run_cfg.start.replace(year=2022), "end": run_cfg.end.replace(year=2022)}
    )
    prep, legs = kernel_legs(sample_store_path, run_cfg, pfile)
    outs, stats = replay_on_paper(prep, legs, connect(tmp_path / "r.sqlite"), split_funding=True)
    want = legs[0]["run"].out
    for col in ("account_usd", "funding_usd", "fee_usd", "contracts", "cash_flow_usd", "liq_price"):
        np.testing.assert_allclose(outs[0][:, COL[col]], want[:, COL[col]], rtol=1e-12, atol=1e-12, err_msg=col)
    fund = [e for e in stats["events"] if isinstance(e, FundingPayment)]
    assert len(fund) > 300 and len(fund) % 3 == 0
    assert len({(e.instrument, e.settlement_ms) for e in fund}) == len(fund)


# ------------------------------------------------------------------------------------ golden numbers by hand


def vector(vid: str) -> dict[str, Any]:
    vectors = json.loads((GOLDEN_DATA / "contract_vectors.json").read_text(encoding="utf-8"))["vectors"]
    return next(v for v in vectors if v["id"] == vid)


def single_tier(inst: Instrument, mmr: float, method: LiquidationMethod | None = None) -> Instrument:
    return inst.with_overrides(margin=MarginSchedule.single(mmr), liquidation_method=method)


def opened(
    db: sqlite3.Connection, inst: Instrument, prm: np.ndarray, contracts: float, price: float, **kw: Any
) -> PaperAccount:
    """An account holding a short of ``contracts`` filled at ``price``, margin reset to value / leverage."""
    acct = account(db, {inst: prm}, **kw)
    sn = snap(DAY_MS, {inst.base: price})
    assert acct.sync(sn) == []
    assert acct.place_order(order("open", inst, "sell", contracts, account=acct.name), sn).status == "filled"
    assert acct.transfer(xfer("open-m", inst, reset=True, account=acct.name), sn).applied
    return acct


@pytest.mark.parametrize(
    ("vid", "method", "family"),
    [
        ("V9", LiquidationMethod.MM_ON_ENTRY_VALUE, S.ENTRY_FAMILY),
        ("V10", LiquidationMethod.MM_AT_LIQUIDATION_PRICE, S.AT_LP_FAMILY),
        ("V11a", LiquidationMethod.MM_ON_ENTRY_VALUE, S.ENTRY_FAMILY),
        ("V11b", LiquidationMethod.MM_AT_LIQUIDATION_PRICE, S.AT_LP_FAMILY),
    ],
)
def test_inverse_liquidation_price_equals_the_reference_vectors(
    db: sqlite3.Connection, vid: str, method: LiquidationMethod, family: float
) -> None:
    v = vector(vid)["inputs"]
    inst = single_tier(INVERSE, v["mmr"], method)
    prm = params(inst, lev=v["leverage"], taker=0.0, slip=0.0)
    prm[7] = family
    acct = opened(db, inst, prm, v["notional_usd"] / inst.contract_size, v["entry"])
    pos = acct.positions()[0]
    want = vector(vid)["expected"]["liquidation_price"]
    assert pos.liquidation_price == pytest.approx(want, abs=1e-4)
    assert pos.margin_settle == pytest.approx(v["notional_usd"] / v["entry"] / v["leverage"], rel=1e-15)
    core = C.liquidation_price(
        kind=inst.kind,
        method=method,
        side="short",
        size=v["notional_usd"],
        entry=v["entry"],
        margin=pos.margin_settle,
        schedule=inst.margin,
    )
    assert pos.liquidation_price == pytest.approx(core.price, rel=1e-12)
    assert pos.state is not None and pos.state[3] == pos.liquidation_price  # the trigger, before any funding


@pytest.mark.parametrize(
    ("vid", "method", "family"),
    [
        ("V30a", LiquidationMethod.BINANCE_USDM, S.AT_LP_FAMILY),
        ("V30b", LiquidationMethod.BYBIT_LINEAR, S.ENTRY_FAMILY),
    ],
)
def test_linear_liquidation_price_equals_the_reference_vectors(
    db: sqlite3.Connection, vid: str, method: LiquidationMethod, family: float
) -> None:
    v = vector(vid)["inputs"]
    inst = single_tier(LINEAR, v["mmr"], method)
    prm = params(inst, lev=2.0, taker=0.0, slip=0.0)
    prm[7] = family
    acct = opened(db, inst, prm, v.get("quantity", 1.0), v["entry"])
    pos = acct.positions()[0]
    assert pos.margin_settle == 30_000.0  # = V30a's wallet balance
    assert pos.liquidation_price == pytest.approx(vector(vid)["expected"]["liquidation_price"], abs=1e-4)


def test_fill_fee_and_slippage_in_coin_equal_the_contract_maths(db: sqlite3.Connection) -> None:
    """V33: 10,000 USD inverse at 8,000 with a 0.075% fee is 0.0009375 BTC; slippage the same way."""
    v = vector("V33")["inputs"]
    inst = INVERSE
    prm = params(inst, taker=v["fee_rate"], slip=0.0002)
    acct = account(db, {inst: prm})
    sn = snap(DAY_MS, {"BTC": v["price"]})
    res = acct.place_order(order("c", inst, "sell", v["notional_usd"] / inst.contract_size), sn)
    f = res.fills[0]
    assert f.fee_settle == pytest.approx(vector("V33")["expected"]["fee_coin"], abs=1e-15)
    assert f.fee_settle == C.fee(inst.kind, v["notional_usd"], v["price"], v["fee_rate"])
    assert f.fee_usd == f.fee_settle * v["price"] == pytest.approx(7.5)
    assert f.slippage_settle == pytest.approx(10_000 / 8_000 * 0.0002, rel=1e-15)
    assert f.slippage_usd == pytest.approx(2.0)
    assert f.price == 8_000 * (1 - 0.0002) and res.avg_price == f.price  # a sell shows price·(1 − slip)
    st_ = acct.state(inst.id)
    assert st_[1] == 8_000.0  # booked at the price, slippage charged apart
    assert st_[2] == -(f.fee_settle + f.slippage_settle)
    assert (f.fill_id, f.settle_asset, f.side, f.contracts, f.ts_ms) == ("c-1", "BTC", "sell", 100.0, DAY_MS)
    # a buy back shows price·(1 + slip), linear fees in USDT
    lin = LINEAR
    acct2 = account(db, {lin: params(lin, taker=0.0004, slip=0.0001)}, name="p2")
    sn2 = snap(DAY_MS, {"BTC": 50_000.0})
    acct2.place_order(order("s", lin, "sell", 0.01, account="p2"), sn2)
    b = acct2.place_order(order("b", lin, "buy", 0.004, reduce_only=True, account="p2"), sn2).fills[0]
    assert b.price == 50_000.0 * 1.0001 and b.fee_settle == b.fee_usd == C.fee(lin.kind, 0.004, 50_000.0, 0.0004)
    assert acct2.state(lin.id)[0] == 0.006


def test_funding_equals_the_contract_maths_and_the_reference_vectors(db: sqlite3.Connection) -> None:
    """V21 (inverse: 500 × 100 USD at 50,000, 0.01% → 0.0001 BTC) and V20 (linear: 10 coin at 2.5, 0.02%)."""
    acct = opened(db, INVERSE, params(INVERSE, taker=0.0, slip=0.0), 500.0, 50_000.0)
    m0 = acct.state(INVERSE.id)[2]
    f = {INVERSE.id: (FundingSettlement(instrument=INVERSE.id, settlement_ms=2 * DAY_MS, rate=0.0001),)}
    (ev,) = acct.sync(snap(2 * DAY_MS, {"BTC": 50_000.0}, funding=f))
    assert isinstance(ev, FundingPayment)
    assert ev.amount_settle == pytest.approx(vector("V21")["expected"]["received_coin"], abs=1e-15)
    assert ev.amount_settle == C.funding_received("inverse", "short", 50_000.0, 50_000.0, 0.0001)
    assert (ev.amount_usd, ev.asset, ev.settlement_ms, ev.rate) == (
        ev.amount_settle * 50_000.0,
        "BTC",
        2 * DAY_MS,
        1e-4,
    )
    assert acct.state(INVERSE.id)[2] == m0 + ev.amount_settle
    # linear, negative rate: the short pays
    lin = LINEAR.with_overrides(contract_size=1.0)
    acct2 = opened(db, lin, params(lin, taker=0.0, slip=0.0), 10.0, 2.5, name="p2")
    f2 = {lin.id: (FundingSettlement(instrument=lin.id, settlement_ms=2 * DAY_MS, rate=0.0002),)}
    (ev2,) = acct2.sync(snap(2 * DAY_MS, {"BTC": 2.5}, funding=f2))
    assert isinstance(ev2, FundingPayment)
    assert ev2.amount_settle == pytest.approx(vector("V20")["expected"]["received_quote"], abs=1e-15)
    assert ev2.amount_usd == ev2.amount_settle and ev2.asset == "USDT"
    f3 = {lin.id: (FundingSettlement(instrument=lin.id, settlement_ms=3 * DAY_MS, rate=-0.0003),)}
    (ev3,) = acct2.sync(snap(3 * DAY_MS, {"BTC": 2.5}, funding=f3))
    assert isinstance(ev3, FundingPayment) and ev3.amount_settle == pytest.approx(-0.0075)


def test_funding_is_charged_once_per_settlement_across_syncs_and_restarts(
    db: sqlite3.Connection, tmp_path: Path
) -> None:
    acct = opened(db, LINEAR, params(LINEAR), 0.1, 40_000.0)
    s1 = FundingSettlement(instrument=LINEAR.id, settlement_ms=DAY_MS + 8 * 3_600_000, rate=0.0001)
    s2 = FundingSettlement(instrument=LINEAR.id, settlement_ms=DAY_MS + 16 * 3_600_000, rate=0.0002)
    # live-style: the feed may deliver a settlement again in a later window; only new ones count
    e1 = acct.sync(snap(DAY_MS + 10 * 3_600_000, {"BTC": 40_000.0}, funding={LINEAR.id: (s1,)}))
    e2 = acct.sync(snap(DAY_MS + 17 * 3_600_000, {"BTC": 40_000.0}, funding={LINEAR.id: (s1, s2)}))
    assert [e.settlement_ms for e in e1 + e2 if isinstance(e, FundingPayment)] == [s1.settlement_ms, s2.settlement_ms]
    before = dump(db)
    again = account(connect(tmp_path / "book.sqlite"), {LINEAR: params(LINEAR)})
    assert again.sync(snap(DAY_MS + 17 * 3_600_000, {"BTC": 40_000.0}, funding={LINEAR.id: (s1, s2)})) == []
    assert dump(db) == before
    rows = db.execute(
        "SELECT count(*), count(DISTINCT settlement_ms) FROM paper_ledger WHERE kind = 'funding'"
    ).fetchone()
    assert rows == (2, 2)


def test_liquidation_closes_at_the_trigger_and_loses_the_margin(db: sqlite3.Connection) -> None:
    prm = params(LINEAR, lev=5.0, taker=0.0, slip=0.0, reopen=3.0)
    acct = opened(db, LINEAR, prm, 0.5, 30_000.0)
    st0 = acct.state(LINEAR.id)
    liq = st0[3]
    bankrupt = C.bankruptcy_price("linear", "short", 0.5, 30_000.0, st0[2])
    assert bankrupt is not None and 30_000.0 < liq < bankrupt
    # a settlement in the same window is not paid: the position is gone
    f = {LINEAR.id: (FundingSettlement(instrument=LINEAR.id, settlement_ms=2 * DAY_MS, rate=0.001),)}
    events = acct.sync(snap(2 * DAY_MS, {"BTC": 31_000.0}, highs={"BTC": liq}, funding=f))
    (ev,) = events
    assert isinstance(ev, Liquidation)
    assert (ev.price, ev.contracts, ev.loss_settle, ev.loss_usd, ev.asset) == (liq, 0.5, st0[2], st0[2], "USDT")
    st1 = acct.state(LINEAR.id)
    assert st1[0] == 0.0 and st1[2] == 0.0 and st1[3] == math.inf
    assert st1[6] == 2 + 3  # bar = now_ms // bar_ms (no snap.bar) + reopen_after
    (row,) = db.execute("SELECT amount, data FROM paper_ledger WHERE kind = 'liquidation'").fetchall()
    assert row[0] == -st0[2] and json.loads(row[1])["reopen_bar"] == 5.0
    usdt = next(b for b in acct.balances() if b.asset == "USDT")
    assert usdt.used == 0.0 and usdt.free == usdt.wallet == 100_000.0 - st0[2]  # the margin is gone
    # snap.bar wins over the clock; the book may move the reopen bar
    acct.place_order(order("again", LINEAR, "sell", 0.5), snap(3 * DAY_MS, {"BTC": 30_000.0}))
    acct.transfer(xfer("again-m", LINEAR, reset=True), snap(3 * DAY_MS, {"BTC": 30_000.0}))
    (ev2,) = acct.sync(snap(4 * DAY_MS, {"BTC": 40_000.0}, bar=17))
    assert isinstance(ev2, Liquidation) and acct.state(LINEAR.id)[6] == 20.0
    acct.set_reopen_bar(LINEAR.id, math.inf)
    assert acct.state(LINEAR.id)[6] == math.inf
    with pytest.raises(ConfigError, match="NaN"):
        acct.set_reopen_bar(LINEAR.id, math.nan)


def test_a_high_below_the_trigger_does_not_liquidate_and_funding_does_not_move_the_trigger(
    db: sqlite3.Connection,
) -> None:
    acct = opened(db, LINEAR, params(LINEAR, lev=5.0), 0.5, 30_000.0)
    liq = acct.state(LINEAR.id)[3]
    f = {LINEAR.id: (FundingSettlement(instrument=LINEAR.id, settlement_ms=2 * DAY_MS, rate=0.01),)}
    (ev,) = acct.sync(snap(2 * DAY_MS, {"BTC": 31_000.0}, highs={"BTC": np.nextafter(liq, 0)}, funding=f))
    assert isinstance(ev, FundingPayment)
    st_ = acct.state(LINEAR.id)
    assert st_[3] == liq  # as the kernel: not recomputed after funding
    assert acct.positions()[0].liquidation_price == S.liq_of(st_, params(LINEAR, lev=5.0)) > liq


def test_a_flat_leg_gets_no_funding_but_advances(db: sqlite3.Connection) -> None:
    acct = account(db, {LINEAR: params(LINEAR), INVERSE: params(INVERSE, coll=S.BUY)})
    f = {LINEAR.id: (FundingSettlement(instrument=LINEAR.id, settlement_ms=DAY_MS, rate=0.001),)}
    assert acct.sync(snap(DAY_MS, {"BTC": 30_000.0}, funding=f)) == []
    assert db.execute("SELECT count(*) FROM paper_ledger WHERE kind = 'funding'").fetchone() == (0,)
    assert {r[0] for r in db.execute("SELECT last_settle_ms FROM paper_positions")} == {DAY_MS}
    pos = acct.positions()
    assert [(p.instrument, p.contracts, p.liquidation_price, p.entry_basis) for p in pos] == [
        (LINEAR.id, 0.0, math.inf, "settled"),
        (INVERSE.id, 0.0, math.inf, "settled"),
    ]
    # an open leg with the price missing from the snapshot cannot be settled: refused, nothing changes
    acct.place_order(order("o", LINEAR, "sell", 0.01), snap(DAY_MS, {"BTC": 30_000.0}))
    before = dump(db)
    with pytest.raises(DataError, match="no usable BTC price"):
        acct.sync(snap(2 * DAY_MS, {"ETH": 2_000.0}))
    assert dump(db) == before
    bad = {LINEAR.id: (FundingSettlement(instrument=LINEAR.id, settlement_ms=3 * DAY_MS, rate=0.001),)}
    with pytest.raises(DataError, match="after the snapshot time"):
        acct.sync(snap(2 * DAY_MS, {"BTC": 30_000.0}, funding=bad))
    twice = {LINEAR.id: (bad[LINEAR.id][0], bad[LINEAR.id][0])}
    with pytest.raises(DataError, match="given twice"):
        acct.sync(snap(3 * DAY_MS, {"BTC": 30_000.0}, funding=twice))
    assert dump(db) == before


# ------------------------------------------------------------------------------------------- idempotency


def test_the_same_client_id_twice_trades_once(db: sqlite3.Connection, tmp_path: Path) -> None:
    acct = account(db, {LINEAR: params(LINEAR)})
    sn = snap(DAY_MS, {"BTC": 30_000.0})
    first = acct.place_order(order("ph1", LINEAR, "sell", 0.25), sn)
    before = dump(db)
    second = acct.place_order(order("ph1", LINEAR, "sell", 0.25), snap(2 * DAY_MS, {"BTC": 99_000.0}))
    assert second == first and dump(db) == before
    # even a different request under a known id changes nothing (the id is the identity)
    assert acct.place_order(order("ph1", LINEAR, "buy", 0.1), sn) == first
    assert acct.fetch_order(LINEAR.id, "ph1") == first
    assert acct.fetch_order(LINEAR.id, "nope") is None
    assert acct.fetch_order(INVERSE.id, "ph1") is None  # looked up on another instrument: not this order
    # a new object on the same file sees the same order and does not trade it again
    other = account(connect(tmp_path / "book.sqlite"), {LINEAR: params(LINEAR)})
    assert other.place_order(order("ph1", LINEAR, "sell", 0.25), sn) == first
    assert dump(db) == before
    assert db.execute("SELECT count(*) FROM paper_fills").fetchone() == (1,)
    assert first.venue_id == "paper-ph1" and first.filled_contracts == 0.25 and first.terminal


def test_the_same_transfer_id_twice_moves_once(db: sqlite3.Connection) -> None:
    acct = opened(db, LINEAR, params(LINEAR), 0.5, 30_000.0)
    sn = snap(2 * DAY_MS, {"BTC": 30_000.0})
    r1 = acct.transfer(xfer("t1", LINEAR, 1_000.0), sn)
    assert (
        r1.applied
        and not r1.duplicate
        and (r1.amount_settle, r1.cash_usd, r1.coins, r1.asset)
        == (
            1_000.0,
            1_000.0,
            0.0,
            "USDT",
        )
    )
    before = dump(db)
    r2 = acct.transfer(xfer("t1", LINEAR, 5_000.0), sn)
    assert r2.duplicate and not r2.applied and r2.amount_settle == 1_000.0 and r2.cash_usd == 1_000.0
    assert dump(db) == before


def test_the_same_sync_twice_changes_nothing(db: sqlite3.Connection) -> None:
    acct = opened(db, INVERSE, params(INVERSE, coll=S.BUY), 300.0, 30_000.0)
    f = {INVERSE.id: (FundingSettlement(instrument=INVERSE.id, settlement_ms=2 * DAY_MS, rate=0.0003),)}
    sn = snap(2 * DAY_MS, {"BTC": 31_000.0}, funding=f)
    assert len(acct.sync(sn)) == 1
    before = dump(db)
    assert acct.sync(sn) == []
    assert acct.sync(snap(DAY_MS, {"BTC": 99_000.0})) == []  # an older snapshot: nothing, not even a liquidation
    assert dump(db) == before


def test_a_new_account_object_continues_where_the_last_one_stopped(tmp_path: Path) -> None:
    """Two objects over one file, alternating, end exactly where one object running alone ends."""
    legs = {LINEAR: params(LINEAR, reopen=2.0), INVERSE: params(INVERSE, coll=S.BUY)}

    def script(objects: list[PaperAccount]) -> None:
        for t in range(1, 30):
            acct = objects[t % len(objects)]
            px = 30_000.0 * (1 + 0.03 * math.sin(t))
            f = {
                i.id: (FundingSettlement(instrument=i.id, settlement_ms=t * DAY_MS, rate=1e-4 * math.cos(t)),)
                for i in legs
            }
            sn = snap(t * DAY_MS, {"BTC": px}, highs={"BTC": px * 1.01}, funding=f, bar=t)
            acct.sync(sn)
            if t % 4 == 1:
                acct.place_order(order(f"s{t}", LINEAR, "sell", 0.01 * t), sn)
                acct.place_order(order(f"i{t}", INVERSE, "sell", float(t)), sn)
                acct.transfer(xfer(f"ts{t}", LINEAR, reset=True), sn)
                acct.transfer(xfer(f"ti{t}", INVERSE, reset=True), sn)
            if t % 7 == 3:
                acct.place_order(order(f"b{t}", LINEAR, "buy", 0.01, reduce_only=True), sn)
                acct.transfer(xfer(f"u{t}", INVERSE, 0.001), sn)

    one = connect(tmp_path / "one.sqlite")
    script([account(one, legs)])
    two = connect(tmp_path / "two.sqlite")
    script([account(two, legs), account(connect(tmp_path / "two.sqlite"), legs)])
    assert dump(one) == dump(two)
    assert one.execute("SELECT count(*) FROM paper_fills").fetchone()[0] >= 10


def test_starting_balances_are_credited_once_and_cannot_change(db: sqlite3.Connection, tmp_path: Path) -> None:
    account(db, {LINEAR: params(LINEAR)}, balances={"usdt": 1_000.0, "BTC": 0.5})
    account(db, {LINEAR: params(LINEAR)}, balances={"USDT": 1_000.0, "BTC": 0.5})
    acct = account(connect(tmp_path / "book.sqlite"), {LINEAR: params(LINEAR)}, balances={"USDT": 1_000.0, "BTC": 0.5})
    assert [(b.asset, b.wallet, b.free, b.used) for b in acct.balances()] == [
        ("BTC", 0.5, 0.5, 0.0),
        ("USDT", 1_000.0, 1_000.0, 0.0),
    ]
    assert db.execute("SELECT count(*) FROM paper_ledger WHERE kind = 'deposit'").fetchone() == (2,)
    with pytest.raises(ConfigError, match="started with balances"):
        account(db, {LINEAR: params(LINEAR)}, balances={"USDT": 2_000.0, "BTC": 0.5})
    with pytest.raises(ConfigError, match="opened on binance"):
        PaperAccount(
            db,
            name="p1",
            venue="bybit",
            legs={},
            starting_balances={"USDT": 1_000.0, "BTC": 0.5},
            overdraft=False,
        )
    # another account name in the same store is independent
    assert account(db, {LINEAR: params(LINEAR)}, name="p2", balances={"USDT": 7.0}).balances()[0].wallet == 7.0


# -------------------------------------------------------------------------------------------- refusals


def test_refused_orders_name_the_reason_change_nothing_and_stay_refused(db: sqlite3.Connection) -> None:
    acct = account(db, {LINEAR: params(LINEAR), INVERSE: params(INVERSE, coll=S.BUY)})
    sn = snap(DAY_MS, {"BTC": 30_000.0})
    acct.place_order(order("open", LINEAR, "sell", 0.01), sn)
    cases = [
        (order("r1", REG.get("binance:ETHUSDT"), "sell", 1.0), "unknown instrument binance:ETHUSDT"),
        (order("r2", LINEAR, "sell", 0.0), "positive whole number of lots of 0.001"),
        (order("r3", LINEAR, "sell", -0.001), "positive whole number of lots"),
        (order("r4", LINEAR, "sell", 0.0015), "positive whole number of lots"),
        (order("r5", LINEAR, "sell", math.nan), "positive whole number of lots"),
        (order("r6", LINEAR, "sell", math.inf), "positive whole number of lots"),
        (order("r7", INVERSE, "sell", 0.5), "lots of 1"),
        (order("r8", LINEAR, "sell", 0.001, reduce_only=True), "reduce-only sell would increase the short"),
        (order("r9", LINEAR, "buy", 0.011), "beyond the short of 0.01"),
        (order("r10", INVERSE, "buy", 1.0), "beyond the short of 0"),
        (order("r11", LINEAR, "sell", 0.001, account="other"), "order for account other sent to account p1"),
        (order("", LINEAR, "sell", 0.001), "empty client id"),
    ]
    before = dump(db)["paper_positions"]
    for req, why in cases:
        res = acct.place_order(req, sn)
        assert res.status == "rejected" and why in res.reason and "\n" not in res.reason, (req.client_id, res.reason)
        assert res.fills == () and res.filled_contracts == 0.0 and res.terminal
    for name, bad in [("nan", {"BTC": math.nan}), ("missing", {"ETH": 1.0}), ("zero", {"BTC": 0.0})]:
        res = acct.place_order(order(f"p-{name}", LINEAR, "sell", 0.001), snap(DAY_MS, bad))
        assert res.status == "rejected" and "no usable BTC price" in res.reason
    res = acct.place_order(order("stale", LINEAR, "sell", 0.001), snap(DAY_MS, {"BTC": 30_000.0}, stale=True))
    assert res.status == "rejected" and "stale" in res.reason
    assert dump(db)["paper_positions"] == before
    assert db.execute("SELECT count(*) FROM paper_fills").fetchone() == (1,)
    # a refused id keeps its answer even when the order would now be fine
    again = acct.place_order(order("r9", LINEAR, "buy", 0.001), sn)
    assert again.status == "rejected" and "beyond the short" in again.reason
    assert acct.fetch_order(LINEAR.id, "r9") == again
    # lot arithmetic: the position lands on the grid the kernel uses (k × lot), not on a float sum
    acct.place_order(order("ok", LINEAR, "sell", 0.001), sn)
    assert acct.state(LINEAR.id)[0] == 11 * 0.001
    acct.place_order(order("ok2", LINEAR, "buy", 0.001), sn)
    assert acct.state(LINEAR.id)[0] == 10 * 0.001 == S.target_contracts(params(LINEAR), 30_000.0, 0.01 * 30_000.0)
    assert 11 * 0.001 - 0.001 != 0.01


def test_overdraft_off_refuses_what_the_wallet_cannot_pay_and_on_allows_it(db: sqlite3.Connection) -> None:
    prm = params(LINEAR, lev=2.0, taker=0.0, slip=0.0)
    acct = account(db, {LINEAR: prm}, balances={"USDT": 1_000.0})
    sn = snap(DAY_MS, {"BTC": 30_000.0})
    acct.place_order(order("o", LINEAR, "sell", 0.1), sn)  # 3,000 USDT of value: 1,500 margin at 2x
    before = dump(db)
    r = acct.transfer(xfer("m", LINEAR, reset=True), sn)
    assert not r.applied and not r.duplicate
    assert r.reason == "USDT wallet of paper account p1 cannot pay 1500 USDT: it holds 1000"
    assert dump(db) == before
    r2 = acct.transfer(xfer("m2", LINEAR, 1_500.0), sn)
    assert not r2.applied and "cannot pay 1500 USDT" in r2.reason and dump(db) == before
    assert acct.transfer(xfer("m3", LINEAR, 1_000.0), sn).applied  # exactly what it holds
    assert next(b for b in acct.balances() if b.asset == "USDT").free == 0.0
    r3 = acct.transfer(xfer("m4", LINEAR, -1_200.0), sn)  # would leave the margin below zero
    assert not r3.applied and "below zero" in r3.reason
    assert acct.transfer(xfer("m5", LINEAR, -200.0), sn).applied
    assert [(b.free, b.used, b.wallet) for b in acct.balances()] == [(200.0, 800.0, 1_000.0)]
    # the same through an account with overdraft: the wallet goes below zero and says so
    acct2 = account(db, {LINEAR: prm}, balances={"USDT": 1_000.0}, overdraft=True, name="p2")
    acct2.place_order(order("o", LINEAR, "sell", 0.1, account="p2"), sn)
    r4 = acct2.transfer(xfer("m", LINEAR, reset=True, account="p2"), sn)
    assert r4.applied and r4.amount_settle == r4.cash_usd == 1_500.0
    assert [(b.free, b.used) for b in acct2.balances()] == [(-500.0, 1_500.0)]


def test_inverse_collateral_comes_from_cash_or_from_coins(db: sqlite3.Connection) -> None:
    """Bought coin collateral: USDT at the snapshot price, fee-free. Holdings collateral: the coin wallet,
    which may go below zero (coins drawn from the off-exchange holdings) even without overdraft."""
    price = 40_000.0
    sn = snap(DAY_MS, {"BTC": price})
    buy = account(db, {INVERSE: params(INVERSE, coll=S.BUY, taker=0.0, slip=0.0)}, balances={"USDC": 10_000.0})
    buy.place_order(order("o", INVERSE, "sell", 100.0), sn)
    r = buy.transfer(xfer("m", INVERSE, reset=True), sn)
    assert r.applied and r.asset == "BTC" and r.amount_settle == 10_000.0 / price / 2
    assert r.cash_usd == r.amount_settle * price and r.coins == 0.0
    assert {b.asset: (b.free, b.used) for b in buy.balances()} == {
        "BTC": (0.0, r.amount_settle),
        "USDC": (10_000.0 - r.cash_usd, 0.0),
    }  # the account's only stablecoin pays
    hold = account(db, {INVERSE: params(INVERSE, coll=S.HOLDINGS, taker=0.0, slip=0.0)}, name="h", balances={})
    hold.place_order(order("o", INVERSE, "sell", 100.0, account="h"), sn)
    r2 = hold.transfer(xfer("m", INVERSE, reset=True, account="h"), sn)
    assert r2.applied and r2.coins == r2.amount_settle == 0.125 and r2.cash_usd == 0.0
    assert [(b.asset, b.free, b.used, b.wallet) for b in hold.balances()] == [("BTC", -0.125, 0.125, 0.0)]
    # closing returns the collateral the same way
    hold.place_order(order("c", INVERSE, "buy", 100.0, reduce_only=True, account="h"), sn)
    r3 = hold.transfer(xfer("c-m", INVERSE, reset=True, account="h"), sn)
    assert r3.coins == r3.amount_settle == -0.125
    assert [(b.free, b.used) for b in hold.balances()] == [(0.0, 0.0)]


def test_refused_transfers(db: sqlite3.Connection) -> None:
    acct = account(db, {LINEAR: params(LINEAR)})
    sn = snap(DAY_MS, {"BTC": 30_000.0})
    cases = [
        (xfer("a", REG.get("binance:ETHUSDT"), 1.0), "unknown instrument"),
        (xfer("b", LINEAR, math.nan), "must be finite"),
        (xfer("c", LINEAR, math.inf), "must be finite"),
        (xfer("d", LINEAR, 1.0, account="x"), "sent to account p1"),
        (xfer("", LINEAR, 1.0), "empty transfer id"),
    ]
    before = dump(db)
    for req, why in cases:
        r = acct.transfer(req, sn)
        assert not r.applied and why in r.reason, r.reason
    r = acct.transfer(xfer("e", LINEAR, 1.0), snap(DAY_MS, {"BTC": math.nan}))
    assert not r.applied and "no usable BTC price" in r.reason
    assert dump(db) == before
    assert acct.transfer(xfer("b", LINEAR, 5.0), sn).applied  # a refused id was not booked: it may be sent again


def test_constructor_refuses_what_it_cannot_run(db: sqlite3.Connection, tmp_path: Path) -> None:
    ok = params(LINEAR)
    with pytest.raises(ConfigError, match="autocommit"):
        account(sqlite3.connect(tmp_path / "x.sqlite"), {LINEAR: ok})
    with pytest.raises(ConfigError, match="keyed by its instrument id"):
        PaperAccount(
            db, name="p", venue="v", legs={"BTCUSDT": PaperLeg(instrument=LINEAR, params=ok)},
            starting_balances={}, overdraft=False,
        )  # fmt: skip
    bad_kind = ok.copy()
    bad_kind[0] = S.INVERSE
    bad_lot = ok.copy()
    bad_lot[4] = 0.01
    bad_reopen = ok.copy()
    bad_reopen[11] = math.nan
    for prm, why in [(bad_kind, "`kind`"), (bad_lot, "`lot`"), (bad_reopen, "`reopen_after`"), (ok[:5], "14 floats")]:
        with pytest.raises(ConfigError, match=why):
            account(db, {LINEAR: prm})
    with pytest.raises(ConfigError, match="starting balance `USDT`"):
        account(db, {LINEAR: ok}, balances={"USDT": -1.0})
    with pytest.raises(ConfigError, match="given twice"):
        account(db, {LINEAR: ok}, balances={"USDT": 1.0, "usdt": 1.0})
    with pytest.raises(ConfigError, match="bar_ms"):
        account(db, {LINEAR: ok}, bar_ms=0)
    with pytest.raises(ConfigError, match="no instrument binance:ETHUSDT"):
        account(db, {LINEAR: ok}).state("binance:ETHUSDT")


# ------------------------------------------------------------------------------------ store and transactions


def test_the_schema_is_idempotent_and_a_foreign_table_is_refused(tmp_path: Path) -> None:
    db = connect(tmp_path / "a.sqlite")
    for stmt in PAPER_SCHEMA.split(";"):
        db.execute(stmt)
    db.executescript(PAPER_SCHEMA)  # run again: nothing changes
    account(db, {LINEAR: params(LINEAR)})
    other = connect(tmp_path / "b.sqlite")
    other.execute("CREATE TABLE paper_orders (account TEXT, client_id TEXT, PRIMARY KEY (account, client_id))")
    with pytest.raises(DataError, match="paper_orders lacks column"):
        account(other, {LINEAR: params(LINEAR)})


def test_a_read_only_connection_reads_the_account(db: sqlite3.Connection, tmp_path: Path) -> None:
    acct = opened(db, LINEAR, params(LINEAR), 0.2, 30_000.0)
    ro = sqlite3.connect(f"file:{tmp_path / 'book.sqlite'}?mode=ro", uri=True, isolation_level=None)
    reader = account(ro, {LINEAR: params(LINEAR)})
    assert reader.positions() == acct.positions() and reader.balances() == acct.balances()
    assert reader.fetch_order(LINEAR.id, "open") == acct.fetch_order(LINEAR.id, "open")


def test_a_failure_inside_an_operation_leaves_nothing_behind(
    db: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    acct = account(db, {LINEAR: params(LINEAR)})
    sn = snap(DAY_MS, {"BTC": 30_000.0})
    before = dump(db)

    def boom(*_: Any, **__: Any) -> None:
        raise RuntimeError("disk gone")

    monkeypatch.setattr(PaperAccount, "_save", boom)  # after the order and fill rows were written
    with pytest.raises(RuntimeError):
        acct.place_order(order("x", LINEAR, "sell", 0.01), sn)
    assert dump(db) == before and not db.in_transaction
    monkeypatch.undo()
    assert acct.place_order(order("x", LINEAR, "sell", 0.01), sn).status == "filled"


def test_inside_the_callers_transaction_it_uses_a_savepoint(db: sqlite3.Connection) -> None:
    acct = account(db, {LINEAR: params(LINEAR)})
    sn = snap(DAY_MS, {"BTC": 30_000.0})
    before = dump(db)
    db.execute("BEGIN IMMEDIATE")
    assert acct.place_order(order("x", LINEAR, "sell", 0.01), sn).status == "filled"
    assert db.in_transaction  # the caller's transaction is still open
    db.execute("ROLLBACK")
    assert dump(db) == before
    db.execute("BEGIN IMMEDIATE")
    acct.place_order(order("x", LINEAR, "sell", 0.01), sn)
    acct.transfer(xfer("t", LINEAR, reset=True), sn)
    db.execute("COMMIT")
    assert acct.state(LINEAR.id)[0] == 0.01 and acct.fetch_order(LINEAR.id, "x") is not None


def test_paper_account_satisfies_the_protocol(db: sqlite3.Connection) -> None:
    acct = account(db, {LINEAR: params(LINEAR)})
    assert isinstance(acct, Account) and acct.kind == "paper" and acct.venue == "binance" and acct.name == "p1"


# --------------------------------------------------------------------------------- invariants (hypothesis)

OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("sync"),
            st.integers(0, 2),  # days forward (0: the same snapshot time again)
            st.floats(0.8, 1.25),  # price move
            st.floats(1.0, 1.3),  # high over the close
            st.lists(st.floats(-0.003, 0.003), max_size=3),  # settlement rates in the window
        ),
        st.tuples(
            st.just("order"),
            st.integers(0, 1),
            st.sampled_from(["sell", "buy"]),
            st.integers(1, 400),
            st.booleans(),
            st.integers(0, 12),  # client id (repeats on purpose)
        ),
        st.tuples(st.just("transfer"), st.integers(0, 1), st.floats(-0.6, 1.0), st.booleans(), st.integers(0, 12)),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS, st.booleans())
def test_random_sequences_keep_the_books_balanced(ops: list[tuple[Any, ...]], overdraft: bool) -> None:
    """Margin = transfers + funding + realised PnL − fees − slippage − liquidation losses (per leg); wallets =
    start − collateral flows; contracts >= 0 on the lot grid; each settlement booked once."""
    legs = {
        LINEAR: params(LINEAR, lev=3.0, reopen=1.0),
        INVERSE: params(INVERSE, coll=S.HOLDINGS, lev=2.0, reopen=0.0),
    }
    insts = list(legs)
    with tempfile.TemporaryDirectory() as tmp:
        db = connect(Path(tmp) / "h.sqlite")
        acct = account(db, legs, balances={"USDT": 20_000.0, "BTC": 1.0}, overdraft=overdraft)
        now, price = DAY_MS, 30_000.0
        realised = {i.id: 0.0 for i in insts}
        funding_state = {i.id: 0.0 for i in insts}  # what settle_bar put in the margin
        seen_cids: set[str] = set()
        last_sync = 0
        for op in ops:
            sn = snap(now, {"BTC": price})
            if op[0] == "sync":
                _, days, move, over, rates = op
                if days:
                    now += days * DAY_MS
                    price *= move
                fund = {
                    i.id: tuple(
                        FundingSettlement(instrument=i.id, settlement_ms=now - k * 3_600_000, rate=r)
                        for k, r in enumerate(rates)
                    )
                    for i in insts
                }
                before = {i.id: acct.state(i.id) for i in insts}
                events = acct.sync(snap(now, {"BTC": price}, highs={"BTC": price * over}, funding=fund))
                for i in insts:
                    b, a = before[i.id], acct.state(i.id)
                    if a[0] > 0 and any(isinstance(e, FundingPayment) and e.instrument == i.id for e in events):
                        funding_state[i.id] += a[2] - b[2]
                if now <= last_sync:
                    assert events == []
                last_sync = max(last_sync, now)
            elif op[0] == "order":
                _, li, side, lots, ro, cid_n = op
                inst = insts[li]
                cid = f"c{cid_n}"
                before_st = acct.state(inst.id)
                res = acct.place_order(order(cid, inst, side, lots * inst.lot_size, reduce_only=ro), sn)
                if cid not in seen_cids and res.status == "filled":
                    size = before_st[0] * inst.contract_size
                    if size > 0:
                        realised[inst.id] += C.pnl(inst.kind, "short", size, before_st[1], price)
                    assert acct.state(inst.id)[0] == pytest.approx(
                        before_st[0] + (lots if side == "sell" else -lots) * inst.lot_size, abs=1e-12
                    )
                seen_cids.add(cid)
            else:
                _, li, frac, reset, tid_n = op
                inst = insts[li]
                margin = acct.state(inst.id)[2]
                acct.transfer(xfer(f"t{tid_n}", inst, frac * max(abs(margin), 0.01), reset=reset), sn)
            # ---- invariants
            for inst in insts:
                s_ = acct.state(inst.id)
                lots_held = s_[0] / inst.lot_size
                assert s_[0] >= 0.0 and lots_held == round(lots_held)
                led = dict(
                    db.execute(
                        "SELECT kind, sum(amount) FROM paper_ledger WHERE instrument = ? GROUP BY kind", (inst.id,)
                    ).fetchall()
                )
                fees = db.execute(
                    "SELECT coalesce(sum(fee), 0), coalesce(sum(slippage), 0) FROM paper_fills WHERE instrument = ?",
                    (inst.id,),
                ).fetchone()
                funding_ledger = led.get("funding", 0.0)
                assert funding_ledger == pytest.approx(funding_state[inst.id], rel=1e-9, abs=1e-9)
                expect = (
                    led.get("transfer", 0.0)
                    + funding_ledger
                    + led.get("liquidation", 0.0)
                    + realised[inst.id]
                    - fees[0]
                    - fees[1]
                )
                assert s_[2] == pytest.approx(expect, rel=1e-9, abs=1e-7)
            flows = db.execute(
                "SELECT coalesce(sum(json_extract(data, '$.cash_usd')), 0), "
                "coalesce(sum(json_extract(data, '$.coins')), 0) FROM paper_ledger WHERE kind = 'transfer'"
            ).fetchone()
            wallets = {b.asset: b.free for b in acct.balances()}
            assert wallets["USDT"] == pytest.approx(20_000.0 - flows[0], abs=1e-7)
            assert wallets["BTC"] == pytest.approx(1.0 - flows[1], abs=1e-12)
            if not overdraft:
                assert wallets["USDT"] >= 0.0
            dup = db.execute(
                "SELECT count(*) - count(DISTINCT instrument || '@' || settlement_ms) FROM paper_ledger "
                "WHERE kind = 'funding'"
            ).fetchone()
            assert dup == (0,)
        db.close()


# ------------------------------------------------------------------------------------------------ kill -9

CHILD = textwrap.dedent(
    """
    import sqlite3, sys
    import numpy as np
    from perphedge.core import legstep as S
    from perphedge.core.book import FeedSnapshot, FundingSettlement, OrderRequest, TransferRequest
    from perphedge.exchange.paper import PaperAccount, PaperLeg
    from perphedge.specs import default_registry

    DAY = 86_400_000
    inst = default_registry().get("binance:BTCUSDT")
    prm = np.array([S.LINEAR, S.STABLE, 3.0, inst.contract_size, inst.lot_size, 0.004, 0.0, S.AT_LP_FAMILY,
                    0.0005, 0.0002, 0.1, 2.0, 0.0, 0.5])


    def run(path, steps, announce):
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        acct = PaperAccount(db, name="k", venue="binance", legs={inst.id: PaperLeg(instrument=inst, params=prm)},
                            starting_balances={"USDT": 1e6}, overdraft=False)
        if announce:
            print("ready", flush=True)
        for i in range(steps):
            now = (i + 1) * DAY
            px = 30_000.0 * (1.0 + 0.01 * ((i * 7919) % 13 - 6) / 6)
            f = {inst.id: (FundingSettlement(instrument=inst.id, settlement_ms=now, rate=1e-4),)}
            snap = FeedSnapshot(now_ms=now, source="t", prices={"BTC": px}, highs={"BTC": px}, funding=f, bar=i)
            acct.sync(snap)
            side = "buy" if i % 5 == 4 else "sell"
            acct.place_order(OrderRequest(client_id=f"k{i}", account="k", instrument=inst.id, side=side,
                                          contracts=0.001 * (1 + i % 3), reduce_only=side == "buy", ref_price=px,
                                          decision=i, leg=0), snap)
            acct.transfer(TransferRequest(transfer_id=f"k{i}-m", account="k", instrument=inst.id, amount_settle=0.0,
                                          reason="rebalance", decision=i, leg=0, reset=True), snap)
            if announce:
                print(i, flush=True)
        db.close()


    if __name__ == "__main__":
        if len(sys.argv) > 3:  # die inside place_order number argv[3]: after its order and fill rows, before COMMIT
            import os, signal
            kill_at, save = f"k{sys.argv[3]}", PaperAccount._save
            def dying_save(self, instrument, st, updated_ms, last_settle_ms=None):
                if self._db.execute("SELECT 1 FROM paper_fills WHERE client_id = ?", (kill_at,)).fetchone():
                    os.kill(os.getpid(), signal.SIGKILL)
                save(self, instrument, st, updated_ms, last_settle_ms)
            PaperAccount._save = dying_save
        run(sys.argv[1], int(sys.argv[2]), True)
    """
)


def child_position(db: sqlite3.Connection) -> float:
    """Contracts implied by the stored filled orders (lots of 0.001)."""
    orders = db.execute("SELECT qty, side FROM paper_orders WHERE status = 'filled'").fetchall()
    return round(sum((1 if side == "sell" else -1) * round(qty / 0.001) for qty, side in orders)) * 0.001


def test_kill_9_during_place_order_leaves_all_or_nothing(tmp_path: Path) -> None:
    """A subprocess placing orders is SIGKILLed at random moments: after a restart every order has its fill
    and its position change or none of them exists; resuming with the same ids ends where an uninterrupted
    run ends."""
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    steps = 300
    spec = importlib.util.spec_from_file_location("paper_crash_child", script)
    assert spec is not None and spec.loader is not None
    child = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(child)
    child.run(str(tmp_path / "clean.sqlite"), steps, False)
    clean = dump(connect(tmp_path / "clean.sqlite"))
    rng = np.random.default_rng(20261122)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    killed_mid_run = 0
    for trial in range(8):
        path = tmp_path / f"crash{trial}.sqlite"
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path), str(steps)], stdout=subprocess.PIPE, text=True, env=env
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        at = int(rng.integers(0, steps - 20))  # kill after step `at` was reported, a random instant later
        while proc.stdout.readline().strip() != str(at):
            pass
        time.sleep(float(rng.uniform(0.0, 0.004)))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        db = connect(path)
        orders = db.execute("SELECT client_id, status, qty, side FROM paper_orders").fetchall()
        fills = {r[0] for r in db.execute("SELECT client_id FROM paper_fills")}
        assert {o[0] for o in orders if o[1] == "filled"} == fills  # no order without its fill, nor a fill alone
        st_ = np.frombuffer(db.execute("SELECT state FROM paper_positions").fetchone()[0], dtype="<f8")
        assert st_[0] == child_position(db)  # the position holds exactly the filled orders
        killed_mid_run += 0 < len(orders) < steps
        db.close()
        child.run(str(path), steps, False)  # resume: same ids, nothing doubled
        assert dump(connect(path)) == clean, f"trial {trial}"
    assert killed_mid_run >= 6
    # deterministic: killed inside the transaction of order k17, after its order and fill rows were written
    path = tmp_path / "inside.sqlite"
    proc = subprocess.run(
        [sys.executable, str(script), str(path), str(steps), "17"], env=env, capture_output=True, check=False
    )
    assert proc.returncode == -signal.SIGKILL
    db = connect(path)
    assert db.execute("SELECT count(*) FROM paper_orders WHERE client_id = 'k17'").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM paper_fills").fetchone() == (17,)
    st_ = np.frombuffer(db.execute("SELECT state FROM paper_positions").fetchone()[0], dtype="<f8")
    assert st_[0] == child_position(db)
    db.close()
    child.run(str(path), steps, False)
    assert dump(connect(path)) == clean
