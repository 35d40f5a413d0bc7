"""OKX v5 routes of the fake exchange (the ones ccxt 4.5's ``okx`` calls), on a :class:`PrivateLedger`.

Mounted by :class:`perphedge.exchange.fake.FakeExchange` when it is started with credentials.

Public (what ``okx.load_markets`` with ``fetchMarkets.types = ["swap"]`` needs, plus tickers and funding rate):
``GET /api/v5/public/instruments`` (``instType=SWAP``), ``/api/v5/public/time``, ``/api/v5/market/ticker``,
``/api/v5/public/funding-rate``.

Private: ``GET /api/v5/account/balance``, ``/api/v5/account/positions``, ``/api/v5/account/config``;
``POST /api/v5/trade/order`` and ``/api/v5/trade/batch-orders`` (``clOrdId``, ``reduceOnly``, ``tdMode``
``cross`` | ``isolated``); ``GET /api/v5/trade/order`` (by ``clOrdId`` or ``ordId``), ``/api/v5/trade/orders-pending``;
``POST /api/v5/trade/cancel-order``; ``GET /api/v5/trade/fills`` and ``/fills-history``; ``GET /api/v5/account/bills``
and ``/bills-archive`` (``type=8`` funding; ``subType`` 173 paid, 174 received).

Every private request is authenticated like OKX: ``OK-ACCESS-KEY`` must be the fake's key (else ``50111``),
``OK-ACCESS-PASSPHRASE`` the fake's ``password`` (else ``50105``) and ``OK-ACCESS-SIGN`` the base64 HMAC-SHA256 of
``timestamp + method + requestPath (+ "?" + query for GET) + body`` with the fake's secret (else ``50113``),
answered with HTTP 401 as OKX does. Order rejections map the ledger's neutral kinds to OKX's ``sCode``
(:data:`REJECT_CODES`) inside ``{"code": "1", "data": [{"sCode", "sMsg"}]}``.

Contracts: the OKX instruments of ``specs/instruments.json`` (BTC-USDT-SWAP 0.01 BTC a contract; BTC-USD-SWAP
100 USD a contract, settled in BTC), funding accrued from the sample's ``okx_<instId>`` funding files.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from perphedge.exchange.fake_ledger import (
    Contract,
    LedgerFill,
    LedgerOrder,
    LedgerReject,
    PrivateLedger,
    RejectKind,
    bundled_contracts,
    decimal_text,
)

if TYPE_CHECKING:
    from perphedge.exchange.fake import FakeExchange, PrivateRequest, Reply

__all__ = ["REJECT_CODES", "OkxVenue", "mount", "okx_contracts", "venue"]

VENUE = "okx"

#: neutral ledger rejection -> (sCode, sMsg) as OKX answers it
REJECT_CODES: dict[RejectKind, tuple[str, str]] = {
    "min_notional": ("51020", "Your order should meet or exceed the minimum order amount."),
    "insufficient_margin": ("51008", "Order failed. Insufficient USDT margin in account"),
    "reduce_only": ("51205", "Reduce Only is not available"),
    "rate_limited": ("50011", "Too Many Requests"),
    "invalid": ("51000", "Parameter error"),
    "duplicate": ("51016", "Duplicated clOrdId"),
}

_VENUES: weakref.WeakKeyDictionary[FakeExchange, OkxVenue] = weakref.WeakKeyDictionary()


def okx_contracts() -> dict[str, Contract]:
    """The OKX perpetuals of the bundled specs, as the fake's ledger lists them."""
    return bundled_contracts("okx")


_num = decimal_text


class _OkxError(Exception):
    def __init__(self, code: str, msg: str, status: int = 200, data: list[dict[str, Any]] | None = None) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status
        self.data = data or []


#: days of funding history OKX serves ("the last 3 months")
HISTORY_DAYS = 92
#: the base price at which the fake turns the bundled tier floors into OKX's contract counts
TIER_PRICE = {"BTC": 50_000.0, "ETH": 2_500.0}


def _bundled_instruments() -> tuple[Any, ...]:
    from perphedge.specs import bundled_instruments

    return bundled_instruments()


