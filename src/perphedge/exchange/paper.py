"""The paper account: a simulated exchange account that books exactly what the backtest kernel books.

:class:`PaperAccount` implements :class:`perphedge.core.book.Account` over the book's SQLite store
(design ``docs/design/book.md`` §1.3, §4, §5.1). Every amount it books comes from
:mod:`perphedge.core.legstep` (``settle_bar``, ``fill``, ``transfer``, ``reset_margin``,
``book_collateral``, ``on_liquidation``, ``liq_of``): the paper account keeps the leg's ``float64[8]``
state and calls the same compiled steps the backtest kernel loops over, so a replay through it takes
the backtest's numbers because the same code runs.

Rules (the book relies on them):

* **Prices.** A leg trades and settles at ``snap.prices[instrument.base]``; liquidation is checked against
  ``snap.highs[base]`` (the price when the feed has no high).
* **sync(snap)** settles each leg once per new ``snap.now_ms`` (a snapshot at or before the leg's last
  sync changes nothing and returns no events): funding settlements of ``snap.funding[instrument id]``
  with ``last_sync < settlement_ms <= now_ms``, their rates summed in order, go to **one**
  ``legstep.settle_bar`` call (also with no settlement: it checks the high). A liquidated leg gives one
  :class:`Liquidation` (the whole margin lost) and ``legstep.on_liquidation(st, prm, bar)``; otherwise an
  open leg gives one :class:`FundingPayment` per settlement. Events come leg by leg in the order of
  ``legs``, payments by settlement time.
* **Bar numbers** (``reopen_bar``): ``snap.bar`` when the feed sets it (replay: the index of the
  history's bar), else ``snap.now_ms // bar_ms`` (``bar_ms`` of the book's step, default one day). The
  book must pass the same number to ``legstep.rebalance_target``.
* **Orders** are market orders, filled whole at the snapshot price: the position is booked as the
  kernel books it (``legstep.fill``: entry = price, fee and slippage charged to the margin); the
  :class:`Fill` shows ``price·(1 ± slippage)`` for display. Idempotent by client id: a known id (filled
  or rejected) returns the stored result and changes nothing. Rejections are stored too, so an id's
  outcome never changes.
* **Transfers** move collateral between the wallet and the isolated margin (``legstep.transfer`` or, with
  ``reset``, ``legstep.reset_margin``); ``legstep.book_collateral`` says where it came from: cash (the
  settle stablecoin of a linear leg, the account's stablecoin for coin bought as inverse collateral: a
  fee-free conversion at the snapshot price) or coins of the base (inverse collateral from holdings; the
  coin wallet may go below zero = coins drawn from the off-exchange holdings). Idempotent by
  ``transfer_id``; a refused transfer is not stored (nothing changed, the same id may be sent again).
* **Crash safety.** Each writing method runs in one ``BEGIN IMMEDIATE … COMMIT`` (a SAVEPOINT inside a
  transaction the caller opened), so an order, its fill and the position change commit together or
  not at all. Nothing is cached between calls: a new :class:`PaperAccount` on the same store continues
  exactly where the previous one stopped.
"""

from __future__ import annotations

import itertools
import json
import math
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from perphedge.core import contracts as C
from perphedge.core import legstep as S
from perphedge.core.book import (
    AccountEvent,
    Balance,
    FeedSnapshot,
    Fill,
    FundingPayment,
    Liquidation,
    OrderRequest,
    OrderResult,
    Position,
    Side,
    TransferRequest,
    TransferResult,
)
from perphedge.core.instruments import Instrument
from perphedge.core.units import is_stablecoin
from perphedge.errors import ConfigError, DataError

__all__ = ["DAY_MS", "PAPER_SCHEMA", "PaperAccount", "PaperLeg"]

DAY_MS = 86_400_000

