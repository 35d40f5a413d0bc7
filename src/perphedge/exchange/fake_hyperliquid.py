"""Hyperliquid on the fake exchange: ``POST /info`` (dispatched on the body's ``type``) and ``POST /exchange``
(signed L1 actions), in the JSON shapes ccxt 4.5.90's ``hyperliquid`` parses.

``mount(fx)`` serves both paths. Every Hyperliquid call is a POST with a JSON body:

* ``/info`` public reads: ``meta``, ``metaAndAssetCtxs``, ``spotMeta``, ``spotMetaAndAssetCtxs``, ``allMids``,
  ``perpDexs`` (no builder-deployed dexes), ``exchangeStatus``; account reads by address (unsigned on the real venue
  too): ``clearinghouseState``, ``spotClearinghouseState``, ``frontendOpenOrders``, ``openOrders``, ``orderStatus``
  (by ``oid`` = venue id or ``0x`` + 32 hex cloid), ``historicalOrders``, ``userFills``, ``userFillsByTime``,
  ``userFunding``, ``userAbstraction``, ``userRole`` (the account is a ``user``, the fake's signer an ``agent`` of it
  when it is another address). An unknown ``type`` is answered 422 as the venue does.
* ``/exchange`` actions: ``order`` (``a`` asset, ``b`` is-buy, ``p`` price, ``s`` size, ``r`` reduce-only,
  ``t`` ``{"limit": {"tif": "Gtc"|"Ioc"|"Alo"}}``, ``c`` cloid), ``cancel``, ``cancelByCloid``, ``updateLeverage``,
  ``updateIsolatedMargin``, ``setReferrer`` and the user-signed ``approveBuilderFee`` (ccxt sends the last two by
  itself on first use unless told not to).

Signatures: the fake recomputes the EIP-712 signature of each action with ccxt's own functions
(``action_hash`` → phantom agent → ``sign_l1_action``; user-signed actions with their typed message) from the
private key it was started with (RFC 6979 signatures are deterministic) and compares ``r``, ``s``, ``v``. The
``nonce`` and any ``vaultAddress``/``expiresAfter`` are part of the hash, so a changed nonce or vault breaks the
signature. A mismatch is answered as the venue answers a signature by an unknown key:
``{"status": "err", "response": "User or API Wallet 0x… does not exist."}`` naming the address the signature
recovers to. A nonce is used once and must lie within (wall time − 2 days, wall time + 1 day).

The account is the address of the fake's ``private_key`` (or ``api_key`` when that is an address: the key is then
an API wallet acting for it). Other addresses read as empty accounts. Orders fill at the fake's mark
(``fx.marks``) through the venue-neutral :class:`~perphedge.exchange.fake_ledger.PrivateLedger` (``venue
"hyperliquid"``, settle USDC, taker fee 0.045 %). Funding: the sample data has no Hyperliquid funding, so a rate
per hour per coin is settable (:attr:`HyperliquidState.funding_rates`, default 0.00125 % an hour, the venue's
interest baseline) and is paid on every whole hour crossed by ``fx.now_ms``. Liquidation prices are the venue's
formula (maintenance margin = half the initial margin at the coin's max leverage; cross positions share the cross
account value).
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal

from perphedge.exchange.fake_ledger import Contract, LedgerOrder, LedgerReject, PrivateLedger

if TYPE_CHECKING:
    from perphedge.exchange.fake import FakeExchange, PrivateRequest, Reply

__all__ = ["COIN_SPECS", "VENUE", "HyperliquidState", "funding_history", "hyperliquid_state", "mount", "mount_public"]

VENUE = "hyperliquid"
HOUR_MS = 3_600_000
#: coin -> (szDecimals, max leverage) as Hyperliquid's meta lists them (the bundled specs' values); other sample
#: coins get (2, 10)
COIN_SPECS: dict[str, tuple[int, int]] = {
    "BTC": (5, 40),
    "ETH": (4, 25),
    "SOL": (2, 20),
    "AAVE": (2, 10),
    "ADA": (0, 20),
    "AVAX": (2, 10),
    "BNB": (3, 10),
    "DOGE": (0, 20),
    "DOT": (1, 20),
    "LINK": (1, 20),
    "UNI": (1, 20),
    "XRP": (0, 20),
}
_FIRST = ("BTC", "ETH", "SOL")
_MIN_VALUE = 10.0  # USDC: "Order must have minimum value of $10"
_NONCE_PAST_MS = 2 * 86_400_000
_NONCE_FUTURE_MS = 86_400_000
_ZERO_HASH = "0x" + "0" * 64


def _num(x: float) -> str:
    """A number as the venue writes it: a decimal string, at least one decimal (``"0.0"``, ``"91234.5"``)."""
    if not math.isfinite(x):
        return "0.0"
    text = f"{x:.10f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _px(x: float, sz_decimals: int) -> str:
    """A price on the venue's grid: 5 significant figures, at most ``6 - szDecimals`` decimals (integers kept)."""
    if x <= 0 or not math.isfinite(x):
        return "0.0"
    digits = max(0, 4 - math.floor(math.log10(x)))
    return _num(round(x, min(digits, 6 - sz_decimals)))


def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1].rstrip("0")) if "." in text else 0


