"""Binance USDⓈ-M (``/fapi``) and COIN-M (``/dapi``) private routes of the fake exchange.

``mount(fx)`` adds the signed endpoints ccxt 4.5.90's ``binanceusdm`` / ``binancecoinm`` call for balances,
positions, leverage brackets, symbol config, orders (market, limit, reduce-only, ``newClientOrderId``), lookup
and cancel by ``origClientOrderId``, open orders, fills (``userTrades``) and funding (``income`` FUNDING_FEE),
and a request-weight counter for every ``/fapi`` and ``/dapi`` request.

Each signed request is checked like Binance does: header ``X-MBX-APIKEY`` (missing: ``-2014``, wrong: ``-2015``,
HTTP 401), HMAC-SHA256 of the query string and body without ``signature`` under the fake's secret (``-1022``),
``timestamp`` within ``recvWindow`` of the server clock (``-1021``). Ledger rejections answer Binance's codes:
``min_notional`` -4164, ``insufficient_margin`` -2019, ``reduce_only`` -2022, ``duplicate`` -4116,
``rate_limited`` -1015 (HTTP 429), ``invalid`` -1111 (lot precision) / -4014 (tick) / -4003 / -1121 / -1102.

Weights: Binance's published IP weights (``WEIGHTS``; order placement 0 on the IP limit) in fixed windows of
``state.window_ms`` (60 s); every answer carries ``X-MBX-USED-WEIGHT-1M``; past ``state.limit`` (2400) the answer
is 429 ``-1003`` with ``Retry-After`` (seconds to the next window). ``state.log`` keeps ``(wall ms, weight, api)``
of every counted request, so a test can check the weight any client spent in any window.

State lives in the fake's ledgers ``fx.ledger("binance_usdm", ...)`` and ``fx.ledger("binance_coinm", ...)``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl

from perphedge.exchange.fake_ledger import Contract, LedgerFill, LedgerOrder, LedgerReject, PrivateLedger

if TYPE_CHECKING:
    from perphedge.exchange.fake import FakeExchange, PrivateRequest, Reply

__all__ = ["WEIGHTS", "BinanceState", "contracts", "liquidate", "mount", "state"]

#: (method, path) -> IP weight Binance publishes (requests without a symbol may weigh more: see ``_weight``)
WEIGHTS: dict[tuple[str, str], int] = {
    ("GET", "/fapi/v1/exchangeInfo"): 1,
    ("GET", "/fapi/v1/time"): 1,
    ("GET", "/fapi/v1/klines"): 5,
    ("GET", "/fapi/v1/fundingRate"): 1,
    ("GET", "/fapi/v1/premiumIndex"): 1,
    ("GET", "/fapi/v3/account"): 5,
    ("GET", "/fapi/v2/account"): 5,
    ("GET", "/fapi/v3/positionRisk"): 5,
    ("GET", "/fapi/v2/positionRisk"): 5,
    ("GET", "/fapi/v1/symbolConfig"): 5,
    ("GET", "/fapi/v1/leverageBracket"): 1,
    ("GET", "/fapi/v1/positionSide/dual"): 30,
    ("GET", "/fapi/v1/multiAssetsMargin"): 30,
    ("POST", "/fapi/v1/order"): 0,
    ("GET", "/fapi/v1/order"): 1,
    ("DELETE", "/fapi/v1/order"): 1,
    ("GET", "/fapi/v1/openOrders"): 1,
    ("GET", "/fapi/v1/userTrades"): 5,
    ("GET", "/fapi/v1/income"): 30,
    ("GET", "/fapi/v1/forceOrders"): 20,
    ("POST", "/fapi/v1/leverage"): 1,
    ("POST", "/fapi/v1/marginType"): 1,
    ("GET", "/dapi/v1/exchangeInfo"): 1,
    ("GET", "/dapi/v1/time"): 1,
    ("GET", "/dapi/v1/klines"): 5,
    ("GET", "/dapi/v1/fundingRate"): 1,
    ("GET", "/dapi/v1/premiumIndex"): 10,
    ("GET", "/dapi/v1/account"): 5,
    ("GET", "/dapi/v1/positionRisk"): 1,
    ("GET", "/dapi/v2/leverageBracket"): 1,
    ("GET", "/dapi/v1/leverageBracket"): 1,
    ("GET", "/dapi/v1/positionSide/dual"): 30,
    ("POST", "/dapi/v1/order"): 0,
    ("GET", "/dapi/v1/order"): 1,
    ("DELETE", "/dapi/v1/order"): 1,
    ("GET", "/dapi/v1/openOrders"): 1,
    ("GET", "/dapi/v1/userTrades"): 20,
    ("GET", "/dapi/v1/income"): 20,
    ("GET", "/dapi/v1/forceOrders"): 20,
    ("POST", "/dapi/v1/leverage"): 1,
    ("POST", "/dapi/v1/marginType"): 1,
}
_CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_STATUS = {
    "open": "NEW",
    "partially_filled": "PARTIALLY_FILLED",
    "filled": "FILLED",
    "cancelled": "CANCELED",
    "expired": "EXPIRED",
    "rejected": "REJECTED",
}


@dataclass
class BinanceState:
    """The fake Binance's weight counter (per API: ``fapi``, ``dapi``) and settings."""

    limit: int = 2400
    window_ms: int = 60_000
    recv_window_max_ms: int = 60_000
    dual_side: bool = False  # the account's position mode: True = hedge mode (LONG/SHORT sides)
    log: list[tuple[int, int, str]] = field(default_factory=list)  # (wall ms, weight, api) of counted requests
    used: dict[tuple[str, int], int] = field(default_factory=dict)  # (api, window index) -> weight
    lock: threading.Lock = field(default_factory=threading.Lock)

    def max_in_window(self, api: str, window_ms: int | None = None) -> int:
        """The most weight ``api`` saw in any sliding window of ``window_ms`` (default ``self.window_ms``)."""
        span = window_ms or self.window_ms
        rows = [(ms, w) for ms, w, a in self.log if a == api]
        best = 0
        lo = 0
        total = 0
        for hi in range(len(rows)):
            total += rows[hi][1]
            while rows[hi][0] - rows[lo][0] >= span:
                total -= rows[lo][1]
                lo += 1
            best = max(best, total)
        return best


