"""Dated futures through ccxt: the venue's listed contracts and expiries, and their daily candles as
``futures_candles`` frames (an adapter: it reads, the use case writes)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from perphedge.errors import ConfigError, ExchangeError

if TYPE_CHECKING:
    import pandas as pd

    from perphedge.exchange.ccxt_source import CcxtSource

__all__ = ["DatedContract", "contract_candles", "listed_contracts"]

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True, kw_only=True)
class DatedContract:
    """One listed dated contract: ccxt and native symbols, delivery (epoch ms), kind and size."""

    symbol: str
    native: str
    expiry_ms: int
    kind: str
    contract_size: float
    active: bool


def listed_contracts(source: CcxtSource, underlying: str) -> list[DatedContract]:
    """The dated contracts of ``underlying`` the venue lists (delivered ones too, as its markets say), by expiry."""
    code = underlying.strip().upper()
    if not (code.isascii() and code.isalnum()):
        raise ConfigError(f"invalid `--futures`: an underlying coin such as BTC, was {underlying!r}")
    out = []
    for sym, m in source.markets().items():
        if not m.get("future") or str(m.get("base", "")).upper() != code:
            continue
        expiry = m.get("expiry")
        if not isinstance(expiry, int | float) or expiry <= 0:
            raise ExchangeError(f"{source.id} lists {sym} as a dated future without an expiry")
        out.append(
            DatedContract(
                symbol=sym,
                native=str(m["id"]),
                expiry_ms=int(expiry),
                kind="inverse" if m.get("inverse") else "linear",
                contract_size=float(m.get("contractSize") or 1.0),
                active=bool(m.get("active", True)),
            )
        )
    if not out:
        raise ExchangeError(f"{source.id} lists no dated futures on {code}")
    return sorted(out, key=lambda c: c.expiry_ms)


def contract_candles(
    source: CcxtSource, contract: DatedContract, since_ms: int, until_ms: int, counter: Any = None
) -> Iterator[pd.DataFrame]:
    """Daily candles of ``contract`` in ``[since, until]`` that close before delivery, as ``futures_candles``
    rows (``spot_close`` and ``perp_close`` left empty), one page at a time."""
    import pandas as pd

    last_open = min(until_ms, contract.expiry_ms - DAY_MS)  # the last bar that closes before delivery
    if last_open < since_ms:
        return
    for page in source.ohlcv_pages(contract.symbol, "1d", since_ms, last_open, counter=counter):
        f = page.frame
        yield pd.DataFrame(
            {
                "source": source.id,
                "symbol": contract.native,
                "timeframe": "1d",
                "ts": f["ts"],
                "expiry": pd.Timestamp(contract.expiry_ms, unit="ms"),
                "open": f["open"],
                "high": f["high"],
                "low": f["low"],
                "close": f["close"],
                "spot_close": float("nan"),
                "perp_close": float("nan"),
            }
        )
