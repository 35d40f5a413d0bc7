"""The Binance dialects of :class:`perphedge.exchange.live.CcxtAccount`: USDⓈ-M (``binance_usdm``, ccxt
``binanceusdm``, ``/fapi``) and COIN-M (``binance_coinm``, ccxt ``binancecoinm``, ``/dapi``).

Endpoints (ccxt 4.5.90, ``binance.py``): balances ``GET /fapi/v3/account`` | ``/dapi/v1/account``; positions
``GET /fapi/v3/positionRisk`` (+ ``/fapi/v1/symbolConfig`` for leverage and margin type, which v3 no longer
carries) | ``/dapi/v1/positionRisk``; ccxt also loads ``/fapi/v1/leverageBracket`` | ``/dapi/v2/leverageBracket``
once; orders ``POST|GET|DELETE /fapi/v1/order`` (``newClientOrderId`` / ``origClientOrderId``); open orders
``/fapi/v1/openOrders``; fills ``/fapi/v1/userTrades?orderId=``; funding ``/fapi/v1/income?incomeType=FUNDING_FEE``.

Weights are Binance's published request weights (IP, ``X-MBX-USED-WEIGHT-1M``) with a budget of 2400 a minute
on each of fapi and dapi; order placement is counted 1 (Binance counts it on the order-count limits, 0 on IP
weight: counting it keeps the budget conservative).

Errors: the Binance ``code`` in the answer decides (:data:`REJECT_CODES`); ccxt's class is the fallback.
``sandbox`` uses Binance's *demo trading* endpoints (``demo-fapi`` / ``demo-dapi``): the old futures testnet
is refused by ccxt itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from perphedge.errors import ConfigError
from perphedge.exchange.live import Classified, RejectKind, VenueDialect, VenueFunding, VenuePosition

__all__ = ["DAPI_WEIGHTS", "DIALECTS", "FAPI_WEIGHTS", "REJECT_CODES", "BinanceCoinm", "BinanceUsdm"]

#: Binance error code -> neutral rejection kind (the order was refused; nothing was applied)
REJECT_CODES: dict[int, RejectKind] = {
    -4164: "min_notional",  # Order's notional must be no smaller than 5 (unless you choose reduce only)
    -2019: "insufficient_margin",  # Margin is insufficient.
    -2018: "insufficient_margin",  # Balance is insufficient.
    -2027: "insufficient_margin",  # Exceeded the maximum allowable position at current leverage.
    -2028: "insufficient_margin",  # Leverage is smaller than permitted: insufficient margin balance.
    -2022: "reduce_only",  # ReduceOnly Order is rejected.
    -4118: "reduce_only",  # ReduceOnly Order Failed. Please check your existing position and open orders.
    -4116: "duplicate",  # ClientOrderId is duplicated.
    -1015: "rate_limited",  # Too many new orders; current limit is %s orders per %s.
    -1111: "invalid",  # Precision is over the maximum defined for this asset.
    -1013: "invalid",  # Filter failure (LOT_SIZE, PRICE_FILTER, ...)
    -1102: "invalid",  # A mandatory parameter was not sent, was empty/null, or malformed.
    -1106: "invalid",  # A parameter was sent when not required.
    -1116: "invalid",  # Invalid orderType.
    -1117: "invalid",  # Invalid side.
    -1121: "invalid",  # Invalid symbol.
    -2010: "invalid",  # NEW_ORDER_REJECTED
    -4003: "invalid",  # Quantity less than or equal to zero.
    -4014: "invalid",  # Price not increased by tick size.
    -4015: "invalid",  # Client order id is not valid.
    -4023: "invalid",  # Quantity not increased by step size.
    -4061: "invalid",  # Order's position side does not match user's setting.
    -4131: "invalid",  # The counterparty's best price does not meet the PERCENT_PRICE filter limit.
    -5021: "invalid",  # FOK order rejected
    -5022: "invalid",  # Post Only order rejected
}
NOT_FOUND_CODES = frozenset({-2013, -2011})  # Order does not exist. / Unknown order sent.
AUTH_CODES = frozenset({-2014, -2015, -1022, -2008, -1002})
#: codes meaning "the request may or may not have been applied" (writes) / "send the read again" (reads)
RETRY_CODES = frozenset({-1000, -1001, -1003, -1006, -1007, -1008, -1021})

# published request weights (IP): (method, path) -> weight; openOrders/ticker without a symbol weigh 40
FAPI_WEIGHTS: dict[tuple[str, str], float] = {
    ("GET", "/fapi/v1/exchangeInfo"): 1,
    ("GET", "/fapi/v1/time"): 1,
    ("GET", "/fapi/v1/ping"): 1,
    ("GET", "/fapi/v1/klines"): 5,
    ("POST", "/fapi/v1/leverage"): 1,
    ("POST", "/fapi/v1/marginType"): 1,
    ("GET", "/fapi/v3/account"): 5,
    ("GET", "/fapi/v2/account"): 5,
    ("GET", "/fapi/v3/balance"): 5,
    ("GET", "/fapi/v2/balance"): 5,
    ("GET", "/fapi/v3/positionRisk"): 5,
    ("GET", "/fapi/v2/positionRisk"): 5,
    ("GET", "/fapi/v1/symbolConfig"): 5,
    ("GET", "/fapi/v1/accountConfig"): 5,
    ("GET", "/fapi/v1/leverageBracket"): 1,
    ("GET", "/fapi/v1/positionSide/dual"): 30,
    ("GET", "/fapi/v1/multiAssetsMargin"): 30,
    ("POST", "/fapi/v1/order"): 1,
    ("GET", "/fapi/v1/order"): 1,
    ("DELETE", "/fapi/v1/order"): 1,
    ("GET", "/fapi/v1/openOrders"): 1,
    ("GET", "/fapi/v1/allOrders"): 5,
    ("GET", "/fapi/v1/userTrades"): 5,
    ("GET", "/fapi/v1/income"): 30,
    ("GET", "/fapi/v1/forceOrders"): 20,  # with a symbol (50 without)
    ("GET", "/fapi/v1/premiumIndex"): 1,
    ("GET", "/fapi/v1/fundingRate"): 1,
    ("GET", "/fapi/v1/ticker/24hr"): 1,
}
DAPI_WEIGHTS: dict[tuple[str, str], float] = {
    ("GET", "/dapi/v1/exchangeInfo"): 1,
    ("GET", "/dapi/v1/time"): 1,
    ("GET", "/dapi/v1/ping"): 1,
    ("GET", "/dapi/v1/klines"): 5,
    ("POST", "/dapi/v1/leverage"): 1,
    ("POST", "/dapi/v1/marginType"): 1,
    ("GET", "/dapi/v1/account"): 5,
    ("GET", "/dapi/v1/balance"): 1,
    ("GET", "/dapi/v1/positionRisk"): 1,
    ("GET", "/dapi/v2/leverageBracket"): 1,
    ("GET", "/dapi/v1/leverageBracket"): 1,
    ("GET", "/dapi/v1/positionSide/dual"): 30,
    ("POST", "/dapi/v1/order"): 1,
    ("GET", "/dapi/v1/order"): 1,
    ("DELETE", "/dapi/v1/order"): 1,
    ("GET", "/dapi/v1/openOrders"): 1,
    ("GET", "/dapi/v1/allOrders"): 20,
    ("GET", "/dapi/v1/userTrades"): 20,
    ("GET", "/dapi/v1/income"): 20,
    ("GET", "/dapi/v1/forceOrders"): 20,
    ("GET", "/dapi/v1/premiumIndex"): 10,
    ("GET", "/dapi/v1/fundingRate"): 1,
    ("GET", "/dapi/v1/ticker/24hr"): 1,
}
_NO_SYMBOL_WEIGHT = {"openOrders": 40, "ticker/24hr": 40, "premiumIndex": 10, "forceOrders": 50}

_CODE = re.compile(r"[\"']code[\"']\s*:\s*(-?\d+)")
_MSG = re.compile(r"[\"']msg[\"']\s*:\s*[\"']([^\"']*)[\"']")


def binance_code(text: str) -> tuple[int | None, str]:
    """The Binance error ``code`` and ``msg`` in an error text (ccxt puts the answer's body in it)."""
    m = _CODE.search(text)
    code = int(m.group(1)) if m else None
    mm = _MSG.search(text)
    return code, (mm.group(1) if mm else "")


class _Binance(VenueDialect):
    exchange = "binance"
    credentials = ("key", "secret")
    weight_limit = 2400.0
    client_id_pattern = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"
    prefix = "/fapi"
    weights: Mapping[tuple[str, str], float] = FAPI_WEIGHTS

    def client_config(self, credentials: Mapping[str, str], options: Mapping[str, Any]) -> dict[str, Any]:
        config = super().client_config(credentials, options)
        config["options"].setdefault("recvWindow", int(options.get("recv_window_ms", 5000)))
        # signed requests must be within recvWindow of Binance's clock: measure the offset when markets load
        config["options"].setdefault("adjustForTimeDifference", True)
        return config

    def apply_sandbox(self, client: Any) -> None:
        """Binance futures: the demo-trading endpoints (ccxt refuses the retired futures testnet)."""
        client.enable_demo_trading(True)

    def weight(self, method: str, path: str, query: Mapping[str, str]) -> float:
        base = self.weights.get((method, path))
        if base is None:
            return self.default_weight
        tail = path.rsplit("/v1/", 1)[-1]
        if tail in _NO_SYMBOL_WEIGHT and "symbol" not in query and "pair" not in query:
            return float(_NO_SYMBOL_WEIGHT[tail])
        return float(base)

    def venue_used_weight(self, headers: Mapping[str, str]) -> float | None:
        for key, value in headers.items():
            if str(key).lower() == "x-mbx-used-weight-1m":
                try:
                    return float(value)
                except (TypeError, ValueError):
                    return None
        return None

    def classify(self, exc: BaseException) -> Classified:
        text = " ".join(str(exc).split())
        code, msg = binance_code(text)
        detail = f"{code} {msg}".strip() if code is not None else text[:300]
        if code is not None:
            if code == -1013 and "NOTIONAL" in msg.upper():
                return Classified("reject", "min_notional", detail)
            if code in REJECT_CODES:
                return Classified("reject", REJECT_CODES[code], detail)
            if code in NOT_FOUND_CODES:
                return Classified("not_found", None, detail)
            if code in AUTH_CODES:
                return Classified("auth", None, detail)
            if code in RETRY_CODES:
                return Classified("retry", None, detail)
        base = super().classify(exc)
        return Classified(base.outcome, base.kind, detail if code is not None else base.detail)

    def check_account(self, client: Any, read_only: bool) -> None:
        """A trading account must be in one-way position mode: our orders carry no ``positionSide``."""
        if read_only:
            return
        answer = (
            client.dapiPrivateGetPositionSideDual({})
            if self.prefix == "/dapi"
            else client.fapiPrivateGetPositionSideDual({})
        )
        if str(answer.get("dualSidePosition")).lower() == "true":
            raise ConfigError(
                f"{self.venue}: the account is in hedge mode (dualSidePosition); switch it to one-way mode on "
                "Binance (Preferences > Position Mode) before trading with perphedge"
            )

    def fetch_liquidations(self, client: Any, symbol: str, since_ms: int) -> list[tuple[float, ...]]:
        """Binance's own liquidation orders (``forceOrders``, autoCloseType LIQUIDATION), with the loss (the
        realised PnL and the clearance fee of the order's trades, settle asset, > 0 lost) as a 4th item."""
        rows = [r for r in client.fetch_my_liquidations(symbol, since_ms or None) if r.get("symbol") == symbol]
        out: list[tuple[float, ...]] = []
        for r in rows:
            order_id = str((r.get("info") or {}).get("orderId") or "")
            trades = client.fetch_my_trades(symbol, None, None, {"orderId": order_id}) if order_id else []
            mine = [t for t in trades if str(t.get("order")) == order_id]
            # what the liquidation cost in the settle asset: the realised loss plus the clearance fee
            realized = sum(_num((t.get("info") or {}).get("realizedPnl")) for t in mine)
            fees = sum(_num((t.get("fee") or {}).get("cost")) for t in mine)
            loss = fees - realized if mine else math.nan
            out.append((int(r.get("timestamp") or 0), _num(r.get("price"), math.nan), _num(r.get("contracts")), loss))
        return out

    def fetch_balances(self, client: Any) -> list[tuple[str, float, float, float]]:
        """The futures wallet per asset: ``wallet`` = walletBalance (without unrealised PnL), ``used`` =
        initialMargin (positions and open orders), ``free = wallet - used``."""
        bal = client.fetch_balance()
        info = bal.get("info") or {}
        assets = info.get("assets") if isinstance(info, dict) else info
        out = []
        for row in assets or []:
            asset = str(row.get("asset") or "")
            if not asset:
                continue
            wallet = _num(row.get("walletBalance"))
            used = _num(row.get("initialMargin"))
            out.append((asset, wallet, wallet - used, used))
        return out

    def fetch_order_trades(self, client: Any, symbol: str, order: Mapping[str, Any]) -> list[dict[str, Any]]:
        trades = client.fetch_my_trades(symbol, None, None, {"orderId": order.get("id")})
        return [t for t in trades if str(t.get("order")) == str(order.get("id"))]

    def fetch_funding(self, client: Any, symbol: str, since_ms: int) -> list[VenueFunding]:
        """``income`` rows of type FUNDING_FEE (paged by time: 1000 rows a page)."""
        out: list[VenueFunding] = []
        since = since_ms or None
        seen: set[str] = set()
        while True:
            rows = client.fetch_funding_history(symbol, since, 1000)
            fresh = [r for r in rows if str(r.get("id")) not in seen]
            for r in fresh:
                seen.add(str(r.get("id")))
                info = r.get("info") or {}
                out.append(
                    VenueFunding(
                        symbol=str(r.get("symbol") or symbol),
                        ts_ms=int(r.get("timestamp") or 0),
                        amount=_num(r.get("amount")),
                        asset=str(r.get("code") or info.get("asset") or ""),
                        entry_id=str(r.get("id") or ""),
                    )
                )
            if len(rows) < 1000 or not fresh:
                break
            since = max(int(r.get("timestamp") or 0) for r in rows)
        out.sort(key=lambda e: (e.ts_ms, e.entry_id))
        return self._with_rates(client, symbol, out)

    def _with_rates(self, client: Any, symbol: str, rows: list[VenueFunding]) -> list[VenueFunding]:
        """Income rows carry no rate: take each settlement's rate from the public ``fundingRate`` history
        (matched within a minute of the income time; nan when the venue has none)."""
        if not rows:
            return rows
        start, end = rows[0].ts_ms - 60_000, rows[-1].ts_ms + 60_000
        rates: list[tuple[int, float]] = []
        while True:
            page = client.fetch_funding_rate_history(symbol, start, 1000, {"endTime": end})
            rates += [(int(r.get("timestamp") or 0), _num(r.get("fundingRate"), math.nan)) for r in page]
            if len(page) < 1000:
                break
            start = max(int(r.get("timestamp") or 0) for r in page) + 1
        out = []
        for row in rows:
            near = [(abs(ms - row.ts_ms), rate) for ms, rate in rates if abs(ms - row.ts_ms) <= 60_000]
            rate = min(near)[1] if near else math.nan
            out.append(
                VenueFunding(
                    symbol=row.symbol,
                    ts_ms=row.ts_ms,
                    amount=row.amount,
                    asset=row.asset,
                    rate=rate,
                    entry_id=row.entry_id,
                )
            )
        return out


def _num(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _margin_mode(raw: Any) -> Literal["isolated", "cross", ""]:
    text = str(raw or "").lower()
    if text in ("isolated",):
        return "isolated"
    if text in ("cross", "crossed"):
        return "cross"
    return ""


def _isolated(info: Mapping[str, Any]) -> float:
    """The isolated margin wallet (without unrealised PnL): ``isolatedWallet``, else ``isolatedMargin``."""
    wallet = _num(info.get("isolatedWallet"), math.nan)
    return wallet if math.isfinite(wallet) else _num(info.get("isolatedMargin"), math.nan)


def _liquidation(price: float, amount: float) -> float:
    """Binance answers ``"0"`` when a position cannot be liquidated (e.g. an inverse short over-collateralised in
    coin): ``inf`` then; ``nan`` when there is no position."""
    if math.isfinite(price) and price > 0:
        return price
    return math.inf if amount != 0 else math.nan


class BinanceUsdm(_Binance):
    """Binance USDⓈ-M futures (``/fapi``)."""

    venue = "binance_usdm"
    ccxt_id = "binanceusdm"
    kinds = ("linear",)

    def fetch_positions(self, client: Any, symbols: Sequence[str]) -> list[VenuePosition]:
        """v3 ``positionRisk`` (entry, mark, liquidation price, isolated margin) + ``symbolConfig`` (leverage,
        margin type) for the symbols that hold a position."""
        rows = [p for p in client.fetch_positions(list(symbols)) if p.get("symbol") in symbols]
        if not rows:
            return []
        config: dict[str, dict[str, Any]] = {}
        for entry in client.fapiPrivateGetSymbolConfig({}):
            config[str(entry.get("symbol"))] = entry
        out = []
        for p in rows:
            info = p.get("info") or {}
            cfg = config.get(str(info.get("symbol")), {})
            amt = _num(info.get("positionAmt"))
            iso = _isolated(info)
            mode = _margin_mode(cfg.get("marginType")) or ("isolated" if iso > 0 else "cross")
            liq = _num(info.get("liquidationPrice"), math.nan)
            out.append(
                VenuePosition(
                    symbol=str(p.get("symbol")),
                    contracts=amt,
                    entry_price=_num(info.get("entryPrice"), math.nan),
                    mark_price=_num(info.get("markPrice"), math.nan),
                    leverage=_num(cfg.get("leverage"), math.nan),
                    margin_mode=mode,
                    isolated_margin=iso if mode == "isolated" else math.nan,
                    initial_margin=_num(info.get("initialMargin"), math.nan),
                    liquidation_price=_liquidation(liq, _num(info.get("positionAmt"))),
                    unrealized=_num(info.get("unRealizedProfit"), math.nan),
                    mmr=_num(p.get("maintenanceMarginPercentage"), math.nan),
                    updated_ms=int(_num(info.get("updateTime"))),
                )
            )
        return out


class BinanceCoinm(_Binance):
    """Binance COIN-M futures (``/dapi``): contracts of 100 USD (BTC) or 10 USD; margin, PnL, funding in coin."""

    venue = "binance_coinm"
    ccxt_id = "binancecoinm"
    kinds = ("inverse",)
    prefix = "/dapi"
    weights = DAPI_WEIGHTS

    def fetch_positions(self, client: Any, symbols: Sequence[str]) -> list[VenuePosition]:
        """``/dapi/v1/positionRisk``: it carries leverage and margin type itself."""
        out = []
        for p in client.fetch_positions(list(symbols)):
            if p.get("symbol") not in symbols:
                continue
            info = p.get("info") or {}
            mode = _margin_mode(info.get("marginType")) or (p.get("marginMode") or "")
            liq = _num(info.get("liquidationPrice"), math.nan)
            iso = _isolated(info)
            out.append(
                VenuePosition(
                    symbol=str(p.get("symbol")),
                    contracts=_num(info.get("positionAmt")),
                    entry_price=_num(info.get("entryPrice"), math.nan),
                    mark_price=_num(info.get("markPrice"), math.nan),
                    leverage=_num(info.get("leverage"), math.nan),
                    margin_mode=mode if mode in ("isolated", "cross") else "",
                    isolated_margin=iso if mode == "isolated" else math.nan,
                    initial_margin=_num(p.get("initialMargin"), math.nan),
                    liquidation_price=_liquidation(liq, _num(info.get("positionAmt"))),
                    unrealized=_num(info.get("unRealizedProfit"), math.nan),
                    mmr=_num(p.get("maintenanceMarginPercentage"), math.nan),
                    updated_ms=int(_num(info.get("updateTime"))),
                )
            )
        return out


DIALECTS: dict[str, type[VenueDialect]] = {"binance_usdm": BinanceUsdm, "binance_coinm": BinanceCoinm}