def _bundled_tiers(symbol: str) -> list[tuple[float, float, float]]:
    for inst in _bundled_instruments():
        if inst.exchange == VENUE and inst.symbol == symbol:
            return [(t.floor, t.mmr, t.max_leverage) for t in inst.margin.tiers]
    return []


def _to_contracts(c: Contract, floor: float) -> float:
    """A tier floor (quote value for linear, coin for inverse) in contracts at the base's ``TIER_PRICE``."""
    price = TIER_PRICE.get(c.base, 100.0)
    if c.kind == "linear":
        return round(floor / price / c.contract_size, 8)
    return round(floor * price / c.contract_size, 8)


class OkxVenue:
    """The OKX side of one fake: its ledger and routes."""

    def __init__(self, fx: FakeExchange) -> None:
        self.fx = fx
        self.contracts = okx_contracts()
        #: instId -> tiers [(floor, mmr, max leverage)] the position-tiers route serves instead of the bundled ones
        self.tier_overrides: dict[str, list[tuple[float, float, float]]] = {}
        #: instId -> the max leverage the instruments route lists (the bundled spec's; tests change it)
        self.max_leverage: dict[str, float] = {
            i.symbol: i.max_leverage for i in _bundled_instruments() if i.exchange == VENUE
        }

    @property
    def ledger(self) -> PrivateLedger:
        return self.fx.ledger(VENUE, self.contracts, fee_rate=0.0005)

    # ------------------------------------------------------------------ plumbing

    def _auth(self, req: PrivateRequest) -> _OkxError | None:
        key = req.headers.get("ok-access-key", "")
        if not key:
            return _OkxError("50103", 'Request header "OK-ACCESS-KEY" cannot be empty.', 401)
        if not hmac.compare_digest(key, self.fx.api_key):
            return _OkxError("50111", "Invalid OK-ACCESS-KEY.", 401)
        if not hmac.compare_digest(req.headers.get("ok-access-passphrase", ""), self.fx.password):
            return _OkxError("50105", 'Request header "OK-ACCESS-PASSPHRASE" incorrect.', 401)
        ts = req.headers.get("ok-access-timestamp", "")
        path = req.path + ("?" + req.query if req.method == "GET" and req.query else "")
        payload = ts + req.method + path + (req.body.decode() if req.method != "GET" else "")
        want = base64.b64encode(hmac.new(self.fx.api_secret.encode(), payload.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(req.headers.get("ok-access-sign", "").encode(), want):
            return _OkxError("50113", "Invalid Sign", 401)
        try:
            sent = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        except ValueError:
            return _OkxError("50112", "Invalid OK-ACCESS-TIMESTAMP", 401)
        if abs(time.time() - sent) > 30:
            return _OkxError("50102", "Timestamp request expired", 401)
        return None

    def route(
        self, fn: Callable[[dict[str, Any]], list[Any]], *, private: bool = True
    ) -> Callable[[PrivateRequest], Reply]:
        def handler(req: PrivateRequest) -> Reply:
            if private:
                bad = self._auth(req)
                if bad is not None:
                    return bad.status, {"code": bad.code, "msg": bad.msg, "data": []}, {}
            params: Any = dict(req.q)
            if req.method == "POST":
                try:
                    params = json.loads(req.body or b"{}")
                except ValueError:
                    return 400, {"code": "50002", "msg": "JSON syntax error", "data": []}, {}
            try:
                data = fn(params)
            except _OkxError as exc:
                return exc.status, {"code": exc.code, "msg": exc.msg, "data": exc.data}, {}
            return 200, {"code": "0", "msg": "", "data": data}, {}

        return handler

    def _inst(self, inst_id: Any) -> Contract:
        c = self.contracts.get(str(inst_id or ""))
        if c is None:
            raise _OkxError("51001", f"Instrument ID {inst_id} does not exist")
        return c

    # ------------------------------------------------------------------ public

    def instruments(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        if str(p.get("instType", "")).upper() != "SWAP":
            return []
        rows = []
        for c in self.contracts.values():
            quote = "USDT" if c.kind == "linear" else "USD"
            rows.append(
                {
                    "instType": "SWAP",
                    "instId": c.symbol,
                    "uly": f"{c.base}-{quote}",
                    "instFamily": f"{c.base}-{quote}",
                    "baseCcy": "",
                    "quoteCcy": "",
                    "settleCcy": c.settle,
                    "ctVal": _num(c.contract_size),
                    "ctMult": "1",
                    "ctValCcy": c.base if c.kind == "linear" else "USD",
                    "ctType": c.kind,
                    "optType": "",
                    "stk": "",
                    "listTime": "1573557408000",
                    "expTime": "",
                    "lever": _num(self.max_leverage.get(c.symbol, 100.0)),
                    "tickSz": _num(c.tick),
                    "lotSz": _num(c.lot),
                    "minSz": _num(c.lot),
                    "maxLmtSz": "100000000",
                    "maxMktSz": "100000",
                    "state": "live",
                    "alias": "",
                    "category": "1",
                }
            )
        return rows

    def time(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"ts": str(int(time.time() * 1000))}]

    @staticmethod
    def _bound(p: dict[str, Any], name: str) -> int | None:
        text = p.get(name)
        if text in (None, ""):
            return None
        try:
            return int(str(text))
        except ValueError:
            raise _OkxError("51000", f"Parameter {name} error") from None

    @staticmethod
    def _page_limit(p: dict[str, Any], default: int, maximum: int) -> int:
        try:
            n = int(str(p.get("limit", default)))
        except ValueError:
            raise _OkxError("51000", "Parameter limit error") from None
        return max(1, min(n, maximum))

    def _newest(self, rows: list[Any], p: dict[str, Any], default: int, maximum: int) -> list[Any]:
        """OKX paging: rows with ts > ``before`` and ts < ``after``, the newest ``limit`` of them, newest first."""
        before, after = self._bound(p, "before"), self._bound(p, "after")
        window = [r for r in rows if (before is None or r[0] > before) and (after is None or r[0] < after)]
        return list(reversed(window[-self._page_limit(p, default, maximum) :]))

    def candles(self, p: dict[str, Any]) -> list[list[str]]:
        """``market/candles`` and ``market/history-candles`` (perpetual candles = the sample's spot candles, daily)."""
        c = self._inst(p.get("instId"))
        if str(p.get("bar", "")) not in ("1D", "1Dutc"):
            return []
        rows = self.fx.data.candles.get(c.base, [])
        page = self._newest(rows, p, 100, 300)
        return [[str(r[0]), r[1], r[2], r[3], r[4], r[5], r[5], r[5], "1"] for r in page]

    def funding_history(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        """``public/funding-rate-history``: 100 a page at most, newest first, the last 3 months only (as OKX)."""
        c = self._inst(p.get("instId"))
        oldest = self.fx._now() - HISTORY_DAYS * 86_400_000
        rows = [r for r in self.fx.data.funding.get(("okx", c.symbol), []) if r[0] >= oldest]
        return [
            {
                "instType": "SWAP",
                "instId": c.symbol,
                "formulaType": "withRate",
                "fundingRate": r[1],
                "realizedRate": r[1],
                "fundingTime": str(r[0]),
                "method": "current_period",
            }
            for r in self._newest(rows, p, 100, 100)
        ]

    def position_tiers(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        """``public/position-tiers`` of a SWAP family from the bundled tiers (``tier_overrides`` replaces them).

        OKX sizes tiers in contracts: a bundled floor (quote value for linear, coin for inverse) is turned
        into contracts at ``TIER_PRICE`` of the base, so the refresh's diff can be checked exactly.
        """
        if str(p.get("instType", "")).upper() != "SWAP":
            raise _OkxError("51000", "Parameter instType error")
        family = str(p.get("instFamily") or p.get("uly") or "")
        found = [c for c in self.contracts.values() if c.symbol.rsplit("-", 1)[0] == family]
        if not found:
            raise _OkxError("51001", f"Instrument family {family} does not exist")
        c = found[0]
        tiers = self.tier_overrides.get(c.symbol) or _bundled_tiers(c.symbol)
        rows = []
        for i, (floor, mmr, lev) in enumerate(tiers):
            cap = tiers[i + 1][0] if i + 1 < len(tiers) else None
            rows.append(
                {
                    "instId": c.symbol,
                    "instFamily": family,
                    "uly": family,
                    "tier": str(i + 1),
                    "minSz": _num(_to_contracts(c, floor)),
                    "maxSz": _num(_to_contracts(c, cap)) if cap is not None else "100000000",
                    "mmr": _num(mmr),
                    "imr": _num(1.0 / lev),
                    "maxLever": _num(lev),
                    "optMgnFactor": "0",
                    "quoteMaxLoan": "",
                    "baseMaxLoan": "",
                }
            )
        return rows

    def ticker(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        c = self._inst(p.get("instId"))
        px = _num(self.ledger.price(c.symbol))
        now = str(self.fx._now())
        return [
            {
                "instType": "SWAP",
                "instId": c.symbol,
                "last": px,
                "lastSz": "1",
                "askPx": px,
                "askSz": "1",
                "bidPx": px,
                "bidSz": "1",
                "open24h": px,
                "high24h": px,
                "low24h": px,
                "volCcy24h": "0",
                "vol24h": "0",
                "sodUtc0": px,
                "sodUtc8": px,
                "ts": now,
            }
        ]

    def funding_rate(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        c = self._inst(p.get("instId"))
        now = self.fx._now()
        rate, next_ms = self.fx._next_funding("okx", c.symbol, now)
        return [
            {
                "instType": "SWAP",
                "instId": c.symbol,
                "fundingRate": rate,
                "nextFundingRate": "",
                "fundingTime": str(next_ms),
                "nextFundingTime": str(next_ms + 8 * 3_600_000),
                "method": "current_period",
                "ts": str(now),
            }
        ]

    # ------------------------------------------------------------------ account

    def balance(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        led = self.ledger
        wanted = {c.strip().upper() for c in str(p.get("ccy", "")).split(",") if c.strip()}
        details = []
        now = str(self.fx._now())
        with led.lock:
            led.accrue()
            for asset in sorted(led.wallet):
                if wanted and asset not in wanted:
                    continue
                wallet = led.wallet[asset]
                used = led.used(asset)
                eq = led.equity(asset)
                upl = eq - wallet
                details.append(
                    {
                        "ccy": asset,
                        "eq": _num(eq),
                        "cashBal": _num(wallet),
                        "availBal": _num(wallet - used),
                        "availEq": _num(eq - used),
                        "frozenBal": _num(used),
                        "ordFrozen": _num(used - sum(led.initial_margin(s) for s in self._held(asset))),
                        "upl": _num(upl),
                        "isoEq": "0",
                        "imr": _num(sum(led.initial_margin(s) for s in self._held(asset))),
                        "mmr": "",
                        "liab": "",
                        "uTime": now,
                    }
                )
        return [{"uTime": now, "totalEq": "", "adjEq": "", "details": details}]

    def _held(self, asset: str) -> list[str]:
        led = self.ledger
        return [s for s, pos in led.positions.items() if pos.qty != 0 and self.contracts[s].settle == asset]

    def positions(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        inst_type = str(p.get("instType", "") or "")
        if inst_type and inst_type.upper() != "SWAP":
            return []
        wanted = {s for s in str(p.get("instId", "") or "").split(",") if s}
        led = self.ledger
        rows = []
        with led.lock:
            led.accrue()
            for s, pos in sorted(led.positions.items()):
                if pos.qty == 0 or (wanted and s not in wanted):
                    continue
                c = self.contracts[s]
                mark = led.price(s)
                liq = led.liquidation_price(s)
                value_settle = led.value_settle(c, pos.qty, mark)
                notional_usd = led.notional_usd(c, pos.qty, mark)
                iso = pos.margin_mode == "isolated"
                rows.append(
                    {
                        "instType": "SWAP",
                        "instId": s,
                        "mgnMode": pos.margin_mode,
                        "posId": str(abs(hash(s)) % 10**12),
                        "posSide": "net",
                        "pos": _num(pos.qty),
                        "posCcy": "",
                        "availPos": _num(abs(pos.qty)),
                        "avgPx": _num(pos.entry_price),
                        "markPx": _num(mark),
                        "upl": _num(led.upnl(s, mark)),
                        "uplRatio": "",
                        "lever": _num(pos.leverage),
                        "liqPx": "" if not math.isfinite(liq) or liq <= 0 else _num(round(liq / c.tick) * c.tick),
                        "imr": "" if iso else _num(led.initial_margin(s)),
                        "margin": _num(pos.isolated_margin) if iso else "",
                        "mmr": _num(led.maintenance_rate * value_settle),
                        "mgnRatio": "",
                        "notionalUsd": _num(notional_usd),
                        "ccy": c.settle,
                        "adl": "1",
                        "realizedPnl": _num(sum(f.realized_pnl - f.fee for f in led.fills if f.symbol == s)),
                        "cTime": str(pos.updated_ms),
                        "uTime": str(pos.updated_ms),
                    }
                )
        return rows

    def config(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "uid": "44705892343619584",
                "acctLv": "2",
                "posMode": "net_mode",
                "autoLoan": False,
                "greeksType": "PA",
                "level": "Lv1",
                "ctIsoMode": "automatic",
                "mgnIsoMode": "automatic",
                "label": "perphedge fake",
                "perm": "read_only,trade",
            }
        ]

    # ------------------------------------------------------------------ orders

    def _order_row(self, o: LedgerOrder) -> dict[str, Any]:
        state = {"open": "live", "partially_filled": "partially_filled", "filled": "filled"}.get(o.status, "canceled")
        last = o.fills[-1] if o.fills else None
        c = self.contracts[o.symbol]
        pos = self.ledger.position(o.symbol)
        return {
            "instType": "SWAP",
            "instId": o.symbol,
            "ccy": "",
            "ordId": o.venue_id,
            "clOrdId": o.client_id,
            "tag": "",
            "px": _num(o.price) if o.price is not None else "",
            "sz": _num(o.qty),
            "pnl": _num(sum(f.realized_pnl for f in o.fills)),
            "ordType": o.type,
            "side": o.side,
            "posSide": "net",
            "tdMode": pos.margin_mode,
            "accFillSz": _num(o.filled),
            "fillPx": _num(last.price) if last else "",
            "tradeId": last.trade_id if last else "",
            "fillSz": _num(last.qty) if last else "",
            "fillTime": str(last.ts_ms) if last else "",
            "avgPx": _num(o.avg_price) if o.filled > 0 else "",
            "state": state,
            "lever": _num(pos.leverage),
            "feeCcy": c.settle,
            "fee": _num(-sum(f.fee for f in o.fills)),  # OKX: negative = charged
            "rebateCcy": c.settle,
            "rebate": "0",
            "category": "normal",
            "reduceOnly": "true" if o.reduce_only else "false",
            "cancelSource": "1" if o.status == "cancelled" else ("14" if o.status == "expired" else ""),
            "cTime": str(o.created_ms),
            "uTime": str(o.updated_ms),
        }

    def _place_one(self, p: dict[str, Any]) -> dict[str, Any]:
        cl = str(p.get("clOrdId", "") or "")
        try:
            if not isinstance(p, dict):
                raise _OkxError("51000", "Parameter order error")
            c = self._inst(p.get("instId"))
            side = str(p.get("side", ""))
            otype = str(p.get("ordType", ""))
            td = str(p.get("tdMode", ""))
            if side not in ("buy", "sell"):
                raise _OkxError("51000", "Parameter side error")
            if otype not in ("market", "limit"):
                raise _OkxError("51000", "Parameter ordType error")
            if td not in ("cross", "isolated"):
                raise _OkxError("51000", "Parameter tdMode error")
            if cl and (len(cl) > 32 or not cl.isalnum()):
                raise _OkxError("51000", "Parameter clOrdId error")
            try:
                qty = float(p.get("sz", ""))
                price = float(p["px"]) if otype == "limit" and p.get("px") not in (None, "") else None
            except (TypeError, ValueError):
                raise _OkxError("51000", "Parameter sz error") from None
            if otype == "limit" and price is None:
                raise _OkxError("51000", "Parameter px error")
            steps = qty / c.lot if c.lot else 0
            if qty > 0 and abs(steps - round(steps)) > 1e-9 * max(1.0, steps):
                raise _OkxError("51121", f"Order quantity must be a multiple of the lot size {c.lot:g}")
            reduce_only = p.get("reduceOnly") in (True, "true", "True")
            led = self.ledger
            with led.lock:
                if cl and led.find(None, client_id=cl) is not None:
                    raise LedgerReject("duplicate", f"clOrdId {cl} was used before")
                pos = led.position(c.symbol)
                if pos.qty == 0:
                    pos.margin_mode = "isolated" if td == "isolated" else "cross"
                elif pos.margin_mode != td:
                    raise _OkxError("51000", f"Parameter tdMode error: the position is {pos.margin_mode}")
                order = led.place(
                    c.symbol,
                    "buy" if side == "buy" else "sell",
                    "market" if otype == "market" else "limit",
                    qty,
                    price=price,
                    reduce_only=reduce_only,
                    client_id=cl,
                )
        except LedgerReject as exc:
            code, msg = REJECT_CODES[exc.kind]
            return {"ordId": "", "clOrdId": cl, "tag": "", "sCode": code, "sMsg": f"{msg} ({exc.message})"}
        except _OkxError as exc:
            return {"ordId": "", "clOrdId": cl, "tag": "", "sCode": exc.code, "sMsg": exc.msg}
        return {
            "ordId": order.venue_id,
            "clOrdId": order.client_id,
            "tag": "",
            "ts": str(order.created_ms),
            "sCode": "0",
            "sMsg": "Order placed",
        }

    def place(self, p: Any) -> list[dict[str, Any]]:
        orders = p if isinstance(p, list) else [p]
        data = [self._place_one(o) for o in orders]
        failed = [d for d in data if d["sCode"] != "0"]
        if failed and len(failed) == len(data):
            raise _OkxError("1", "All operations failed", 200, data)
        if failed:
            raise _OkxError("2", "Bulk operation partially succeeded", 200, data)
        return data

    def _find(self, p: dict[str, Any]) -> LedgerOrder | None:
        c = self._inst(p.get("instId"))
        cl = str(p.get("clOrdId", "") or "")
        oid = str(p.get("ordId", "") or "")
        if not cl and not oid:
            raise _OkxError("51000", "Parameter ordId or clOrdId error")
        return self.ledger.find(c.symbol, client_id=cl, venue_id=oid)

    def get_order(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        with self.ledger.lock:
            order = self._find(p)
            if order is None:
                raise _OkxError("51603", "Order does not exist")
            return [self._order_row(order)]

    def pending(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        inst = str(p.get("instId", "") or "")
        if inst:
            self._inst(inst)
        with self.ledger.lock:
            return [self._order_row(o) for o in reversed(self.ledger.open_orders(inst or None))]

    def cancel(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        cl = str(p.get("clOrdId", "") or "")
        led = self.ledger
        with led.lock:
            order = self._find(p)
            if order is None or not order.is_open:
                raise _OkxError(
                    "1",
                    "All operations failed",
                    200,
                    [
                        {
                            "ordId": order.venue_id if order else "",
                            "clOrdId": cl,
                            "sCode": "51400",
                            "sMsg": "Order cancellation failed as the order has been filled, canceled "
                            "or does not exist",
                        }
                    ],
                )
            led.cancel(order.symbol, venue_id=order.venue_id)
        return [{"ordId": order.venue_id, "clOrdId": order.client_id, "sCode": "0", "sMsg": ""}]

    def _fill_row(self, f: LedgerFill) -> dict[str, Any]:
        return {
            "instType": "SWAP",
            "instId": f.symbol,
            "tradeId": f.trade_id,
            "ordId": f.venue_id,
            "clOrdId": f.client_id,
            "billId": f.trade_id,
            "tag": "",
            "fillPx": _num(f.price),
            "fillSz": _num(f.qty),
            "side": f.side,
            "posSide": "net",
            "execType": "M" if f.maker else "T",
            "feeCcy": f.fee_asset,
            "fee": _num(-f.fee),
            "ts": str(f.ts_ms),
            "fillTime": str(f.ts_ms),
        }

    def fills(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        inst = str(p.get("instId", "") or "")
        if inst:
            self._inst(inst)
        oid = str(p.get("ordId", "") or "")
        begin = int(p["begin"]) if p.get("begin") else 0
        end = int(p["end"]) if p.get("end") else None
        limit = max(1, min(int(p.get("limit") or 100), 100))
        rows = [
            f
            for f in self.ledger.fills_since(inst or None, begin)
            if (not oid or f.venue_id == oid) and (end is None or f.ts_ms <= end)
        ]
        rows.sort(key=lambda f: f.ts_ms, reverse=True)  # newest first
        return [self._fill_row(f) for f in rows[:limit]]

    def bills(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        bill_type = str(p.get("type", "") or "")
        if bill_type and bill_type != "8":
            return []
        ccy = str(p.get("ccy", "") or "").upper()
        ct_type = str(p.get("ctType", "") or "")
        begin = int(p["begin"]) if p.get("begin") else 0
        end = int(p["end"]) if p.get("end") else None
        limit = max(1, min(int(p.get("limit") or 100), 100))
        led = self.ledger
        out = []
        with led.lock:
            entries = led.funding_since(None, begin)
            bal = led.wallet
            for e in sorted(entries, key=lambda e: e.ts_ms, reverse=True):
                c = self.contracts[e.symbol]
                if (ccy and c.settle != ccy) or (ct_type and c.kind != ct_type) or (end is not None and e.ts_ms > end):
                    continue
                px = led.price(e.symbol, e.ts_ms)
                value = abs(e.amount / e.rate) if e.rate else 0.0
                size = value / (c.contract_size * px) if c.kind == "linear" else value * px / c.contract_size
                out.append(
                    {
                        "billId": e.entry_id,
                        "ccy": c.settle,
                        "balChg": _num(e.amount),
                        "bal": _num(bal.get(c.settle, 0.0)),
                        "posBalChg": "0",
                        "posBal": "0",
                        "type": "8",
                        "subType": "174" if e.amount > 0 else "173",
                        "instId": e.symbol,
                        "instType": "SWAP",
                        "mgnMode": led.position(e.symbol).margin_mode,
                        "px": _num(px),
                        "sz": _num(size),
                        "pnl": "0",
                        "fee": "0",
                        "from": "",
                        "to": "",
                        "notes": "",
                        "ordId": "",
                        "ts": str(e.ts_ms),
                    }
                )
                if len(out) >= limit:
                    break
        return out


def venue(fx: FakeExchange) -> OkxVenue:
    """The OKX side of ``fx`` (created by :func:`mount`): ``.ledger``, ``.contracts``."""
    try:
        return _VENUES[fx]
    except KeyError:
        raise LookupError("the fake exchange was not started with credentials: no OKX routes") from None


def mount_public(fx: FakeExchange, v: OkxVenue | None = None) -> None:
    """Add the OKX v5 public routes (markets, tickers, candles, funding history, position tiers) to ``fx``; the venue
    is ``fx.venue_state["okx"]``."""
    v = v or OkxVenue(fx)
    fx.venue_state["okx"] = v
    public: dict[str, Callable[[dict[str, Any]], list[Any]]] = {
        "/api/v5/public/instruments": v.instruments,
        "/api/v5/public/time": v.time,
        "/api/v5/market/ticker": v.ticker,
        "/api/v5/public/funding-rate": v.funding_rate,
        "/api/v5/market/candles": v.candles,
        "/api/v5/market/history-candles": v.candles,
        "/api/v5/public/funding-rate-history": v.funding_history,
        "/api/v5/public/position-tiers": v.position_tiers,
    }
    for path, fn in public.items():
        fx.mount("GET", path, v.route(fn, private=False))


def mount(fx: FakeExchange) -> None:
    """Add the OKX v5 public and private routes to ``fx``."""
    v = OkxVenue(fx)
    _VENUES[fx] = v
    mount_public(fx, v)
    gets: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
        "/api/v5/account/balance": v.balance,
        "/api/v5/account/positions": v.positions,
        "/api/v5/account/config": v.config,
        "/api/v5/trade/order": v.get_order,
        "/api/v5/trade/orders-pending": v.pending,
        "/api/v5/trade/fills": v.fills,
        "/api/v5/trade/fills-history": v.fills,
        "/api/v5/account/bills": v.bills,
        "/api/v5/account/bills-archive": v.bills,
    }
    for path, fn in gets.items():
        fx.mount("GET", path, v.route(fn))
    fx.mount("POST", "/api/v5/trade/order", v.route(v.place))
    fx.mount("POST", "/api/v5/trade/batch-orders", v.route(v.place))
    fx.mount("POST", "/api/v5/trade/cancel-order", v.route(v.cancel))
