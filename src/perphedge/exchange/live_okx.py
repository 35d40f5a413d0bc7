"""The OKX v5 dialect of :class:`perphedge.exchange.live.CcxtAccount` (ccxt ``okx``): perpetual swaps, linear
(``BTC-USDT-SWAP``, 0.01 BTC a contract) and inverse (``BTC-USD-SWAP``, 100 USD a contract, settled in BTC).

Endpoints (ccxt 4.5.90, ``okx.py``): markets ``GET /api/v5/public/instruments?instType=SWAP`` (only swaps are
loaded); balances ``GET /api/v5/account/balance``; positions ``GET /api/v5/account/positions``; orders
``POST /api/v5/trade/order`` (``clOrdId`` = our client id, ``reduceOnly``, ``tdMode`` = the margin mode; ccxt's
default batch endpoint is switched off); lookup ``GET /api/v5/trade/order?clOrdId=``; open orders
``/api/v5/trade/orders-pending``; cancel ``POST /api/v5/trade/cancel-order`` (``clOrdId``); fills
``/api/v5/trade/fills-history?ordId=``; funding ``/api/v5/account/bills-archive?type=8`` (paged by time).

Credentials: key, secret **and** the API passphrase (``password``). Options: ``okx_margin_mode``: ``cross``
(default) or ``isolated`` — the ``tdMode`` of every order (OKX keeps one mode per position).

OKX's funding bills carry no rate; the account takes it from the feed's settlements (``FundingPayment.rate``).
Errors: OKX's ``sCode`` / ``code`` decide (:data:`REJECT_CODES`); ccxt's class is the fallback. OKX limits
requests per endpoint (e.g. 60 orders / 2 s, 10 balance or position reads / 2 s): the budget is 20 a 2 s window
with balance and position reads counted 2.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

from perphedge.core.book import OrderRequest
from perphedge.errors import ConfigError
from perphedge.exchange.live import Classified, RejectKind, VenueDialect, VenueFunding, VenuePosition

__all__ = ["DIALECTS", "MARGIN_MODES", "REJECT_CODES", "Okx", "okx_code"]

MARGIN_MODES = ("cross", "isolated")

#: OKX sCode/code -> neutral rejection kind (the order was refused; nothing was applied)
REJECT_CODES: dict[str, RejectKind] = {
    "51020": "min_notional",  # order amount below the minimum
    "51008": "insufficient_margin",  # insufficient balance / margin
    "51004": "insufficient_margin",  # order amount exceeds the current tier limit
    "51009": "insufficient_margin",
    "51131": "insufficient_margin",  # insufficient balance
    "51205": "reduce_only",  # Reduce Only is not available
    "51169": "reduce_only",  # no position in this direction to reduce
    "51170": "reduce_only",
    "51016": "duplicate",  # Duplicated clOrdId
    "50011": "rate_limited",  # Too Many Requests
    "51000": "invalid",  # Parameter {0} error
    "51001": "invalid",  # Instrument ID does not exist
    "51121": "invalid",  # not a multiple of the lot size
    "51006": "invalid",  # price out of the limit
    "51010": "invalid",  # not allowed in the current account mode
    "51137": "invalid",
}
NOT_FOUND_CODES = frozenset({"51603", "51400", "51401", "51402"})
AUTH_CODES = frozenset(
    {"50100", "50101", "50103", "50104", "50105", "50106", "50107", "50110", "50111", "50113", "50114"}
)
RETRY_CODES = frozenset({"50001", "50004", "50013", "50026", "50102", "50112"})

#: answers without an OKX code (HTTP 429/5xx pages) that mean "send the read again"
_TRANSIENT = re.compile(r"(?i)too many|too frequent|rate limit|internal error|maintenance|service unavailable|timeout")
_SCODE = re.compile(r"[\"']sCode[\"']\s*:\s*[\"'](\d+)[\"']")
_SMSG = re.compile(r"[\"']sMsg[\"']\s*:\s*[\"']([^\"']*)[\"']")
_CODE = re.compile(r"[\"']code[\"']\s*:\s*[\"'](\d+)[\"']")
_MSG = re.compile(r"[\"']msg[\"']\s*:\s*[\"']([^\"']*)[\"']")

# published per-endpoint limits, folded into one budget: (method, path) -> weight
WEIGHTS: dict[tuple[str, str], float] = {
    ("GET", "/api/v5/account/balance"): 2,
    ("GET", "/api/v5/account/positions"): 2,
    ("GET", "/api/v5/account/bills-archive"): 4,
    ("GET", "/api/v5/trade/fills-history"): 2,
}


def okx_code(text: str) -> tuple[str | None, str]:
    """The most specific OKX code in an error text: a per-order ``sCode`` when present, else ``code``."""
    m = _SCODE.search(text)
    if m and m.group(1) != "0":
        mm = _SMSG.search(text)
        return m.group(1), (mm.group(1) if mm else "")
    m = _CODE.search(text)
    if m:
        mm = _MSG.search(text)
        return m.group(1), (mm.group(1) if mm else "")
    return None, ""


def _num(value: Any, default: float = math.nan) -> float:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


class Okx(VenueDialect):
    """OKX perpetual swaps (net position mode)."""

    venue = "okx"
    ccxt_id = "okx"
    exchange = "okx"
    kinds = ("linear", "inverse")
    credentials = ("key", "secret", "password")
    weight_limit = 20.0
    weight_window_ms = 2_000
    client_id_pattern = r"^[A-Za-z0-9]{1,32}$"

    def __init__(self) -> None:
        self.margin_mode: Literal["cross", "isolated"] = "cross"

    def client_config(self, credentials: Mapping[str, str], options: Mapping[str, Any]) -> dict[str, Any]:
        raw = options.get("okx_margin_mode", "cross")
        if raw not in MARGIN_MODES:
            raise ConfigError(f"invalid `okx_margin_mode`: must be one of {', '.join(MARGIN_MODES)}, was {raw!r}")
        self.margin_mode = cast(Literal["cross", "isolated"], raw)
        config = super().client_config(credentials, options)
        config["options"].update(
            {
                "fetchMarkets": {"types": ["swap"]},
                "createOrder": "privatePostTradeOrder",
                "defaultMarginMode": self.margin_mode,
            }
        )
        return config

    def weight(self, method: str, path: str, query: Mapping[str, str]) -> float:
        return float(WEIGHTS.get((method, path), self.default_weight))

    def classify(self, exc: BaseException) -> Classified:
        text = " ".join(str(exc).split())
        code, msg = okx_code(text)
        detail = f"{code} {msg}".strip() if code is not None else text[:300]
        if code is not None:
            if code in REJECT_CODES:
                return Classified("reject", REJECT_CODES[code], detail)
            if code in NOT_FOUND_CODES:
                return Classified("not_found", None, detail)
            if code in AUTH_CODES:
                return Classified("auth", None, detail)
            if code in RETRY_CODES:
                return Classified("retry", None, detail)
        elif _TRANSIENT.search(text):
            return Classified("retry", None, detail)
        base = super().classify(exc)
        return Classified(base.outcome, base.kind, detail if code is not None else base.detail)

    # -- reads ----------------------------------------------------------------------------------------------

    def fetch_balances(self, client: Any) -> list[tuple[str, float, float, float]]:
        """The trading account per currency: ``wallet`` = cashBal (without unrealised PnL), ``used`` =
        frozenBal (margin of positions and orders), ``free = wallet - used``."""
        bal = client.fetch_balance()
        info = bal.get("info") or {}
        out = []
        for entry in info.get("data") or []:
            for d in entry.get("details") or []:
                asset = str(d.get("ccy") or "")
                if not asset:
                    continue
                wallet = _num(d.get("cashBal"), 0.0)
                used = _num(d.get("frozenBal"), 0.0)
                out.append((asset, wallet, wallet - used, used))
        return out

    def fetch_positions(self, client: Any, symbols: Sequence[str]) -> list[VenuePosition]:
        out = []
        for p in client.fetch_positions(list(symbols)):
            symbol = p.get("symbol")
            if symbol not in symbols:
                continue
            info = p.get("info") or {}
            pos = _num(info.get("pos"), 0.0)
            if pos == 0:
                continue
            if str(info.get("posSide") or "net") == "short":
                pos = -abs(pos)
            elif str(info.get("posSide") or "net") == "long":
                pos = abs(pos)
            raw_mode = str(info.get("mgnMode") or "")
            mode: Literal["isolated", "cross", ""] = raw_mode if raw_mode in ("isolated", "cross") else ""  # type: ignore[assignment]
            liq = _num(info.get("liqPx"))
            out.append(
                VenuePosition(
                    symbol=str(symbol),
                    contracts=pos,
                    entry_price=_num(info.get("avgPx")),
                    mark_price=_num(info.get("markPx")),
                    leverage=_num(info.get("lever")),
                    margin_mode=mode,
                    isolated_margin=_num(info.get("margin")) if mode == "isolated" else math.nan,
                    initial_margin=_num(info.get("imr")) if mode == "cross" else _num(info.get("margin")),
                    liquidation_price=liq if liq > 0 else math.nan,
                    unrealized=_num(info.get("upl")),
                    mmr=_num(p.get("maintenanceMarginPercentage")),
                    updated_ms=int(_num(info.get("uTime"), 0.0)),
                )
            )
        return out

    def fetch_order_by_client_id(self, client: Any, symbol: str, client_id: str) -> dict[str, Any] | None:
        """``GET /api/v5/trade/order?clOrdId=``; None on 51603 (order does not exist)."""
        import ccxt

        try:
            return cast(dict[str, Any], client.fetch_order(None, symbol, {"clOrdId": client_id}))
        except ccxt.OrderNotFound:
            return None
        except ccxt.BaseError as exc:
            code, _ = okx_code(" ".join(str(exc).split()))
            if code in NOT_FOUND_CODES:
                return None
            raise

    def fetch_order_trades(self, client: Any, symbol: str, order: Mapping[str, Any]) -> list[dict[str, Any]]:
        trades = client.fetch_my_trades(symbol, None, None, {"ordId": order.get("id")})
        return [t for t in trades if str(t.get("order")) == str(order.get("id"))]

    def fetch_funding(self, client: Any, symbol: str, since_ms: int) -> list[VenueFunding]:
        """Bills of type 8 (funding fee) of ``symbol`` since ``since_ms``: ``balChg`` > 0 received. Paged
        backwards by time (100 a page, newest first)."""
        market = client.market(symbol)
        asset = str(market.get("settle") or "")
        out: dict[str, VenueFunding] = {}
        end: int | None = None
        while True:
            params: dict[str, Any] = {"begin": str(int(since_ms))}
            if end is not None:
                params["end"] = str(end)
            rows = client.fetch_funding_history(symbol, None, 100, params)
            raw = [r for r in rows if (r.get("info") or {}).get("instId") == market.get("id")]
            for r in raw:
                info = r.get("info") or {}
                bill = str(info.get("billId") or r.get("id") or "")
                ts = int(_num(info.get("ts"), 0.0))
                if ts < since_ms:
                    continue
                out[bill] = VenueFunding(
                    symbol=symbol,
                    ts_ms=ts,
                    amount=_num(info.get("balChg"), 0.0),
                    asset=str(info.get("ccy") or asset),
                    entry_id=bill,
                )
            if len(rows) < 100:
                break
            oldest = min(int(r.get("timestamp") or 0) for r in rows)
            if oldest <= since_ms or (end is not None and oldest >= end):
                break
            end = oldest - 1
        return sorted(out.values(), key=lambda e: (e.ts_ms, e.entry_id))

    # -- writes ---------------------------------------------------------------------------------------------

    def order_params(self, req: OrderRequest) -> dict[str, Any]:
        params: dict[str, Any] = {"clOrdId": req.client_id, "tdMode": self.margin_mode}
        if req.reduce_only:
            params["reduceOnly"] = True
        return params

    def create_order(
        self, client: Any, symbol: str, req: OrderRequest, amount: float, price: float | None
    ) -> dict[str, Any]:
        """``POST /api/v5/trade/order`` once; the answer holds only the ids, so the order is read back by our id."""
        import ccxt

        ack = client.create_order(symbol, req.order_type, req.side, amount, price, self.order_params(req))
        try:
            order = self.fetch_order_by_client_id(client, symbol, req.client_id)
        except ccxt.BaseError:
            order = None
        if order is None:
            raise ccxt.ExchangeError(
                f"okx accepted order {req.client_id} (id {ack.get('id')}) but its state could not be read back"
            )
        return order

    def cancel_by_client_id(self, client: Any, symbol: str, client_id: str) -> dict[str, Any] | None:
        """``POST /api/v5/trade/cancel-order`` by ``clOrdId``, then the order's final state; None when the venue
        does not hold it open."""
        import ccxt

        try:
            client.cancel_order(None, symbol, {"clOrdId": client_id})
        except ccxt.BaseError as exc:
            code, _ = okx_code(" ".join(str(exc).split()))
            if isinstance(exc, ccxt.OrderNotFound) or code in NOT_FOUND_CODES:
                return None
            raise
        return self.fetch_order_by_client_id(client, symbol, client_id)


DIALECTS: dict[str, type[VenueDialect]] = {"okx": Okx}