def state(fx: FakeExchange) -> BinanceState:
    """The fake's Binance state (created by :func:`mount`)."""
    st = fx.venue_state.get("binance")
    if st is None:
        st = fx.venue_state["binance"] = BinanceState()
    assert isinstance(st, BinanceState)
    return st


def _f8(x: float) -> str:
    return "0" if x == 0 or not math.isfinite(x) else f"{x:.8f}"


def contracts(fx: FakeExchange, inverse: bool) -> dict[str, Contract]:
    """The perpetuals the fake lists on ``/fapi`` (linear) or ``/dapi`` (inverse), as its exchangeInfo says."""
    out: dict[str, Contract] = {}
    info = fx.binance_futures_info(inverse=inverse)
    for s in info["symbols"]:
        filters = {f["filterType"]: f for f in s["filters"]}
        sym = s["symbol"]
        out[sym] = Contract(
            symbol=sym,
            kind="inverse" if inverse else "linear",
            base=s["baseAsset"],
            settle=s["marginAsset"],
            contract_size=float(s.get("contractSize", 1)),
            lot=float(filters["LOT_SIZE"]["stepSize"]),
            tick=float(filters["PRICE_FILTER"]["tickSize"]),
            min_notional_usd=0.0 if inverse else float(filters["MIN_NOTIONAL"]["notional"]),
            funding_key=("binance", sym),
        )
    return out