#: DDL of the paper account's tables (design §5.1, adapted). ``CREATE … IF NOT EXISTS``: safe to run again.
PAPER_SCHEMA = """
CREATE TABLE IF NOT EXISTS paper_accounts (
  account TEXT PRIMARY KEY,
  venue TEXT NOT NULL,
  starting TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS paper_balances (
  account TEXT NOT NULL,
  asset TEXT NOT NULL,
  amount REAL NOT NULL,
  PRIMARY KEY (account, asset)
);
CREATE TABLE IF NOT EXISTS paper_positions (
  account TEXT NOT NULL,
  instrument TEXT NOT NULL,
  state BLOB NOT NULL,
  updated_ms INTEGER NOT NULL,
  last_settle_ms INTEGER NOT NULL,
  PRIMARY KEY (account, instrument)
);
CREATE TABLE IF NOT EXISTS paper_orders (
  account TEXT NOT NULL,
  client_id TEXT NOT NULL,
  instrument TEXT NOT NULL,
  side TEXT NOT NULL,
  qty REAL NOT NULL,
  type TEXT NOT NULL,
  price REAL,
  reduce_only INTEGER NOT NULL,
  status TEXT NOT NULL,
  filled REAL NOT NULL,
  avg_price REAL,
  fee REAL NOT NULL,
  venue_id TEXT NOT NULL,
  reason TEXT NOT NULL,
  decision INTEGER,
  leg INTEGER,
  attempt INTEGER,
  ts_ms INTEGER NOT NULL,
  PRIMARY KEY (account, client_id)
);
CREATE TABLE IF NOT EXISTS paper_fills (
  account TEXT NOT NULL,
  fill_id TEXT NOT NULL,
  client_id TEXT NOT NULL,
  instrument TEXT NOT NULL,
  side TEXT NOT NULL,
  qty REAL NOT NULL,
  price REAL NOT NULL,
  entry_price REAL NOT NULL,
  fee REAL NOT NULL,
  slippage REAL NOT NULL,
  fee_usd REAL NOT NULL,
  slippage_usd REAL NOT NULL,
  fee_asset TEXT NOT NULL,
  ts_ms INTEGER NOT NULL,
  PRIMARY KEY (account, fill_id)
);
CREATE TABLE IF NOT EXISTS paper_ledger (
  account TEXT NOT NULL,
  kind TEXT NOT NULL,
  ref TEXT NOT NULL,
  instrument TEXT,
  settlement_ms INTEGER,
  amount REAL NOT NULL,
  asset TEXT NOT NULL,
  amount_usd REAL,
  ts_ms INTEGER,
  data TEXT NOT NULL,
  PRIMARY KEY (account, kind, ref)
);
CREATE UNIQUE INDEX IF NOT EXISTS paper_ledger_funding_once
  ON paper_ledger (account, instrument, settlement_ms) WHERE kind = 'funding';
"""

_COLUMNS = {
    "paper_accounts": ("account", "venue", "starting"),
    "paper_balances": ("account", "asset", "amount"),
    "paper_positions": ("account", "instrument", "state", "updated_ms", "last_settle_ms"),
    "paper_orders": (
        "account", "client_id", "instrument", "side", "qty", "type", "price", "reduce_only", "status",
        "filled", "avg_price", "fee", "venue_id", "reason", "decision", "leg", "attempt", "ts_ms",
    ),
    "paper_fills": (
        "account", "fill_id", "client_id", "instrument", "side", "qty", "price", "entry_price", "fee",
        "slippage", "fee_usd", "slippage_usd", "fee_asset", "ts_ms",
    ),
    "paper_ledger": (
        "account", "kind", "ref", "instrument", "settlement_ms", "amount", "asset", "amount_usd", "ts_ms", "data",
    ),
}  # fmt: skip

_LOT_TOL = 1e-9  # relative: a quantity within this of a whole number of lots is that number
_savepoints = itertools.count()


@dataclass(frozen=True, slots=True, kw_only=True)
class PaperLeg:
    """One instrument of a paper account and its :mod:`~perphedge.core.legstep` ``params`` vector.

    ``params`` is built by the use case exactly as ``usecases.backtest._leg_params`` builds it; its kind,
    contract size and lot must be the instrument's (the account uses ``reopen_after`` at a liquidation).
    """

    instrument: Instrument
    params: np.ndarray


def _f(x: Any) -> float:
    """A stored REAL (NULL = NaN)."""
    return math.nan if x is None else float(x)


def _pack(st: np.ndarray) -> bytes:
    return np.ascontiguousarray(st, dtype="<f8").tobytes()


def _unpack(blob: bytes) -> np.ndarray:
    st = np.frombuffer(blob, dtype="<f8").astype(np.float64)
    if st.shape != (S.N_STATE,):
        raise DataError(f"paper position state must hold {S.N_STATE} floats, has {st.size}")
    return st


def _usd(prm: np.ndarray, amount_settle: float, price: float) -> float:
    """USD of a settle amount at ``price``, as legstep reports it (coin × price inverse, quote 1:1 linear)."""
    return amount_settle * price if prm[S.P_KIND] == S.INVERSE else amount_settle


