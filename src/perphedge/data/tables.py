"""The market store's data tables and their columns, shared by the store (which writes them) and the
importer (which builds frames in exactly this shape). No imports: both sides may use it cheaply."""

from __future__ import annotations

__all__ = ["TABLE_COLUMNS"]

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "candles": ("source", "symbol", "timeframe", "ts", "open", "high", "low", "close", "volume"),
    "funding": ("source", "symbol", "ts", "rate", "interval_hours", "mark_price"),
    "basis": (
        "source",
        "asset",
        "ts",
        "timeframe",
        "spot_open",
        "spot_close",
        "perp_linear_open",
        "perp_linear_close",
        "perp_inverse_open",
        "perp_inverse_close",
    ),
    "sentiment": ("source", "name", "ts", "value"),
    # dated futures (data/futures_import.py): each contract's candles carry its delivery time
    "futures_candles": (
        "source",
        "symbol",
        "timeframe",
        "ts",
        "expiry",
        "open",
        "high",
        "low",
        "close",
        "spot_close",
        "perp_close",
    ),
    "futures_settlements": ("source", "symbol", "expiry", "settlement_price"),
}