class _Api:
    """One of ``/fapi`` (USDⓈ-M) and ``/dapi`` (COIN-M) over its ledger."""

    def __init__(self, fx: FakeExchange, inverse: bool) -> None:
        self.fx = fx
        self.inverse = inverse
        self.prefix = "/dapi" if inverse else "/fapi"
        self.venue = "binance_coinm" if inverse else "binance_usdm"
        self._contracts = contracts(fx, inverse)
        fx.ledger(self.venue, self._contracts)  # created now, so tests may reach it by name before any request

    @property
    def ledger(self) -> PrivateLedger:
        return self.fx.ledger(self.venue, self._contracts)

    # -- auth -----------------------------------------------------------------------------------------------

    def check(self, req: PrivateRequest) -> Reply | None:
        """Binance's API-key, signature and timestamp checks; an error reply or None."""
        key = req.headers.get("x-mbx-apikey")
        if not key:
            return 401, {"code": -2014, "msg": "API-key format invalid."}, {}
        if not hmac.compare_digest(key.encode(), self.fx.api_key.encode()):
            return 401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}, {}
        total = req.query + req.body.decode("utf-8", "replace")
        m = re.search(r"(?:^|&)signature=([^&]*)", total)
        if m is None:
            return (
                400,
                {"code": -1102, "msg": "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."},
                {},
            )
        payload = total[: m.start()] + total[m.end() :]
        payload = payload.lstrip("&") if m.start() == 0 else payload
        want = hmac.new(self.fx.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, m.group(1).lower()):
            return 400, {"code": -1022, "msg": "Signature for this request is not valid."}, {}
        params = dict(parse_qsl(payload, keep_blank_values=True))
        try:
            ts = int(params["timestamp"])
        except (KeyError, ValueError):
            return (
                400,
                {"code": -1102, "msg": "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."},
                {},
            )
        try:
            recv = int(params.get("recvWindow", "5000"))
        except ValueError:
            recv = -1
        if not (0 < recv <= state(self.fx).recv_window_max_ms):
            return 400, {"code": -1131, "msg": "recvWindow must be less than 60000"}, {}
        server = int(time.time() * 1000)
        if ts >= server + 1000 or server - ts > recv:
            return 400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}, {}
        return None

    def signed(self, fn: Callable[[dict[str, str]], Reply]) -> Callable[[PrivateRequest], Reply]:
        def route(req: PrivateRequest) -> Reply:
            bad = self.check(req)
            if bad is not None:
                return bad
            params = dict(req.q)
            params.update(dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True)))
            try:
                return fn(params)
            except LedgerReject as exc:
                return self.reject(exc)

        return route

    def reject(self, exc: LedgerReject) -> Reply:
        msg = exc.message
        if exc.kind == "min_notional":
            return (
                400,
                {"code": -4164, "msg": "Order's notional must be no smaller than 5 (unless you choose reduce only)."},
                {},
            )
        if exc.kind == "insufficient_margin":
            return 400, {"code": -2019, "msg": "Margin is insufficient."}, {}
        if exc.kind == "reduce_only":
            return 400, {"code": -2022, "msg": "ReduceOnly Order is rejected."}, {}
        if exc.kind == "duplicate":
            return 400, {"code": -4116, "msg": "ClientOrderId is duplicated."}, {}
        if exc.kind == "rate_limited":
            return 429, {"code": -1015, "msg": "Too many new orders; current limit is 1200 orders per MINUTE."}, {}
        if "lot" in msg:
            return 400, {"code": -1111, "msg": "Precision is over the maximum defined for this asset."}, {}
        if "tick" in msg:
            return 400, {"code": -4014, "msg": "Price not increased by tick size."}, {}
        if "quantity must be" in msg:
            return 400, {"code": -4003, "msg": "Quantity less than or equal to zero."}, {}
        if "unknown symbol" in msg:
            return 400, {"code": -1121, "msg": "Invalid symbol."}, {}
        if "limit order needs a price" in msg:
            return (
                400,
                {"code": -1102, "msg": "Mandatory parameter 'price' was not sent, was empty/null, or malformed."},
                {},
            )
        if "unknown order" in msg or "not open" in msg:
            return 400, {"code": -2011, "msg": "Unknown order sent."}, {}
        return 400, {"code": -1013, "msg": f"Filter failure: {msg}"}, {}

    # -- shapes ---------------------------------------------------------------------------------------------

    def contract(self, symbol: str) -> Contract:
        c = self._contracts.get(symbol)
        if c is None:
            raise LedgerReject("invalid", f"unknown symbol {symbol!r}")
        return c

    def order_json(self, o: LedgerOrder) -> dict[str, Any]:
        c = self.contract(o.symbol)
        cum = o.filled * c.contract_size * (o.avg_price if c.kind == "linear" else 1.0)
        row: dict[str, Any] = {
            "orderId": int(o.venue_id),
            "symbol": o.symbol,
            "status": _STATUS[o.status],
            "clientOrderId": o.client_id,
            "price": _f8(o.price or 0.0),
            "avgPrice": _f8(o.avg_price),
            "origQty": _f8(o.qty),
            "executedQty": _f8(o.filled),
            "cumQty": _f8(o.filled),
            "timeInForce": "GTC",
            "type": o.type.upper(),
            "reduceOnly": o.reduce_only,
            "closePosition": False,
            "side": o.side.upper(),
            "positionSide": "BOTH",
            "stopPrice": "0",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": o.type.upper(),
            "time": o.created_ms,
            "updateTime": o.updated_ms,
        }
        if self.inverse:
            row["pair"] = o.symbol.replace("_PERP", "")
            row["cumBase"] = _f8(o.filled * c.contract_size / o.avg_price if o.avg_price else 0.0)
        else:
            row["cumQuote"] = _f8(cum)
            row["priceMatch"] = "NONE"
            row["selfTradePreventionMode"] = "NONE"
            row["goodTillDate"] = 0
        return row

    def trade_json(self, t: LedgerFill) -> dict[str, Any]:
        c = self.contract(t.symbol)
        row: dict[str, Any] = {
            "symbol": t.symbol,
            "id": int(t.trade_id),
            "orderId": int(t.venue_id),
            "side": t.side.upper(),
            "price": _f8(t.price),
            "qty": _f8(t.qty),
            "realizedPnl": _f8(t.realized_pnl),
            "commission": _f8(t.fee),
            "commissionAsset": t.fee_asset,
            "time": t.ts_ms,
            "positionSide": "BOTH",
            "buyer": t.side == "buy",
            "maker": t.maker,
        }
        if self.inverse:
            row["pair"] = t.symbol.replace("_PERP", "")
            row["marginAsset"] = c.settle
            row["baseQty"] = _f8(t.qty * c.contract_size / t.price)
        else:
            row["quoteQty"] = _f8(t.qty * c.contract_size * t.price)
        return row

    def position_rows(self, symbol: str | None, v2: bool = False) -> list[dict[str, Any]]:
        led = self.ledger
        out = []
        with led.lock:
            led.accrue()
            for sym, pos in led.positions.items():
                if (symbol and sym != symbol) or (not symbol and pos.qty == 0):
                    continue
                c = self.contract(sym)
                mark = led.price(sym)
                upnl = led.upnl(sym, mark)
                liq = led.liquidation_price(sym)
                iso = pos.isolated_margin if pos.margin_mode == "isolated" else 0.0
                signed_value = (
                    pos.qty * c.contract_size * mark if c.kind == "linear" else pos.qty * c.contract_size / mark
                )
                row: dict[str, Any] = {
                    "symbol": sym,
                    "positionSide": "BOTH",
                    "positionAmt": _f8(pos.qty) if c.kind == "linear" else str(round(pos.qty)),
                    "entryPrice": _f8(pos.entry_price),
                    "breakEvenPrice": _f8(pos.entry_price),
                    "markPrice": _f8(mark),
                    "unRealizedProfit": _f8(upnl),
                    "liquidationPrice": _f8(liq) if math.isfinite(liq) else "0",
                    "isolatedMargin": _f8(iso + upnl if pos.margin_mode == "isolated" else 0.0),
                    "isolatedWallet": _f8(iso),
                    "updateTime": pos.updated_ms,
                }
                if c.kind == "linear":
                    row["notional"] = _f8(signed_value)
                    im = led.initial_margin(sym, mark)
                    if v2:
                        row.update(
                            {
                                "leverage": str(int(pos.leverage)),
                                "marginType": pos.margin_mode,
                                "isAutoAddMargin": "false",
                                "maxNotionalValue": "1000000",
                            }
                        )
                    else:
                        row.update(
                            {
                                "initialMargin": _f8(im),
                                "maintMargin": _f8(abs(signed_value) * led.maintenance_rate),
                                "positionInitialMargin": _f8(im),
                                "openOrderInitialMargin": "0",
                                "adl": 1,
                                "bidNotional": "0",
                                "askNotional": "0",
                                "marginAsset": c.settle,
                            }
                        )
                else:
                    row.update(
                        {
                            "notionalValue": _f8(signed_value),
                            "leverage": str(int(pos.leverage)),
                            "marginType": pos.margin_mode,
                            "isAutoAddMargin": "false",
                            "maxQty": "1000",
                        }
                    )
                out.append(row)
        return out

    # -- routes ---------------------------------------------------------------------------------------------

    def account(self, p: dict[str, str], v3: bool = True) -> Reply:
        led = self.ledger
        now = led.now()
        with led.lock:
            led.accrue()
            assets: list[dict[str, Any]] = []
            settles = {c.settle for c in self._contracts.values()}
            for asset in sorted(set(led.wallet) & settles | {a for a in settles if led.wallet.get(a)}):
                wallet = led.wallet.get(asset, 0.0)
                upnl = sum(
                    led.upnl(s) for s, pos in led.positions.items() if pos.qty and self.contract(s).settle == asset
                )
                used = led.used(asset)
                assets.append(
                    {
                        "asset": asset,
                        "walletBalance": _f8(wallet),
                        "unrealizedProfit": _f8(upnl),
                        "marginBalance": _f8(wallet + upnl),
                        "maintMargin": "0",
                        "initialMargin": _f8(used),
                        "positionInitialMargin": _f8(used),
                        "openOrderInitialMargin": "0",
                        "crossWalletBalance": _f8(wallet),
                        "crossUnPnl": _f8(upnl),
                        "availableBalance": _f8(wallet + upnl - used),
                        "maxWithdrawAmount": _f8(max(0.0, wallet - used)),
                        "updateTime": now,
                    }
                )
            positions = []
            for sym, pos in led.positions.items():
                if not pos.qty:
                    continue
                row = {
                    "symbol": sym,
                    "positionSide": "BOTH",
                    "positionAmt": _f8(pos.qty),
                    "unrealizedProfit": _f8(led.upnl(sym)),
                    "initialMargin": _f8(led.initial_margin(sym)),
                    "isolatedMargin": _f8(pos.isolated_margin if pos.margin_mode == "isolated" else 0.0),
                    "updateTime": pos.updated_ms,
                }
                if self.inverse:
                    row.update({"leverage": str(int(pos.leverage)), "isolated": pos.margin_mode == "isolated"})
                    row["entryPrice"] = _f8(pos.entry_price)
                positions.append(row)
        body: dict[str, Any] = {"assets": assets, "positions": positions, "canTrade": True, "updateTime": now}
        if not self.inverse:
            total_wallet = sum(float(a["walletBalance"]) for a in assets)
            body.update(
                {
                    "totalWalletBalance": _f8(total_wallet),
                    "availableBalance": _f8(sum(float(a["availableBalance"]) for a in assets)),
                    "multiAssetsMargin": False,
                }
            )
        return 200, body, {}

    def position_risk(self, p: dict[str, str], v2: bool = False) -> Reply:
        sym = p.get("symbol") or p.get("pair")
        if sym and not self.inverse:
            self.contract(sym)
        return 200, self.position_rows(sym if sym in self._contracts else None, v2=v2), {}

    def symbol_config(self, p: dict[str, str]) -> Reply:
        led = self.ledger
        rows = []
        for sym in sorted(self._contracts):
            if p.get("symbol") and p["symbol"] != sym:
                continue
            pos = led.position(sym)
            rows.append(
                {
                    "symbol": sym,
                    "marginType": "ISOLATED" if pos.margin_mode == "isolated" else "CROSSED",
                    "isAutoAddMargin": "false",
                    "leverage": int(pos.leverage),
                    "maxNotionalValue": "1000000",
                }
            )
        return 200, rows, {}

    def leverage_bracket(self, p: dict[str, str]) -> Reply:
        mmr = self.ledger.maintenance_rate
        rows = []
        for sym in sorted(self._contracts):
            if p.get("symbol") and p["symbol"] != sym:
                continue
            if self.inverse:
                bracket = {
                    "bracket": 1,
                    "initialLeverage": 125,
                    "qtyCap": 1e9,
                    "qtyFloor": 0,
                    "maintMarginRatio": mmr,
                    "cum": 0.0,
                }
            else:
                bracket = {
                    "bracket": 1,
                    "initialLeverage": 125,
                    "notionalCap": 1e12,
                    "notionalFloor": 0,
                    "maintMarginRatio": mmr,
                    "cum": 0.0,
                }
            rows.append({"symbol": sym, "notionalCoef": 1.0, "brackets": [bracket]})
        return 200, rows, {}

    def set_leverage(self, p: dict[str, str]) -> Reply:
        sym = p.get("symbol", "")
        self.contract(sym)
        try:
            lev = int(p.get("leverage", ""))
        except ValueError:
            lev = 0
        if not 1 <= lev <= 125:
            return 400, {"code": -4028, "msg": "Leverage is not valid"}, {}
        led = self.ledger
        with led.lock:
            led.position(sym).leverage = float(lev)
        return 200, {"symbol": sym, "leverage": lev, "maxNotionalValue": "1000000"}, {}

    def set_margin_type(self, p: dict[str, str]) -> Reply:
        sym = p.get("symbol", "")
        self.contract(sym)
        want = p.get("marginType", "").upper()
        if want not in ("ISOLATED", "CROSSED"):
            return 400, {"code": -4046, "msg": "Invalid margin type."}, {}
        led = self.ledger
        with led.lock:
            pos = led.position(sym)
            mode: Literal["isolated", "cross"] = "isolated" if want == "ISOLATED" else "cross"
            if pos.margin_mode == mode:
                return 400, {"code": -4046, "msg": "No need to change margin type."}, {}
            if pos.qty != 0:
                return 400, {"code": -4048, "msg": "Margin type cannot be changed if there exists position."}, {}
            pos.margin_mode = mode
        return 200, {"code": 200, "msg": "success"}, {}

    def new_order(self, p: dict[str, str]) -> Reply:
        sym = p.get("symbol", "")
        side = p.get("side", "").upper()
        type_ = p.get("type", "").upper()
        if side not in ("BUY", "SELL"):
            return 400, {"code": -1117, "msg": "Invalid side."}, {}
        if type_ not in ("MARKET", "LIMIT"):
            return 400, {"code": -1116, "msg": "Invalid orderType."}, {}
        if p.get("positionSide", "BOTH") != "BOTH":
            return 400, {"code": -4061, "msg": "Order's position side does not match user's setting."}, {}
        try:
            qty = float(p["quantity"])
        except (KeyError, ValueError):
            return (
                400,
                {"code": -1102, "msg": "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed."},
                {},
            )
        price = None
        if type_ == "LIMIT":
            if p.get("timeInForce") not in ("GTC", "IOC", "FOK", "GTX"):
                return (
                    400,
                    {
                        "code": -1102,
                        "msg": "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.",
                    },
                    {},
                )
            try:
                price = float(p["price"])
            except (KeyError, ValueError):
                return (
                    400,
                    {"code": -1102, "msg": "Mandatory parameter 'price' was not sent, was empty/null, or malformed."},
                    {},
                )
        elif "price" in p:
            return 400, {"code": -1106, "msg": "Parameter 'price' sent when not required."}, {}
        cid = p.get("newClientOrderId") or f"fake{int(time.time() * 1e6)}"
        if not _CLIENT_ID.match(cid):
            return 400, {"code": -4015, "msg": "Client order id is not valid."}, {}
        reduce = p.get("reduceOnly", "false").lower() == "true"
        self.contract(sym)
        order = self.ledger.place(
            sym,
            "buy" if side == "BUY" else "sell",
            "market" if type_ == "MARKET" else "limit",
            qty,
            price=price,
            reduce_only=reduce,
            client_id=cid,
        )
        return 200, self.order_json(order), {}

    def _find(self, p: dict[str, str]) -> LedgerOrder | None:
        sym = p.get("symbol", "")
        self.contract(sym)
        return self.ledger.find(sym, client_id=p.get("origClientOrderId", ""), venue_id=p.get("orderId", ""))

    def get_order(self, p: dict[str, str]) -> Reply:
        if not (p.get("origClientOrderId") or p.get("orderId")):
            return (
                400,
                {
                    "code": -1102,
                    "msg": "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
                },
                {},
            )
        order = self._find(p)
        if order is None:
            return 400, {"code": -2013, "msg": "Order does not exist."}, {}
        return 200, self.order_json(order), {}

    def cancel(self, p: dict[str, str]) -> Reply:
        if not (p.get("origClientOrderId") or p.get("orderId")):
            return (
                400,
                {
                    "code": -1102,
                    "msg": "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
                },
                {},
            )
        order = self._find(p)
        if order is None or not order.is_open:
            return 400, {"code": -2011, "msg": "Unknown order sent."}, {}
        done = self.ledger.cancel(order.symbol, venue_id=order.venue_id)
        return 200, self.order_json(done), {}

    def open_orders(self, p: dict[str, str]) -> Reply:
        sym = p.get("symbol") or None
        if sym:
            self.contract(sym)
        return 200, [self.order_json(o) for o in self.ledger.open_orders(sym)], {}

    def user_trades(self, p: dict[str, str]) -> Reply:
        sym = p.get("symbol", "")
        if not sym and self.inverse and p.get("pair"):
            sym = p["pair"] + "_PERP"
        self.contract(sym)
        start = int(p.get("startTime", "0") or 0)
        end = int(p.get("endTime", "0") or 0) or None
        limit = min(int(p.get("limit", "500") or 500), 1000)
        rows = self.ledger.fills_since(sym, start)
        if p.get("orderId"):
            rows = [t for t in rows if t.venue_id == p["orderId"]]
        if p.get("fromId"):
            rows = [t for t in rows if int(t.trade_id) >= int(p["fromId"])]
        if end is not None:
            rows = [t for t in rows if t.ts_ms <= end]
        return 200, [self.trade_json(t) for t in rows[:limit]], {}

    def income(self, p: dict[str, str]) -> Reply:
        sym = p.get("symbol") or None
        kind = p.get("incomeType", "")
        if kind and kind != "FUNDING_FEE":
            return 200, [], {}
        start = int(p.get("startTime", "0") or 0)
        end = int(p.get("endTime", "0") or 0) or None
        limit = min(int(p.get("limit", "100") or 100), 1000)
        rows = self.ledger.funding_since(sym, start)
        if end is not None:
            rows = [e for e in rows if e.ts_ms <= end]
        rows.sort(key=lambda e: (e.ts_ms, int(e.entry_id)))
        return (
            200,
            [
                {
                    "symbol": e.symbol,
                    "incomeType": "FUNDING_FEE",
                    "income": _f8(e.amount),
                    "asset": e.asset,
                    "info": "FUNDING_FEE",
                    "time": e.ts_ms,
                    "tranId": int(e.entry_id),
                    "tradeId": "",
                }
                for e in rows[:limit]
            ],
            {},
        )

    def force_orders(self, p: dict[str, str]) -> Reply:
        """The venue's own liquidation orders (client id ``autoclose-...``), newest last."""
        sym = p.get("symbol") or None
        if sym:
            self.contract(sym)
        if p.get("autoCloseType", "LIQUIDATION") != "LIQUIDATION":
            return 200, [], {}
        start = int(p.get("startTime", "0") or 0)
        limit = min(int(p.get("limit", "50") or 50), 100)
        with self.ledger.lock:
            rows = [
                o
                for o in self.ledger.orders
                if o.client_id.startswith("autoclose-") and (sym is None or o.symbol == sym) and o.updated_ms >= start
            ]
        return 200, [self.order_json(o) for o in rows[-limit:]], {}

    def mount(self) -> None:
        fx, pre, s = self.fx, self.prefix, self.signed
        if self.inverse:
            fx.mount("GET", f"{pre}/v1/account", s(self.account))
            fx.mount("GET", f"{pre}/v1/positionRisk", s(self.position_risk))
            fx.mount("GET", f"{pre}/v2/leverageBracket", s(self.leverage_bracket))
            fx.mount("GET", f"{pre}/v1/leverageBracket", s(self.leverage_bracket))
        else:
            fx.mount("GET", f"{pre}/v3/account", s(self.account))
            fx.mount("GET", f"{pre}/v2/account", s(lambda p: self.account(p, v3=False)))
            fx.mount("GET", f"{pre}/v3/positionRisk", s(self.position_risk))
            fx.mount("GET", f"{pre}/v2/positionRisk", s(lambda p: self.position_risk(p, v2=True)))
            fx.mount("GET", f"{pre}/v1/symbolConfig", s(self.symbol_config))
            fx.mount("GET", f"{pre}/v1/leverageBracket", s(self.leverage_bracket))
            fx.mount("GET", f"{pre}/v1/multiAssetsMargin", s(lambda p: (200, {"multiAssetsMargin": False}, {})))
        fx.mount(
            "GET", f"{pre}/v1/positionSide/dual", s(lambda p: (200, {"dualSidePosition": state(fx).dual_side}, {}))
        )
        fx.mount("GET", f"{pre}/v1/forceOrders", s(self.force_orders))
        fx.mount("POST", f"{pre}/v1/leverage", s(self.set_leverage))
        fx.mount("POST", f"{pre}/v1/marginType", s(self.set_margin_type))
        fx.mount("POST", f"{pre}/v1/order", s(self.new_order))
        fx.mount("GET", f"{pre}/v1/order", s(self.get_order))
        fx.mount("DELETE", f"{pre}/v1/order", s(self.cancel))
        fx.mount("GET", f"{pre}/v1/openOrders", s(self.open_orders))
        fx.mount("GET", f"{pre}/v1/userTrades", s(self.user_trades))
        fx.mount("GET", f"{pre}/v1/income", s(self.income))


