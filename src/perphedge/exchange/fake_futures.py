"""The fake exchange's Binance COIN-M dated futures: ``/dapi/v1/exchangeInfo`` entries with ``contractType``
``CURRENT_QUARTER`` / ``NEXT_QUARTER`` and ``deliveryDate``, and ``/dapi/v1/klines`` of each contract.

The contracts and their daily candles are the sample's ``futures/BINANCE_<UNDERLYING>USD_quarterly_1d_*.csv``
(Binance mark klines); the contract type is relative to the fake's "now" (``now_ms``): the first contract
delivering after it is the current quarter, the next one the next quarter, delivered ones are
``DELIVERED`` (``contractStatus``), as Binance lists them.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["DatedBook", "load_dated"]

DAY_MS = 86_400_000


@dataclass
class DatedBook:
    """Dated contracts by native symbol: delivery time and daily rows (open ms, o, h, l, c)."""

    delivery: dict[str, int] = field(default_factory=dict)
    rows: dict[str, list[tuple[int, str, str, str, str]]] = field(default_factory=dict)

    def is_dated(self, native: str) -> bool:
        return native in self.delivery

    def exchange_info(self, now_ms: int) -> list[dict[str, Any]]:
        """``/dapi/v1/exchangeInfo`` symbols of the dated contracts."""
        pending = sorted((d, s) for s, d in self.delivery.items() if d > now_ms)
        kinds = {s: t for (_, s), t in zip(pending, ("CURRENT_QUARTER", "NEXT_QUARTER"), strict=False)}
        out = []
        for native, delivery in sorted(self.delivery.items(), key=lambda kv: kv[1]):
            base = native.split("USD_")[0]
            out.append(
                {
                    "symbol": native,
                    "pair": f"{base}USD",
                    "contractType": kinds.get(native, "CURRENT_QUARTER_DELIVERING" if delivery > now_ms else ""),
                    "deliveryDate": delivery,
                    "onboardDate": self.rows[native][0][0] if self.rows[native] else delivery - 180 * DAY_MS,
                    "contractStatus": "TRADING" if delivery > now_ms else "DELIVERED",
                    "contractSize": 100 if base == "BTC" else 10,
                    "marginAsset": base,
                    "maintMarginPercent": "2.5000",
                    "requiredMarginPercent": "5.0000",
                    "baseAsset": base,
                    "quoteAsset": "USD",
                    "pricePrecision": 1,
                    "quantityPrecision": 0,
                    "baseAssetPrecision": 8,
                    "quotePrecision": 8,
                    "equalQtyPrecision": 4,
                    "triggerProtect": "0.0500",
                    "underlyingType": "COIN",
                    "underlyingSubType": [],
                    "orderTypes": ["LIMIT", "MARKET"],
                    "timeInForce": ["GTC"],
                    "filters": [
                        {"filterType": "PRICE_FILTER", "minPrice": "0.1", "maxPrice": "1000000", "tickSize": "0.1"},
                        {"filterType": "LOT_SIZE", "minQty": "1", "maxQty": "1000000", "stepSize": "1"},
                    ],
                }
            )
        return out

    def klines(self, native: str, start: int | None, end: int | None, limit: int) -> list[list[Any]]:
        """Daily klines of one contract in Binance's shape (oldest first, at most ``limit``)."""
        rows = [r for r in self.rows[native] if (start is None or r[0] >= start) and (end is None or r[0] <= end)]
        return [[r[0], r[1], r[2], r[3], r[4], "0", r[0] + DAY_MS - 1, "0", 0, "0", "0", "0"] for r in rows[:limit]]


def _ms(text: str) -> int:
    fmt = "%Y-%m-%dT%H:%M:%SZ" if "T" in text else "%Y-%m-%d"
    return int(datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp() * 1000)


def load_dated(root: Path) -> DatedBook:
    """The dated contracts of ``root/futures`` (none when the folder is absent)."""
    book = DatedBook()
    for path in sorted((root / "futures").glob("BINANCE_*USD_quarterly_1d_*.csv")):
        with path.open() as fh:
            for r in csv.DictReader(fh):
                native = r["contract"]
                book.delivery[native] = _ms(r["expiry"])
                book.rows.setdefault(native, []).append(
                    (_ms(r["timestamp"]), r["open"], r["high"], r["low"], r["close"])
                )
    for rows in book.rows.values():
        rows.sort()
    return book
