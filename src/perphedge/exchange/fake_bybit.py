"""Bybit v5 private REST routes of the fake exchange (the ones ccxt 4.5's ``bybit`` calls), on a :class:`PrivateLedger`.

Mounted by :class:`perphedge.exchange.fake.FakeExchange` when it is started with credentials. Routes:

* ``GET /v5/account/wallet-balance`` (``accountType`` ``UNIFIED`` for a unified trading account, ``CONTRACT``
  for a classic one; the other type is refused with ``retCode`` 10001 as Bybit does);
* ``GET /v5/position/list`` (``category`` ``linear`` | ``inverse``);
* ``POST /v5/order/create`` (``orderLinkId``, ``reduceOnly``, ``Market`` | ``Limit``), ``POST /v5/order/cancel``;
* ``GET /v5/order/realtime`` (open orders; by ``orderLinkId``/``orderId`` too), ``GET /v5/order/history``
  (finished orders);
* ``GET /v5/execution/list`` (``execType`` ``Trade`` fills and ``Funding`` settlements; a window of at most 7 days);
* the account-type probes ccxt makes when its options do not say (``/v5/user/query-api``, ``/v5/account/info``),
  answering for a unified or a classic account (:attr:`BybitVenue.account`);
* ``GET /v5/market/instruments-info``: the fake's public list with the tick and lot of our bundled specs for the
  Bybit symbols we hold, so ccxt's precision and the ledger agree.

Every private request is authenticated like Bybit: ``X-BAPI-API-KEY`` must be the fake's key (else ``retCode``
10003) and ``X-BAPI-SIGN`` the hex HMAC-SHA256 of ``timestamp + api_key + recv_window + (query string | body)``
with the fake's secret (else 10004). Each route has a per-second request limit (``X-Bapi-Limit``,
``X-Bapi-Limit-Status``, ``X-Bapi-Limit-Reset-Timestamp`` headers; 10006 when exceeded). Order rejections map the
ledger's neutral kinds to Bybit's codes (:data:`REJECT_CODES`).

Contracts: the Bybit instruments of ``specs/instruments.json`` (BTCUSDT, ETHUSDT, SOLUSDT linear: one coin per
contract; BTCUSD, ETHUSD inverse: one USD per contract, settled in the coin), funding accrued from the sample's
``bybit_<SYMBOL>`` funding files.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from perphedge.exchange.fake_ledger import (
    Contract,
    LedgerOrder,
    LedgerReject,
    PrivateLedger,
    RejectKind,
    bundled_contracts,
    decimal_text,
)

if TYPE_CHECKING:
    from perphedge.exchange.fake import FakeExchange, PrivateRequest, Reply

__all__ = ["REJECT_CODES", "BybitVenue", "bybit_contracts", "mount", "venue"]

VENUE = "bybit"
WEEK_MS = 7 * 86_400_000

#: neutral ledger rejection -> (retCode, retMsg) as Bybit answers it
REJECT_CODES: dict[RejectKind, tuple[int, str]] = {
    "min_notional": (110094, "Order does not meet minimum order value"),
    "insufficient_margin": (110007, "ab not enough for new order"),
    "reduce_only": (110017, "current position is zero, cannot fix reduce-only order qty"),
    "rate_limited": (10006, "Too many visits. Exceeded the API Rate Limit."),
    "invalid": (10001, "params error"),
    "duplicate": (110072, "OrderLinkedID is duplicate"),
}

#: requests per second a route accepts (Bybit publishes per-UID limits of this order)
ROUTE_LIMITS = {"/v5/order/create": 20, "/v5/order/cancel": 20}
DEFAULT_LIMIT = 50

_VENUES: weakref.WeakKeyDictionary[FakeExchange, BybitVenue] = weakref.WeakKeyDictionary()


def bybit_contracts() -> dict[str, Contract]:
    """The Bybit perpetuals of the bundled specs, as the fake's ledger lists them."""
    return bundled_contracts("bybit")


_num = decimal_text


