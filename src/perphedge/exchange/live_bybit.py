"""The Bybit v5 dialect of :class:`perphedge.exchange.live.CcxtAccount` (ccxt ``bybit``), unified or classic account.

Endpoints (ccxt 4.5.90, ``bybit.py``): balances ``GET /v5/account/wallet-balance`` (``accountType`` ``UNIFIED`` for
a unified trading account, ``CONTRACT`` for a classic one); positions ``GET /v5/position/list`` (``category``
``linear`` | ``inverse``, one symbol a request); orders ``POST /v5/order/create`` (``orderLinkId`` = our client id,
``reduceOnly``); lookup by client id ``GET /v5/order/realtime?orderLinkId=`` then ``GET /v5/order/history`` (ccxt's
``fetch_order`` needs the venue id, so it is not used); cancel ``POST /v5/order/cancel`` (``orderLinkId``); fills
``GET /v5/execution/list?execType=Trade&orderId=``; funding ``GET /v5/execution/list?execType=Funding`` in windows of
at most 7 days (Bybit's limit; executions are kept about two years).

Options: ``bybit_account``: ``unified`` (default) or ``classic``. It sets ccxt's ``enableUnifiedAccount`` /
``enableUnifiedMargin`` / ``unifiedMarginStatus`` so ccxt never sends its account-type probes
(``/v5/user/query-api``, ``/v5/account/info``), which need extra key permissions.

Errors: the ``retCode`` in Bybit's answer decides (:data:`REJECT_CODES`); ccxt's class is the fallback. 10006 (rate
limit) answered to an order is a definitive ``rate_limited`` rejection (Bybit did not take it); on a read it is
retried. Bybit's rate limit is per IP: 600 requests in any 5 s (the weight budget, 1 a request).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

from perphedge.core.book import OrderRequest
from perphedge.errors import ConfigError
from perphedge.exchange.live import Classified, RejectKind, VenueDialect, VenueFunding, VenuePosition

__all__ = ["ACCOUNT_TYPES", "DIALECTS", "REJECT_CODES", "Bybit", "bybit_code"]

ACCOUNT_TYPES = ("unified", "classic")
WEEK_MS = 7 * 86_400_000
RETENTION_MS = 2 * 365 * 86_400_000  # Bybit keeps executions about two years

#: Bybit retCode -> neutral rejection kind (the order was refused; nothing was applied)
REJECT_CODES: dict[int, RejectKind] = {
    110094: "min_notional",  # Order does not meet minimum order value
    110092: "min_notional",
    110093: "min_notional",
    110004: "insufficient_margin",  # Wallet balance is insufficient
    110007: "insufficient_margin",  # ab not enough for new order / available balance insufficient
    110012: "insufficient_margin",  # Insufficient available balance
    110044: "insufficient_margin",  # Available margin is insufficient
    110045: "insufficient_margin",  # Wallet balance is insufficient
    110017: "reduce_only",  # Reduce-only rule not satisfied
    110072: "duplicate",  # OrderLinkedID is duplicate
    10001: "invalid",  # params error
    110003: "invalid",  # price out of range
    110005: "invalid",
    110006: "invalid",
    110009: "invalid",
    110013: "invalid",  # cannot set leverage / qty invalid
    110020: "invalid",  # not allowed to have more than 500 active orders
    110021: "invalid",  # open interest limit
    110079: "invalid",  # the order is processing and can not be operated
    170130: "invalid",
    170136: "invalid",
}
NOT_FOUND_CODES = frozenset({110001, 170213, 110008})
AUTH_CODES = frozenset({10003, 10004, 10005, 10007, 10009, 10010, 33004, 10008})
RETRY_CODES = frozenset({10000, 10002, 10006, 10016, 10018, 10019})

#: answers without a retCode (HTTP 429/403/5xx pages) that mean "send the read again"
_TRANSIENT = re.compile(r"(?i)too many|too frequent|rate limit|internal error|maintenance|service unavailable|timeout")
_CODE = re.compile(r"[\"'](?:retCode|ret_code)[\"']\s*:\s*(-?\d+)")
_MSG = re.compile(r"[\"'](?:retMsg|ret_msg)[\"']\s*:\s*[\"']([^\"']*)[\"']")


def bybit_code(text: str) -> tuple[int | None, str]:
    """The Bybit ``retCode`` and ``retMsg`` in an error text (ccxt puts the answer's body in it)."""
    m = _CODE.search(text)
    code = int(m.group(1)) if m else None
    mm = _MSG.search(text)
    return code, (mm.group(1) if mm else "")


def _num(value: Any, default: float = math.nan) -> float:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


class _OrderRefused(Exception):
    """An order answer that is a definitive refusal although ccxt files it as transient (10006 on create)."""

    def __init__(self, kind: RejectKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def _as_ccxt(exc: _OrderRefused) -> Exception:
    import ccxt

    class OrderRefused(ccxt.InvalidOrder):  # type: ignore[misc]
        pass

    out = OrderRefused(exc.detail)
    out.neutral_kind = exc.kind
    return cast(Exception, out)


class Bybit(VenueDialect):
    """Bybit v5 linear (USDT) and inverse (coin-settled, 1 USD contracts) perpetuals."""

    venue = "bybit"
    ccxt_id = "bybit"
    exchange = "bybit"
    kinds = ("linear", "inverse")
    credentials = ("key", "secret")
    weight_limit = 600.0
    weight_window_ms = 5_000
    client_id_pattern = r"^[A-Za-z0-9_-]{1,36}$"

    def __init__(self) -> None:
        self.account: Literal["unified", "classic"] = "unified"

    # -- client ---------------------------------------------------------------------------------------------

    def client_config(self, credentials: Mapping[str, str], options: Mapping[str, Any]) -> dict[str, Any]:
        raw = options.get("bybit_account", "unified")
        if raw not in ACCOUNT_TYPES:
            raise ConfigError(f"invalid `bybit_account`: must be one of {', '.join(ACCOUNT_TYPES)}, was {raw!r}")
        self.account = cast(Literal["unified", "classic"], raw)
        config = super().client_config(credentials, options)
        unified = self.account == "unified"
        config["options"].update(
            {
                # say what the account is, so ccxt skips /v5/user/query-api and /v5/account/info
                "enableUnifiedAccount": unified,
                "enableUnifiedMargin": False,
                "unifiedMarginStatus": 6 if unified else 1,
                "fetchMarkets": {"types": ["linear", "inverse"]},
                "recvWindow": int(options.get("recv_window_ms", 5000)),
            }
        )
        return config

    def apply_sandbox(self, client: Any) -> None:
        """Bybit's testnet (``api-testnet.bybit.com``)."""
        client.set_sandbox_mode(True)

    # -- errors -------------------------------------------------------------------------------------------

    def classify(self, exc: BaseException) -> Classified:
        kind = getattr(exc, "neutral_kind", None)
        if kind is not None:
            return Classified("reject", kind, str(exc))
        text = " ".join(str(exc).split())
        code, msg = bybit_code(text)
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
        """The derivatives wallet (``UNIFIED`` or ``CONTRACT``) per coin: ``wallet`` = walletBalance (without
        unrealised PnL), ``used`` = position IM + order IM + locked, ``free = wallet - used``."""
        bal = client.fetch_balance()
        info = bal.get("info") or {}
        out = []
        for entry in (info.get("result") or {}).get("list") or []:
            for coin in entry.get("coin") or []:
                asset = str(coin.get("coin") or "")
                if not asset:
                    continue
                wallet = _num(coin.get("walletBalance"), 0.0)
                used = sum(_num(coin.get(k), 0.0) for k in ("totalPositionIM", "totalOrderIM", "locked"))
                out.append((asset, wallet, wallet - used, used))
        return out

    def fetch_positions(self, client: Any, symbols: Sequence[str]) -> list[VenuePosition]:
        """``/v5/position/list`` one symbol at a time (ccxt takes one symbol a call)."""
        out = []
        for symbol in symbols:
            for p in client.fetch_positions([symbol]):
                if p.get("symbol") != symbol:
                    continue
                info = p.get("info") or {}
                size = _num(info.get("size"), 0.0)
                if size == 0:
                    continue
                side = str(info.get("side") or "")
                mode: Literal["isolated", "cross", ""] = "isolated" if str(info.get("tradeMode")) == "1" else "cross"
                liq = _num(info.get("liqPrice"))
                value = _num(info.get("positionValue"))
                mm = _num(info.get("positionMM"))
                out.append(
                    VenuePosition(
                        symbol=symbol,
                        contracts=-size if side == "Sell" else size,
                        entry_price=_num(info.get("avgPrice")),
                        mark_price=_num(info.get("markPrice")),
                        leverage=_num(info.get("leverage")),
                        margin_mode=mode,
                        isolated_margin=_num(info.get("positionBalance")) if mode == "isolated" else math.nan,
                        initial_margin=_num(info.get("positionIM")),
                        liquidation_price=liq if liq > 0 else math.nan,
                        unrealized=_num(info.get("unrealisedPnl")),
                        mmr=mm / value if value and math.isfinite(mm) and math.isfinite(value) else math.nan,
                        updated_ms=int(_num(info.get("updatedTime"), 0.0)),
                    )
                )
        return out

    def fetch_open_orders(self, client: Any, symbol: str) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], client.fetch_open_orders(symbol))

    def fetch_order_by_client_id(self, client: Any, symbol: str, client_id: str) -> dict[str, Any] | None:
        """``/v5/order/realtime?orderLinkId=`` (open orders), then ``/v5/order/history`` (finished ones)."""
        rows = client.fetch_open_orders(symbol, None, None, {"orderLinkId": client_id})
        rows = [r for r in rows if r.get("clientOrderId") == client_id]
        if not rows:
            rows = client.fetch_canceled_and_closed_orders(symbol, None, None, {"orderLinkId": client_id})
            rows = [r for r in rows if r.get("clientOrderId") == client_id]
        return cast(dict[str, Any], rows[0]) if rows else None

    def fetch_order_trades(self, client: Any, symbol: str, order: Mapping[str, Any]) -> list[dict[str, Any]]:
        trades = client.fetch_my_trades(symbol, None, None, {"orderId": order.get("id")})
        return [t for t in trades if str(t.get("order")) == str(order.get("id"))]

    def fetch_funding(self, client: Any, symbol: str, since_ms: int) -> list[VenueFunding]:
        """``execType=Funding`` executions in 7-day windows from ``since_ms`` to now; ``execFee`` > 0 is paid,
        so the amount received is ``-execFee`` (in the contract's settle coin)."""
        market = client.market(symbol)
        asset = str(market.get("settle") or "")
        now = int(client.milliseconds())
        start = max(int(since_ms), now - RETENTION_MS)
        out: dict[str, VenueFunding] = {}
        while start <= now:
            end = min(start + WEEK_MS - 1, now)
            window_end = end
            while True:
                rows = client.fetch_funding_history(symbol, start, 100, {"until": window_end})
                for r in rows:
                    info = r.get("info") or {}
                    if str(info.get("execType")) != "Funding":
                        continue
                    entry_id = str(info.get("execId") or r.get("id") or "")
                    out[entry_id] = VenueFunding(
                        symbol=symbol,
                        ts_ms=int(_num(info.get("execTime"), 0.0)),
                        amount=-_num(info.get("execFee"), 0.0),
                        asset=asset,
                        rate=_num(info.get("feeRate")),
                        entry_id=entry_id,
                    )
                if len(rows) < 100:
                    break
                oldest = min(int(r.get("timestamp") or 0) for r in rows)
                if oldest <= start:
                    break
                window_end = oldest - 1
            start = end + 1
        return sorted(out.values(), key=lambda e: (e.ts_ms, e.entry_id))

    # -- writes ---------------------------------------------------------------------------------------------

    def order_params(self, req: OrderRequest) -> dict[str, Any]:
        params: dict[str, Any] = {"clientOrderId": req.client_id, "reduceOnly": bool(req.reduce_only)}
        if req.order_type == "limit":
            params["timeInForce"] = "GTC"
        return params

    def create_order(
        self, client: Any, symbol: str, req: OrderRequest, amount: float, price: float | None
    ) -> dict[str, Any]:
        """``/v5/order/create`` once; its answer holds only the ids, so the order is then read back by our id."""
        import ccxt

        try:
            ack = client.create_order(symbol, req.order_type, req.side, amount, price, self.order_params(req))
        except ccxt.BaseError as exc:
            code, msg = bybit_code(" ".join(str(exc).split()))
            if code == 10006:  # Bybit refused the order for the rate limit: nothing was applied
                raise _as_ccxt(_OrderRefused("rate_limited", f"{code} {msg}")) from None
            raise
        try:
            order = self.fetch_order_by_client_id(client, symbol, req.client_id)
        except ccxt.BaseError:
            order = None
        if order is None:
            raise ccxt.ExchangeError(
                f"bybit accepted order {req.client_id} (id {ack.get('id')}) but its state could not be read back"
            )
        return order

    def cancel_by_client_id(self, client: Any, symbol: str, client_id: str) -> dict[str, Any] | None:
        """``/v5/order/cancel`` by ``orderLinkId``, then the order's final state; None when it is not open."""
        import ccxt

        try:
            client.cancel_order(None, symbol, {"orderLinkId": client_id})
        except ccxt.OrderNotFound:
            return None
        return self.fetch_order_by_client_id(client, symbol, client_id)


DIALECTS: dict[str, type[VenueDialect]] = {"bybit": Bybit}