class PaperAccount:
    """A simulated exchange account keeping balances, positions, orders and fills in the book's store.

    Parameters
    ----------
    db
        An autocommit connection (``isolation_level=None``) to the book's SQLite store (WAL). The paper
        tables (:data:`PAPER_SCHEMA`) are created when missing; a read-only connection works once they exist.
    name, venue
        The account's name (key of every row) and the exchange it simulates.
    legs
        Instrument id (``exchange:SYMBOL``, = ``leg.instrument.id``) → :class:`PaperLeg`.
    starting_balances
        Asset → amount (>= 0), seeded once per account name; a later start with other balances is refused.
    overdraft
        Let a transfer take the cash wallet below zero (replay, where the backtest counts it as borrowed);
        False (live paper) refuses it.
    bar_ms
        Length of the book's bar in ms: the bar number of a snapshot without ``bar`` is ``now_ms // bar_ms``.
    """

    kind = "paper"

    def __init__(
        self,
        db: sqlite3.Connection,
        *,
        name: str,
        venue: str,
        legs: Mapping[str, PaperLeg],
        starting_balances: Mapping[str, float],
        overdraft: bool,
        bar_ms: int = DAY_MS,
    ) -> None:
        if db.isolation_level is not None:
            raise ConfigError(
                f"paper account `{name}`: the store connection must be in autocommit mode "
                f"(isolation_level=None), was {db.isolation_level!r}"
            )
        if not name:
            raise ConfigError("paper account: `name` must not be empty")
        if not (isinstance(bar_ms, int) and bar_ms > 0):
            raise ConfigError(f"paper account `{name}`: `bar_ms` must be a positive integer, was {bar_ms!r}")
        self._db = db
        self.name = name
        self.venue = venue
        self.overdraft = bool(overdraft)
        self._bar_ms = bar_ms
        self._legs: dict[str, PaperLeg] = {}
        for key, leg in legs.items():
            self._check_leg(key, leg)
            self._legs[key] = PaperLeg(
                instrument=leg.instrument, params=np.array(leg.params, dtype=np.float64, copy=True)
            )
        start: dict[str, float] = {}
        for asset, amount in starting_balances.items():
            code = asset.upper()
            value = float(amount)
            if not (math.isfinite(value) and value >= 0.0):
                raise ConfigError(
                    f"paper account `{name}`: starting balance `{asset}` must be a finite amount >= 0, was {amount!r}"
                )
            if code in start:
                raise ConfigError(f"paper account `{name}`: starting balance `{code}` given twice")
            start[code] = value
        self._start = start
        self._cash_asset = self._pick_cash_asset(start)
        self._ensure_schema()
        self._seed()

    # ------------------------------------------------------------------------------------------ set-up

    def _check_leg(self, key: str, leg: PaperLeg) -> None:
        inst = leg.instrument
        where = f"paper account `{self.name}`: leg `{key}`"
        if key != inst.id:
            raise ConfigError(f"{where}: must be keyed by its instrument id `{inst.id}`")
        prm = np.asarray(leg.params, dtype=np.float64)
        if prm.shape != (len(S.PARAMS),):
            raise ConfigError(f"{where}: `params` must hold {len(S.PARAMS)} floats ({', '.join(S.PARAMS)})")
        kind = S.INVERSE if inst.is_inverse else S.LINEAR
        checks = (
            ("kind", S.P_KIND, kind),
            ("contract_size", S.P_CS, inst.contract_size),
            ("lot", S.P_LOT, inst.lot_size),
        )
        for label, idx, want in checks:
            if prm[idx] != want:
                raise ConfigError(f"{where}: params `{label}` must be the instrument's {want!r}, was {prm[idx]!r}")
        finite = (
            ("leverage", S.P_LEV),
            ("mmr", S.P_MMR),
            ("cum", S.P_CUM),
            ("taker", S.P_TAKER),
            ("slippage", S.P_SLIP),
            ("reopen_after", S.P_REOPEN),
        )
        for label, idx in finite:
            if not math.isfinite(prm[idx]):
                raise ConfigError(f"{where}: params `{label}` must be finite, was {prm[idx]!r}")
        if prm[S.P_LEV] <= 0.0:
            raise ConfigError(f"{where}: params `leverage` must be > 0, was {prm[S.P_LEV]!r}")
        if prm[S.P_COLL] not in (S.BUY, S.HOLDINGS, S.STABLE):
            raise ConfigError(f"{where}: params `collateral` must be 0 (buy), 1 (holdings) or 2 (stable)")

    @staticmethod
    def _pick_cash_asset(start: Mapping[str, float]) -> str:
        """The stablecoin that pays for bought coin collateral: USDT if held, else the first held stablecoin."""
        stables = sorted(a for a in start if is_stablecoin(a))
        if "USDT" in stables or not stables:
            return "USDT"
        return stables[0]

    def _ensure_schema(self) -> None:
        have = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
        wanted = [*_COLUMNS, "paper_ledger_funding_once"]
        if any(t not in have for t in wanted):
            for stmt in PAPER_SCHEMA.split(";"):
                if stmt.strip():
                    self._db.execute(stmt)
        for table, cols in _COLUMNS.items():
            got = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            missing = [c for c in cols if c not in got]
            if missing:
                raise DataError(
                    f"the book store's table {table} lacks column(s) {', '.join(missing)}: "
                    "it was not created from exchange.paper.PAPER_SCHEMA"
                )

    def _seed(self) -> None:
        """Record the account and credit its starting balances, once per account name."""
        starting = json.dumps(self._start, sort_keys=True)
        row = self._db.execute("SELECT venue, starting FROM paper_accounts WHERE account = ?", (self.name,)).fetchone()
        if row is not None:
            if row[0] != self.venue:
                raise ConfigError(
                    f"paper account `{self.name}` was opened on {row[0]}; it cannot continue on {self.venue}"
                )
            if json.loads(row[1]) != self._start:
                raise ConfigError(
                    f"paper account `{self.name}` was started with balances {row[1]}; now given {starting}: "
                    "starting balances are credited once (use a new account name to start over)"
                )
            missing = [k for k in self._legs if not self._position_exists(k)]
            if not missing:
                return
        with self._txn():
            if row is None:
                self._db.execute(
                    "INSERT INTO paper_accounts (account, venue, starting) VALUES (?, ?, ?)",
                    (self.name, self.venue, starting),
                )
                for asset, amount in sorted(self._start.items()):
                    self._credit(asset, amount)
                    self._ledger("deposit", f"start:{asset}", None, None, amount, asset, None, None, {})
            for key, leg in self._legs.items():
                st = np.zeros(S.N_STATE)
                S.init_state(st, leg.params)
                self._db.execute(
                    "INSERT OR IGNORE INTO paper_positions (account, instrument, state, updated_ms, last_settle_ms) "
                    "VALUES (?, ?, ?, 0, 0)",
                    (self.name, key, _pack(st)),
                )

    def _position_exists(self, instrument: str) -> bool:
        return (
            self._db.execute(
                "SELECT 1 FROM paper_positions WHERE account = ? AND instrument = ?", (self.name, instrument)
            ).fetchone()
            is not None
        )

    # ------------------------------------------------------------------------------------------ storage

    @contextmanager
    def _txn(self) -> Iterator[None]:
        """One transaction: BEGIN IMMEDIATE … COMMIT, or a SAVEPOINT inside the caller's transaction."""
        if self._db.in_transaction:
            sp = f"paper_{next(_savepoints)}"
            self._db.execute(f"SAVEPOINT {sp}")
            try:
                yield
            except BaseException:
                self._db.execute(f"ROLLBACK TO {sp}")
                self._db.execute(f"RELEASE {sp}")
                raise
            self._db.execute(f"RELEASE {sp}")
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _load(self, instrument: str) -> tuple[np.ndarray, int, int]:
        row = self._db.execute(
            "SELECT state, updated_ms, last_settle_ms FROM paper_positions WHERE account = ? AND instrument = ?",
            (self.name, instrument),
        ).fetchone()
        if row is None:
            raise DataError(f"paper account `{self.name}` has no position row for {instrument}")
        return _unpack(row[0]), int(row[1]), int(row[2])

    def _save(self, instrument: str, st: np.ndarray, updated_ms: int, last_settle_ms: int | None = None) -> None:
        if last_settle_ms is None:
            self._db.execute(
                "UPDATE paper_positions SET state = ?, updated_ms = ? WHERE account = ? AND instrument = ?",
                (_pack(st), updated_ms, self.name, instrument),
            )
        else:
            self._db.execute(
                "UPDATE paper_positions SET state = ?, updated_ms = ?, last_settle_ms = ? "
                "WHERE account = ? AND instrument = ?",
                (_pack(st), updated_ms, last_settle_ms, self.name, instrument),
            )

    def _wallet(self, asset: str) -> float:
        row = self._db.execute(
            "SELECT amount FROM paper_balances WHERE account = ? AND asset = ?", (self.name, asset)
        ).fetchone()
        return 0.0 if row is None else float(row[0])

    def _credit(self, asset: str, amount: float) -> None:
        self._db.execute(
            "INSERT INTO paper_balances (account, asset, amount) VALUES (?, ?, ?) "
            "ON CONFLICT (account, asset) DO UPDATE SET amount = amount + excluded.amount",
            (self.name, asset, amount),
        )

    def _ledger(
        self,
        kind: str,
        ref: str,
        instrument: str | None,
        settlement_ms: int | None,
        amount: float,
        asset: str,
        amount_usd: float | None,
        ts_ms: int | None,
        data: Mapping[str, Any],
    ) -> None:
        self._db.execute(
            "INSERT INTO paper_ledger (account, kind, ref, instrument, settlement_ms, amount, asset, amount_usd, "
            "ts_ms, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self.name, kind, ref, instrument, settlement_ms, amount, asset, amount_usd, ts_ms, json.dumps(data)),
        )

    def _leg(self, instrument: str) -> PaperLeg:
        leg = self._legs.get(instrument)
        if leg is None:
            known = ", ".join(self._legs) or "none"
            raise ConfigError(f"paper account `{self.name}` has no instrument {instrument} (it has: {known})")
        return leg

    def _bar(self, snap: FeedSnapshot) -> float:
        return float(snap.bar) if snap.bar is not None else float(snap.now_ms // self._bar_ms)

    @staticmethod
    def _price(snap: FeedSnapshot, asset: str) -> float:
        p = snap.prices.get(asset.upper())
        return math.nan if p is None else float(p)

    # ------------------------------------------------------------------------------------------ reads

    def state(self, instrument: str) -> np.ndarray:
        """A copy of the leg's ``float64[8]`` legstep state."""
        self._leg(instrument)
        return self._load(instrument)[0].copy()

    def balances(self) -> list[Balance]:
        """Per asset: ``free`` = the wallet outside the isolated margins, ``used`` = those margins (state
        margin, before unrealised PnL), ``wallet = free + used``."""
        free = {
            str(a): float(v)
            for a, v in self._db.execute("SELECT asset, amount FROM paper_balances WHERE account = ?", (self.name,))
        }
        used: dict[str, float] = {}
        for key, leg in self._legs.items():
            st = self._load(key)[0]
            asset = leg.instrument.settle
            used[asset] = used.get(asset, 0.0) + float(st[S.S_MARGIN])
        out = []
        for asset in sorted({*free, *used}):
            f, u = free.get(asset, 0.0), used.get(asset, 0.0)
            out.append(Balance(account=self.name, asset=asset, wallet=f + u, free=f, used=u))
        return out

    def positions(self) -> list[Position]:
        """Every leg (flat ones with ``contracts`` 0); ``liquidation_price`` = ``legstep.liq_of`` of the state."""
        out = []
        for key, leg in self._legs.items():
            st, updated, _ = self._load(key)
            out.append(
                Position(
                    account=self.name,
                    instrument=key,
                    contracts=float(st[S.S_N]),
                    entry_price=float(st[S.S_ENTRY]),
                    margin_settle=float(st[S.S_MARGIN]),
                    settle_asset=leg.instrument.settle,
                    liquidation_price=float(S.liq_of(st, leg.params)),
                    mmr=float(st[S.S_MMR]),
                    cum_settle=float(st[S.S_CUM]),
                    entry_basis="settled",
                    updated_ms=updated,
                    state=tuple(float(x) for x in st),
                )
            )
        return out

    def fetch_order(self, instrument: str, client_id: str) -> OrderResult | None:
        """The stored order with ``client_id`` on ``instrument`` (None when this account never saw it)."""
        row = self._db.execute(
            "SELECT instrument, status, venue_id, filled, avg_price, reason FROM paper_orders "
            "WHERE account = ? AND client_id = ?",
            (self.name, client_id),
        ).fetchone()
        if row is None or row[0] != instrument:
            return None
        fills = tuple(
            Fill(
                fill_id=r[0],
                client_id=client_id,
                account=self.name,
                instrument=r[1],
                side=r[2],
                contracts=float(r[3]),
                price=float(r[4]),
                fee_settle=float(r[5]),
                slippage_settle=float(r[6]),
                fee_usd=float(r[7]),
                slippage_usd=float(r[8]),
                settle_asset=r[9],
                ts_ms=int(r[10]),
            )
            for r in self._db.execute(
                "SELECT fill_id, instrument, side, qty, price, fee, slippage, fee_usd, slippage_usd, fee_asset, ts_ms "
                "FROM paper_fills WHERE account = ? AND client_id = ? ORDER BY fill_id",
                (self.name, client_id),
            )
        )
        return OrderResult(
            client_id=client_id,
            account=self.name,
            instrument=row[0],
            status=row[1],
            venue_id=row[2],
            filled_contracts=float(row[3]),
            avg_price=_f(row[4]),
            fills=fills,
            reason=row[5],
        )

    # ------------------------------------------------------------------------------------------ sync

    def sync(self, snap: FeedSnapshot) -> list[AccountEvent]:
        """Settle every leg to ``snap.now_ms``: funding settlements since its last sync, or its liquidation."""
        events: list[AccountEvent] = []
        with self._txn():
            for key, leg in self._legs.items():
                events.extend(self._sync_leg(key, leg, snap))
        return events

    def _sync_leg(self, key: str, leg: PaperLeg, snap: FeedSnapshot) -> list[AccountEvent]:
        st, updated, last = self._load(key)
        now = int(snap.now_ms)
        if now <= last:
            return []
        prm = leg.params
        inst = leg.instrument
        due = []
        seen: set[int] = set()
        for s in snap.funding.get(key, ()):
            ms = int(s.settlement_ms)
            if ms > now:
                raise DataError(
                    f"funding settlement of {key} at {ms} ms is after the snapshot time {now} ms (feed {snap.source})"
                )
            if ms <= last:
                continue
            if ms in seen:
                raise DataError(f"funding settlement of {key} at {ms} ms given twice (feed {snap.source})")
            if not math.isfinite(s.rate):
                raise DataError(f"funding rate of {key} at {ms} ms must be finite, was {s.rate!r}")
            seen.add(ms)
            due.append(s)
        due.sort(key=lambda s: s.settlement_ms)
        funding_sum = 0.0
        for s in due:
            funding_sum += float(s.rate)
        price = self._price(snap, inst.base)
        open_before = st[S.S_N] * prm[S.P_CS] > 0.0
        if open_before and not (math.isfinite(price) and price > 0.0):
            raise DataError(
                f"paper account `{self.name}`: no usable {inst.base} price in the snapshot "
                f"(feed {snap.source}) to settle {key}"
            )
        high = snap.highs.get(inst.base.upper(), price)
        high = price if high is None or math.isnan(high) else float(high)
        contracts, size, margin_before = float(st[S.S_N]), float(st[S.S_N] * prm[S.P_CS]), float(st[S.S_MARGIN])
        row = np.zeros(len(S.OUT_COLUMNS))
        S.settle_bar(st, prm, high, price, funding_sum, row)
        events: list[AccountEvent] = []
        if row[S.O_LIQUIDATED] > 0.0:
            bar = self._bar(snap)
            S.on_liquidation(st, prm, bar)
            liq = float(row[S.O_LIQ])
            ev = Liquidation(
                account=self.name,
                instrument=key,
                ts_ms=now,
                price=liq,
                contracts=contracts,
                loss_settle=margin_before,
                loss_usd=float(row[S.O_LIQ_LOSS]),
                asset=inst.settle,
            )
            self._ledger(
                "liquidation",
                f"{key}@{now}",
                key,
                None,
                -margin_before,
                inst.settle,
                -ev.loss_usd,
                now,
                {"price": liq, "contracts": contracts, "reopen_bar": float(st[S.S_REOPEN]), "bar": bar},
            )
            events.append(ev)
        elif open_before:
            kind = inst.kind
            for s in due:
                amount = C.funding_received(kind, "short", size, price, float(s.rate))
                ev_f = FundingPayment(
                    account=self.name,
                    instrument=key,
                    settlement_ms=int(s.settlement_ms),
                    rate=float(s.rate),
                    amount_settle=amount,
                    asset=inst.settle,
                    amount_usd=_usd(prm, amount, price),
                )
                self._ledger(
                    "funding",
                    f"{key}@{s.settlement_ms}",
                    key,
                    int(s.settlement_ms),
                    amount,
                    inst.settle,
                    ev_f.amount_usd,
                    now,
                    {"rate": float(s.rate), "price": price, "contracts": contracts},
                )
                events.append(ev_f)
        self._save(key, st, now if open_before else updated, now)
        return events

    # ------------------------------------------------------------------------------------------ orders

    def place_order(self, req: OrderRequest, snap: FeedSnapshot) -> OrderResult:
        """Fill ``req`` at market (whole) at the snapshot price, or refuse it; idempotent by client id."""
        with self._txn():
            known = self._db.execute(
                "SELECT instrument FROM paper_orders WHERE account = ? AND client_id = ?", (self.name, req.client_id)
            ).fetchone()
            if known is not None:
                found = self.fetch_order(known[0], req.client_id)
                assert found is not None
                return found
            why = self._refusal(req, snap)
            if why:
                return self._reject(req, snap, why)
            return self._fill(req, snap)

    def _refusal(self, req: OrderRequest, snap: FeedSnapshot) -> str:
        """Why ``req`` is refused ('' = it may fill)."""
        if not req.client_id:
            return "empty client id"
        if req.account != self.name:
            return f"order for account {req.account} sent to account {self.name}"
        leg = self._legs.get(req.instrument)
        if leg is None:
            return f"unknown instrument {req.instrument} (this account trades {', '.join(self._legs) or 'nothing'})"
        if req.side not in ("sell", "buy"):
            return f"side must be sell or buy, was {req.side!r}"
        lot = leg.instrument.lot_size
        qty = float(req.contracts)
        lots = qty / lot if math.isfinite(qty) else math.nan
        if not (math.isfinite(lots) and lots >= 1.0 - _LOT_TOL and abs(lots - round(lots)) <= _LOT_TOL * lots):
            return f"contracts must be a positive whole number of lots of {lot:g}, was {req.contracts!r}"
        if snap.stale:
            return f"the price feed ({snap.source}) is stale"
        price = self._price(snap, leg.instrument.base)
        if not (math.isfinite(price) and price > 0.0):
            return f"no usable {leg.instrument.base} price in the snapshot (feed {snap.source}), was {price!r}"
        held = round(float(self._load(req.instrument)[0][S.S_N]) / lot)
        if req.side == "sell" and req.reduce_only:
            return f"reduce-only sell would increase the short of {held * lot:g} contracts"
        if req.side == "buy" and round(lots) > held:
            return f"buy of {round(lots) * lot:g} contracts is beyond the short of {held * lot:g} (would flip it long)"
        return ""

    def _order_row(
        self, req: OrderRequest, now: int, status: str, filled: float, avg: float, fee: float, reason: str
    ) -> None:
        self._db.execute(
            "INSERT INTO paper_orders (account, client_id, instrument, side, qty, type, price, reduce_only, status, "
            "filled, avg_price, fee, venue_id, reason, decision, leg, attempt, ts_ms) "
            "VALUES (?, ?, ?, ?, ?, 'market', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.name,
                req.client_id,
                req.instrument,
                str(req.side),
                float(req.contracts) if math.isfinite(float(req.contracts)) else 0.0,
                float(req.ref_price) if math.isfinite(float(req.ref_price)) else None,
                1 if req.reduce_only else 0,
                status,
                filled,
                avg if math.isfinite(avg) else None,
                fee,
                f"paper-{req.client_id}" if status == "filled" else "",
                reason,
                int(req.decision),
                int(req.leg),
                int(req.attempt),
                now,
            ),
        )

    def _reject(self, req: OrderRequest, snap: FeedSnapshot, why: str) -> OrderResult:
        self._order_row(req, int(snap.now_ms), "rejected", 0.0, math.nan, 0.0, why)
        return OrderResult(
            client_id=req.client_id, account=self.name, instrument=req.instrument, status="rejected", reason=why
        )

    def _fill(self, req: OrderRequest, snap: FeedSnapshot) -> OrderResult:
        leg = self._legs[req.instrument]
        inst, prm = leg.instrument, leg.params
        st, _, _ = self._load(req.instrument)
        now = int(snap.now_ms)
        price = self._price(snap, inst.base)
        lot = inst.lot_size
        held = round(float(st[S.S_N]) / lot)
        k = round(float(req.contracts) / lot)
        n_new = float(held + k if req.side == "sell" else held - k) * lot  # on the lot grid as target_contracts
        traded = abs(n_new - float(st[S.S_N])) * prm[S.P_CS]
        row = np.zeros(len(S.OUT_COLUMNS))
        S.fill(st, prm, price, n_new, row)
        fee_settle = C.fee(inst.kind, traded, price, float(prm[S.P_TAKER]))
        slip_settle = C.fee(inst.kind, traded, price, float(prm[S.P_SLIP]))
        slip = float(prm[S.P_SLIP])
        shown = price * (1.0 + slip) if req.side == "buy" else price * (1.0 - slip)
        side: Side = "buy" if req.side == "buy" else "sell"
        qty = float(k) * lot
        fill = Fill(
            fill_id=f"{req.client_id}-1",
            client_id=req.client_id,
            account=self.name,
            instrument=req.instrument,
            side=side,
            contracts=qty,
            price=shown,
            fee_settle=fee_settle,
            slippage_settle=slip_settle,
            fee_usd=float(row[S.O_FEE]),
            slippage_usd=float(row[S.O_SLIP]),
            settle_asset=inst.settle,
            ts_ms=now,
        )
        self._order_row(req, now, "filled", qty, shown, fee_settle, "")
        self._db.execute(
            "INSERT INTO paper_fills (account, fill_id, client_id, instrument, side, qty, price, entry_price, fee, "
            "slippage, fee_usd, slippage_usd, fee_asset, ts_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.name,
                fill.fill_id,
                req.client_id,
                req.instrument,
                side,
                qty,
                shown,
                price,
                fee_settle,
                slip_settle,
                fill.fee_usd,
                fill.slippage_usd,
                inst.settle,
                now,
            ),
        )
        self._save(req.instrument, st, now)
        return OrderResult(
            client_id=req.client_id,
            account=self.name,
            instrument=req.instrument,
            status="filled",
            venue_id=f"paper-{req.client_id}",
            filled_contracts=qty,
            avg_price=shown,
            fills=(fill,),
        )

    # ------------------------------------------------------------------------------------------ transfers

    def open_orders(self) -> list[OrderResult]:
        """None: paper orders are market orders, filled (or rejected) when they are placed."""
        return []

    def cancel_order(self, instrument: str, client_id: str) -> OrderResult | None:
        """Nothing to cancel (paper orders never rest): the order's final state, or None when unknown."""
        return self.fetch_order(instrument, client_id)

    def transfer(self, req: TransferRequest, snap: FeedSnapshot) -> TransferResult:
        """Move collateral between the wallet and the leg's isolated margin; idempotent by ``transfer_id``."""
        with self._txn():
            row = self._db.execute(
                "SELECT instrument, amount, asset, data FROM paper_ledger WHERE account = ? AND kind = 'transfer' "
                "AND ref = ?",
                (self.name, req.transfer_id),
            ).fetchone()
            if row is not None:
                data = json.loads(row[3])
                return TransferResult(
                    transfer_id=req.transfer_id,
                    account=self.name,
                    instrument=row[0],
                    amount_settle=float(row[1]),
                    asset=row[2],
                    applied=False,
                    cash_usd=float(data["cash_usd"]),
                    coins=float(data["coins"]),
                    duplicate=True,
                    reason="already booked under this transfer id",
                )
            return self._transfer(req, snap)

    def _refused(self, req: TransferRequest, asset: str, why: str) -> TransferResult:
        return TransferResult(
            transfer_id=req.transfer_id,
            account=self.name,
            instrument=req.instrument,
            amount_settle=0.0,
            asset=asset,
            applied=False,
            reason=why,
        )

    def _transfer(self, req: TransferRequest, snap: FeedSnapshot) -> TransferResult:
        leg = self._legs.get(req.instrument)
        if not req.transfer_id:
            return self._refused(req, "", "empty transfer id")
        if req.account != self.name:
            return self._refused(req, "", f"transfer for account {req.account} sent to account {self.name}")
        if leg is None:
            return self._refused(req, "", f"unknown instrument {req.instrument}")
        inst, prm = leg.instrument, leg.params
        price = self._price(snap, inst.base)
        if not (math.isfinite(price) and price > 0.0):
            return self._refused(
                req, inst.settle, f"no usable {inst.base} price in the snapshot (feed {snap.source}), was {price!r}"
            )
        if not req.reset and not math.isfinite(req.amount_settle):
            return self._refused(req, inst.settle, f"amount must be finite, was {req.amount_settle!r}")
        st, _, _ = self._load(req.instrument)
        if req.reset:
            move = float(S.reset_margin(st, prm, price))
        else:
            move = float(req.amount_settle)
            S.transfer(st, prm, move)
        row = np.zeros(len(S.OUT_COLUMNS))
        S.book_collateral(prm, price, move, row)
        cash, coins = float(row[S.O_CASH]), float(row[S.O_COIN])
        cash_asset = inst.settle if prm[S.P_KIND] == S.LINEAR else self._cash_asset
        if not self.overdraft:
            have = self._wallet(cash_asset)
            if cash > 0.0 and have - cash < 0.0:
                return self._refused(
                    req,
                    inst.settle,
                    f"{cash_asset} wallet of paper account {self.name} cannot pay {cash:.8g} {cash_asset}: "
                    f"it holds {have:.8g}",
                )
            if st[S.S_MARGIN] < 0.0:
                return self._refused(
                    req, inst.settle, f"the isolated margin of {req.instrument} would go below zero ({st[2]:.8g})"
                )
        now = int(snap.now_ms)
        if cash != 0.0:
            self._credit(cash_asset, -cash)
        if coins != 0.0:
            self._credit(inst.base, -coins)
        self._ledger(
            "transfer",
            req.transfer_id,
            req.instrument,
            None,
            move,
            inst.settle,
            _usd(prm, move, price),
            now,
            {
                "cash_usd": cash,
                "cash_asset": cash_asset,
                "coins": coins,
                "coin_asset": inst.base,
                "price": price,
                "reset": bool(req.reset),
                "requested": float(req.amount_settle) if math.isfinite(req.amount_settle) else None,
                "reason": str(req.reason),
                "decision": int(req.decision),
                "leg": int(req.leg),
            },
        )
        self._save(req.instrument, st, now)
        return TransferResult(
            transfer_id=req.transfer_id,
            account=self.name,
            instrument=req.instrument,
            amount_settle=move,
            asset=inst.settle,
            applied=True,
            cash_usd=cash,
            coins=coins,
        )

    # ------------------------------------------------------------------------------------------ book side

    def coins_moved_in(self, instrument: str) -> float:
        """Coins of the base moved from the holdings into ``instrument``'s margin so far, net (inverse+holdings
        collateral; 0 otherwise): the sum of the transfers' ``coins``, in ledger order."""
        self._leg(instrument)
        rows = self._db.execute(
            "SELECT data FROM paper_ledger WHERE account = ? AND kind = 'transfer' AND instrument = ? ORDER BY rowid",
            (self.name, instrument),
        ).fetchall()
        total = 0.0
        for (data,) in rows:
            total += float(json.loads(data).get("coins", 0.0))
        return total

    def set_reopen_bar(self, instrument: str, bar: float) -> None:
        """Set the leg's ``reopen_bar`` (book-side state entry), persisted with the state."""
        self._leg(instrument)
        if math.isnan(bar):
            raise ConfigError(f"paper account `{self.name}`: reopen bar of {instrument} must not be NaN")
        with self._txn():
            st, updated, _ = self._load(instrument)
            st[S.S_REOPEN] = float(bar)
            self._save(instrument, st, updated)