class BybitVenue:
    """The Bybit side of one fake: its ledger, account type and rate-limit windows."""

    def __init__(self, fx: FakeExchange) -> None:
        self.fx = fx
        self.contracts = bybit_contracts()
        self.account: Literal["unified", "classic"] = "unified"
        self.limits: dict[str, int] = dict(ROUTE_LIMITS)
        self._hits: dict[str, deque[float]] = {}
        self._refuse: dict[str, int] = {}
        self._lock = threading.Lock()

    def throttle_next(self, path: str, n: int = 1) -> None:
        """Answer the next ``n`` requests to ``path`` with 10006 (rate limit), as if its window were full."""
        with self._lock:
            self._refuse[path] = self._refuse.get(path, 0) + n

    @property
    def ledger(self) -> PrivateLedger:
        return self.fx.ledger(VENUE, self.contracts, fee_rate=0.00055)

    def category_of(self, symbol: str) -> str:
        c = self.contracts.get(symbol)
        return "" if c is None else c.kind

    # ------------------------------------------------------------------ plumbing

    def _envelope(self, code: int, msg: str, result: Any = None) -> dict[str, Any]:
        return {
            "retCode": code,
            "retMsg": msg,
            "result": {} if result is None else result,
            "retExtInfo": {},
            "time": int(time.time() * 1000),
        }

    def _limit_headers(self, path: str) -> tuple[bool, dict[str, str]]:
        limit = self.limits.get(path, DEFAULT_LIMIT)
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(path, deque())
            while hits and now - hits[0] >= 1.0:
                hits.popleft()
            ok = len(hits) < limit
            if ok and self._refuse.get(path, 0) > 0:
                self._refuse[path] -= 1
                ok = False
            if ok:
                hits.append(now)
            reset = hits[0] + 1.0 if hits else now
        wall_reset = int((time.time() + (reset - now)) * 1000)
        headers = {
            "X-Bapi-Limit": str(limit),
            "X-Bapi-Limit-Status": str(max(0, limit - len(hits))),
            "X-Bapi-Limit-Reset-Timestamp": str(wall_reset),
        }
        return ok, headers

    def _auth(self, req: PrivateRequest) -> tuple[int, str] | None:
        key = req.headers.get("x-bapi-api-key", "")
        if not key or not hmac.compare_digest(key, self.fx.api_key):
            return 10003, "API key is invalid."
        ts = req.headers.get("x-bapi-timestamp", "")
        recv = req.headers.get("x-bapi-recv-window", "5000")
        sign = req.headers.get("x-bapi-sign", "")
        payload = req.body.decode() if req.method == "POST" else req.query
        want = hmac.new(self.fx.api_secret.encode(), (ts + key + recv + payload).encode(), hashlib.sha256).hexdigest()
        if not sign or not hmac.compare_digest(sign, want):
            return 10004, "error sign! please check your signature generation algorithm"
        try:
            sent = int(ts)
        except ValueError:
            return 10002, "invalid request, please check your timestamp"
        if abs(time.time() * 1000 - sent) > max(5000, int(recv) if recv.isdigit() else 5000) + 1000:
            return 10002, "invalid request, please check your server timestamp or recv_window param"
        return None

    def route(self, fn: Callable[[PrivateRequest, dict[str, Any]], Any]) -> Callable[[PrivateRequest], Reply]:
        """Wrap a handler: authenticate, rate-limit, parse the body, map ledger rejections to Bybit codes."""

        def handler(req: PrivateRequest) -> Reply:
            ok, headers = self._limit_headers(req.path)
            bad = self._auth(req)
            if bad is not None:
                return 200, self._envelope(*bad), headers
            if not ok:
                return 200, self._envelope(*REJECT_CODES["rate_limited"]), headers
            params: dict[str, Any] = dict(req.q)
            if req.method == "POST":
                try:
                    body = json.loads(req.body or b"{}")
                except ValueError:
                    return 200, self._envelope(10001, "request body is not valid JSON"), headers
                if not isinstance(body, dict):
                    return 200, self._envelope(10001, "request body must be a JSON object"), headers
                params = body
            try:
                result = fn(req, params)
            except LedgerReject as exc:
                code, msg = REJECT_CODES[exc.kind]
                return 200, self._envelope(code, f"{msg}: {exc.message}"), headers
            except _BybitError as exc:
                return 200, self._envelope(exc.code, exc.msg), headers
            return 200, self._envelope(0, "OK", result), headers

        return handler

    # ------------------------------------------------------------------ probes

    def query_api(self, req: PrivateRequest, p: dict[str, Any]) -> Any:
        unified = 1 if self.account == "unified" else 0
        return {
            "id": "13770661",
            "note": "perphedge fake",
            "apiKey": "",  # Bybit echoes the key; the fake does not, so no test output carries it
            "readOnly": 0,
            "secret": "",
            "permissions": {"ContractTrade": ["Order", "Position"], "Wallet": ["AccountTransfer"]},
            "ips": ["*"],
            "type": 1,
            "unified": unified,
            "uta": unified,
            "userID": 24600000,
            "isMaster": True,
        }

    def account_info(self, req: PrivateRequest, p: dict[str, Any]) -> Any:
        return {
            "unifiedMarginStatus": 6 if self.account == "unified" else 1,
            "marginMode": "REGULAR_MARGIN",
            "isMasterTrader": False,
            "spotHedgingStatus": "OFF",
            "updatedTime": str(int(time.time() * 1000)),
            "dcpStatus": "OFF",
            "timeWindow": 10,
            "smpGroup": 0,
        }

    # ------------------------------------------------------------------ reads

    def wallet_balance(self, req: PrivateRequest, p: dict[str, Any]) -> Any:
        acct = str(p.get("accountType", "")).upper()
        allowed = "UNIFIED" if self.account == "unified" else "CONTRACT"
        if acct != allowed:
            raise _BybitError(10001, f"accountType only support {allowed}")
        led = self.ledger
        wanted = {c.strip().upper() for c in str(p.get("coin", "")).split(",") if c.strip()}
        coins = []
        with led.lock:
            led.accrue()
            assets = sorted(set(led.wallet) | {c.settle for c in self.contracts.values() if c.symbol in led.positions})
            for asset in assets:
                if wanted and asset not in wanted:
                    continue
                pos_im = sum(
                    led.initial_margin(s)
                    for s, pos in led.positions.items()
                    if pos.qty != 0 and self.contracts[s].settle == asset
                )
                order_im = led.used(asset) - pos_im
                upnl = sum(
                    led.upnl(s)
                    for s, pos in led.positions.items()
                    if pos.qty != 0 and self.contracts[s].settle == asset
                )
                mm = sum(
                    led.maintenance_rate * led.value_settle(self.contracts[s], pos.qty, led.price(s))
                    for s, pos in led.positions.items()
                    if pos.qty != 0 and self.contracts[s].settle == asset
                )
                wallet = led.wallet.get(asset, 0.0)
                coins.append(
                    {
                        "coin": asset,
                        "equity": _num(wallet + upnl),
                        "walletBalance": _num(wallet),
                        "locked": "0",
                        "borrowAmount": "0",
                        "accruedInterest": "0",
                        "totalOrderIM": _num(order_im),
                        "totalPositionIM": _num(pos_im),
                        "totalPositionMM": _num(mm),
                        "unrealisedPnl": _num(upnl),
                        "cumRealisedPnl": _num(sum(f.realized_pnl for f in led.fills if f.fee_asset == asset)),
                        "bonus": "0",
                        "collateralSwitch": True,
                        "marginCollateral": True,
                    }
                )
        return {
            "list": [
                {
                    "accountType": acct,
                    "accountIMRate": "",
                    "accountMMRate": "",
                    "totalEquity": "",
                    "totalWalletBalance": "",
                    "totalMarginBalance": "",
                    "totalAvailableBalance": "",
                    "totalPerpUPL": "",
                    "totalInitialMargin": "",
                    "totalMaintenanceMargin": "",
                    "coin": coins,
                }
            ]
        }

    def _category(self, p: dict[str, Any], *, allow_spot: bool = False) -> str:
        cat = str(p.get("category", ""))
        if cat not in ("linear", "inverse") and not (allow_spot and cat == "spot"):
            raise _BybitError(10001, f"params error: category must be linear or inverse, was {cat!r}")
        return cat

    def _symbol(self, p: dict[str, Any], cat: str, *, required: bool = False) -> str | None:
        sym = p.get("symbol")
        if sym in (None, ""):
            if required:
                raise _BybitError(10001, "params error: symbol is required")
            return None
        sym = str(sym)
        if self.category_of(sym) != cat:
            raise _BybitError(10001, f"params error: symbol {sym} invalid for category {cat}")
        return sym

    def position_list(self, req: PrivateRequest, p: dict[str, Any]) -> Any:
        cat = self._category(p)
        sym = self._symbol(p, cat)
        if sym is None and cat == "linear" and not p.get("settleCoin") and not p.get("baseCoin"):
            raise _BybitError(10001, "params error: symbol or settleCoin is required")
        settle = str(p.get("settleCoin", "")).upper()
        base = str(p.get("baseCoin", "")).upper()
        led = self.ledger
        rows = []
        with led.lock:
            led.accrue()
            for s, pos in sorted(led.positions.items()):
                c = self.contracts[s]
                if c.kind != cat or (sym and s != sym) or (settle and c.settle != settle) or (base and c.base != base):
                    continue
                if pos.qty == 0 and s != sym:
                    continue
                rows.append(self._position_row(led, c, pos.qty))
            if sym is not None and not rows:
                rows.append(self._position_row(led, self.contracts[sym], 0.0))
        return {"category": cat, "list": rows, "nextPageCursor": ""}

    def _position_row(self, led: PrivateLedger, c: Contract, qty: float) -> dict[str, Any]:
        pos = led.position(c.symbol)
        mark = led.price(c.symbol)
        flat = pos.qty == 0
        liq = led.liquidation_price(c.symbol)
        return {
            "positionIdx": 0,
            "riskId": 1,
            "riskLimitValue": "2000000",
            "symbol": c.symbol,
            "side": "" if flat else ("Buy" if pos.qty > 0 else "Sell"),
            "size": _num(abs(pos.qty)),
            "avgPrice": _num(pos.entry_price),
            "positionValue": _num(0.0 if flat else led.value_settle(c, pos.qty, pos.entry_price)),
            "tradeMode": 1 if pos.margin_mode == "isolated" else 0,
            "autoAddMargin": 0,
            "positionStatus": "Normal",
            "leverage": _num(pos.leverage),
            "markPrice": _num(mark),
            "liqPrice": "" if flat or not math.isfinite(liq) else _num(round(liq / c.tick) * c.tick),
            "bustPrice": "",
            "positionIM": _num(led.initial_margin(c.symbol)),
            "positionMM": _num(0.0 if flat else led.maintenance_rate * led.value_settle(c, pos.qty, mark)),
            "positionBalance": _num(pos.isolated_margin if pos.margin_mode == "isolated" else 0.0),
            "takeProfit": "",
            "stopLoss": "",
            "trailingStop": "0",
            "unrealisedPnl": _num(led.upnl(c.symbol, mark)),
            "curRealisedPnl": _num(sum(f.realized_pnl - f.fee for f in led.fills if f.symbol == c.symbol)),
            "cumRealisedPnl": _num(sum(f.realized_pnl - f.fee for f in led.fills if f.symbol == c.symbol)),
            "adlRankIndicator": 0 if flat else 2,
            "isReduceOnly": False,
            "createdTime": str(pos.updated_ms),
            "updatedTime": str(pos.updated_ms),
            "seq": pos.updated_ms,
        }

    # ------------------------------------------------------------------ orders

    def _order_row(self, o: LedgerOrder) -> dict[str, Any]:
        c = self.contracts[o.symbol]
        status = {
            "open": "New",
            "partially_filled": "PartiallyFilled",
            "filled": "Filled",
            "rejected": "Rejected",
        }.get(o.status)
        if status is None:  # cancelled / expired
            status = "PartiallyFilledCanceled" if o.filled > 0 else "Cancelled"
        value = sum(f.price * f.qty if c.kind == "linear" else f.qty * c.contract_size / f.price for f in o.fills)
        fee = sum(f.fee for f in o.fills)
        leaves = o.qty - o.filled if o.is_open else 0.0
        return {
            "orderId": o.venue_id,
            "orderLinkId": o.client_id,
            "blockTradeId": "",
            "symbol": o.symbol,
            "price": _num(o.price if o.price is not None else 0.0),
            "qty": _num(o.qty),
            "side": "Buy" if o.side == "buy" else "Sell",
            "isLeverage": "",
            "positionIdx": 0,
            "orderStatus": status,
            "cancelType": "UNKNOWN" if o.status != "cancelled" else "CancelByUser",
            "rejectReason": "EC_NoError",
            "avgPrice": _num(o.avg_price) if o.filled > 0 else "",
            "leavesQty": _num(leaves),
            "leavesValue": _num(leaves * (o.price or 0.0) if c.kind == "linear" else 0.0),
            "cumExecQty": _num(o.filled),
            "cumExecValue": _num(value),
            "cumExecFee": _num(fee),
            "timeInForce": "GTC" if o.type == "limit" else "IOC",
            "orderType": "Limit" if o.type == "limit" else "Market",
            "stopOrderType": "",
            "orderIv": "",
            "triggerPrice": "",
            "takeProfit": "",
            "stopLoss": "",
            "tpslMode": "",
            "tpLimitPrice": "",
            "slLimitPrice": "",
            "tpTriggerBy": "",
            "slTriggerBy": "",
            "triggerDirection": 0,
            "triggerBy": "",
            "lastPriceOnCreated": "",
            "reduceOnly": o.reduce_only,
            "closeOnTrigger": False,
            "placeType": "",
            "smpType": "None",
            "smpGroup": 0,
            "smpOrderId": "",
            "createdTime": str(o.created_ms),
            "updatedTime": str(o.updated_ms),
        }

    def order_create(self, req: PrivateRequest, p: dict[str, Any]) -> Any:
        cat = self._category(p)
        sym = self._symbol(p, cat, required=True)
        assert sym is not None
        side = str(p.get("side", ""))
        if side not in ("Buy", "Sell"):
            raise _BybitError(10001, f"params error: side invalid: {side!r}")
        otype = str(p.get("orderType", ""))
        if otype not in ("Market", "Limit"):
            raise _BybitError(10001, f"params error: orderType invalid: {otype!r}")
        link = str(p.get("orderLinkId", "") or "")
        if len(link) > 36 or any(not (ch.isalnum() or ch in "-_") for ch in link):
            raise _BybitError(10001, "params error: orderLinkId: max 36 characters of letters, digits, - and _")
        try:
            qty = float(p.get("qty", ""))
            price = float(p["price"]) if otype == "Limit" and p.get("price") not in (None, "") else None
        except (TypeError, ValueError):
            raise _BybitError(10001, "params error: qty/price must be numbers") from None
        if otype == "Limit" and price is None:
            raise _BybitError(10001, "params error: price is required for Limit orders")
        reduce_only = p.get("reduceOnly") in (True, "true", "True", 1, "1")
        led = self.ledger
        with led.lock:
            if link and led.find(None, client_id=link) is not None:
                raise LedgerReject("duplicate", f"orderLinkId {link} was used before")
            order = led.place(
                sym,
                "buy" if side == "Buy" else "sell",
                "limit" if otype == "Limit" else "market",
                qty,
                price=price,
                reduce_only=reduce_only,
                client_id=link,
            )
        return {"orderId": order.venue_id, "orderLinkId": order.client_id}

    def order_cancel(self, req: PrivateRequest, p: dict[str, Any]) -> Any:
        cat = self._category(p)
        sym = self._symbol(p, cat, required=True)
        link = str(p.get("orderLinkId", "") or "")
        oid = str(p.get("orderId", "") or "")
        if not link and not oid:
            raise _BybitError(10001, "params error: orderId or orderLinkId is required")
        led = self.ledger
        with led.lock:
            order = led.find(sym, client_id=link, venue_id=oid)
            if order is None or not order.is_open:
                raise _BybitError(110001, "order not exists or too late to cancel")
            led.cancel(sym, venue_id=order.venue_id)
        return {"orderId": order.venue_id, "orderLinkId": order.client_id}

    def _orders(self, p: dict[str, Any], *, open_: bool) -> Any:
        cat = self._category(p)
        sym = self._symbol(p, cat)
        settle = str(p.get("settleCoin", "")).upper()
        link = str(p.get("orderLinkId", "") or "")
        oid = str(p.get("orderId", "") or "")
        if open_ and sym is None and not settle and not p.get("baseCoin") and not link and not oid:
            raise _BybitError(10001, "params error: symbol, settleCoin or baseCoin is required")
        start = int(p["startTime"]) if p.get("startTime") else None
        end = int(p["endTime"]) if p.get("endTime") else None
        limit = max(1, min(int(p.get("limit") or 20), 50))
        led = self.ledger
        rows = []
        with led.lock:
            for o in reversed(led.orders):
                c = self.contracts[o.symbol]
                if c.kind != cat or (sym and o.symbol != sym) or (settle and c.settle != settle):
                    continue
                if (link and o.client_id != link) or (oid and o.venue_id != oid):
                    continue
                if o.is_open != open_:
                    continue
                if (start is not None and o.created_ms < start) or (end is not None and o.created_ms > end):
                    continue
                rows.append(self._order_row(o))
                if len(rows) >= limit:
                    break
        return {"category": cat, "list": rows, "nextPageCursor": ""}

    def order_realtime(self, req: PrivateRequest, p: dict[str, Any]) -> Any:
        return self._orders(p, open_=True)

    def order_history(self, req: PrivateRequest, p: dict[str, Any]) -> Any:
        return self._orders(p, open_=False)

    def execution_list(self, req: PrivateRequest, p: dict[str, Any]) -> Any:
        cat = self._category(p)
        sym = self._symbol(p, cat)
        now = self.fx._now()
        end = int(p["endTime"]) if p.get("endTime") else None
        start = int(p["startTime"]) if p.get("startTime") else None
        if start is None and end is None:
            end = now
            start = end - WEEK_MS
        elif end is None:
            assert start is not None
            end = start + WEEK_MS
        elif start is None:
            start = end - WEEK_MS
        assert start is not None and end is not None
        if end - start > WEEK_MS:
            raise _BybitError(10001, "params error: the time range between startTime and endTime cannot exceed 7 days")
        limit = max(1, min(int(p.get("limit") or p.get("size") or 50), 100))
        exec_type = str(p.get("execType", "") or "")
        link = str(p.get("orderLinkId", "") or "")
        oid = str(p.get("orderId", "") or "")
        led = self.ledger
        rows: list[tuple[int, dict[str, Any]]] = []
        with led.lock:
            funding = led.funding_since(sym, start)
            if exec_type in ("", "Trade"):
                for f in led.fills_since(sym, start):
                    c = self.contracts[f.symbol]
                    if c.kind != cat or f.ts_ms > end or (link and f.client_id != link) or (oid and f.venue_id != oid):
                        continue
                    order = led.find(f.symbol, venue_id=f.venue_id)
                    rows.append((f.ts_ms, self._fill_row(c, f, order)))
            if exec_type in ("", "Funding") and not link and not oid:
                for e in funding:
                    c = self.contracts[e.symbol]
                    if c.kind != cat or e.ts_ms > end:
                        continue
                    rows.append((e.ts_ms, self._funding_row(led, c, e.amount, e.rate, e.ts_ms, e.entry_id)))
        rows.sort(key=lambda r: r[0], reverse=True)  # Bybit: newest first
        return {"category": cat, "list": [r for _, r in rows[:limit]], "nextPageCursor": ""}

    def _fill_row(self, c: Contract, f: Any, order: LedgerOrder | None) -> dict[str, Any]:
        value = f.price * f.qty * c.contract_size if c.kind == "linear" else f.qty * c.contract_size / f.price
        return {
            "symbol": f.symbol,
            "orderId": f.venue_id,
            "orderLinkId": f.client_id,
            "side": "Buy" if f.side == "buy" else "Sell",
            "orderPrice": _num(order.price or 0.0) if order is not None else "",
            "orderQty": _num(order.qty) if order is not None else "",
            "leavesQty": _num(order.qty - order.filled) if order is not None and order.is_open else "0",
            "createType": "CreateByUser",
            "orderType": ("Limit" if order.type == "limit" else "Market") if order is not None else "",
            "stopOrderType": "",
            "execFee": _num(f.fee),
            "execId": f.trade_id,
            "execPrice": _num(f.price),
            "execQty": _num(f.qty),
            "execType": "Trade",
            "execValue": _num(value),
            "execTime": str(f.ts_ms),
            "feeCurrency": c.settle,
            "isMaker": f.maker,
            "feeRate": _num(self.ledger.fee_rate),
            "tradeIv": "",
            "markIv": "",
            "markPrice": _num(f.price),
            "indexPrice": "",
            "underlyingPrice": "",
            "blockTradeId": "",
            "closedSize": _num(f.qty) if f.realized_pnl != 0 else "0",
            "seq": int(f.trade_id),
        }

    def _funding_row(
        self, led: PrivateLedger, c: Contract, amount: float, rate: float, ts: int, entry_id: str
    ) -> dict[str, Any]:
        price = led.price(c.symbol, ts)
        value = abs(amount / rate) if rate else 0.0
        size = value / price / c.contract_size if c.kind == "linear" else value * price / c.contract_size
        # Bybit: execFee > 0 is paid, < 0 received; side is the position's side
        side = "Sell" if (amount > 0) == (rate > 0) else "Buy"
        return {
            "symbol": c.symbol,
            "orderId": "",
            "orderLinkId": "",
            "side": side,
            "orderPrice": "0",
            "orderQty": "0",
            "leavesQty": "0",
            "createType": "",
            "orderType": "UNKNOWN",
            "stopOrderType": "",
            "execFee": _num(-amount),
            "execId": f"funding-{entry_id}",
            "execPrice": _num(price),
            "execQty": _num(size),
            "execType": "Funding",
            "execValue": _num(value),
            "execTime": str(ts),
            "feeCurrency": c.settle,
            "isMaker": False,
            "feeRate": _num(rate),
            "tradeIv": "",
            "markIv": "",
            "markPrice": _num(price),
            "indexPrice": "",
            "underlyingPrice": "",
            "blockTradeId": "",
            "closedSize": "0",
            "seq": int(entry_id),
        }

    # ------------------------------------------------------------------ public (market list with our specs)

    def instruments_info(self, req: PrivateRequest) -> Reply:
        cat = req.q.get("category", "spot")
        answer = self.fx.bybit_instruments(cat)
        if cat in ("linear", "inverse"):
            for item in answer["result"]["list"]:
                c = self.contracts.get(item["symbol"])
                if c is None:
                    continue
                item["priceFilter"]["tickSize"] = _num(c.tick)
                item["priceScale"] = str(max(0, -math.floor(math.log10(c.tick)) if c.tick < 1 else 0))
                lot = item["lotSizeFilter"]
                lot["qtyStep"] = _num(c.lot)
                lot["minOrderQty"] = _num(c.lot if c.kind == "linear" else c.contract_size)
                lot["maxOrderQty"] = "1000000" if c.kind == "inverse" else "1000"
                lot["minNotionalValue"] = _num(c.min_notional_usd)
        return 200, answer, {}


