"""A fake exchange for tests and benchmarks: Binance (spot, USDⓈ-M, COIN-M) and Bybit public endpoints, and
the venues' private (signed) endpoints mounted by the venue dialects listed in ``PRIVATE_VENUES``.

It serves the sample history (``PERPHEDGE_SAMPLE_DATA``) on 127.0.0.1 with the exchanges' real
page limits, answering the calls ccxt makes (``load_markets``, ``fetch_ohlcv``,
``fetch_funding_rate_history``, and the live public tickers ``fetch_funding_rate`` / ``fetch_ticker``),
and injects faults on demand: 429 with ``Retry-After``, 500, a dropped connection, a slow answer, a
page that overlaps the previous one. Only loopback is used.

Live tickers answer "now" = ``now_ms`` (settable; wall-clock time when None): the price of an asset is
``marks[asset]`` when set, else the close of the last daily candle completed by then; the funding rate
in force is the rate of the next stored settlement after now (the fake knows the future), with that
settlement's time as ``nextFundingTime``.

Perpetual candles are the spot candles of the same coin (the sample has no perpetual OHLCV);
funding comes from the sample's funding files of that contract.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from perphedge.exchange.fake_ledger import Contract, PrivateLedger

__all__ = ["PRIVATE_VENUES", "FakeExchange", "Fault", "PrivateRequest", "Reply"]

#: modules (under ``perphedge.exchange``) whose ``mount(fx)`` adds a venue's private routes to the fake
PRIVATE_VENUES: tuple[str, ...] = ("fake_binance", "fake_bybit", "fake_okx", "fake_hyperliquid")

DAY_MS = 86_400_000
BINANCE_LIMITS = {"spot": (500, 1000), "fapi": (500, 1500), "dapi": (500, 1500)}  # klines (default, max)
BINANCE_FUNDING_LIMITS = (100, 1000)
BYBIT_KLINE_LIMITS = (200, 1000)
BYBIT_FUNDING_LIMITS = (200, 200)


@dataclass(slots=True)
class Fault:
    """One injected fault for the next request whose path contains ``path``.

    ``kind``: ``429`` (with ``Retry-After: retry_after``), ``500``, ``drop`` (close the socket with no
    answer), ``slow`` (sleep ``delay`` seconds first), ``overlap`` (start the page ``rows`` rows early),
    ``drop_after_accept`` (process the request — an order is accepted and filled — then close the socket
    with no answer), ``maintenance`` (503, the venue is in maintenance). ``method`` (``GET``, ``POST``,
    ``DELETE``; empty = any) narrows which request takes it; ``after`` lets that many matching requests through
    first.
    """

    kind: str
    path: str = ""
    retry_after: float = 0.2
    delay: float = 3.0
    rows: int = 3
    method: str = ""
    after: int = 0  # let this many matching requests through untouched first


@dataclass(frozen=True, slots=True)
class PrivateRequest:
    """One request to a private route: raw ``query`` and ``body`` (for signature checks) and parsed ``q``."""

    method: str
    path: str
    query: str
    q: dict[str, str]
    body: bytes
    headers: dict[str, str]  # lower-case names


#: (status, JSON body, extra headers)
Reply = tuple[int, Any, dict[str, str]]


def _published_formula(venue: str) -> Callable[[Contract, Any, float], float] | None:
    """The venue's published liquidation formula and margin tiers for the instruments perphedge bundles (the
    fake's venue computes its liquidation price as the real one does); None: the ledger's simple formula."""
    from perphedge.core.contracts import liquidation_price
    from perphedge.errors import PerphedgeError
    from perphedge.specs import default_registry

    exchange = venue.split("_", maxsplit=1)[0]
    by_symbol = {i.symbol: i for i in default_registry().instruments if i.exchange == exchange}

    def formula(c: Contract, pos: Any, margin: float) -> float:
        inst = by_symbol.get(c.symbol)
        if inst is None:
            return math.nan
        size = abs(pos.qty) * c.contract_size  # coins (linear) or USD (inverse)
        try:
            price = liquidation_price(
                kind=inst.kind,
                method=inst.liquidation_method,
                side="short" if pos.qty < 0 else "long",
                size=size,
                entry=pos.entry_price,
                margin=margin,
                schedule=inst.liquidation_schedule,  # OKX/BitMEX: the fee to close is reserved
            ).price
        except PerphedgeError:
            return math.nan
        return math.inf if price is None else float(price)  # None: the margin covers any price

    return formula if by_symbol else None


def _ms(text: str) -> int:
    if "T" in text:
        dt = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    else:
        dt = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


@dataclass
class _Data:
    candles: dict[str, list[tuple[int, str, str, str, str, str]]] = field(default_factory=dict)  # asset -> rows
    funding: dict[tuple[str, str], list[tuple[int, str]]] = field(default_factory=dict)  # (exchange, native) -> rows


def _load(root: Path) -> _Data:
    data = _Data()
    for path in sorted((root / "prices").glob("*.csv")):
        with path.open() as fh:
            rows = [
                (_ms(r["timestamp"]), r["open"], r["high"], r["low"], r["close"], r["volume"])
                for r in csv.DictReader(fh)
            ]
        data.candles[path.stem.upper()] = rows
    for path in sorted((root / "funding").glob("*.csv")):
        stem = path.stem
        if stem.endswith(("_1h", "_dailymean")):
            continue
        exchange, native = stem.split("_", 1)
        with path.open() as fh:
            data.funding[(exchange.lower(), native.upper())] = [
                (_ms(r["timestamp"]), r["funding_rate"]) for r in csv.DictReader(fh)
            ]
    return data


class FakeExchange:
    """Start with ``with FakeExchange(root) as fx:``; ``fx.url`` is the base to route ccxt to."""

    def __init__(
        self,
        root: str | Path,
        *,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        api_key: str = "",
        api_secret: str = "",
        password: str = "",
        private_key: str = "",
        balances: dict[str, float] | None = None,
        port: int = 0,
    ) -> None:
        self.root = Path(root)
        self.api_key = api_key
        self.api_secret = api_secret
        self.password = password
        self.private_key = private_key
        self.start_balances = dict(balances or {})
        self.ledgers: dict[str, PrivateLedger] = {}  # venue (e.g. "binance_usdm") -> its account
        self.private_routes: dict[tuple[str, str], Callable[[PrivateRequest], Reply]] = {}
        self.requests: list[tuple[int, str, str, int]] = []  # (wall ms, method, path, status) of every request
        self.data = _load(self.root)
        from perphedge.exchange.fake_futures import load_dated

        self.dated = load_dated(self.root)  # Binance COIN-M dated contracts of futures/ (fake_futures.py)
        self.latency = latency
        self.faults: deque[Fault] = deque()
        self.log: list[tuple[str, int]] = []  # (path?query, status)
        self.now_ms: int | None = None  # the live tickers' "now" (None: wall-clock time)
        self.marks: dict[str, float] = {}  # asset -> price the live tickers answer (overrides the candles)
        #: hooks run on every request (after faults): ``hook(method, path, q) -> (reply or None, headers)``;
        #: a reply answers the request at once (e.g. a venue's own 429), the headers go on whatever answers it
        self.request_hooks: list[Callable[[str, str, dict[str, str]], tuple[Reply | None, dict[str, str]]]] = []
        self.venue_state: dict[str, Any] = {}  # per-venue state of the private dialects (e.g. "binance")
        self._lock = threading.Lock()
        handler = self._handler()
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.handle_error = self._handle_error  # type: ignore[method-assign]
        if api_key or api_secret or private_key:
            import importlib

            for name in PRIVATE_VENUES:
                importlib.import_module(f"perphedge.exchange.{name}").mount(self)
        else:  # the public market-data routes of OKX and Hyperliquid (data fetch, instruments --refresh)
            from perphedge.exchange import fake_hyperliquid, fake_okx

            fake_okx.mount_public(self)
            fake_hyperliquid.mount_public(self)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-exchange", daemon=True)

    def _handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (killed, timed out) is normal here; anything else is printed."""
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        ThreadingHTTPServer.handle_error(self.server, request, client_address)

    @property
    def url(self) -> str:
        addr = self.server.server_address
        return f"http://{addr[0]!s}:{addr[1]}"

    def __enter__(self) -> FakeExchange:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each is used once, in order, by the next matching request."""
        with self._lock:
            self.faults.extend(faults)

    def _take_fault(self, path: str, method: str = "GET") -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self.faults):
                if fault.path in path and (not fault.method or fault.method.upper() == method):
                    if fault.after > 0:
                        fault.after -= 1
                        return None
                    del self.faults[i]
                    return fault
        return None

    # ------------------------------------------------------------------ private API plumbing

    def mount(self, method: str, path: str, fn: Callable[[PrivateRequest], Reply]) -> None:
        """Serve ``method path`` (exact path) with ``fn``; used by the venue dialects' ``mount(fx)``."""
        self.private_routes[(method.upper(), path)] = fn

    def ledger(self, venue: str, contracts: dict[str, Contract], *, fee_rate: float = 0.0005) -> PrivateLedger:
        """The account of ``venue`` (created on first use with the fake's starting balances)."""
        with self._lock:
            led = self.ledgers.get(venue)
            if led is None:
                led = self.ledgers[venue] = PrivateLedger(
                    contracts,
                    self.start_balances,
                    mark=self._mark,
                    now=self._now,
                    fee_rate=fee_rate,
                    funding_rates=self._funding_between,
                )
                led.liq_formula = _published_formula(venue)
            return led

    def _mark(self, asset: str, ms: int) -> float | None:
        text = self._price(asset.upper(), ms)
        return None if text is None else float(text)

    def _funding_between(self, c: Contract, since_ms: int, until_ms: int) -> list[tuple[int, float]]:
        if c.funding_key is None:
            return []
        rows = self.data.funding.get(c.funding_key, [])
        return [(ms, float(rate)) for ms, rate in rows if since_ms < ms <= until_ms]

    # ------------------------------------------------------------------ markets

    def _spot_assets(self) -> list[str]:
        return sorted(self.data.candles)

    def binance_spot_info(self) -> dict[str, Any]:
        symbols = [
            {
                "symbol": f"{a}USDT",
                "status": "TRADING",
                "baseAsset": a,
                "baseAssetPrecision": 8,
                "quoteAsset": "USDT",
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "MARKET"],
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "permissions": ["SPOT"],
                "permissionSets": [["SPOT"]],
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": "0.00000100",
                        "maxPrice": "1000000.00",
                        "tickSize": "0.00000100",
                    },
                    {
                        "filterType": "LOT_SIZE",
                        "minQty": "0.00001000",
                        "maxQty": "9000000.00",
                        "stepSize": "0.00001000",
                    },
                ],
            }
            for a in self._spot_assets()
        ]
        return {"timezone": "UTC", "serverTime": int(time.time() * 1000), "rateLimits": [], "symbols": symbols}

    def binance_futures_info(self, inverse: bool) -> dict[str, Any]:
        symbols = []
        for a in self._spot_assets():
            base = {
                "symbol": f"{a}USD_PERP" if inverse else f"{a}USDT",
                "pair": f"{a}USD" if inverse else f"{a}USDT",
                "contractType": "PERPETUAL",
                "deliveryDate": 4133404800000,
                "onboardDate": 1569398400000,
                "baseAsset": a,
                "quoteAsset": "USD" if inverse else "USDT",
                "marginAsset": a if inverse else "USDT",
                "pricePrecision": 2,
                "quantityPrecision": 0 if inverse else 3,
                "baseAssetPrecision": 8,
                "quotePrecision": 8,
                "underlyingType": "COIN",
                "triggerProtect": "0.0500",
                "maintMarginPercent": "2.5000",
                "requiredMarginPercent": "5.0000",
                "orderTypes": ["LIMIT", "MARKET"],
                "timeInForce": ["GTC"],
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": "0.01",
                        "maxPrice": "4529764",
                        "tickSize": "0.10" if a == "BTC" else "0.01",
                    },
                    {
                        "filterType": "LOT_SIZE",
                        "minQty": "1" if inverse else "0.001",
                        "maxQty": "1000000",
                        "stepSize": "1" if inverse else "0.001",
                    },
                    {"filterType": "MIN_NOTIONAL", "notional": "5"},
                ],
            }
            if inverse:
                base.update(
                    {"contractStatus": "TRADING", "contractSize": 100 if a == "BTC" else 10, "equalQtyPrecision": 4}
                )
            else:
                base.update({"status": "TRADING"})
            symbols.append(base)
        return {"timezone": "UTC", "serverTime": int(time.time() * 1000), "rateLimits": [], "symbols": symbols}

    def bybit_instruments(self, category: str) -> dict[str, Any]:
        items: list[dict[str, Any]] = []
        for a in self._spot_assets():
            if category == "spot":
                items.append(
                    {
                        "symbol": f"{a}USDT",
                        "baseCoin": a,
                        "quoteCoin": "USDT",
                        "status": "Trading",
                        "innovation": "0",
                        "marginTrading": "none",
                        "lotSizeFilter": {
                            "basePrecision": "0.000001",
                            "quotePrecision": "0.00000001",
                            "minOrderQty": "0.000048",
                            "maxOrderQty": "71.73956243",
                            "minOrderAmt": "1",
                            "maxOrderAmt": "2000000",
                        },
                        "priceFilter": {"tickSize": "0.01"},
                    }
                )
            else:
                inverse = category == "inverse"
                items.append(
                    {
                        "symbol": f"{a}USD" if inverse else f"{a}USDT",
                        "contractType": "InversePerpetual" if inverse else "LinearPerpetual",
                        "status": "Trading",
                        "baseCoin": a,
                        "quoteCoin": "USD" if inverse else "USDT",
                        "settleCoin": a if inverse else "USDT",
                        "launchTime": "1585526400000",
                        "deliveryTime": "0",
                        "deliveryFeeRate": "",
                        "priceScale": "2",
                        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
                        "priceFilter": {"minPrice": "0.50", "maxPrice": "999999.00", "tickSize": "0.50"},
                        "lotSizeFilter": {
                            "maxOrderQty": "100.000",
                            "minOrderQty": "1" if inverse else "0.001",
                            "qtyStep": "1" if inverse else "0.001",
                            "postOnlyMaxOrderQty": "1000.000",
                        },
                        "unifiedMarginTrade": True,
                        "fundingInterval": 480,
                        "settleCoinType": "",
                    }
                )
        return {
            "retCode": 0,
            "retMsg": "OK",
            "result": {"category": category, "list": items, "nextPageCursor": ""},
            "retExtInfo": {},
            "time": int(time.time() * 1000),
        }

    # ------------------------------------------------------------------ history

    @staticmethod
    def _limit(q: dict[str, str], default: int, maximum: int) -> int:
        try:
            value = int(q.get("limit", default))
        except ValueError:
            value = default
        return max(1, min(value, maximum))

    def _asset_of(self, native: str) -> str:
        for suffix in ("USD_PERP", "USDT", "USD"):
            if native.endswith(suffix):
                return native[: -len(suffix)]
        return native

    def _window(self, rows: list[Any], start: int | None, end: int | None, limit: int, overlap: int) -> list[Any]:
        lo = 0
        if start is not None:
            while lo < len(rows) and rows[lo][0] < start:
                lo += 1
        lo = max(0, lo - overlap)
        out = []
        for row in rows[lo:]:
            if end is not None and row[0] > end:
                break
            out.append(row)
            if len(out) >= limit:
                break
        return out

    def binance_klines(self, prefix: str, q: dict[str, str], overlap: int) -> tuple[int, Any]:
        asset = self._asset_of(q.get("symbol", ""))
        rows = self.data.candles.get(asset)
        if rows is None:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        if q.get("interval") != "1d":
            return 200, []
        start = int(q["startTime"]) if "startTime" in q else None
        end = int(q["endTime"]) if "endTime" in q else None
        limit = self._limit(q, *BINANCE_LIMITS[prefix])
        page = self._window(rows, start, end, limit, overlap)
        return 200, [[r[0], r[1], r[2], r[3], r[4], r[5], r[0] + DAY_MS - 1, "0", 0, "0", "0", "0"] for r in page]

    def binance_funding(self, inverse: bool, q: dict[str, str], overlap: int) -> tuple[int, Any]:
        native = q.get("symbol", "")
        rows = self.data.funding.get(("binance", native))
        if rows is None:
            return 200, []
        start = int(q["startTime"]) if "startTime" in q else None
        end = int(q["endTime"]) if "endTime" in q else None
        limit = self._limit(q, *BINANCE_FUNDING_LIMITS)
        page = self._window(rows, start, end, limit, overlap)
        return 200, [{"symbol": native, "fundingTime": r[0], "fundingRate": r[1], "markPrice": ""} for r in page]

    def bybit_kline(self, q: dict[str, str], overlap: int) -> tuple[int, Any]:
        asset = self._asset_of(q.get("symbol", ""))
        rows = self.data.candles.get(asset)
        if rows is None:
            return 200, {"retCode": 10001, "retMsg": "Not supported symbols", "result": {}, "time": 0}
        if q.get("interval") != "D":
            return 200, {"retCode": 0, "retMsg": "OK", "result": {"list": []}, "time": 0}
        start = int(q["start"]) if "start" in q else None
        end = int(q["end"]) if "end" in q else None
        limit = self._limit(q, *BYBIT_KLINE_LIMITS)
        if end is None:
            page = self._window(rows, start, None, limit, overlap)
        else:  # Bybit answers the newest `limit` candles of [start, end]
            window = [r for r in rows if (start is None or r[0] >= start) and r[0] <= end]
            page = window[-limit:]
            if overlap and page:
                first = rows.index(page[0])
                page = rows[max(0, first - overlap) : first] + page
        lst = [[str(r[0]), r[1], r[2], r[3], r[4], r[5], "0"] for r in reversed(page)]  # Bybit: newest first
        return 200, {
            "retCode": 0,
            "retMsg": "OK",
            "result": {"category": q.get("category"), "symbol": q.get("symbol"), "list": lst},
            "retExtInfo": {},
            "time": 0,
        }

    def bybit_funding(self, q: dict[str, str], overlap: int) -> tuple[int, Any]:
        native = q.get("symbol", "")
        rows = self.data.funding.get(("bybit", native), [])
        start = int(q["startTime"]) if "startTime" in q else None
        end = int(q["endTime"]) if "endTime" in q else None
        limit = self._limit(q, *BYBIT_FUNDING_LIMITS)
        if start is not None and end is None:
            end = start + limit * 8 * 3_600_000
        # Bybit returns the newest `limit` rows at or before endTime, newest first
        window = [r for r in rows if (start is None or r[0] >= start) and (end is None or r[0] <= end)]
        page = window[-limit:]
        if overlap and page:
            first = rows.index(page[0])
            page = rows[max(0, first - overlap) : first] + page
        lst = [{"symbol": native, "fundingRate": r[1], "fundingRateTimestamp": str(r[0])} for r in reversed(page)]
        return 200, {
            "retCode": 0,
            "retMsg": "OK",
            "result": {"category": q.get("category"), "list": lst},
            "retExtInfo": {},
            "time": 0,
        }

    # ------------------------------------------------------------------ live tickers

    def _now(self) -> int:
        return self.now_ms if self.now_ms is not None else int(time.time() * 1000)

    def _price(self, asset: str, now: int) -> str | None:
        if asset in self.marks:
            return repr(float(self.marks[asset]))
        rows = self.data.candles.get(asset) or []
        done = [r for r in rows if r[0] + DAY_MS <= now]
        return done[-1][4] if done else None

    def _next_funding(self, exchange: str, native: str, now: int) -> tuple[str, int]:
        rows = self.data.funding.get((exchange, native), [])
        for ms, rate in rows:
            if ms > now:
                return rate, ms
        step = 8 * 3_600_000
        return (rows[-1][1] if rows else "0"), (now // step + 1) * step

    def binance_premium_index(self, inverse: bool, q: dict[str, str]) -> tuple[int, Any]:
        native = q.get("symbol", "")
        now = self._now()
        price = self._price(self._asset_of(native), now)
        if price is None:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        rate, next_ms = self._next_funding("binance", native, now)
        row = {
            "symbol": native,
            "markPrice": price,
            "indexPrice": price,
            "estimatedSettlePrice": price,
            "lastFundingRate": rate,
            "interestRate": "0.00010000",
            "nextFundingTime": next_ms,
            "time": now,
        }
        if inverse:
            row["pair"] = native.replace("_PERP", "")
            return 200, [row]
        return 200, row

    def binance_ticker(self, q: dict[str, str]) -> tuple[int, Any]:
        native = q.get("symbol", "")
        now = self._now()
        price = self._price(self._asset_of(native), now)
        if price is None:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        return 200, {
            "symbol": native,
            "lastPrice": price,
            "openPrice": price,
            "highPrice": price,
            "lowPrice": price,
            "volume": "0",
            "quoteVolume": "0",
            "openTime": now - DAY_MS,
            "closeTime": now,
            "count": 0,
        }

    def bybit_tickers(self, q: dict[str, str]) -> tuple[int, Any]:
        native = q.get("symbol", "")
        category = q.get("category", "spot")
        now = self._now()
        price = self._price(self._asset_of(native), now)
        if price is None:
            return 200, {"retCode": 10001, "retMsg": "Not supported symbols", "result": {}, "time": now}
        item = {"symbol": native, "lastPrice": price, "bid1Price": price, "ask1Price": price, "volume24h": "0"}
        if category != "spot":
            rate, next_ms = self._next_funding("bybit", native, now)
            item.update({"markPrice": price, "indexPrice": price, "fundingRate": rate, "nextFundingTime": str(next_ms)})
        return 200, {
            "retCode": 0,
            "retMsg": "OK",
            "result": {"category": category, "list": [item]},
            "retExtInfo": {},
            "time": now,
        }

    def route(self, path: str, q: dict[str, str], overlap: int) -> tuple[int, Any]:
        if path in ("/fapi/v1/premiumIndex", "/dapi/v1/premiumIndex"):
            return self.binance_premium_index(path.startswith("/dapi"), q)
        if path == "/api/v3/ticker/24hr":
            return self.binance_ticker(q)
        if path == "/v5/market/tickers":
            return self.bybit_tickers(q)
        if path == "/api/v3/exchangeInfo":
            return 200, self.binance_spot_info()
        if path == "/fapi/v1/exchangeInfo":
            return 200, self.binance_futures_info(inverse=False)
        if path == "/dapi/v1/exchangeInfo":  # perpetuals and the dated contracts (fake_futures.py)
            info = self.binance_futures_info(inverse=True)
            info["symbols"] += self.dated.exchange_info(self._now())
            return 200, info
        if path == "/api/v3/klines":
            return self.binance_klines("spot", q, overlap)
        if path == "/fapi/v1/klines":
            return self.binance_klines("fapi", q, overlap)
        if path == "/dapi/v1/klines" and self.dated.is_dated(q.get("symbol", "")):
            start, end = (int(q[k]) if k in q else None for k in ("startTime", "endTime"))
            return 200, self.dated.klines(q["symbol"], start, end, self._limit(q, *BINANCE_LIMITS["dapi"]))
        if path == "/dapi/v1/klines":
            return self.binance_klines("dapi", q, overlap)
        if path == "/fapi/v1/fundingRate":
            return self.binance_funding(False, q, overlap)
        if path == "/dapi/v1/fundingRate":
            return self.binance_funding(True, q, overlap)
        if path == "/v5/market/instruments-info":
            return 200, self.bybit_instruments(q.get("category", "spot"))
        if path == "/v5/market/kline":
            return self.bybit_kline(q, overlap)
        if path == "/v5/market/funding/history":
            return self.bybit_funding(q, overlap)
        if path in ("/api/v3/time", "/fapi/v1/time", "/dapi/v1/time", "/v5/market/time"):
            now = int(time.time() * 1000)
            return 200, {"serverTime": now, "result": {"timeSecond": str(now // 1000)}, "retCode": 0}
        return 404, {"code": -1, "msg": f"fake exchange: no route {path}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: Any) -> None:  # keep test output quiet
                return

            def setup(self) -> None:
                super().setup()
                # headers and body go out in two writes: without this, Nagle + delayed ACK add ~40 ms a request
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def do_DELETE(self) -> None:
                self._dispatch("DELETE")

            def do_PUT(self) -> None:
                self._dispatch("PUT")

            def _dispatch(self, method: str) -> None:
                parts = urlsplit(self.path)
                q = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length > 0 else b""
                if fake.latency:
                    time.sleep(fake.latency)
                fault = fake._take_fault(self.path, method)
                overlap = 0
                private = fake.private_routes.get((method, parts.path))
                if fault is not None and fault.kind == "drop_after_accept":
                    if private is not None:
                        headers = {k.lower(): v for k, v in self.headers.items()}
                        private(PrivateRequest(method, parts.path, parts.query, q, body, headers))
                    else:
                        fake.route(parts.path, q, 0)
                    return self._drop()
                if fault is not None and fault.kind == "maintenance":
                    return self._send(503, {"code": -1, "msg": "System is under maintenance."}, method=method)
                if fault is not None:
                    if fault.kind == "429":
                        return self._send(
                            429,
                            {"code": -1003, "msg": "Too many requests"},
                            {"Retry-After": f"{fault.retry_after:g}"},
                            method=method,
                        )
                    if fault.kind == "500":
                        return self._send(500, {"code": -1000, "msg": "Internal error"}, method=method)
                    if fault.kind == "drop":
                        return self._drop()
                    if fault.kind == "slow":
                        time.sleep(fault.delay)
                    if fault.kind == "overlap":
                        overlap = fault.rows
                hooked: dict[str, str] = {}
                for hook in fake.request_hooks:
                    early, more = hook(method, parts.path, q)
                    hooked.update(more)
                    if early is not None:
                        return self._send(early[0], early[1], {**hooked, **early[2]}, method=method)
                if private is not None:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    status, answer, extra = private(PrivateRequest(method, parts.path, parts.query, q, body, headers))
                    return self._send(status, answer, {**hooked, **extra}, method=method)
                if method != "GET":
                    return self._send(404, {"code": -1, "msg": f"fake exchange: no route {method} {parts.path}"})
                status, answer = fake.route(parts.path, q, overlap)
                return self._send(status, answer, hooked)

            def _drop(self) -> None:
                fake.log.append((self.path, 0))
                fake.requests.append((int(time.time() * 1000), self.command, urlsplit(self.path).path, 0))
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None, method: str = "GET") -> None:
                payload = json.dumps(body).encode()
                fake.log.append((self.path, status))
                fake.requests.append((int(time.time() * 1000), method, urlsplit(self.path).path, status))
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler


if __name__ == "__main__":  # ``python -m perphedge.exchange.fake --port N --api-key K --api-secret S ...``
    from perphedge.exchange.fake_cli import main

    raise SystemExit(main())