def liquidate(fx: FakeExchange, venue: str, symbol: str) -> LedgerOrder:
    """The venue liquidates the whole position of ``symbol`` on ``venue`` (``binance_usdm`` | ``binance_coinm``)
    at the mark: a reduce-only market order with a client id ``autoclose-<ms>``, as Binance's own carry."""
    led = fx.ledgers[venue]
    with led.lock:
        pos = led.position(symbol)
        if pos.qty == 0:
            raise ValueError(f"no position on {symbol} to liquidate")
        side: Literal["buy", "sell"] = "buy" if pos.qty < 0 else "sell"
        return led.place(
            symbol, side, "market", abs(pos.qty), reduce_only=True, client_id=f"autoclose-{led.now()}{len(led.orders)}"
        )


def _weight(method: str, path: str, q: dict[str, str]) -> int:
    w = WEIGHTS.get((method, path))
    if w is None:
        return 1
    tail = path.rsplit("/", 1)[-1]
    if tail == "openOrders" and "symbol" not in q and "pair" not in q:
        return 40
    if tail == "forceOrders" and "symbol" not in q:
        return 50
    return w


def mount(fx: FakeExchange) -> None:
    """Add the Binance USDⓈ-M and COIN-M private routes and the weight counter to ``fx``."""
    st = state(fx)
    _Api(fx, inverse=False).mount()
    _Api(fx, inverse=True).mount()

    def hook(method: str, path: str, q: dict[str, str]) -> tuple[Reply | None, dict[str, str]]:
        api = path[1:5]
        if api not in ("fapi", "dapi"):
            return None, {}
        weight = _weight(method, path, q)
        now = int(time.time() * 1000)
        with st.lock:
            window = now // st.window_ms
            used = st.used.get((api, window), 0)
            if used + weight > st.limit:
                retry = ((window + 1) * st.window_ms - now) / 1000.0
                msg = (
                    f"Too many requests; current limit of IP(127.0.0.1) request weight is {st.limit} per "
                    f"{st.window_ms // 1000} SECOND. Please use WebSocket Streams for live updates to avoid "
                    "polling the API."
                )
                headers = {"X-MBX-USED-WEIGHT-1M": str(used), "Retry-After": f"{max(retry, 0.001):.3f}"}
                return (429, {"code": -1003, "msg": msg}, headers), headers
            used += weight
            st.used[(api, window)] = used
            st.log.append((now, weight, api))
        return None, {"X-MBX-USED-WEIGHT-1M": str(used)}

    fx.request_hooks.append(hook)