def valid_price(text: str, sz_decimals: int) -> bool:
    """Hyperliquid's perp price rule: integers always; else <= 5 significant figures and <= 6 - szDecimals decimals."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return False
    if not value.is_finite() or value <= 0:
        return False
    if value == value.to_integral_value():
        return True
    if _decimals(text) > 6 - sz_decimals:
        return False
    digits = value.normalize().as_tuple().digits
    return len(digits) <= 5


@dataclass(slots=True)
class _OrderMeta:
    tif: str  # Gtc | Ioc | Alo
    limit_px: str  # the price as sent


@dataclass
class HyperliquidState:
    """The fake venue's Hyperliquid side: the account address, its ledger and the knobs tests turn."""

    fx: FakeExchange
    address: str  # the account (lower-case 0x + 40 hex)
    signer: str  # the address of the fake's private key
    coins: list[str]
    ledger: PrivateLedger
    testnet: bool = False  # phantom agent source "b" (testnet) instead of "a" (mainnet)
    abstraction: str = "default"  # userAbstraction answer ("unifiedAccount" makes ccxt read spot balances)
    spot_balances: dict[str, float] = field(default_factory=dict)  # spot wallet (USDC, HYPE, ...), hold = 0
    funding_rates: dict[str, float] = field(default_factory=dict)  # coin -> rate per hour (> 0: longs pay)
    default_funding_rate: float = 0.0000125
    nonces: set[int] = field(default_factory=set)
    referrer: str = ""
    approved_builders: dict[str, str] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)  # action types accepted, in order (tests assert on them)
    funded_to: int | None = None
    meta: dict[str, _OrderMeta] = field(default_factory=dict)  # venue id -> order details the ledger lacks
    start_positions: dict[str, float] = field(default_factory=dict)  # trade id -> signed size before the fill
    funding_szi: dict[str, float] = field(default_factory=dict)  # funding entry id -> signed size then
    liquidations: dict[str, float] = field(default_factory=dict)  # trade id -> mark of a liquidation fill
    lock: threading.RLock = field(default_factory=threading.RLock)
    #: coin -> hourly funding history [(ms, rate)] that ``fundingHistory`` serves instead of the derived one
    history_overrides: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    history_cache: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    _client: Any = None

    # ------------------------------------------------------------------ helpers

    def specs(self, coin: str) -> tuple[int, int]:
        return COIN_SPECS.get(coin, (2, 10))

    def maint_rate(self, coin: str) -> float:
        """Maintenance margin rate: half the initial margin rate at the coin's max leverage."""
        return 0.5 / self.specs(coin)[1]

    def mark(self, coin: str) -> float | None:
        return self.fx._mark(coin, self.fx._now())

    def client(self) -> Any:
        """A ccxt hyperliquid client holding the fake's private key, used only to recompute signatures."""
        if self._client is None:
            import ccxt

            c = ccxt.hyperliquid({"privateKey": self.fx.private_key, "walletAddress": self.signer})
            c.options["sandboxMode"] = self.testnet
            self._client = c
        self._client.options["sandboxMode"] = self.testnet
        return self._client

    def accrue(self) -> None:
        """Pay funding for every whole hour crossed since the last call (rate per coin, on the mark then)."""
        with self.lock:
            now = self.fx._now()
            if self.funded_to is None:
                self.funded_to = now
                return
            hour = (self.funded_to // HOUR_MS + 1) * HOUR_MS
            while hour <= now:
                for coin, pos in list(self.ledger.positions.items()):
                    if pos.qty == 0:
                        continue
                    rate = self.funding_rates.get(coin, self.default_funding_rate)
                    szi = pos.qty
                    entry = self.ledger.settle_funding(coin, rate, hour)
                    if entry is not None:
                        self.funding_szi[entry.entry_id] = szi
                hour += HOUR_MS
            self.funded_to = max(self.funded_to, now)

    def liquidate(self, coin: str) -> None:
        """Close ``coin``'s position as the venue's liquidator does: a market fill at the mark that the fills
        report with ``liquidation.liquidatedUser`` = this account (the margin loss is not modelled)."""
        with self.lock:
            pos = self.ledger.positions.get(coin)
            if pos is None or pos.qty == 0:
                raise ValueError(f"no {coin} position to liquidate")
            szd = self.specs(coin)[0]
            before, n_fills = pos.qty, len(self.ledger.fills)
            side: Literal["buy", "sell"] = "buy" if pos.qty < 0 else "sell"
            self.ledger.place(coin, side, "market", round(abs(pos.qty), szd), reduce_only=True)
            mark = self.mark(coin) or 0.0
            running = before
            for f in self.ledger.fills[n_fills:]:
                self.start_positions[f.trade_id] = running
                running += f.qty if f.side == "buy" else -f.qty
                self.liquidations[f.trade_id] = mark

    # ------------------------------------------------------------------ account figures

    def upnl(self, coin: str) -> float:
        try:
            return self.ledger.upnl(coin)
        except LedgerReject:
            return 0.0

    def cross_figures(self) -> tuple[float, float, float, float]:
        """(cross account value, cross margin used, cross maintenance used, cross notional)."""
        led = self.ledger
        wallet = led.wallet.get("USDC", 0.0)
        value = wallet
        used = mm = ntl = 0.0
        for coin, pos in led.positions.items():
            if pos.qty == 0:
                continue
            mark = self.mark(coin) or pos.entry_price
            if pos.margin_mode == "isolated":
                value -= pos.isolated_margin
                continue
            value += self.upnl(coin)
            notional = abs(pos.qty) * mark
            ntl += notional
            used += notional / pos.leverage
            mm += notional * self.maint_rate(coin)
        return value, used, mm, ntl

    def liquidation_px(self, coin: str) -> float | None:
        """The venue's liquidation price: ``mark − side·margin_available/|szi|/(1 − l·side)``, l = 1/maint leverage."""
        pos = self.ledger.positions.get(coin)
        if pos is None or pos.qty == 0:
            return None
        if pos.liq_override is not None:
            return pos.liq_override
        mark = self.mark(coin) or pos.entry_price
        side = 1.0 if pos.qty > 0 else -1.0
        size = abs(pos.qty)
        lr = self.maint_rate(coin)
        if pos.margin_mode == "isolated":
            available = pos.isolated_margin + self.upnl(coin) - size * mark * lr
        else:
            value, _, mm, _ = self.cross_figures()
            available = value - mm
        px = mark - side * available / size / (1.0 - lr * side)
        return px if 0 < px < 1e15 else None

    # ------------------------------------------------------------------ shapes

    def position_json(self, coin: str) -> dict[str, Any]:
        pos = self.ledger.positions[coin]
        mark = self.mark(coin) or pos.entry_price
        upnl = self.upnl(coin)
        value = abs(pos.qty) * mark
        if pos.margin_mode == "isolated":
            raw_usd = pos.isolated_margin - pos.qty * pos.entry_price
            leverage: dict[str, Any] = {"type": "isolated", "value": int(pos.leverage), "rawUsd": _num(raw_usd)}
            margin_used = raw_usd + pos.qty * mark
        else:
            leverage = {"type": "cross", "value": int(pos.leverage)}
            margin_used = value / pos.leverage
        cum = sum(f.amount for f in self.ledger.funding if f.symbol == coin)
        liq = self.liquidation_px(coin)
        im = value / pos.leverage
        return {
            "type": "oneWay",
            "position": {
                "coin": coin,
                "szi": _num(pos.qty),
                "leverage": leverage,
                "entryPx": _num(pos.entry_price),
                "positionValue": _num(value),
                "unrealizedPnl": _num(upnl),
                "returnOnEquity": _num(upnl / im if im else 0.0),
                "liquidationPx": None if liq is None else _num(liq),
                "marginUsed": _num(margin_used),
                "maxLeverage": self.specs(coin)[1],
                # Hyperliquid's cumFunding is paid funding (> 0 = paid); the ledger's amount is > 0 received
                "cumFunding": {"allTime": _num(-cum), "sinceOpen": _num(-cum), "sinceChange": _num(-cum)},
            },
        }

    def clearinghouse(self, user: str) -> dict[str, Any]:
        now = self.fx._now()
        empty = {"accountValue": "0.0", "totalNtlPos": "0.0", "totalRawUsd": "0.0", "totalMarginUsed": "0.0"}
        if user != self.address:
            return {
                "marginSummary": empty,
                "crossMarginSummary": empty,
                "crossMaintenanceMarginUsed": "0.0",
                "withdrawable": "0.0",
                "assetPositions": [],
                "time": now,
            }
        self.accrue()
        led = self.ledger
        coins = [c for c, p in led.positions.items() if p.qty != 0]
        wallet = led.wallet.get("USDC", 0.0)
        total_value = wallet + sum(self.upnl(c) for c in coins)
        total_ntl = sum(abs(led.positions[c].qty) * (self.mark(c) or 0.0) for c in coins)
        total_raw = wallet - sum(led.positions[c].qty * (self.mark(c) or 0.0) for c in coins)
        cross_value, cross_used, cross_mm, cross_ntl = self.cross_figures()
        iso_used = sum(
            led.positions[c].isolated_margin + self.upnl(c) for c in coins if led.positions[c].margin_mode == "isolated"
        )
        orders_used = sum(
            (o.qty - o.filled) * (o.price or 0.0) / led.position(o.symbol).leverage
            for o in led.open_orders()
            if not o.reduce_only
        )
        withdrawable = max(0.0, cross_value - cross_used - orders_used)
        cross_raw = cross_value - sum(
            led.positions[c].qty * (self.mark(c) or 0.0) for c in coins if led.positions[c].margin_mode == "cross"
        )
        return {
            "marginSummary": {
                "accountValue": _num(total_value),
                "totalNtlPos": _num(total_ntl),
                "totalRawUsd": _num(total_raw),
                "totalMarginUsed": _num(cross_used + iso_used),
            },
            "crossMarginSummary": {
                "accountValue": _num(cross_value),
                "totalNtlPos": _num(cross_ntl),
                "totalRawUsd": _num(cross_raw),
                "totalMarginUsed": _num(cross_used),
            },
            "crossMaintenanceMarginUsed": _num(cross_mm),
            "withdrawable": _num(withdrawable),
            "assetPositions": [self.position_json(c) for c in coins],
            "time": now,
        }

    def order_json(self, o: LedgerOrder, *, frontend: bool = True) -> dict[str, Any]:
        meta = self.meta.get(o.venue_id)
        remaining = 0.0 if not o.is_open else o.qty - o.filled
        if o.status in ("cancelled", "expired"):
            remaining = o.qty - o.filled
        out: dict[str, Any] = {
            "coin": o.symbol,
            "side": "B" if o.side == "buy" else "A",
            "limitPx": meta.limit_px if meta else _num(o.price or 0.0),
            "sz": _num(remaining),
            "oid": int(o.venue_id),
            "timestamp": o.created_ms,
            "origSz": _num(o.qty),
            "cloid": o.client_id or None,
        }
        if frontend:
            out.update(
                {
                    "triggerCondition": "N/A",
                    "isTrigger": False,
                    "triggerPx": "0.0",
                    "children": [],
                    "isPositionTpsl": False,
                    "reduceOnly": o.reduce_only,
                    "orderType": "Limit" if (meta is None or meta.tif != "Ioc") else "Market",
                    "tif": meta.tif if meta else "Gtc",
                }
            )
        return out

    @staticmethod
    def status_of(o: LedgerOrder) -> str:
        return {
            "open": "open",
            "partially_filled": "open",
            "filled": "filled",
            "cancelled": "canceled",
            "expired": "canceled",
            "rejected": "rejected",
        }[o.status]

    def fill_json(self, f: Any) -> dict[str, Any]:
        start = self.start_positions.get(f.trade_id, 0.0)
        signed = f.qty if f.side == "buy" else -f.qty
        if start == 0 or (start > 0) == (signed > 0):
            direction = "Open Long" if signed > 0 else "Open Short"
        else:
            direction = "Close Short" if signed > 0 else "Close Long"
            if abs(signed) > abs(start) + 1e-12:
                direction = "Short > Long" if signed > 0 else "Long > Short"
        return {
            "coin": f.symbol,
            "px": _num(f.price),
            "sz": _num(f.qty),
            "side": "B" if f.side == "buy" else "A",
            "time": f.ts_ms,
            "startPosition": _num(start),
            "dir": direction,
            "closedPnl": _num(f.realized_pnl),
            "hash": "0x" + f"{int(f.trade_id):064x}",
            "oid": int(f.venue_id),
            "crossed": not f.maker,
            "fee": _num(f.fee),
            "tid": int(f.trade_id),
            "cloid": f.client_id or None,
            "feeToken": "USDC",
            "liquidation": (
                {"liquidatedUser": self.address, "markPx": _num(self.liquidations[f.trade_id]), "method": "market"}
                if f.trade_id in self.liquidations
                else None
            ),
        }


def hyperliquid_state(fx: FakeExchange) -> HyperliquidState:
    """The Hyperliquid state mounted on ``fx`` (KeyError-like AttributeError when not mounted)."""
    state = getattr(fx, "hyperliquid", None)
    if not isinstance(state, HyperliquidState):
        raise AttributeError("the fake exchange has no Hyperliquid routes: start it with a private_key")
    return state


def _address_of(private_key: str) -> str:
    from ccxt.base.exchange import Exchange

    try:
        return str(Exchange.eth_get_address_from_private_key(private_key)).lower()
    except Exception:  # not a 32-byte hex key: no account can sign (every action is refused)
        return "0x" + "0" * 40


def _is_address(text: str) -> bool:
    return len(text) == 42 and text[:2].lower() == "0x" and all(c in "0123456789abcdefABCDEF" for c in text[2:])


def _new_state(fx: FakeExchange) -> HyperliquidState:
    assets = fx._spot_assets()
    coins = [c for c in _FIRST if c in assets] + [c for c in assets if c not in _FIRST]
    contracts = {}
    for coin in coins:
        szd, _ = COIN_SPECS.get(coin, (2, 10))
        contracts[coin] = Contract(
            coin, "linear", coin, "USDC", 1.0, 10.0**-szd, 10.0 ** -(6 - szd), min_notional_usd=_MIN_VALUE
        )
    ledger = fx.ledger(VENUE, contracts, fee_rate=0.00045)
    signer = _address_of(fx.private_key)
    address = fx.api_key.lower() if _is_address(fx.api_key) else signer
    return HyperliquidState(fx=fx, address=address, signer=signer, coins=coins, ledger=ledger)


def mount_public(fx: FakeExchange) -> None:
    """Serve Hyperliquid's public ``POST /info`` reads (markets, candles, funding history) on a fake started without
    keys (no ``/exchange``, no ``fx.hyperliquid``; the state is ``fx.venue_state["hyperliquid"]``)."""
    state = _new_state(fx)
    fx.venue_state["hyperliquid"] = state
    fx.mount("POST", "/info", lambda req: _info(state, req))


def mount(fx: FakeExchange) -> None:
    """Serve Hyperliquid's ``POST /info`` and ``POST /exchange`` on ``fx`` and keep its state on ``fx.hyperliquid``."""
    state = _new_state(fx)
    fx.hyperliquid = state  # type: ignore[attr-defined]
    fx.mount("POST", "/info", lambda req: _info(state, req))
    fx.mount("POST", "/exchange", lambda req: _exchange(state, req))


# ---------------------------------------------------------------------- /info


def _body(req: PrivateRequest) -> dict[str, Any] | None:
    try:
        body = json.loads(req.body.decode() or "null")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _deserialize_error(detail: str) -> Reply:
    return 422, f"Failed to deserialize the JSON body into the target type: {detail}", {}


def _asset_ctx(state: HyperliquidState, coin: str) -> dict[str, Any]:
    mark = state.mark(coin)
    szd = state.specs(coin)[0]
    px = _px(mark, szd) if mark else "0.0"
    rate = state.funding_rates.get(coin, state.default_funding_rate)
    return {
        "funding": _num(rate),
        "openInterest": "0.0",
        "prevDayPx": px,
        "dayNtlVlm": "0.0",
        "premium": "0.0",
        "oraclePx": px,
        "markPx": px,
        "midPx": px,
        "impactPxs": [px, px],
        "dayBaseVlm": "0.0",
    }


def _meta(state: HyperliquidState) -> dict[str, Any]:
    universe = []
    for coin in state.coins:
        szd, lev = state.specs(coin)
        universe.append({"szDecimals": szd, "name": coin, "maxLeverage": lev, "marginTableId": lev})
    return {"universe": universe, "marginTables": [], "collateralToken": 0}


def _spot_meta() -> dict[str, Any]:
    return {
        "tokens": [
            {
                "name": "USDC",
                "szDecimals": 8,
                "weiDecimals": 8,
                "index": 0,
                "tokenId": "0x6d1e7cde53ba9467b783cb7c530ce054",
                "isCanonical": True,
                "evmContract": None,
                "fullName": None,
            },
            {
                "name": "HYPE",
                "szDecimals": 2,
                "weiDecimals": 8,
                "index": 150,
                "tokenId": "0x0d01dc56dcaaca66ad901c959b4011ec",
                "isCanonical": False,
                "evmContract": None,
                "fullName": "Hyperliquid",
            },
        ],
        "universe": [{"tokens": [1, 0], "name": "@107", "index": 0, "isCanonical": False}],
    }


def _user(body: dict[str, Any]) -> str:
    return str(body.get("user") or "").lower()


def _find(state: HyperliquidState, oid: Any) -> LedgerOrder | None:
    if isinstance(oid, str) and oid.lower().startswith("0x"):
        return state.ledger.find(None, client_id=oid.lower())
    try:
        return state.ledger.find(None, venue_id=str(int(oid)))
    except (TypeError, ValueError):
        return None


def _info(state: HyperliquidState, req: PrivateRequest) -> Reply:
    body = _body(req)
    if body is None or not isinstance(body.get("type"), str):
        return _deserialize_error("missing field `type`")
    kind = body["type"]
    with state.lock:
        if kind == "meta":
            return 200, _meta(state), {}
        if kind == "metaAndAssetCtxs":
            if body.get("dex"):
                return 200, [{"universe": [], "marginTables": []}, []], {}
            return 200, [_meta(state), [_asset_ctx(state, c) for c in state.coins]], {}
        if kind == "spotMeta":
            return 200, _spot_meta(), {}
        if kind == "spotMetaAndAssetCtxs":
            ctx = {"prevDayPx": "30.0", "dayNtlVlm": "0.0", "markPx": "30.0", "midPx": "30.0", "coin": "@107"}
            return 200, [_spot_meta(), [ctx]], {}
        if kind == "perpDexs":
            return 200, [None], {}
        if kind == "candleSnapshot":
            return _candles(state, body)
        if kind == "fundingHistory":
            return _funding_history(state, body)
        if kind == "allMids":
            return 200, {c: _asset_ctx(state, c)["midPx"] for c in state.coins}, {}
        if kind == "exchangeStatus":
            return 200, {"time": state.fx._now(), "specialStatuses": None}, {}
        if kind == "userRole":
            who = _user(body)
            if who == state.address:
                return 200, {"role": "user"}, {}
            if who == state.signer:
                return 200, {"role": "agent", "data": {"user": state.address}}, {}
            return 200, {"role": "missing"}, {}
        if kind == "userAbstraction":
            return 200, state.abstraction if _user(body) == state.address else "default", {}
        if kind == "clearinghouseState":
            return 200, state.clearinghouse(_user(body)), {}
        if kind == "spotClearinghouseState":
            mine = _user(body) == state.address
            balances = [
                {
                    "coin": coin,
                    "token": 0 if coin == "USDC" else 150,
                    "hold": "0.0",
                    "total": _num(amount),
                    "entryNtl": "0.0",
                }
                for coin, amount in (state.spot_balances.items() if mine else ())
            ]
            return 200, {"balances": balances}, {}
        if kind in ("frontendOpenOrders", "openOrders"):
            if _user(body) != state.address:
                return 200, [], {}
            orders = state.ledger.open_orders()
            return 200, [state.order_json(o, frontend=kind == "frontendOpenOrders") for o in orders], {}
        if kind == "orderStatus":
            if "oid" not in body:
                return _deserialize_error("missing field `oid`")
            order = _find(state, body["oid"]) if _user(body) == state.address else None
            if order is None:
                return 200, {"status": "unknownOid"}, {}
            return 200, _order_status(state, order), {}
        if kind == "historicalOrders":
            if _user(body) != state.address:
                return 200, [], {}
            return 200, [_order_status(state, o)["order"] for o in reversed(state.ledger.orders)][:2000], {}
        if kind in ("userFills", "userFillsByTime"):
            if _user(body) != state.address:
                return 200, [], {}
            start = int(body.get("startTime") or 0)
            end = int(body.get("endTime") or 2**62)
            fills = [f for f in state.ledger.fills if start <= f.ts_ms <= end] if kind == "userFillsByTime" else []
            if kind == "userFills":
                fills = list(state.ledger.fills)
            rows = [state.fill_json(f) for f in sorted(fills, key=lambda f: f.ts_ms, reverse=True)]
            return 200, rows[:2000], {}
        if kind == "userFunding":
            if _user(body) != state.address:
                return 200, [], {}
            state.accrue()
            start = int(body.get("startTime") or 0)
            end = int(body.get("endTime") or 2**62)
            rows = [
                {
                    "time": f.ts_ms,
                    "hash": _ZERO_HASH,
                    "delta": {
                        "type": "funding",
                        "coin": f.symbol,
                        "usdc": _num(f.amount),
                        "szi": _num(state.funding_szi.get(f.entry_id, 0.0)),
                        "fundingRate": _num(f.rate),
                        "nSamples": None,
                    },
                }
                for f in state.ledger.funding
                if start <= f.ts_ms <= end
            ]
            return 200, rows[:500], {}
    return _deserialize_error(f"unknown variant `{kind}`")


#: the most records one ``fundingHistory`` answer carries (Hyperliquid API docs: 500 per response)
FUNDING_PAGE = 500
#: the most candles one ``candleSnapshot`` answer carries (Hyperliquid API docs: 5000)
CANDLE_PAGE = 5000


def _int_field(body: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(name)
    return value


def _candles(state: HyperliquidState, body: dict[str, Any]) -> Reply:
    """``candleSnapshot``: daily candles of the sample's spot history for a coin, oldest first, at most 5000."""
    req = body.get("req")
    if not isinstance(req, dict) or not isinstance(req.get("coin"), str):
        return _deserialize_error("missing field `req`")
    try:
        start = _int_field(req, "startTime", 0) or 0
        end = _int_field(req, "endTime", 2**62)
    except ValueError as exc:
        return _deserialize_error(f"invalid type for `{exc}`")
    coin, interval = req["coin"], str(req.get("interval", ""))
    if interval != "1d" or coin not in state.coins:
        return 200, [], {}
    rows = [r for r in state.fx.data.candles.get(coin, []) if start <= r[0] <= (end if end is not None else 2**62)]
    out = [
        {
            "t": r[0],
            "T": r[0] + 86_400_000 - 1,
            "s": coin,
            "i": interval,
            "o": r[1],
            "c": r[4],
            "h": r[2],
            "l": r[3],
            "v": r[5],
            "n": 0,
        }
        for r in rows[:CANDLE_PAGE]
    ]
    return 200, out, {}


def funding_history(state: HyperliquidState, coin: str) -> list[tuple[int, float]]:
    """The fake's hourly funding history of ``coin`` (cached): each hour of the sample's Binance USDⓈ-M funding of
    the coin gets its settlement's rate spread over the settlement's hours; other coins the coin's set rate (or
    the default) every hour of the coin's candle history. ``state.history_overrides[coin]`` replaces it."""
    if coin in state.history_overrides:
        return state.history_overrides[coin]
    cached = state.history_cache.get(coin)
    if cached is not None:
        return cached
    rows = state.fx.data.funding.get(("binance", f"{coin}USDT"), [])
    out: list[tuple[int, float]] = []
    if rows:
        prev = rows[0][0] - 8 * HOUR_MS
        for ms, text in rows:
            hours = max(1, round((ms - prev) / HOUR_MS))
            out.extend((prev + (k + 1) * HOUR_MS, float(text) / hours) for k in range(hours))
            prev = ms
    else:
        candles = state.fx.data.candles.get(coin, [])
        if candles:
            hourly = float(state.funding_rates.get(coin, state.default_funding_rate))
            first, last = candles[0][0], candles[-1][0] + 86_400_000
            out = [(ms, hourly) for ms in range(first + HOUR_MS, last + 1, HOUR_MS)]
    state.history_cache[coin] = out
    return out


def _funding_history(state: HyperliquidState, body: dict[str, Any]) -> Reply:
    """``fundingHistory``: the records of ``coin`` from ``startTime`` (to ``endTime``), oldest first, at most 500."""
    coin = body.get("coin")
    if not isinstance(coin, str):
        return _deserialize_error("missing field `coin`")
    try:
        start = _int_field(body, "startTime")
        end = _int_field(body, "endTime", 2**62)
    except ValueError as exc:
        return _deserialize_error(f"invalid type for `{exc}`")
    if start is None:
        return _deserialize_error("missing field `startTime`")
    if coin not in state.coins and coin not in state.history_overrides:
        return 200, [], {}
    hi = end if end is not None else 2**62
    page: list[dict[str, Any]] = []
    for ms, rate in funding_history(state, coin):
        if ms < start:
            continue
        if ms > hi or len(page) >= FUNDING_PAGE:
            break
        page.append({"coin": coin, "fundingRate": repr(float(rate)), "premium": "0.0", "time": ms})
    return 200, page, {}


def _order_status(state: HyperliquidState, o: LedgerOrder) -> dict[str, Any]:
    return {
        "status": "order",
        "order": {
            "order": state.order_json(o),
            "status": state.status_of(o),
            "statusTimestamp": o.updated_ms,
        },
    }


# ---------------------------------------------------------------------- /exchange


def _err(message: str) -> Reply:
    return 200, {"status": "err", "response": message}, {}


def _ok(kind: str, data: Any | None = None) -> Reply:
    response: dict[str, Any] = {"type": kind}
    if data is not None:
        response["data"] = data
    return 200, {"status": "ok", "response": response}, {}


def _sig_ints(sig: Any) -> tuple[int, int, int] | None:
    try:
        return int(str(sig["r"]), 16), int(str(sig["s"]), 16), int(sig["v"])
    except (KeyError, TypeError, ValueError):
        return None


def _recover(
    state: HyperliquidState,
    action: dict[str, Any],
    nonce: int,
    vault: str | None,
    expires: int | None,
    sig: tuple[int, int, int],
    user_signed: bool,
) -> str:
    """The address a signature recovers to (what the venue names in its error), or the zero address."""
    try:
        import coincurve

        c = state.client()
        if user_signed:
            payload, types = _user_signed_message(action)
            domain = {
                "chainId": 421614,
                "name": "HyperliquidSignTransaction",
                "verifyingContract": c.options["zeroAddress"],
                "version": "1",
            }
            msg = c.eth_encode_structured_data(domain, types, payload)
        else:
            phantom = c.construct_phantom_agent(c.action_hash(action, vault, nonce, expires), state.testnet)
            domain = {
                "chainId": 1337,
                "name": "Exchange",
                "verifyingContract": c.options["zeroAddress"],
                "version": "1",
            }
            types = {"Agent": [{"name": "source", "type": "string"}, {"name": "connectionId", "type": "bytes32"}]}
            msg = c.eth_encode_structured_data(domain, types, phantom)
        digest = bytes.fromhex(c.hash_message(msg)[2:])
        r, s, v = sig
        raw = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v - 27])
        pub = coincurve.PublicKey.from_signature_and_message(raw, digest, hasher=None)
        from ccxt.static_dependencies import keccak

        return "0x" + bytes(keccak.SHA3(pub.format(compressed=False)[1:])[-20:]).hex()
    except Exception:
        return "0x" + "0" * 40