class _BybitError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def venue(fx: FakeExchange) -> BybitVenue:
    """The Bybit side of ``fx`` (created by :func:`mount`): ``venue(fx).account = "classic"``, ``.ledger``."""
    try:
        return _VENUES[fx]
    except KeyError:
        raise LookupError("the fake exchange was not started with credentials: no Bybit routes") from None


def mount(fx: FakeExchange) -> None:
    """Add the Bybit v5 private routes (and the spec-true instrument list) to ``fx``."""
    v = BybitVenue(fx)
    _VENUES[fx] = v
    gets: dict[str, Callable[[PrivateRequest, dict[str, Any]], Any]] = {
        "/v5/user/query-api": v.query_api,
        "/v5/account/info": v.account_info,
        "/v5/account/wallet-balance": v.wallet_balance,
        "/v5/position/list": v.position_list,
        "/v5/order/realtime": v.order_realtime,
        "/v5/order/history": v.order_history,
        "/v5/execution/list": v.execution_list,
    }
    for path, fn in gets.items():
        fx.mount("GET", path, v.route(fn))
    fx.mount("POST", "/v5/order/create", v.route(v.order_create))
    fx.mount("POST", "/v5/order/cancel", v.route(v.order_cancel))
    fx.mount("GET", "/v5/market/instruments-info", v.instruments_info)