_USER_SIGNED: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "approveBuilderFee": (
        "HyperliquidTransaction:ApproveBuilderFee",
        [("hyperliquidChain", "string"), ("maxFeeRate", "string"), ("builder", "address"), ("nonce", "uint64")],
    ),
}


def _user_signed_message(action: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    name, fields = _USER_SIGNED[action["type"]]
    payload = {k: action[k] for k, _ in fields}
    return payload, {name: [{"name": k, "type": t} for k, t in fields]}


def _expected(
    state: HyperliquidState, action: dict[str, Any], nonce: int, vault: str | None, expires: int | None
) -> tuple[int, int, int] | None:
    c = state.client()
    try:
        if action.get("type") in _USER_SIGNED:
            if action.get("type") == "approveBuilderFee":
                sig = c.build_approve_builder_fee_sig(
                    {k: action[k] for k in ("hyperliquidChain", "maxFeeRate", "builder", "nonce")}
                )
            else:  # pragma: no cover - only approveBuilderFee is user-signed here
                return None
        else:
            sig = c.sign_l1_action(action, nonce, vault, expires)
    except Exception:  # the fake's own key is not a key: nothing verifies
        return None
    return _sig_ints(sig)


def _exchange(state: HyperliquidState, req: PrivateRequest) -> Reply:
    body = _body(req)
    if body is None:
        return _deserialize_error("expected value at line 1 column 1")
    action, nonce, sig = body.get("action"), body.get("nonce"), body.get("signature")
    if not isinstance(action, dict) or not isinstance(action.get("type"), str):
        return _deserialize_error("missing field `action`")
    if isinstance(nonce, bool) or not isinstance(nonce, int):
        return _deserialize_error("missing field `nonce`")
    got = _sig_ints(sig)
    if got is None:
        return _deserialize_error("missing field `signature`")
    vault_raw = body.get("vaultAddress")
    vault = None if vault_raw in (None, "") else str(vault_raw).lower().removeprefix("0x")
    expires = body.get("expiresAfter")
    expires = int(expires) if isinstance(expires, int) and not isinstance(expires, bool) else None
    user_signed = action["type"] in _USER_SIGNED
    with state.lock:
        if action["type"] not in _USER_SIGNED and action["type"] not in _L1_ACTIONS:
            return _deserialize_error(f"unknown variant `{action['type']}`")
        expected = _expected(state, action, nonce, vault, expires)
        if expected is None or expected != got:
            who = _recover(state, action, nonce, vault, expires, got, user_signed)
            return _err(f"User or API Wallet {who} does not exist.")
        if state.signer != state.address and user_signed:
            return _err("Must sign with the main wallet, not an API wallet.")
        wall = int(time.time() * 1000)
        if nonce in state.nonces:
            return _err(f"Invalid nonce: duplicate nonce {nonce}")
        if not wall - _NONCE_PAST_MS < nonce < wall + _NONCE_FUTURE_MS:
            return _err(f"Invalid nonce: {nonce} is outside the accepted window around {wall}")
        if expires is not None and expires < wall:
            return _err(f"Action expired: expiresAfter {expires} < {wall}")
        if vault is not None:
            return _err(f"Vault not registered: 0x{vault}")
        state.nonces.add(nonce)
        state.accrue()
        reply = _L1_ACTIONS[action["type"]](state, action) if not user_signed else _approve_builder(state, action)
        if reply[1].get("status") == "ok":
            state.actions.append(action["type"])
        return reply


def _approve_builder(state: HyperliquidState, action: dict[str, Any]) -> Reply:
    state.approved_builders[str(action.get("builder", "")).lower()] = str(action.get("maxFeeRate", ""))
    return _ok("default")


def _set_referrer(state: HyperliquidState, action: dict[str, Any]) -> Reply:
    if state.referrer:
        return _err("Referrer already set.")
    state.referrer = str(action.get("code", ""))
    return _ok("default")


def _coin(state: HyperliquidState, asset: Any) -> str | None:
    if isinstance(asset, bool) or not isinstance(asset, int) or not 0 <= asset < len(state.coins):
        return None
    return state.coins[asset]


_REJECT_MESSAGES = {
    "min_notional": "Order must have minimum value of $10. asset={a}",
    "insufficient_margin": "Insufficient margin to place order. asset={a}",
    "reduce_only": "Reduce only order would increase position. asset={a}",
    "duplicate": "Duplicate cloid. asset={a}",
    "invalid": "Order has invalid size. asset={a}",
}


def _one_order(state: HyperliquidState, o: Any) -> dict[str, Any]:
    if not isinstance(o, dict):
        return {"error": "Invalid order."}
    a = o.get("a")
    coin = _coin(state, a)
    if coin is None:
        return {"error": f"Invalid asset: {a!r}"}
    szd, _ = state.specs(coin)
    px_text, sz_text = str(o.get("p", "")), str(o.get("s", ""))
    cloid = o.get("c")
    if cloid is not None:
        text = str(cloid).lower()
        if not (len(text) == 34 and text.startswith("0x") and all(ch in "0123456789abcdef" for ch in text[2:])):
            return {"error": f"Invalid cloid: {cloid!r}. asset={a}"}
        cloid = text
        if any(x.client_id == cloid for x in state.ledger.orders):
            return {"error": _REJECT_MESSAGES["duplicate"].format(a=a)}
    try:
        size = Decimal(sz_text)
        price = Decimal(px_text)
    except InvalidOperation:
        return {"error": f"Order has invalid size. asset={a}"}
    if not size.is_finite() or size <= 0:
        return {"error": f"Order has zero size. asset={a}"}
    if _decimals(sz_text) > szd:
        return {"error": f"Order has invalid size. asset={a}"}
    if not valid_price(px_text, szd):
        return {"error": f"Price must be divisible by tick size. asset={a}"}
    tif = str(((o.get("t") or {}).get("limit") or {}).get("tif", ""))
    if tif not in ("Gtc", "Ioc", "Alo"):
        return {"error": f"Invalid order type. asset={a}"}
    mark = state.mark(coin)
    if mark is None:
        return {"error": f"No liquidity available for market order. asset={a}"}
    p = float(price)
    if abs(p / mark - 1.0) > 0.8:
        return {"error": f"Order price cannot be more than 80% away from the reference price. asset={a}"}
    is_buy = bool(o.get("b"))
    marketable = p >= mark if is_buy else p <= mark
    if tif == "Alo" and marketable:
        return {"error": f"Post only order would have immediately matched, bbo was {_px(mark, szd)}. asset={a}"}
    if tif == "Ioc" and not marketable:
        return {"error": f"Order could not immediately match against any resting orders. asset={a}"}
    led = state.ledger
    before = led.position(coin).qty
    n_fills = len(led.fills)
    try:
        order = led.place(
            coin,
            "buy" if is_buy else "sell",
            "market" if tif == "Ioc" else "limit",
            float(size),
            price=None if tif == "Ioc" else p,
            reduce_only=bool(o.get("r")),
            client_id=cloid or "",
        )
    except LedgerReject as exc:
        if exc.kind == "rate_limited":
            return {"error": f"Too many cumulative requests sent. asset={a}"}
        return {"error": _REJECT_MESSAGES.get(exc.kind, "{m}. asset={a}").format(a=a, m=exc.message)}
    state.meta[order.venue_id] = _OrderMeta(tif=tif, limit_px=px_text)
    running = before
    for f in led.fills[n_fills:]:
        state.start_positions[f.trade_id] = running
        running += f.qty if f.side == "buy" else -f.qty
    ident: dict[str, Any] = {"oid": int(order.venue_id)}
    if cloid:
        ident["cloid"] = cloid
    if order.filled > 0 and (order.status == "filled" or tif == "Ioc"):
        return {"filled": {"totalSz": _num(order.filled), "avgPx": _num(order.avg_price), **ident}}
    return {"resting": ident}


def _order(state: HyperliquidState, action: dict[str, Any]) -> Reply:
    orders = action.get("orders")
    if not isinstance(orders, list) or not orders:
        return _deserialize_error("missing field `orders`")
    if state.ledger.reject_next == "rate_limited":
        state.ledger.reject_next = None
        return _err(
            "Too many cumulative requests sent (10437 > 10436) for cumulative volume traded $437.92. "
            "Place taker orders to free up 1 request per USDC traded."
        )
    return _ok("order", {"statuses": [_one_order(state, o) for o in orders]})


def _cancel(state: HyperliquidState, action: dict[str, Any]) -> Reply:
    cancels = action.get("cancels")
    if not isinstance(cancels, list) or not cancels:
        return _deserialize_error("missing field `cancels`")
    by_cloid = action["type"] == "cancelByCloid"
    statuses: list[Any] = []
    for c in cancels:
        c = c if isinstance(c, dict) else {}
        asset = c.get("asset") if by_cloid else c.get("a")
        coin = _coin(state, asset)
        key = c.get("cloid") if by_cloid else c.get("o")
        order = _find(state, key) if coin is not None and key is not None else None
        if order is None or order.symbol != coin or not order.is_open:
            statuses.append({"error": f"Order was never placed, already canceled, or filled. asset={asset}"})
            continue
        state.ledger.cancel(coin, venue_id=order.venue_id)
        statuses.append("success")
    return _ok("cancel", {"statuses": statuses})


def _update_leverage(state: HyperliquidState, action: dict[str, Any]) -> Reply:
    coin = _coin(state, action.get("asset"))
    lev = action.get("leverage")
    if coin is None or isinstance(lev, bool) or not isinstance(lev, int):
        return _deserialize_error("invalid `asset` or `leverage`")
    if not 1 <= lev <= state.specs(coin)[1]:
        return _err(f"Invalid leverage value {lev}: the maximum for {coin} is {state.specs(coin)[1]}")
    pos = state.ledger.position(coin)
    mode = "cross" if action.get("isCross") else "isolated"
    if pos.qty != 0 and mode != pos.margin_mode:
        return _err("Cannot switch leverage type with open position.")
    pos.leverage = float(lev)
    pos.margin_mode = mode  # type: ignore[assignment]
    return _ok("default")


def _update_isolated_margin(state: HyperliquidState, action: dict[str, Any]) -> Reply:
    coin = _coin(state, action.get("asset"))
    ntli = action.get("ntli")
    if coin is None or isinstance(ntli, bool) or not isinstance(ntli, int):
        return _deserialize_error("invalid `asset` or `ntli`")
    pos = state.ledger.positions.get(coin)
    if pos is None or pos.qty == 0 or pos.margin_mode != "isolated":
        return _err("Cannot update margin for a position that is not isolated.")
    amount = ntli / 1e6
    if pos.isolated_margin + amount <= 0:
        return _err("Insufficient margin to remove.")
    pos.isolated_margin += amount
    return _ok("default")


_L1_ACTIONS = {
    "order": _order,
    "cancel": _cancel,
    "cancelByCloid": _cancel,
    "updateLeverage": _update_leverage,
    "updateIsolatedMargin": _update_isolated_margin,
    "setReferrer": _set_referrer,
}
